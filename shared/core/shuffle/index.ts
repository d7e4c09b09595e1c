/**
 * shuffle: a keyed job's way from the map stage to its result (docs/SHUFFLE.md). Each map
 * attempt writes one object of sorted runs, one per hash bucket (runs.ts, hash.ts); the
 * coordinator groups the buckets into partitions from the sizes the map stage reports
 * (partitions.ts); a partition task k-way merges its buckets' runs from every map output
 * (merge.ts), and the result is the partitions' runs merged by key. A sorted job (orderBy) sorts
 * each map attempt's outputs into one run with samples, and its partitions are ranges of the
 * order cut from those samples (order.ts); the result is the ranges' parts one after another.
 * A ranked keyed job's partitions rank their keys, and its result merges them by rank (rank.ts).
 */
export * from './hash.ts';
export * from './merge.ts';
export * from './order.ts';
export * from './partitions.ts';
export * from './rank.ts';
export * from './runs.ts';
