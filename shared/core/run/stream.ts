/**
 * A map-only job's output while it runs (issue 18): the lines of each chunk whose outcome has
 * won, as `executor.map` hands over results before the last one is done.
 *
 * - In input order (`resultsAfter`): a cursor counts the chunks delivered, in the order of
 *   `taskOrder` (a split chunk's parts stand in its place). A chunk's lines come once every
 *   earlier chunk's have; a chunk that failed within the job's tolerance delivers nothing once
 *   the job has ended (until then it holds the stream back, as its failure is not yet final).
 * - As they finish (`finishedOutputs`): every chunk not seen yet whose outcome exists.
 *
 * Every line is final: an outcome is written create-only by the attempt that won, and only
 * outcomes are read, so a backup or a retry never shows a line twice. A job that ended FAILED or
 * CANCELLED ends the stream with its error, never with a short result.
 */
import { FanoutError, JobFailedError, ValidationError } from '../base/errors.ts';
import type { ObjectStore } from '../base/ports.ts';
import {
  type ChunkOutcome,
  type ChunkOutput,
  type JobStatus,
  type Manifest,
  taskOrder,
} from '../model/documents.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, readStatus } from '../model/status.ts';

/** A page of output answered inline holds at most about this many bytes. */
export const STREAM_PAGE_BYTES = 1024 * 1024;

/** A map-only chunk's output stored as its own object (too big for a page, or any part). */
export type StreamPart = Extract<ChunkOutput, { kind: 'part' }>;

/** One page of a job's output in input order. */
export interface StreamPage {
  /** The lines of the chunks after the cursor (JSONL), as many as fit a page; may be empty. */
  text: string;
  /**
   * Instead of `text`: the next chunk's output, too big for a page, as the object that holds
   * it (the API answers it with a presigned URL).
   */
  part?: StreamPart;
  /** The cursor to ask from next: the chunks delivered so far, in input order. */
  next: number;
  /** More will come: the job has not ended, or its chunks are not all delivered yet. */
  more: boolean;
}

/** What a stream reads of a job, once per page. */
interface JobView {
  status: JobStatus;
  manifest: Manifest | undefined;
}

/**
 * The output of the chunks after the first `after` (in input order) that have finished, up to
 * the first that has not. Throws when the job ended FAILED or CANCELLED, or is not map-only.
 */
export async function resultsAfter(
  store: ObjectStore,
  bucket: string,
  jobId: string,
  after: number,
  maxBytes = STREAM_PAGE_BYTES,
): Promise<StreamPage> {
  const { status, manifest } = await view(store, bucket, jobId);
  if (manifest === undefined) return { text: '', next: after, more: true };
  const order = taskOrder(manifest.chunks);
  const keys = jobKeys(jobId);
  let text = '';
  let bytes = 0;
  let next = after;
  while (next < order.length && bytes < maxBytes) {
    const index = order[next]!;
    if (manifest.chunks[index]?.failed === true && status.status === 'SUCCEEDED') {
      next += 1; // failed within the tolerance: the result has none of it
      continue;
    }
    const outcome = await optional<ChunkOutcome>(store, bucket, keys.outcome(index));
    if (outcome === undefined) break;
    const output = outcome.output;
    if (output.kind === 'inline') {
      text += output.text;
      bytes += output.text.length;
    } else if (output.kind === 'part') {
      if (bytes + output.bytes > maxBytes) {
        // Too big to add: alone, the caller fetches it from its object; else on the next page.
        if (text === '') return { text, part: output, next: next + 1, more: moreAfter(next + 1) };
        break;
      }
      text += new TextDecoder().decode((await store.getBytes(bucket, output.key)).body);
      bytes += output.bytes;
    }
    next += 1;
  }
  return { text, next, more: moreAfter(next) };

  function moreAfter(position: number): boolean {
    return status.status !== 'SUCCEEDED' || position < order.length;
  }
}

/**
 * The output of every chunk that has finished and is not in `seen` (chunk indexes), in any
 * order; adds them to `seen`. `more` is false once the job has SUCCEEDED and every chunk's
 * output was delivered. Throws as `resultsAfter` does.
 */
export async function finishedOutputs(
  store: ObjectStore,
  bucket: string,
  jobId: string,
  seen: Set<number>,
): Promise<{ text: string; more: boolean }> {
  const { status, manifest } = await view(store, bucket, jobId);
  if (manifest === undefined) return { text: '', more: true };
  const keys = jobKeys(jobId);
  const leaves = taskOrder(manifest.chunks).filter((i) => !seen.has(i));
  const done = new Set(
    (await store.list(bucket, `${keys.root}/chunks/`)).map((o) =>
      Number(/\/(\d+)\.json$/.exec(o.key)?.[1]),
    ),
  );
  let text = '';
  let left = 0;
  for (const index of leaves) {
    if (!done.has(index)) {
      if (manifest.chunks[index]?.failed !== true) left += 1;
      continue;
    }
    const outcome = await optional<ChunkOutcome>(store, bucket, keys.outcome(index));
    if (outcome === undefined) continue;
    const output = outcome.output;
    if (output.kind === 'inline') text += output.text;
    else if (output.kind === 'part') {
      text += new TextDecoder().decode((await store.getBytes(bucket, output.key)).body);
    }
    seen.add(index);
  }
  return { text, more: status.status !== 'SUCCEEDED' || left > 0 };
}

/** The job's status and manifest, refused when it ended without a result or is not map-only. */
async function view(store: ObjectStore, bucket: string, jobId: string): Promise<JobView> {
  const status = await readStatus(store, bucket, jobId);
  if (status.status === 'FAILED' || status.status === 'CANCELLED') {
    throw new JobFailedError(
      `job ${jobId} is ${status.status}: ${status.error?.message ?? 'it has no result'}; the lines streamed before are not its whole output`,
      { context: { jobId, status: status.status } },
    );
  }
  const manifest = await optional<Manifest>(store, bucket, jobKeys(jobId).manifest);
  if (manifest !== undefined && (!manifest.mapOnly || manifest.sorted !== undefined)) {
    throw new ValidationError(
      `job ${jobId} (${manifest.job}) is ${manifest.sorted !== undefined ? 'sorted: its order exists once its sort has ended' : 'a reduce: its result exists once every chunk is merged'}; only a map-only job's output streams (get its result when it has SUCCEEDED)`,
    );
  }
  return { status, manifest };
}

/** A JSON document, or undefined when it does not exist (yet). */
async function optional<T>(
  store: ObjectStore,
  bucket: string,
  key: string,
): Promise<T | undefined> {
  return readJson<T>(store, bucket, key).then(
    (r) => r.value,
    (error: unknown) => {
      if (error instanceof FanoutError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    },
  );
}
