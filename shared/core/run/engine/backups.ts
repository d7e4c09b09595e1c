/**
 * Backups for stragglers (MapReduce's backup tasks): a task that has run far longer than
 * finished tasks of its size gets another attempt in the next free slot: a lane takes a due
 * backup before a new task, and a ticker starts backups beside the lanes while the job is under
 * its ceiling. The first attempt to write its outcome wins (outcomes are written create-only);
 * the other's result is ignored, and its worker removes its part. The straggler rule itself is
 * shared/core/run/speculation.ts.
 */

import { backoff } from '../../base/backoff.ts';
import { ThrottledError } from '../../base/errors.ts';
import type { StragglerWatch } from '../speculation.ts';
import type { RunContext } from './context.ts';
import { complete, deferred, type LiveTask } from './live.ts';
import type { AttemptPayload, TaskResult } from './task.ts';

const noop = () => undefined;

/**
 * Backups one task may get: a second when the first straggles too (with 1% of invocations slow,
 * one task in a hundred backed up would otherwise still end the job late).
 */
export const MAX_BACKUPS_PER_TASK = 2;

/** Finds stragglers among the tasks in flight and runs their backups. */
export class BackupScheduler<P extends AttemptPayload, R extends TaskResult> {
  /** Tasks in flight. */
  readonly live = new Map<number, LiveTask<P>>();
  /** Tasks found straggling, oldest first, waiting for a free slot. */
  readonly due: number[] = [];
  private changedAt = deferred();
  private ticking = false;

  constructor(
    private readonly ctx: RunContext<P, R>,
    readonly watch: StragglerWatch,
    /** Waits between looks for stragglers (real time, or a simulation's clock). */
    private readonly wait: (ms: number) => Promise<void>,
  ) {}

  /** Settles when the set of tasks in flight or of due backups changes. */
  get changed(): Promise<void> {
    return this.changedAt.promise;
  }

  /** Wakes the lanes that wait for a backup to fall due: there may be nothing left to wait for. */
  signal(): void {
    this.changedAt.resolve();
    this.changedAt = deferred();
  }

  /** Queues a backup for each task that now straggles, within the budget. */
  speculate(): void {
    const { watch, ctx } = this;
    if (ctx.stop.stopped) return;
    const now = ctx.clock.now();
    let queued = false;
    for (const state of this.live.values()) {
      if (!watch.canBackUp) break;
      if (state.done || state.queued || state.backups >= MAX_BACKUPS_PER_TASK) continue;
      const limit = watch.limitMs(state.bytes);
      if (limit === undefined) return;
      // Past the limit since the task began, or since its latest backup began.
      if (now - (state.backupAt ?? state.started) <= limit) continue;
      state.queued = true;
      watch.backups += 1;
      this.due.push(state.index);
      queued = true;
    }
    if (queued) this.signal();
  }

  /**
   * A backup attempt of a straggling task: run by a lane in place of a new task, or beside the
   * lanes while the job is under its ceiling. Its caller moves on once the task has an outcome,
   * whichever attempt wrote it. False when the task needed no backup after all (nothing was
   * invoked).
   */
  async run(index: number): Promise<boolean> {
    const { ctx, watch } = this;
    const state = this.live.get(index);
    if (state === undefined || state.done) {
      watch.backups -= 1; // not needed after all: back in the budget
      return false;
    }
    ctx.ledger.backupStarted(index);
    state.queued = false;
    state.backups += 1;
    state.backupAt = ctx.clock.now();
    const payload = state.payload();
    const { promise, resolve: settle } = deferred<boolean>();
    state.running ??= new Set();
    state.running.add(promise);
    const invocation = ctx.gate.invoke(payload, true);
    // The outcome written first counts: the backup's, unless its worker found one already.
    invocation.then((result) => {
      if (result.duplicate !== true) ctx.ledger.backupWon(index);
    }, noop);
    try {
      const result = await Promise.race([invocation, state.finished]);
      // Undefined: the task's own attempt counted first; this one runs on without its caller.
      if (result !== undefined) complete(ctx, index, result, state);
      state.running?.delete(promise);
      settle(true);
    } catch (error) {
      state.running?.delete(promise);
      settle(false);
      if (error instanceof ThrottledError) {
        // No slot after all: the backup waits for the next one, first in line.
        ctx.ledger.failed(index, payload, { throttled: true });
        ctx.counters.throttles += 1;
        ctx.ledger.unnumber(index, payload.attempt);
        ctx.ledger.backupRequeued(index);
        state.backups -= 1;
        state.queued = true;
        this.due.unshift(index);
        if (!ctx.gate.isOwnThrottle(error)) {
          await ctx.sleep(backoff(1, ctx.random, { retryAfterSeconds: error.retryAfterSeconds }));
        }
        return true;
      }
      ctx.ledger.failed(index, payload, {
        error: `backup: ${error instanceof Error ? error.message : String(error)}`,
      });
    }
    return true;
  }

  /** True once a running backup gives the task an outcome; false when none is left running. */
  async anySucceeds(state: LiveTask<P>): Promise<boolean> {
    while (!state.done && state.running !== undefined && state.running.size > 0) {
      if (await Promise.race(state.running)) return true;
    }
    return state.done;
  }

  /**
   * Looks for stragglers every so often while the run dispatches, and starts due backups beside
   * the lanes while the job is under its ceiling; the lanes take the rest.
   */
  async tick(): Promise<void> {
    const { ctx, watch } = this;
    const every = Math.max(25, Math.min(250, watch.floorMs / 4));
    this.ticking = true;
    while (this.ticking) {
      await this.wait(every);
      this.speculate();
      while (this.due.length > 0 && ctx.gate.invocations < ctx.gate.ceiling && !ctx.stop.stopped) {
        void this.run(this.due.shift() as number);
      }
    }
  }

  /** The run no longer dispatches: the ticker stops at its next look. */
  stopTicking(): void {
    this.ticking = false;
  }
}
