/**
 * Runs one task to its end: its own attempts, with retries as `retryDecision` says, and, with
 * backups on, a race against the backups of it that the scheduler starts. The task has ended
 * when any attempt's outcome counted, or when its own attempts failed for good and no backup is
 * left running that may still succeed.
 */
import { backoff } from '../../base/backoff.ts';
import type { ThrottledError } from '../../base/errors.ts';
import type { BackupScheduler } from './backups.ts';
import type { RunContext } from './context.ts';
import { complete, type LiveTask, liveTask } from './live.ts';
import { retryDecision } from './retry.ts';
import type { AttemptPayload, TaskResult } from './task.ts';

const noop = () => undefined;

/** Thrown by a task's attempts when the job was cancelled or taken over before a retry. */
export const NOT_RETRIED = Symbol('not retried');

/** Thrown by a task's attempts when one ran out of memory or time: the task is to be split. */
class SplitNeeded {
  constructor(readonly error: unknown) {}
}

/** Thrown by `run` for a task that was split: the smaller tasks that replace it, in order. */
export class SplitInto {
  constructor(readonly indexes: number[]) {}
}

/** Runs tasks, one call per task. */
export class TaskRunner<P extends AttemptPayload, R extends TaskResult> {
  constructor(
    private readonly ctx: RunContext<P, R>,
    private readonly backups: BackupScheduler<P, R> | undefined,
  ) {}

  /**
   * Runs task `index` until an attempt's outcome counts. Throws the task's failure, SplitInto
   * when it was split, or NOT_RETRIED when the run stopped before a retry (the task is left for
   * a later run).
   */
  async run(index: number): Promise<void> {
    const { ctx } = this;
    const build = ctx.kind.prepare(index);
    const payload = () => build(ctx.ledger.number(index), Date.parse(ctx.clock.iso()));
    if (await this.reused(index, payload)) return;
    try {
      await this.race(index, payload);
    } catch (error) {
      if (!(error instanceof SplitNeeded)) throw error;
      // As for a retry: no task changes once the job is cancelled or taken over.
      const reason = this.ctx.stop.reason;
      if (reason === 'cancelled' || reason === 'superseded') throw NOT_RETRIED;
      throw new SplitInto(await this.ctx.kind.split!(index, error.error));
    }
  }

  /**
   * True when the task's result was made from earlier work, with no invocation (TaskKind.reuse):
   * it counts as a success. Else its attempt number is given back, and the task runs.
   */
  private async reused(index: number, payload: () => P): Promise<boolean> {
    const { ctx } = this;
    if (ctx.kind.reuse === undefined) return false;
    const first = payload();
    const result = await ctx.kind.reuse(first).catch(() => undefined);
    if (result === undefined) {
      ctx.ledger.unnumber(index, first.attempt);
      return false;
    }
    complete(ctx, index, result, liveTask(ctx, index, payload));
    return true;
  }

  /** The task's own attempts, raced against its backups when backups are on. */
  private async race(index: number, payload: () => P): Promise<void> {
    const { ctx, backups } = this;
    if (backups === undefined) {
      // No backups: the task's own attempts are all there is (and nothing is kept per task in
      // flight, which 100,000 tasks feel in the coordinator's memory).
      await this.attempts(index, liveTask(ctx, index, payload));
      return;
    }
    const state = liveTask(ctx, index, payload);
    backups.live.set(index, state);
    try {
      const attempts = this.attempts(index, state);
      attempts.catch(noop); // a backup's outcome may count first, while these still run
      await Promise.race([attempts, state.finished]);
    } catch (error) {
      if (error instanceof SplitNeeded && !state.done) {
        // Its backups run the same bytes in the same memory and time, and fail the same way:
        // none is waited for, and none that ends now counts (its parts' outcomes will).
        state.done = true;
        state.finish();
        throw error;
      }
      // The task's own attempts failed for good; a backup still running may yet succeed.
      if (!(await backups.anySucceeds(state))) throw error;
    } finally {
      backups.live.delete(index);
      backups.signal(); // lanes waiting for a backup to fall due may now have nothing to wait for
    }
  }

  /** A task's own attempts, with retries; they stop once a backup has won. */
  private async attempts(index: number, state: LiveTask<P>): Promise<void> {
    const { ctx } = this;
    let throttled = 0;
    for (let attemptThisRun = 1; ; attemptThisRun++) {
      if (state.done) return;
      // A retry is a new dispatch: none starts once the job is cancelled or taken over.
      const reason = ctx.stop.reason;
      if (
        (attemptThisRun > 1 || throttled > 0) &&
        (reason === 'cancelled' || reason === 'superseded')
      ) {
        throw NOT_RETRIED;
      }
      if (ctx.watch !== undefined) {
        await ctx.gate.acquire();
        if (state.done) {
          ctx.gate.unused();
          return;
        }
      }
      const payload = state.payload();
      try {
        const result = await ctx.gate.invoke(payload);
        // A duplicate: another attempt's outcome was written first; the task is done either way.
        complete(ctx, index, result, state);
        return;
      } catch (error) {
        if (state.done) return; // a backup won meanwhile: this attempt's end does not matter
        const decision = retryDecision(error, {
          ownThrottle: ctx.gate.isOwnThrottle(error),
          throttled,
          maxThrottled: ctx.maxThrottled,
          attempt: attemptThisRun,
          maxAttempts: ctx.maxAttempts,
          ...(ctx.jobCodeAttempts !== undefined && { jobCodeAttempts: ctx.jobCodeAttempts }),
          failing: ctx.stop.reason === 'failed',
          splittable: ctx.kind.split !== undefined,
        });
        if (decision === 'own-throttle' || decision === 'throttle') {
          // A throttle is not the task's fault: it uses no attempt, and its number is given back.
          ctx.ledger.failed(index, payload, { throttled: true });
          ctx.counters.throttles += 1;
          ctx.ledger.unnumber(index, payload.attempt);
          attemptThisRun -= 1;
          if (decision === 'own-throttle') continue; // the next slot is when one of ours ends
          throttled += 1;
          await ctx.sleep(
            backoff(throttled, ctx.random, {
              retryAfterSeconds: (error as ThrottledError).retryAfterSeconds,
            }),
          );
          continue;
        }
        ctx.ledger.error(index, error);
        ctx.ledger.failed(index, payload, {
          error: error instanceof Error ? error.message : String(error),
        });
        if (decision === 'fail') throw ctx.kind.failure(index, error);
        if (decision === 'split') throw new SplitNeeded(error);
        ctx.counters.retries += 1;
        await ctx.sleep(backoff(attemptThisRun, ctx.random));
      }
    }
  }
}
