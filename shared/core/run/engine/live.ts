/**
 * A task in flight: when it started, how to make its next attempt, and whether an attempt's
 * outcome has counted yet (its own, or a backup's: whichever wrote the outcome first).
 */
import type { RunContext } from './context.ts';
import type { AttemptPayload, TaskResult } from './task.ts';

const noop = () => undefined;
const SETTLED = Promise.resolve();

/** A task in flight (kept for backups, only with speculation on). */
export interface LiveTask<P extends AttemptPayload> {
  index: number;
  /** When its first attempt was dispatched (retries and backups run against this clock). */
  started: number;
  /** A new attempt's payload (each call numbers the next attempt). */
  payload: () => P;
  bytes: number;
  /** A backup waits in the queue for a slot. */
  queued: boolean;
  /** Backups started, and when the latest started: it may straggle too. */
  backups: number;
  backupAt?: number;
  /** Backups running: each resolves true if the task then has an outcome. */
  running?: Set<Promise<boolean>>;
  /** An attempt's outcome counted. */
  done: boolean;
  /** Settles when an attempt's outcome counted, whichever attempt it was. */
  finished: Promise<void>;
  finish: () => void;
}

/** A promise and what resolves it (Promise.withResolvers, which Node 20 lacks). */
export function deferred<T = void>() {
  let resolve: (value: T) => void = noop;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** A task as it is first dispatched. */
export function liveTask<P extends AttemptPayload, R extends TaskResult>(
  ctx: RunContext<P, R>,
  index: number,
  payload: () => P,
): LiveTask<P> {
  // Without backups nothing waits on `finished`: 100,000 tasks' worth of promises is garbage
  // the coordinator's peak memory feels (bench 4).
  const { promise: finished, resolve: finish } =
    ctx.watch === undefined ? { promise: SETTLED, resolve: noop } : deferred();
  return {
    index,
    started: ctx.clock.now(),
    payload,
    bytes: ctx.kind.size(index),
    queued: false,
    backups: 0,
    done: false,
    finished,
    finish,
  };
}

/** Records a task's first success (its own attempt's, or a backup's); false if it had one. */
export function complete<P extends AttemptPayload, R extends TaskResult>(
  ctx: RunContext<P, R>,
  index: number,
  result: R,
  state: LiveTask<P>,
): boolean {
  if (state.done) return false;
  state.done = true;
  state.finish();
  const durationMs = Math.round(ctx.clock.now() - state.started);
  ctx.ledger.succeeded(index, durationMs);
  ctx.watch?.finished(durationMs, state.bytes);
  ctx.kind.won?.(index, result);
  ctx.counts.records += ctx.kind.recordsOf(result);
  ctx.counts.bytes += state.bytes;
  const reuse = ctx.kind.reuseOf?.(result);
  if (reuse !== undefined && ctx.counts.reuse !== undefined) {
    ctx.counts.reuse.tasks += reuse.tasks;
    ctx.counts.reuse.pieces += reuse.pieces;
    ctx.counts.reuse.processed += reuse.processed;
  }
  return true;
}
