/**
 * A keyed job's map chunk past its memory budget: its combiner (a table of accumulators by key)
 * is written to local disk as runs (Lambda's /tmp) and started afresh, and at the end the spilled
 * runs and the rest are merged, bucket by bucket and key by key, into the attempt's runs object
 * as it uploads: a key met in several spills gets `merge(earlier, later)`, so the object holds
 * the same lines as if nothing had spilled.
 */
import type { ObjectStore } from '../base/ports.ts';
import { textUpload } from '../base/text-upload.ts';
import type { ChunkOutput, ChunkTask } from '../model/documents.ts';
import { jobKeys } from '../model/keys.ts';
import { bucketOf } from '../shuffle/hash.ts';
import { mergeSorted } from '../shuffle/merge.ts';
import { utf8Length } from '../shuffle/order.ts';
import {
  type BucketTable,
  encodeRuns,
  type RunLine,
  runBatches,
  runLine,
} from '../shuffle/runs.ts';
import type { Spill } from './sort-chunk.ts';

/**
 * What a new key is taken to cost, beside its characters: a Map entry, an accumulator and their
 * JSON. An estimate: the budget is a safety valve, not an exact bound.
 */
const KEY_OVERHEAD_BYTES = 96;

type SpillFile = Awaited<ReturnType<Spill['write']>>;

/** A keyed chunk's spilled tables, in the order they were written (the input's). */
export class KeyedSpills {
  readonly files: { file: SpillFile; bytes: number }[] = [];
  private estimate = 0;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly spill: Spill) {}

  /** Counts a key new to the table; true once the table is past the budget. */
  grew(key: string): boolean {
    this.estimate += key.length * 2 + KEY_OVERHEAD_BYTES;
    return this.due();
  }

  /** True when the table is past the budget. */
  due(): boolean {
    return this.estimate >= this.spill.budgetBytes;
  }

  /**
   * Writes a table, encoded as runs, after those before it; the caller starts a new one. The
   * promise settles when it is on disk (a failure also fails {@link settled}).
   */
  add(table: BucketTable): Promise<void> {
    const { bytes } = encodeRuns(table, table.buckets);
    this.estimate = 0;
    this.writing = this.writing.then(async () => {
      this.files.push({ file: await this.spill.write(bytes), bytes: bytes.length });
    });
    // Observed here too: a spill made where nothing waits for it fails the chunk in settled().
    this.writing.catch(() => undefined);
    return this.writing;
  }

  /** Every spill is on disk. */
  settled(): Promise<void> {
    return this.writing;
  }

  /** Removes the spilled files (the chunk is done with them, or failed). */
  async remove(): Promise<void> {
    await this.writing.catch(() => undefined);
    await Promise.all(this.files.map((f) => f.file.remove()));
  }
}

/** A run line with its bucket, as the merge orders lines: by bucket, then by key. */
interface BucketLine extends RunLine {
  bucket: number;
}

/**
 * The spilled tables and the rest, merged into the attempt's runs object (see the module's
 * comment): its key, ETag, size, bucket offsets and key count, as a chunk's output.
 */
export async function writeSpilledRuns(
  task: ChunkTask,
  deps: { store: ObjectStore },
  spills: KeyedSpills,
  rest: BucketTable,
  merge: (a: unknown, b: unknown) => unknown,
): Promise<ChunkOutput> {
  const buckets = rest.buckets;
  const restBytes = encodeRuns(rest, buckets).bytes;
  const pieces = [
    ...spills.files.map((f) => f.file.read()),
    (async function* () {
      yield restBytes;
    })(),
  ];
  const sources = pieces.map((p) => withBuckets(runBatches(p), buckets));
  const key = jobKeys(task.jobId).runs(task.index, task.attempt);
  const upload = textUpload(deps.store, task.bucket, key, 'application/x-ndjson');
  const offsets = [0];
  let at = 0;
  let keys = 0;
  let pending: { line: BucketLine; acc?: unknown } | undefined;
  const flush = (): undefined | Promise<void> => {
    if (pending === undefined) return undefined;
    const { line, acc } = pending;
    const text = runLine(line.keyJson, acc === undefined ? line.valueJson : JSON.stringify(acc));
    while (offsets.length <= line.bucket) offsets.push(at);
    at += utf8Length(text);
    keys += 1;
    return upload.write(text);
  };
  try {
    await mergeSorted(sources, byBucketThenKey, (line) => {
      if (pending !== undefined && pending.line.key === line.key) {
        // The same key from a later spill: merged in input order; parsed only when it repeats.
        const before = pending.acc ?? JSON.parse(pending.line.valueJson);
        pending.acc = merge(before, JSON.parse(line.valueJson));
        return undefined;
      }
      const waiting = flush();
      pending = { line };
      return waiting;
    });
    await flush();
    while (offsets.length <= buckets) offsets.push(at);
    const { etag, size } = await upload.finish();
    return { kind: 'runs', key, etag, bytes: size, offsets, keys };
  } catch (error) {
    upload.fail(error);
    throw error;
  }
}

function byBucketThenKey(a: BucketLine, b: BucketLine): number {
  if (a.bucket !== b.bucket) return a.bucket - b.bucket;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Runs' lines with their buckets: a spill is in (bucket, key) order as a whole. */
async function* withBuckets(
  batches: AsyncIterable<RunLine[]>,
  buckets: number,
): AsyncGenerator<BucketLine[]> {
  for await (const lines of batches) {
    yield lines.map((l) => ({ ...l, bucket: bucketOf(l.key, buckets) }));
  }
}
