/**
 * The task engine: runs the tasks of one kind that have no outcome yet, at most `concurrency`
 * at a time (the "process pool"), with retries, backups for stragglers, a learned throttle
 * ceiling, cancel and takeover checks before each dispatch, billing, and a record of every
 * attempt. It stops dispatching when failures pass the tolerance, when the job is cancelled or
 * taken over, or when this invocation's time runs short; tasks in flight always end first.
 * Progress goes to status.json (compare-and-swap) every interval.
 *
 * This module only wires the pieces; each owns its state: progress.ts (what is left),
 * status-sync.ts (status.json), ledger.ts (the tasks' records), gate.ts (invocations, ceiling),
 * billing.ts, retry.ts (what a failure means), backups.ts (stragglers), runner.ts (one task),
 * lanes.ts (the pool).
 */

import { invocationMarginMs } from '../../base/limits.ts';
import type { Clock, Invoker, ObjectStore } from '../../base/ports.ts';
import { type SpeculationOptions, StragglerWatch } from '../speculation.ts';
import { BackupScheduler } from './backups.ts';
import type { Billing } from './billing.ts';
import type { RunContext } from './context.ts';
import { InvocationGate } from './gate.ts';
import { LanePool } from './lanes.ts';
import { AttemptLedger } from './ledger.ts';
import { loadProgress } from './progress.ts';
import { TaskRunner } from './runner.ts';
import { StatusSync } from './status-sync.ts';
import { Stop, type StopReason } from './stop.ts';
import type { AttemptPayload, TaskKind, TaskResult } from './task.ts';

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** A periodic timer in real time. */
const realEvery = (ms: number, callback: () => void) => {
  const timer = setInterval(callback, ms);
  return { stop: () => clearInterval(timer) };
};

/** What a run needs besides its tasks. */
export interface EngineDeps {
  store: ObjectStore;
  invoker: Invoker;
  clock: Clock;
  /** The bucket and job whose status.json the run keeps current. */
  bucket: string;
  jobId: string;
  /** This run's epoch: it owns the job while status.json holds it. */
  epoch: number;
  /** The first run of the job: no task has an outcome yet, and none is looked for. */
  fresh: boolean;
  /** Lanes wanted (the job's concurrency). */
  concurrency: number;
  /** The most invocations in flight, backups included. @default unbounded */
  maxInvocations?: number;
  /** Lanes opened at first. @default all */
  initialLanes?: number;
  /** @default 250 */
  rampMs?: number;
  /** Attempts per task. */
  maxAttempts: number;
  /** Attempts of a task whose error came from the job's own code. @default JOB_CODE_ATTEMPTS */
  jobCodeAttempts?: number;
  /** Attempts per task while the function throttles. @default 50 */
  maxThrottled?: number;
  /** Tasks that may fail for good before the run stops as failed. */
  tolerated: number;
  /** Backups for stragglers; absent: none. */
  speculation?: SpeculationOptions;
  /** Where the invocations' usage goes. */
  billing: Billing;
  /** True when this invocation's time runs short (checked once a task has been dispatched). */
  shortOfTime?: () => boolean;
  /** Milliseconds between progress writes. @default 500 */
  statusIntervalMs?: number;
  /** A periodic timer (the progress writes). @default real time */
  every?: (ms: number, callback: () => void) => { stop(): void };
  /** Waits between retries (and throttled attempts). @default real time */
  sleep?: (ms: number) => Promise<void>;
  /**
   * Waits that must pass time: between looks for stragglers, and while the lanes ramp up.
   * @default real time
   */
  tick?: (ms: number) => Promise<void>;
  /** The jitter of backoffs. @default Math.random */
  random?: () => number;
  /** Told, when the run stops dispatching, what it dispatched, retried and was throttled on. */
  onRun?: (run: { dispatched: number; retries: number; throttles: number }) => void;
}

/** How a run ended. */
export type RunEnd = { dispatched: number } & (
  | { reason: Exclude<StopReason, 'failed'> | 'done' }
  | { reason: 'failed'; error: unknown }
);

/** Runs the tasks of `kind` that have no outcome yet (see the module's comment). */
export async function runTasks<P extends AttemptPayload, R extends TaskResult>(
  kind: TaskKind<P, R>,
  deps: EngineDeps,
): Promise<RunEnd> {
  const { clock } = deps;
  const { todo, counts } = await loadProgress(kind, deps.fresh);
  const ledger = new AttemptLedger(kind.records, clock);
  ledger.reopen();
  const stop = new Stop();
  const status = new StatusSync(
    {
      store: deps.store,
      bucket: deps.bucket,
      jobId: deps.jobId,
      intervalMs: deps.statusIntervalMs ?? 500,
      every: deps.every ?? realEvery,
    },
    deps.epoch,
    // Split tasks are not counted: their parts are.
    kind.records.filter((r) => r.split === undefined).length,
    counts,
    stop,
    kind.progress,
  );
  // The first progress write (totals; a cancel or takeover already there) does not hold up
  // dispatch: lanes stop within one write's time if it reports one.
  status.touch();
  const watch =
    deps.speculation === undefined
      ? undefined
      : new StragglerWatch(kind.records.length, deps.speculation);
  const gate = new InvocationGate<P, R>({
    invoker: deps.invoker,
    clock,
    functionName: kind.functionName,
    deadlineMs: kind.timeoutMs + invocationMarginMs(kind.timeoutMs),
    billing: deps.billing,
    ledger,
    track: watch !== undefined,
  });
  const ctx: RunContext<P, R> = {
    kind,
    gate,
    ledger,
    stop,
    counts,
    counters: { dispatched: 0, retries: 0, throttles: 0 },
    clock,
    sleep: deps.sleep ?? realSleep,
    random: deps.random ?? Math.random,
    maxAttempts: deps.maxAttempts,
    ...(deps.jobCodeAttempts !== undefined && { jobCodeAttempts: deps.jobCodeAttempts }),
    maxThrottled: deps.maxThrottled ?? 50,
    watch,
  };
  const backups =
    watch === undefined ? undefined : new BackupScheduler(ctx, watch, deps.tick ?? realSleep);
  const maxInvocations = deps.maxInvocations ?? Number.POSITIVE_INFINITY;
  const lanes = Math.max(1, Math.min(deps.concurrency, todo.length, maxInvocations));
  gate.open(lanes, Math.min(lanes + (watch?.maxBackups ?? 0), maxInvocations));
  const pool = new LanePool(ctx, todo, new TaskRunner(ctx, backups), status, backups, {
    lanes,
    initial: Math.min(lanes, deps.initialLanes ?? lanes),
    rampMs: deps.rampMs ?? 250,
    tolerated: deps.tolerated,
    // The ramp waits on the clock, not on the retry wait: a test's zero-wait retries would
    // make it spin.
    sleep: deps.tick ?? realSleep,
    // Each run dispatches at least one task, so a run that starts short of time progresses.
    shortOfTime: () => ctx.counters.dispatched > 0 && (deps.shortOfTime?.() ?? false),
  });
  await pool.run();
  gate.settleLosers();
  await status.close();
  deps.onRun?.({ ...ctx.counters });

  const { dispatched } = ctx.counters;
  if (stop.reason === 'failed' && pool.failure !== undefined) {
    return { reason: 'failed', error: pool.failure.error, dispatched };
  }
  if (stop.reason === 'cancelled' || stop.reason === 'superseded' || stop.reason === 'continue') {
    return { reason: stop.reason, dispatched };
  }
  return { reason: 'done', dispatched };
}
