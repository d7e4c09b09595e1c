/**
 * Cancel and redrive: requests that change a running or ended job, through compare-and-swap on
 * status.json so they never lose an update against the coordinator.
 */
import { ConflictError, DatasetChangedError, NotFoundError } from '../base/errors.ts';
import type { Clock, Invoker, ObjectStore } from '../base/ports.ts';
import type { JobStatus, Manifest } from '../model/documents.ts';
import type { JobEvents } from '../model/events.ts';
import { activeKey, jobKeys } from '../model/keys.ts';
import { readJson, TERMINAL_STATES, updateStatus } from '../model/status.ts';
import { lastSignOfLife, SWEEP_DEFAULTS } from './sweep.ts';

/** What cancel and redrive need. */
export interface ControlDeps {
  store: ObjectStore;
  invoker: Invoker;
  clock: Clock;
  bucket: string;
  coordinatorFunction: string;
  /**
   * A RUNNING job whose heartbeat is older than this has lost its coordinator: cancel ends it at
   * once and redrive resumes it. @default SWEEP_DEFAULTS.staleAfterMs
   */
  staleAfterMs?: number;
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
}

/** Whether a RUNNING job's coordinator is gone: its heartbeat is older than the limit. */
function coordinatorLost(s: JobStatus, deps: ControlDeps): boolean {
  const limit = deps.staleAfterMs ?? SWEEP_DEFAULTS.staleAfterMs;
  return s.status === 'RUNNING' && Date.parse(deps.clock.iso()) - lastSignOfLife(s) > limit;
}

/**
 * Cancels a job: a QUEUED job ends CANCELLED at once; a RUNNING one is marked, its coordinator
 * sees the mark before its next dispatch and ends it CANCELLED once in-flight chunks finish. A
 * RUNNING job whose coordinator is lost (stale heartbeat) ends CANCELLED at once, since no
 * coordinator would. No result is written.
 * Throws ConflictError for a job that has already ended.
 */
export async function cancelJob(jobId: string, deps: ControlDeps): Promise<JobStatus> {
  return updateStatus(
    deps.store,
    deps.bucket,
    jobId,
    (s) => {
      if (TERMINAL_STATES.has(s.status)) {
        throw new ConflictError(
          `job ${jobId} has already ended ${s.status}; there is nothing to cancel`,
        );
      }
      if (s.status === 'QUEUED' || coordinatorLost(s, deps)) {
        return { ...s, status: 'CANCELLED', cancelRequested: true, finishedAt: deps.clock.iso() };
      }
      return { ...s, cancelRequested: true };
    },
    { events: deps.events },
  );
}

const redrivable = (s: JobStatus, deps: ControlDeps) =>
  s.status === 'FAILED' || s.status === 'CANCELLED' || coordinatorLost(s, deps);

function notRedrivable(jobId: string, s: JobStatus) {
  const since =
    s.status === 'RUNNING' ? ` (its coordinator's last heartbeat was ${s.heartbeatAt})` : '';
  return new ConflictError(
    `job ${jobId} is ${s.status}${since}; only FAILED or CANCELLED jobs, or RUNNING ones whose coordinator was lost, can be redriven`,
  );
}

/**
 * Redrives a FAILED or CANCELLED job, or a RUNNING one whose coordinator was lost: reruns only
 * the chunks without a successful outcome, then reduces. Allowed only while every pinned input
 * is unchanged (same ETag and VersionId).
 */
export async function redriveJob(jobId: string, deps: ControlDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const current = (await readJson<JobStatus>(deps.store, deps.bucket, keys.status)).value;
  if (!redrivable(current, deps)) throw notRedrivable(jobId, current);
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
  const redriven = await updateStatus(
    deps.store,
    deps.bucket,
    jobId,
    (s) => {
      if (!redrivable(s, deps)) throw notRedrivable(jobId, s);
      const { error: _error, finishedAt: _finishedAt, cancelRequested: _cancel, ...rest } = s;
      // A new epoch: a lost coordinator that comes back stops at its next status write. The
      // heartbeat and the resume budget start afresh, since a person chose to run it again.
      return {
        ...rest,
        status: 'RUNNING',
        redrives: (s.redrives ?? 0) + 1,
        epoch: (s.epoch ?? 0) + 1,
        heartbeatAt: deps.clock.iso(),
        resumes: 0,
      };
    },
    { events: deps.events },
  );
  await deps.store.put(deps.bucket, activeKey(jobId), jobId);
  await deps.invoker.invokeEvent(deps.coordinatorFunction, { jobId });
  return redriven;
}
