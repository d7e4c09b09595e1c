/**
 * data: the dataset's bytes and records. Planning which bytes of which objects each chunk reads
 * (plan.ts), line ownership (lines.ts: a segment owns the records that start in it, so the
 * segments together read every record once), and the record codecs (records.ts: JSONL, CSV,
 * lines). Pure functions over plain data.
 */
export * from './lines.ts';
export * from './plan.ts';
export * from './records.ts';
