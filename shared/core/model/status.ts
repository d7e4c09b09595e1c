/**
 * status.json is written by more than one party (submitter, coordinator, reducer; later cancel
 * and redrive), so every update is a compare-and-swap on its ETag: read, change, write with
 * If-Match, and start over if someone else wrote in between. No update is ever lost. A write
 * that changes the job's state is published as a job event when `events` is given.
 */
import { PreconditionFailedError } from '../base/errors.ts';
import type { ObjectStore } from '../base/ports.ts';
import type { JobState, JobStatus } from './documents.ts';
import { type JobEvents, publishChange } from './events.ts';
import { jobKeys } from './keys.ts';

const decoder = new TextDecoder();

/** Terminal states never change through a normal update. */
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/** Reads a JSON document. */
export async function readJson<T>(store: ObjectStore, bucket: string, key: string) {
  const { body, etag } = await store.getBytes(bucket, key);
  return { value: JSON.parse(decoder.decode(body)) as T, etag };
}

/** Writes a JSON document (unconditionally, or with the given conditions). */
export function writeJson(
  store: ObjectStore,
  bucket: string,
  key: string,
  value: unknown,
  conditions: { ifNoneMatch?: '*'; ifMatch?: string } = {},
) {
  return store.put(bucket, key, JSON.stringify(value), {
    contentType: 'application/json',
    ...conditions,
  });
}

/** Reads a job's status document. Throws NotFoundError for an unknown job. */
export async function readStatus(store: ObjectStore, bucket: string, jobId: string) {
  return (await readJson<JobStatus>(store, bucket, jobKeys(jobId).status)).value;
}

/**
 * Applies `change` to the current status with compare-and-swap, retrying on conflicts.
 * `change` returns the new status, or `undefined` to leave it as it is (e.g. already terminal).
 * Returns the status as stored after the update.
 */
export async function updateStatus(
  store: ObjectStore,
  bucket: string,
  jobId: string,
  change: (current: JobStatus) => JobStatus | undefined,
  options: { events?: JobEvents | undefined; maxConflicts?: number } = {},
): Promise<JobStatus> {
  const key = jobKeys(jobId).status;
  const maxConflicts = options.maxConflicts ?? 50;
  for (let attempt = 0; ; attempt++) {
    const { value, etag } = await readJson<JobStatus>(store, bucket, key);
    const next = change(value);
    if (next === undefined) return value;
    try {
      await writeJson(store, bucket, key, next, { ifMatch: etag });
      // A change of state is an event (EventBridge on AWS); progress updates are not.
      await publishChange(options.events, next, value);
      return next;
    } catch (error) {
      if (!(error instanceof PreconditionFailedError) || attempt >= maxConflicts) throw error;
    }
  }
}
