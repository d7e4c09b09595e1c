/**
 * The lanes: the "process pool". Each lane takes the next task without an outcome (or a due
 * backup first: it is what the job waits for) and runs it to its end, until there is nothing
 * left or the run stops. Lanes open `initial` at a time at first; the rest open once a task has
 * run for `rampMs` while others wait: tasks that wait (on I/O, a sleep) gain from more lanes,
 * short ones that compute finish first and never open them.
 */
import type { BackupScheduler } from './backups.ts';
import type { RunContext } from './context.ts';
import { NOT_RETRIED, SplitInto, type TaskRunner } from './runner.ts';
import type { StatusSync } from './status-sync.ts';
import type { AttemptPayload, TaskResult } from './task.ts';

/** How the lanes open. */
export interface LaneSettings {
  /** Lanes in all. */
  lanes: number;
  /** Lanes opened at first. */
  initial: number;
  /** A task running this long while others wait opens the rest. */
  rampMs: number;
  /** Failed tasks tolerated before the run stops as failed. */
  tolerated: number;
  /** Waits while the lanes ramp up. */
  sleep: (ms: number) => Promise<void>;
  /** True when this invocation's time runs short: a continuation takes over. */
  shortOfTime: () => boolean;
}

/** The first failure of the run (the job's error): the lowest index that failed for good. */
export interface Failure {
  index: number;
  error: unknown;
}

/** Runs the lanes over the tasks left. */
export class LanePool<P extends AttemptPayload, R extends TaskResult> {
  /** The run's first failure, by index. */
  failure: Failure | undefined;
  private next = 0;
  /** When each task in flight was dispatched, for widening. */
  private readonly inFlight = new Map<number, number>();
  private readonly due: number[];

  constructor(
    private readonly ctx: RunContext<P, R>,
    /** The tasks to run, in order; a split task's parts go in where the next is taken. */
    private readonly todo: number[],
    private readonly runner: TaskRunner<P, R>,
    /** The read before each dispatch, and the first dispatch's start of progress writes. */
    private readonly status: Pick<StatusSync, 'check' | 'touch' | 'grow'>,
    private readonly backups: BackupScheduler<P, R> | undefined,
    private readonly settings: LaneSettings,
  ) {
    this.due = backups?.due ?? [];
  }

  /** Runs until every lane has ended (nothing left, or the run stopped). */
  async run(): Promise<void> {
    const { lanes, initial } = this.settings;
    const first = Math.min(lanes, initial);
    const running = Array.from({ length: first }, () => this.lane());
    let widened = first === lanes;
    const widen = async () => {
      while (!widened && !this.ctx.stop.stopped && this.next < this.todo.length) {
        await this.settings.sleep(this.settings.rampMs);
        if (widened || this.ctx.stop.stopped || this.next >= this.todo.length) return;
        if (this.ctx.clock.now() - Math.min(...this.inFlight.values()) >= this.settings.rampMs) {
          widened = true;
          for (let i = first; i < lanes; i++) running.push(this.lane());
        }
      }
    };
    void widen();
    void this.backups?.tick();
    while (running.length > 0) await Promise.all(running.splice(0));
    widened = true;
    this.backups?.stopTicking();
  }

  private async lane(): Promise<void> {
    const { ctx, backups, due } = this;
    while (!ctx.stop.stopped) {
      if (this.settings.shortOfTime()) {
        ctx.stop.request('continue');
        break;
      }
      if (due.length === 0 && this.next >= this.todo.length) {
        // Nothing new to dispatch: while tasks still run, one may yet need a backup.
        if (backups === undefined || backups.live.size === 0 || !backups.watch.canBackUp) break;
        await backups.changed;
        continue;
      }
      await this.status.check();
      if (ctx.stop.stopped) break;
      // A straggler's backup goes first: it is what the job is waiting for.
      if (due.length > 0) {
        await ctx.gate.acquire();
        const straggler = due.shift();
        const invoked = straggler !== undefined && (await backups?.run(straggler)) === true;
        if (!invoked) ctx.gate.unused();
        continue;
      }
      if (this.next >= this.todo.length) continue;
      // Inline, not a method of its own: an extra await here would reorder lanes that finish
      // at one instant, and the simulation's figures with them.
      const index = this.todo[this.next++] as number;
      ctx.counters.dispatched += 1;
      ctx.counts.running += 1;
      this.inFlight.set(index, ctx.clock.now());
      this.status.touch();
      try {
        await this.runner.run(index);
        ctx.counts.succeeded += 1;
      } catch (error) {
        if (error === NOT_RETRIED) continue; // left without an outcome, for a later run
        if (error instanceof SplitInto) {
          // Its parts run next: they are what the tasks after them in input order wait for.
          this.todo.splice(this.next, 0, ...error.indexes);
          this.status.grow(error.indexes.length - 1);
          continue;
        }
        this.failed(index, error);
      } finally {
        ctx.counts.running -= 1;
        this.inFlight.delete(index);
      }
    }
  }

  /** A task failed for good: counted, and the run stops once failures pass the tolerance. */
  private failed(index: number, error: unknown): void {
    const { ctx } = this;
    ctx.counts.failed += 1;
    ctx.ledger.failedForGood(index);
    if (this.failure === undefined || index < this.failure.index) this.failure = { index, error };
    if (ctx.counts.failed > this.settings.tolerated) ctx.stop.fail();
  }
}
