/**
 * A keyed job's partition task, run by the worker function: it reads its buckets' runs from
 * every map output, merges them by key (a key's accumulators in chunk order, through the job's
 * `merge`), applies `finish` per key, and writes its part: run lines (`"key"<tab>value`) in
 * ascending key order (a ranked job's in rank order, shared/core/shuffle/rank.ts). Its outcome is written create-only, so exactly one attempt of a
 * partition counts; a losing attempt removes its part.
 */

import { readAll } from '../base/bytes.ts';
import { FanoutError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type { ObjectStore } from '../base/ports.ts';
import type {
  ChunkOutcome,
  PartitionSummary,
  PartitionTask,
  RunSource,
} from '../model/documents.ts';
import { type AnyJob, findJob, jobCode, parseParams } from '../model/job.ts';
import { readJson } from '../model/status.ts';
import { bucketOf } from '../shuffle/hash.ts';
import { mergeSorted } from '../shuffle/merge.ts';
import { Ranking } from '../shuffle/rank.ts';
import { forEachRunLine, runLine } from '../shuffle/runs.ts';
import { type PartitionDeps, writePartition } from './partition-outcome.ts';
import { runSortPartition } from './sort-partition.ts';

export type { PartitionDeps } from './partition-outcome.ts';

/** A key being merged: its value as text until it is parsed, then its accumulator. */
export interface Entry {
  keyJson: string;
  text: string | undefined;
  acc?: unknown;
}

const encoder = new TextEncoder();

/** Reduces one partition (see the module's comment). */
export async function runPartition(
  task: PartitionTask,
  deps: PartitionDeps,
): Promise<PartitionSummary> {
  if (task.range !== undefined) return runSortPartition({ ...task, range: task.range }, deps);
  const started = deps.clock.now();
  const job = findJob(deps.jobs, task.job);
  const reduce = job.reduce;
  if (job.key === undefined || reduce === undefined) {
    throw new FanoutError('VALIDATION', `job ${job.name} is not keyed: it has no partitions`);
  }
  const params = parseParams(job, task.params);
  // Keys merged bucket by bucket, each in a Map of its own: one Map of every key of the
  // partition costs several times as much per operation once it holds hundreds of thousands
  // (docs/PERFORMANCE.md). Any grouping works that sends a key to one group from every source.
  const buckets = task.buckets;
  const groups = buckets === undefined ? 1 : Math.max(1, task.end - task.first);
  const { merged, bytesRead } = await mergeRuns(
    task.sources,
    task.bucket,
    deps,
    (a, b) => jobCode('reduce.merge', () => reduce.merge(a, b)),
    buckets === undefined
      ? undefined
      : { count: groups, of: (key) => bucketOf(key, buckets) - task.first },
  );

  const ranking = Ranking.of(job, params);
  return writePartition(task, deps, started, async (write) => {
    let lines = 0;
    const emit = (group: number, key: string) => {
      const [keyJson, valueJson] = finalValue(merged[group]!, key, reduce, params);
      if (ranking !== undefined) {
        ranking.add(key, keyJson, valueJson);
        return undefined;
      }
      lines += 1;
      return write(runLine(keyJson, valueJson));
    };
    // Each group's keys in order, merged: the part is in ascending key order.
    const sorted = merged.map((m) => [...m.keys()].sort());
    await mergeSorted(
      sorted.map((keys) => once(keys)),
      (a, b) => (a < b ? -1 : a > b ? 1 : 0),
      (key, group) => emit(group, key),
    );
    // A ranked job's part is in rank order instead (its first `top`): the reducer merges by rank.
    for (const [keyJson, valueJson] of ranking?.ranked() ?? []) {
      lines += 1;
      const waiting = write(runLine(keyJson, valueJson));
      if (waiting !== undefined) await waiting;
    }
    return { lines, bytesRead };
  });
}

/** One batch, as an async iterable (a source of mergeSorted). */
async function* once<T>(batch: T[]): AsyncIterable<T[]> {
  if (batch.length > 0) yield batch;
}

/**
 * Keys merged from runs (a partition's, or a small shuffle's whole): each key's accumulators
 * from every map output merged in chunk order (`merge(a, b)`, a from the earlier chunk; a key
 * appears at most once in each output). Outputs
 * are fetched `parallelism` at a time and folded in as they arrive, in order, so memory holds
 * the merged keys and the outputs in flight, not every line read. A key seen once keeps its
 * value as text: it is parsed only to be merged or finished.
 */
export async function mergeRuns(
  sources: readonly (RunSource & { text?: string })[],
  bucket: string,
  deps: { store: ObjectStore; parallelism?: number },
  merge: (a: unknown, b: unknown) => unknown,
  groups?: { count: number; of: (key: string) => number },
): Promise<{ merged: Map<string, Entry>[]; bytesRead: number }> {
  const count = groups?.count ?? 1;
  const maps = Array.from({ length: count }, () => new Map<string, Entry>());
  const mapOf =
    groups === undefined
      ? () => maps[0]!
      : (key: string) => maps[Math.min(count - 1, Math.max(0, groups.of(key)))]!;
  let bytesRead = 0;
  const fetched = orderedMap(sources.length, deps.parallelism ?? 8, async (i) => {
    const s = sources[i]!;
    if (s.inline === true) {
      // Runs kept in the chunk's outcome (offsets count their UTF-8 bytes).
      return encoder
        .encode(s.text ?? (await inlineRuns(deps.store, bucket, s.key)))
        .subarray(s.start, s.end);
    }
    const object = { bucket, key: s.key, size: s.size, etag: s.etag };
    return readAll(deps.store.readRange(object, s.start, s.end));
  });
  const decoder = new TextDecoder();
  for await (const bytes of fetched) {
    bytesRead += bytes.length;
    forEachRunLine(decoder.decode(bytes), (key, keyJson, valueJson) => {
      const merged = mapOf(key);
      const seen = merged.get(key);
      if (seen === undefined) {
        merged.set(key, { keyJson, text: valueJson });
      } else {
        const before = seen.text === undefined ? seen.acc : JSON.parse(seen.text);
        seen.acc = merge(before, JSON.parse(valueJson));
        seen.text = undefined;
      }
    });
  }
  return { merged: maps, bytesRead };
}

/**
 * The merged keys in ascending order (JavaScript string order: the default sort compares UTF-16
 * code units), each as its JSON and its final value's JSON: `finish(acc, params, key)` when the
 * job has one, else the accumulator (copied as text when it was never parsed).
 */
export function* finalValues(
  merged: ReadonlyMap<string, Entry>,
  reduce: NonNullable<AnyJob['reduce']>,
  params: unknown,
): Generator<[keyJson: string, valueJson: string]> {
  for (const key of [...merged.keys()].sort()) yield finalValue(merged, key, reduce, params);
}

/** A merged key's JSON and its final value's JSON (see {@link finalValues}). */
function finalValue(
  merged: ReadonlyMap<string, Entry>,
  key: string,
  reduce: NonNullable<AnyJob['reduce']>,
  params: unknown,
): [keyJson: string, valueJson: string] {
  const entry = merged.get(key)!;
  const acc = (): unknown => (entry.text === undefined ? entry.acc : JSON.parse(entry.text));
  return [
    entry.keyJson,
    reduce.finish !== undefined
      ? JSON.stringify(jobCode('reduce.finish', () => reduce.finish?.(acc(), params, key)))
      : (entry.text ?? JSON.stringify(entry.acc)),
  ];
}

/** The runs text a chunk outcome holds inline. */
async function inlineRuns(store: ObjectStore, bucket: string, key: string): Promise<string> {
  const { output } = (await readJson<ChunkOutcome>(store, bucket, key)).value;
  if (output.kind !== 'runs-inline') {
    throw new FanoutError('BAD_OUTCOME', `${key} holds a ${output.kind} output, not runs`, {
      context: { key },
    });
  }
  return output.text;
}
