/**
 * Crash-only jobs: every job reaches a terminal state, with no client action, whatever process
 * or function crashes. A running coordinator keeps `heartbeatAt` in status.json current; the
 * sweeper (a scheduled function on AWS, a timer in a local runtime with a persistent data
 * directory) looks at the jobs marked active and resumes each one whose coordinator is gone:
 * it takes the job over by raising its epoch (compare-and-swap, so a coordinator that was only
 * slow stops dispatching at its next status write) and invokes a new coordinator, which skips
 * every chunk that already has an outcome. Resumes are bounded: past `maxResumes` the job ends
 * FAILED, naming why. Lambda's on-failure destination for the coordinator's asynchronous
 * invocations calls {@link rescueJob} too, without waiting for the heartbeat to go stale.
 */
import { NotFoundError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type { Clock, Invoker, ObjectStore } from '../base/ports.ts';
import type { JobStatus } from '../model/documents.ts';
import type { JobEvents } from '../model/events.ts';
import { ACTIVE_PREFIX, activeKey, JOB_ID } from '../model/keys.ts';
import { TERMINAL_STATES, updateStatus } from '../model/status.ts';

/** What the sweeper needs. */
export interface SweepDeps {
  store: ObjectStore;
  invoker: Invoker;
  clock: Clock;
  /** The bucket that holds jobs/ and active/. */
  bucket: string;
  coordinatorFunction: string;
  /** A RUNNING job whose heartbeat is older than this has lost its coordinator. */
  staleAfterMs: number;
  /**
   * A QUEUED job older than this has lost the event that would start its coordinator.
   * @default staleAfterMs
   */
  queuedStaleAfterMs?: number;
  /** Resumes before a job whose coordinator keeps getting lost ends FAILED. */
  maxResumes: number;
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
}

/** Defaults on AWS: the coordinator beats every 10 s; the sweeper runs every minute. */
export const SWEEP_DEFAULTS = {
  heartbeatMs: 10_000,
  /** Twelve missed heartbeats: a coordinator that is only slow to write is not taken over. */
  staleAfterMs: 120_000,
  /**
   * Lambda keeps an asynchronous event up to the coordinator's maximum event age (one hour, as
   * the stack configures it) and then hands it to the failure destination; two hours is past
   * both, so a QUEUED job this old has lost its event for good.
   */
  queuedStaleAfterMs: 2 * 3600_000,
  maxResumes: 3,
} as const;

/** What {@link rescueJob} did. */
export type Rescue = 'alive' | 'ended' | 'resumed' | 'failed' | 'cancelled';

/** The last time the job showed a sign of life, in ms since the epoch. */
export function lastSignOfLife(status: JobStatus): number {
  return Date.parse(status.heartbeatAt ?? status.startedAt ?? status.createdAt);
}

/**
 * Looks at one job and, when its coordinator is gone (its heartbeat is stale, or `force`: Lambda
 * reported the coordinator's invocation failed for good), resumes it, ends it CANCELLED if a
 * cancel was asked for, or ends it FAILED once it has been resumed `maxResumes` times.
 */
export async function rescueJob(
  jobId: string,
  deps: SweepDeps,
  options: { force?: boolean; reason?: string } = {},
): Promise<Rescue> {
  let outcome = 'alive' as Rescue;
  // Clock.now is monotonic (durations); heartbeats are wall-clock times.
  const now = Date.parse(deps.clock.iso());
  await updateStatus(
    deps.store,
    deps.bucket,
    jobId,
    (s) => {
      if (TERMINAL_STATES.has(s.status)) {
        outcome = 'ended';
        return undefined;
      }
      const limit =
        s.status === 'QUEUED' ? (deps.queuedStaleAfterMs ?? deps.staleAfterMs) : deps.staleAfterMs;
      const silentMs = now - lastSignOfLife(s);
      if (options.force !== true && !(silentMs > limit)) {
        outcome = 'alive';
        return undefined;
      }
      const at = deps.clock.iso();
      if (s.cancelRequested === true) {
        outcome = 'cancelled';
        return { ...s, status: 'CANCELLED', finishedAt: at };
      }
      const resumes = s.resumes ?? 0;
      if (resumes >= deps.maxResumes) {
        outcome = 'failed';
        const why = options.reason === undefined ? '' : `; last error: ${options.reason}`;
        return {
          ...s,
          status: 'FAILED',
          finishedAt: at,
          error: {
            code: 'COORDINATOR_LOST',
            name: 'CoordinatorLostError',
            message: `the job's coordinator stopped without finishing it ${resumes + 1} times (resumed ${resumes} times, the limit; last heartbeat ${new Date(lastSignOfLife(s)).toISOString()}${why}); redrive it once the cause is fixed`,
          },
        };
      }
      outcome = 'resumed';
      // Raising the epoch takes the job from a coordinator that may only be slow: it stops
      // dispatching at its next status write. The heartbeat is renewed so the next sweep waits
      // for the new coordinator rather than resuming the job again.
      return { ...s, epoch: (s.epoch ?? 0) + 1, resumes: resumes + 1, heartbeatAt: at };
    },
    { events: deps.events },
  );
  if (outcome === 'resumed') await deps.invoker.invokeEvent(deps.coordinatorFunction, { jobId });
  return outcome;
}

/** What one sweep found and did, by job id. */
export interface SweepReport {
  checked: number;
  resumed: string[];
  failed: string[];
  cancelled: string[];
  /** Markers removed because their job has ended (or never got a status). */
  removed: number;
}

/**
 * One sweep: every job marked active is looked at ({@link rescueJob}), 16 at a time; markers of
 * jobs that have ended are removed. A job whose rescue throws (S3 unavailable) is left for the
 * next sweep.
 */
export async function sweepJobs(deps: SweepDeps): Promise<SweepReport> {
  const report: SweepReport = { checked: 0, resumed: [], failed: [], cancelled: [], removed: 0 };
  const markers = await deps.store.list(deps.bucket, ACTIVE_PREFIX);
  const ids = markers.map((m) => m.key.slice(ACTIVE_PREFIX.length));
  for await (const [id, outcome] of orderedMap(ids.length, 16, async (i) => {
    const id = ids[i] as string;
    if (!JOB_ID.test(id)) return [id, 'ended'] as const;
    const outcome = await rescueJob(id, deps).catch((error: unknown) =>
      error instanceof NotFoundError ? ('ended' as const) : undefined,
    );
    return [id, outcome] as const;
  })) {
    if (outcome === undefined) continue;
    report.checked += 1;
    if (outcome === 'resumed') report.resumed.push(id);
    if (outcome === 'failed') report.failed.push(id);
    if (outcome === 'cancelled') report.cancelled.push(id);
    if (outcome === 'ended' || outcome === 'failed' || outcome === 'cancelled') {
      await deps.store.delete(deps.bucket, activeKey(id));
      report.removed += 1;
    }
  }
  return report;
}
