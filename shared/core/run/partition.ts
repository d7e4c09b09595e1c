/**
 * A keyed job's partition task, run by the worker function: it reads its buckets' runs from
 * every map output, merges them by key (a key's accumulators in chunk order, through the job's
 * `merge`), applies `finish` per key, and writes its part: run lines (`"key"<tab>value`) in
 * ascending key order. Its outcome is written create-only, so exactly one attempt of a
 * partition counts; a losing attempt removes its part.
 */

import { readAll } from '../base/bytes.ts';
import { FanoutError, PreconditionFailedError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type { Clock, ObjectStore } from '../base/ports.ts';
import { textUpload } from '../base/text-upload.ts';
import type {
  ChunkOutcome,
  InvocationInfo,
  PartitionOutcome,
  PartitionSummary,
  PartitionTask,
  RunSource,
} from '../model/documents.ts';
import { type AnyJob, findJob, jobCode, parseParams } from '../model/job.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';
import { forEachRunLine, runLine } from '../shuffle/runs.ts';

/** A key being merged: its value as text until it is parsed, then its accumulator. */
export interface Entry {
  keyJson: string;
  text: string | undefined;
  acc?: unknown;
}

/** What a partition task needs. */
export interface PartitionDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** Where and when this invocation runs (for the outcome's timeline). */
  invocation?: InvocationInfo;
  /** Map outputs read at once. @default 8 */
  parallelism?: number;
}

const encoder = new TextEncoder();

/** Reduces one partition (see the module's comment). */
export async function runPartition(
  task: PartitionTask,
  deps: PartitionDeps,
): Promise<PartitionSummary> {
  const started = deps.clock.now();
  const job = findJob(deps.jobs, task.job);
  const reduce = job.reduce;
  if (job.key === undefined || reduce === undefined) {
    throw new FanoutError('VALIDATION', `job ${job.name} is not keyed: it has no partitions`);
  }
  const params = parseParams(job, task.params);
  const keys = jobKeys(task.jobId);
  const { merged, bytesRead } = await mergeRuns(task.sources, task.bucket, deps, (a, b) =>
    jobCode('reduce.merge', () => reduce.merge(a, b)),
  );

  const partKey = keys.partitionPart(task.index, task.attempt);
  const part = textUpload(deps.store, task.bucket, partKey, 'application/x-ndjson');
  let count = 0;
  let written: { etag: string; size: number };
  try {
    for (const [keyJson, valueJson] of finalValues(merged, reduce, params)) {
      count += 1;
      const pending = part.write(runLine(keyJson, valueJson));
      if (pending !== undefined) await pending;
    }
    written = await part.finish();
  } catch (error) {
    part.fail(error);
    throw error;
  }
  const durationMs = Math.round(deps.clock.now() - started);
  const outcome: PartitionOutcome = {
    index: task.index,
    attempt: task.attempt,
    part: { key: partKey, bytes: written.size, etag: written.etag },
    first: task.first,
    end: task.end,
    keys: count,
    bytesRead,
    durationMs,
  };
  const summary: PartitionSummary = { index: task.index, keys: count, bytesRead, durationMs };
  try {
    await writeJson(deps.store, task.bucket, keys.partitionOutcome(task.index), outcome, {
      ifNoneMatch: '*',
    });
  } catch (error) {
    if (!(error instanceof PreconditionFailedError)) throw error;
    // A PUT retried after its first try landed finds its own outcome: this attempt won.
    const won = await readJson<PartitionOutcome>(
      deps.store,
      task.bucket,
      keys.partitionOutcome(task.index),
    );
    if (won.value.attempt === task.attempt) return summary;
    await deps.store.delete(task.bucket, partKey);
    return { ...summary, duplicate: true };
  }
  return summary;
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
): Promise<{ merged: Map<string, Entry>; bytesRead: number }> {
  const merged = new Map<string, Entry>();
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
  return { merged, bytesRead };
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
  for (const key of [...merged.keys()].sort()) {
    const entry = merged.get(key)!;
    const acc = (): unknown => (entry.text === undefined ? entry.acc : JSON.parse(entry.text));
    yield [
      entry.keyJson,
      reduce.finish !== undefined
        ? JSON.stringify(jobCode('reduce.finish', () => reduce.finish?.(acc(), params, key)))
        : (entry.text ?? JSON.stringify(entry.acc)),
    ];
  }
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
