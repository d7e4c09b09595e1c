/**
 * Choosing the partitions of a keyed job's reduce: contiguous groups of hash buckets, one
 * partition task each, from the bucket sizes the map stage reports.
 */
import { MAX_PARTITIONS } from '../model/job.ts';

/** Buckets a keyed job's map outputs are cut into when neither the job nor the request says. */
export const DEFAULT_BUCKETS = 256;

/** A partition task's input, at most: above it the partitions are more. */
export const PARTITION_BUDGET_BYTES = 256 * 1024 * 1024;

/**
 * A shuffle of at most this many bytes in all has no partition tasks: the reducer merges the map
 * outputs itself (a few groups, as by-field's eight, need no more than that).
 */
export const DIRECT_SHUFFLE_BYTES = 1024 * 1024;

/** Below this much input a partition is not worth an invocation of its own. */
export const MIN_PARTITION_BYTES = 4 * 1024 * 1024;

/**
 * The buckets of a keyed job: enough that a shuffle as large as the input could still be grouped
 * into partitions within the budget with room to balance them (twice input /
 * PARTITION_BUDGET_BYTES, a power of two), and at least DEFAULT_BUCKETS: 256 up to 32 GiB of
 * input, 8,192 for 1 TiB, at most MAX_PARTITIONS. With `partitions` set, at least that many: a
 * partition of several buckets can be split between them when it runs out of memory or time.
 */
export function bucketCount(partitions: number | undefined, inputBytes = 0): number {
  const wanted = 2 ** Math.ceil(Math.log2(Math.max(1, (2 * inputBytes) / PARTITION_BUDGET_BYTES)));
  const buckets = Math.min(MAX_PARTITIONS, Math.max(DEFAULT_BUCKETS, wanted));
  return partitions === undefined ? buckets : Math.max(partitions, buckets);
}

/**
 * Partitions per slot of the job's concurrency, while each still gets MIN_PARTITION_BYTES. A
 * partition holds its keys while it merges them, so smaller ones hold less at once: by-field over
 * 864,420 keys on 2 slots peaked at 1,003-1,021 MB of RSS with 2 partitions and 739-747 MB with
 * 8, for 5-9% more job time (2026-12-08).
 */
export const PARTITIONS_PER_SLOT = 4;

/**
 * How many partitions `total` bytes of shuffle get: enough for the budget
 * (total / PARTITION_BUDGET_BYTES), and PARTITIONS_PER_SLOT per slot of the job's concurrency
 * while each would still get MIN_PARTITION_BYTES; at least one, at most MAX_PARTITIONS.
 */
export function partitionCount(total: number, concurrency: number): number {
  const wanted = Math.max(
    Math.ceil(total / PARTITION_BUDGET_BYTES),
    Math.min(PARTITIONS_PER_SLOT * concurrency, Math.floor(total / MIN_PARTITION_BYTES)),
  );
  return Math.min(Math.max(1, wanted), MAX_PARTITIONS);
}

/**
 * Groups the buckets into partitions: `[first, end)` bucket ranges, contiguous and in order.
 * There are `partitions` when they are set, else {@link partitionCount}, at most one per bucket;
 * the cuts fall where the running total of bytes passes each partition's share.
 */
export function groupBuckets(
  sizes: readonly number[],
  options: { partitions?: number; concurrency: number },
): [number, number][] {
  const buckets = sizes.length;
  const total = sizes.reduce((a, b) => a + b, 0);
  const count = Math.min(buckets, options.partitions ?? partitionCount(total, options.concurrency));
  const groups: [number, number][] = [];
  let first = 0;
  let sum = 0;
  for (let b = 0; b < buckets; b++) {
    sum += sizes[b]!;
    const left = count - groups.length - 1; // partitions still to open after this one
    const mustCut = buckets - (b + 1) === left; // every later bucket needed for the others
    if (left > 0 && (mustCut || sum >= (total * (groups.length + 1)) / count)) {
      groups.push([first, b + 1]);
      first = b + 1;
    }
  }
  groups.push([first, buckets]);
  return groups;
}
