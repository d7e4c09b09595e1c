import { countingStore } from '../base/counting-store.ts';
import { NotFoundError, toErrorInfo } from '../base/errors.ts';
import { handOverMs, invocationMarginMs } from '../base/limits.ts';
import {
  addUsage,
  DEFAULT_PRICING,
  DEPLOYED_MEMORY_MB,
  estimateCost,
  invocationUsage,
  type Usage,
} from '../cost/cost.ts';
import type { FunctionRun, JobRequest, JobStatus, Manifest } from '../model/documents.ts';
import type { JobEvents } from '../model/events.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, readStatus, TERMINAL_STATES, updateStatus, writeJson } from '../model/status.ts';
import { Billing, ownership } from './engine/index.ts';
import { type MapStageDeps, runMapStage } from './map-stage.ts';
import { type PlanDeps, planJob } from './plan-job.ts';
import { runReduceStage } from './reduce-stage.ts';
import { SWEEP_DEFAULTS } from './sweep.ts';

/** What {@link coordinateJob} needs from its surroundings. */
export interface CoordinatorDeps extends Omit<MapStageDeps, 'jobs'>, PlanDeps {
  reducerFunction: string;
  /** This coordinator's own function, invoked (Event) to continue a long job. */
  coordinatorFunction: string;
  /**
   * The reducer function's timeout: the coordinator waits for the reducer that long plus a
   * margin, and hands over to a continuation first when it has less time left than that.
   * @default 15 minutes
   */
  reducerTimeoutMs?: number;
  /**
   * Milliseconds between heartbeats (`heartbeatAt` in status.json), written from takeover to
   * the end of the run, planning and reducing included, so the sweeper can tell a live
   * coordinator from a lost one. @default 10_000
   */
  heartbeatMs?: number;
  /**
   * Memory of the coordinator and worker functions in MB, for the cost estimate (a failed
   * worker attempt is billed for its measured duration). @default DEPLOYED_MEMORY_MB
   */
  memoryMb?: { coordinator: number; worker: number };
  /** Region and architecture whose prices the cost estimate uses. @default us-east-1, arm64 */
  pricing?: { region: string; architecture: 'arm64' | 'x86_64' };
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
}

/** A periodic timer in real time (CoordinatorDeps.every). */
const realEvery = (ms: number, callback: () => void) => {
  const timer = setInterval(callback, ms);
  return { stop: () => clearInterval(timer) };
};

/**
 * Runs a job, or the rest of it. Every run takes the job over by raising its epoch (CAS on
 * status.json); chunks whose outcome object exists are done and never run again, so a run that
 * follows a crash, a continuation or a redrive picks up exactly what is left. Failures of the
 * job itself end in a FAILED status rather than an exception, so an asynchronous invocation is
 * not retried into running the job twice; only a failure to record the outcome throws.
 */
export async function coordinateJob(jobId: string, deps: CoordinatorDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const counted = countingStore(deps.store);
  const tally = tallyOf(deps, counted.requests);
  deps = { ...deps, store: counted.store };
  let epoch = 0;
  // The request and the takeover are independent: one round trip instead of two.
  const [{ value: request }, taken] = await Promise.all([
    readJson<JobRequest>(deps.store, deps.bucket, keys.job),
    updateStatus(
      deps.store,
      deps.bucket,
      jobId,
      (s) => {
        if (TERMINAL_STATES.has(s.status)) return undefined;
        if (s.cancelRequested === true) {
          return { ...s, status: 'CANCELLED', finishedAt: deps.clock.iso() };
        }
        epoch = (s.epoch ?? 0) + 1;
        const now = deps.clock.iso();
        return { ...s, status: 'RUNNING', startedAt: s.startedAt ?? now, epoch, heartbeatAt: now };
      },
      { events: deps.events },
    ),
  ]);
  if (taken.status !== 'RUNNING' || taken.epoch !== epoch) return taken;
  const heart = heartbeat(jobId, epoch, deps);
  try {
    return await driveJob(jobId, request, epoch, deps, tally);
  } finally {
    heart.stop();
  }
}

/**
 * What this coordinator run has used so far, for the job's cost: its own duration and S3
 * requests, and its workers' invocations (their own reports, or for a failed attempt its
 * measured duration).
 */
interface Tally {
  /** The workers' invocations (the engine charges them). */
  billing: Billing;
  /** This run's usage until now, its workers' included. */
  now(): Usage;
  /** This run as a record, ending now. */
  run(epoch: number): FunctionRun;
}

function tallyOf(deps: CoordinatorDeps, requests: Usage['s3Requests']): Tally {
  const started = deps.clock.now();
  const startedAt = deps.clock.iso();
  const memory = deps.memoryMb ?? DEPLOYED_MEMORY_MB;
  const tally: Tally = {
    billing: new Billing(deps.clock, memory.worker),
    now: () =>
      addUsage(
        tally.billing.usage,
        invocationUsage(deps.clock.now() - started, memory.coordinator, requests),
      ),
    run: (epoch) => ({
      role: 'coordinator',
      epoch,
      startedAt,
      endedAt: deps.clock.iso(),
      billedMs: Math.ceil(deps.clock.now() - started),
      memoryMb: memory.coordinator,
    }),
  };
  return tally;
}

/** The status with this run's usage added, and (for a job that ends) its cost. */
function withUsage(s: JobStatus, tally: Tally, deps: CoordinatorDeps, ending: boolean): JobStatus {
  const usage = addUsage(s.usage, tally.now());
  const runs = [...(s.runs ?? []), tally.run(s.epoch ?? 0)];
  return ending
    ? { ...s, usage, runs, cost: estimateCost(usage, deps.pricing ?? DEFAULT_PRICING) }
    : { ...s, usage, runs };
}

