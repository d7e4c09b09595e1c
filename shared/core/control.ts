/**
 * Cancel and redrive: requests that change a running or ended job, through compare-and-swap on
 * status.json so they never lose an update against the coordinator.
 */
import { ConflictError, DatasetChangedError, NotFoundError } from './errors.ts';
import { jobKeys } from './keys.ts';
import type { JobStatus, Manifest } from './model.ts';
import type { Clock, Invoker, ObjectStore } from './ports.ts';
import { readJson, TERMINAL_STATES, updateStatus } from './status.ts';

/** What cancel and redrive need. */
export interface ControlDeps {
  store: ObjectStore;
  invoker: Invoker;
  clock: Clock;
  bucket: string;
  coordinatorFunction: string;
}

/**
 * Cancels a job: a QUEUED job ends CANCELLED at once; a RUNNING one is marked, its coordinator
 * stops dispatching and ends it CANCELLED once in-flight chunks finish. No result is written.
 * Throws ConflictError for a job that has already ended.
 */
export async function cancelJob(jobId: string, deps: ControlDeps): Promise<JobStatus> {
  return updateStatus(deps.store, deps.bucket, jobId, (s) => {
    if (TERMINAL_STATES.has(s.status)) {
      throw new ConflictError(
        `job ${jobId} has already ended ${s.status}; there is nothing to cancel`,
      );
    }
    if (s.status === 'QUEUED') {
      return { ...s, status: 'CANCELLED', cancelRequested: true, finishedAt: deps.clock.iso() };
    }
    return { ...s, cancelRequested: true };
  });
}

/**
 * Redrives a FAILED or CANCELLED job: reruns only the chunks without a successful outcome, then
 * reduces. Allowed only while every pinned input is unchanged (same ETag and VersionId).
 */
export async function redriveJob(jobId: string, deps: ControlDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const current = (await readJson<JobStatus>(deps.store, deps.bucket, keys.status)).value;
  if (current.status !== 'FAILED' && current.status !== 'CANCELLED') {
    throw new ConflictError(
      `job ${jobId} is ${current.status}; only FAILED or CANCELLED jobs can be redriven`,
    );
  }
  const manifest = await readJson<Manifest>(deps.store, deps.bucket, keys.manifest)
    .then((r) => r.value)
    .catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined; // failed before planning: plan again
      throw error;
    });
  for (const pinned of manifest?.objects ?? []) {
    const now = await deps.store.head(pinned.bucket, pinned.key).catch(() => undefined);
    if (now === undefined || now.etag !== pinned.etag || now.versionId !== pinned.versionId) {
      throw new DatasetChangedError(pinned.key, { context: { jobId } });
    }
  }
  const redriven = await updateStatus(deps.store, deps.bucket, jobId, (s) => {
    if (s.status !== 'FAILED' && s.status !== 'CANCELLED') {
      throw new ConflictError(
        `job ${jobId} is ${s.status}; only FAILED or CANCELLED jobs can be redriven`,
      );
    }
    const { error: _error, finishedAt: _finishedAt, cancelRequested: _cancel, ...rest } = s;
    return { ...rest, status: 'RUNNING', redrives: (s.redrives ?? 0) + 1 };
  });
  await deps.invoker.invokeEvent(deps.coordinatorFunction, { jobId });
  return redriven;
}
