/**
 * A sorted job's partition task, run by the worker function: one range of the job's order. It
 * reads the range's slice of every map attempt's sorted run (ranged GETs, a bounded number in
 * flight, each streamed), drops the lines at the slices' edges that fall outside the range,
 * k-way merges the rest by (key, chunk, position), and writes the outputs, one JSON line each,
 * as its part. The ranges' parts, one after another, are the job's result.
 */
import { readAll } from '../base/bytes.ts';
import { FanoutError } from '../base/errors.ts';
import type { PartitionSummary, PartitionTask, RunSource, SortRange } from '../model/documents.ts';
import { findJob } from '../model/job.ts';
import { mergeSorted } from '../shuffle/merge.ts';
import { comparePoints, inRange, type SortedLine, sortedLines } from '../shuffle/order.ts';
import { wholeLines } from '../shuffle/runs.ts';
import { type PartitionDeps, writePartition } from './partition-outcome.ts';

/** Merges one range of a sorted job (see the module's comment). */
export async function runSortPartition(
  task: PartitionTask & { range: SortRange },
  deps: PartitionDeps,
): Promise<PartitionSummary> {
  const started = deps.clock.now();
  const job = findJob(deps.jobs, task.job);
  if (job.orderBy === undefined) {
    throw new FanoutError('VALIDATION', `job ${job.name} is not sorted: it has no orderBy`);
  }
  let bytesRead = 0;
  // The GETs this task keeps in flight, over all its slices.
  const turns = new Semaphore(deps.parallelism ?? 8);
  const sources = task.sources.map((s) =>
    rangeLines(s, task, { ...deps, turns }, task.range, (n) => {
      bytesRead += n;
    }),
  );
  return writePartition(task, deps, started, async (write) => {
    let lines = 0;
    await mergeSorted(
      sources,
      (a, b) => comparePoints(a.point, b.point),
      (line) => {
        lines += 1;
        return write(`${line.json}\n`);
      },
    );
    return { lines, bytesRead };
  });
}

/** A slice is read in windows of at most this many bytes, one ranged GET each. */
export const SORT_WINDOW_BYTES = 1024 * 1024;

/**
 * The lines of one run's slice that fall in the range, in batches, a window at a time: every
 * slice is open at once (a k-way merge needs each one's head), but at most `parallelism` GETs
 * are in flight, and a slice holds one window in memory.
 */
async function* rangeLines(
  source: RunSource,
  task: PartitionTask,
  deps: PartitionDeps & { turns: Semaphore },
  range: SortRange,
  onRead: (bytes: number) => void,
): AsyncGenerator<SortedLine[]> {
  const chunk = source.chunk ?? 0;
  let pos = source.pos ?? 0;
  const object = { bucket: task.bucket, key: source.key, size: source.size, etag: source.etag };
  const window = deps.windowBytes ?? SORT_WINDOW_BYTES;
  async function* windows() {
    for (let at = source.start; at < source.end; at += window) {
      const release = await deps.turns.take();
      let bytes: Uint8Array;
      try {
        bytes = await readAll(deps.store.readRange(object, at, Math.min(source.end, at + window)));
      } finally {
        release();
      }
      onRead(bytes.length);
      yield bytes;
    }
  }
  for await (const text of wholeLines(windows())) {
    const lines = sortedLines(text, chunk, pos);
    pos += lines.length;
    const kept = lines.filter((l) => inRange(l.point, range));
    if (kept.length > 0) yield kept;
  }
}

/** A counting semaphore: `take` waits for a free turn and gives back its release. */
class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async take(): Promise<() => void> {
    if (this.free > 0) this.free -= 1;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    return () => {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.free += 1;
    };
  }
}