/**
 * Keeps `heartbeatAt` current while this run owns the job (best effort: a missed beat only
 * brings the sweeper closer; twelve in a row let it take the job over).
 */
function heartbeat(jobId: string, epoch: number, deps: CoordinatorDeps) {
  const beat = () =>
    updateStatus(deps.store, deps.bucket, jobId, (s) =>
      ownership(s, epoch) === 'superseded' ? undefined : { ...s, heartbeatAt: deps.clock.iso() },
    ).catch(() => undefined);
  return (deps.every ?? realEvery)(deps.heartbeatMs ?? SWEEP_DEFAULTS.heartbeatMs, () => {
    void beat();
  });
}

/** The run after its takeover: plan or read the plan, run the chunks, reduce or end the job. */
async function driveJob(
  jobId: string,
  request: JobRequest,
  epoch: number,
  deps: CoordinatorDeps,
  tally: Tally,
): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  // Epoch 1: no run before this one got past its takeover, so there is no manifest and no
  // chunk outcome yet; a fresh job skips looking for them.
  const fresh = epoch === 1;

  try {
    const plan = async () => {
      const planned = await planJob(request, deps);
      await writeJson(deps.store, deps.bucket, keys.manifest, planned);
      return planned;
    };
    const manifest = fresh
      ? await plan()
      : await readJson<Manifest>(deps.store, deps.bucket, keys.manifest)
          .then((r) => r.value)
          .catch((error: unknown) => {
            if (!(error instanceof NotFoundError)) throw error;
            return plan();
          });
    const mapEnd = await runMapStage(
      manifest,
      request,
      { epoch, fresh, billing: tally.billing },
      deps,
    );
    // A keyed or sorted job's partitions run once every chunk has its outcome (docs/SHUFFLE.md).
    const end =
      mapEnd.reason === 'done' && (manifest.keyed !== undefined || manifest.sorted !== undefined)
        ? await runReduceStage(manifest, request, { epoch, billing: tally.billing }, deps).then(
            (r) => ({ ...r, dispatched: r.dispatched + mapEnd.dispatched }),
          )
        : mapEnd;
    // A run that was taken over leaves the manifest to the run that owns the job now.
    if (end.reason === 'superseded') return readStatus(deps.store, deps.bucket, jobId);
    await writeJson(deps.store, deps.bucket, keys.manifest, manifest);
    if (end.reason === 'failed') throw end.error;
    const reducerMs = deps.reducerTimeoutMs ?? 900_000;
    // Waiting for the reducer takes its timeout and margins: a run that dispatched chunks and
    // has less time left than that hands the wait to a continuation, which has its whole
    // timeout (the stack checks that the reducer's fits in it). A run that dispatched nothing
    // waits with what it has, so that continuations cannot follow one another for ever.
    const reason =
      end.reason === 'done' &&
      end.dispatched > 0 &&
      deps.remainingMs !== undefined &&
      deps.remainingMs() < handOverMs(reducerMs)
        ? 'continue'
        : end.reason;
    switch (reason) {
      case 'continue':
        await updateStatus(deps.store, deps.bucket, jobId, (s) =>
          ownership(s, epoch) === 'superseded'
            ? undefined
            : withUsage({ ...s, continuations: (s.continuations ?? 0) + 1 }, tally, deps, false),
        );
        await deps.invoker.invokeEvent(deps.coordinatorFunction, { jobId });
        return readStatus(deps.store, deps.bucket, jobId);
      case 'cancelled':
        return finish(jobId, epoch, deps, (s) =>
          withUsage({ ...s, status: 'CANCELLED' }, tally, deps, true),
        );
      case 'done':
        // The reducer ends the job, so it prices it: it gets this run's usage, and the memory
        // of this coordinator, which is billed while it waits for the reducer.
        await deps.invoker.invoke(
          deps.reducerFunction,
          {
            jobId,
            usage: tally.now(),
            coordinatorRun: tally.run(epoch),
            waitingMemoryMb: (deps.memoryMb ?? DEPLOYED_MEMORY_MB).coordinator,
            pricing: deps.pricing ?? DEFAULT_PRICING,
          },
          {
            timeoutMs: Math.min(
              reducerMs + invocationMarginMs(reducerMs),
              // Never past this invocation's own end: a FAILED status is still written then.
              deps.remainingMs === undefined
                ? Number.POSITIVE_INFINITY
                : Math.max(1_000, deps.remainingMs() - 2_000),
            ),
          },
        );
        return readStatus(deps.store, deps.bucket, jobId);
    }
  } catch (error) {
    return finish(jobId, epoch, deps, (s) =>
      // A cancel that arrived while the reducer ran makes the reducer refuse: that is a cancel.
      withUsage(
        s.cancelRequested === true
          ? { ...s, status: 'CANCELLED' }
          : { ...s, status: 'FAILED', error: toErrorInfo(error) },
        tally,
        deps,
        true,
      ),
    );
  }
}

/** Ends the job, unless another run took it over or it has already ended. */
function finish(
  jobId: string,
  epoch: number,
  deps: CoordinatorDeps,
  change: (s: JobStatus) => JobStatus,
) {
  return updateStatus(
    deps.store,
    deps.bucket,
    jobId,
    (s) =>
      ownership(s, epoch) === 'superseded'
        ? undefined
        : { ...change(s), finishedAt: deps.clock.iso() },
    { events: deps.events },
  );
}
