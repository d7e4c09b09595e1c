/**
 * What every partition task ends with, whatever its kind: its outcome, written create-only so
 * that exactly one attempt of a partition counts.
 */
import { PreconditionFailedError } from '../base/errors.ts';
import type { Clock, ObjectStore } from '../base/ports.ts';
import { textUpload } from '../base/text-upload.ts';
import type {
  InvocationInfo,
  PartitionOutcome,
  PartitionSummary,
  PartitionTask,
} from '../model/documents.ts';
import type { AnyJob } from '../model/job.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';

/** What a partition task needs. */
export interface PartitionDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** Where and when this invocation runs (for the outcome's timeline). */
  invocation?: InvocationInfo;
  /** Map outputs read at once. @default 8 */
  parallelism?: number;
  /** A sorted job's runs are read in windows of this many bytes. @default SORT_WINDOW_BYTES */
  windowBytes?: number;
}

/**
 * Writes a partition's part (JSONL, streamed: `fill` writes its lines, returns how many and the
 * bytes it read), then its outcome (see {@link settlePartition}).
 */
export async function writePartition(
  task: PartitionTask,
  deps: PartitionDeps,
  started: number,
  fill: (
    write: (line: string) => undefined | Promise<void>,
  ) => Promise<{ lines: number; bytesRead: number }>,
): Promise<PartitionSummary> {
  const partKey = jobKeys(task.jobId).partitionPart(task.index, task.attempt);
  const part = textUpload(deps.store, task.bucket, partKey, 'application/x-ndjson');
  let filled: { lines: number; bytesRead: number };
  let written: { etag: string; size: number };
  try {
    filled = await fill((line) => part.write(line));
    written = await part.finish();
  } catch (error) {
    part.fail(error);
    throw error;
  }
  return settlePartition(task, deps, {
    part: { key: partKey, bytes: written.size, etag: written.etag },
    keys: filled.lines,
    bytesRead: filled.bytesRead,
    durationMs: Math.round(deps.clock.now() - started),
  });
}

/**
 * Writes a partition's outcome create-only, so exactly one attempt counts: an attempt that
 * finds another's outcome removes its own part and says it lost.
 */
export async function settlePartition(
  task: PartitionTask,
  deps: PartitionDeps,
  done: Pick<PartitionOutcome, 'part' | 'keys' | 'bytesRead' | 'durationMs'>,
): Promise<PartitionSummary> {
  const keys = jobKeys(task.jobId);
  const outcome: PartitionOutcome = {
    index: task.index,
    attempt: task.attempt,
    first: task.first,
    end: task.end,
    ...done,
  };
  const { keys: count, bytesRead, durationMs } = done;
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
    await deps.store.delete(task.bucket, done.part.key);
    return { ...summary, duplicate: true };
  }
  return summary;
}
