/** Backups for stragglers: when one is due, who runs it, and which outcome counts. */
import { describe, expect, it } from 'vitest';
import { FunctionError, ThrottledError } from '#core/base/errors.ts';
import { BackupScheduler } from '#core/run/engine/backups.ts';
import { TaskRunner } from '#core/run/engine/runner.ts';
import { contextOf, kindOf, ManualClock, ScriptedInvoker, settle } from '../../fixtures/engine.ts';

/**
 * Tasks 0–2 finish at once (the straggler rule's sample); every other attempt is held for the
 * test to answer, unless `answer` says otherwise.
 */
async function setup(answer: (index: number, attempt: number) => 'hold' | Error = () => 'hold') {
  const clock = new ManualClock();
  const invoker = new ScriptedInvoker((p) =>
    p.index < 3 ? { records: 1 } : answer(p.index, p.attempt),
  );
  const ctx = contextOf(kindOf(5), invoker, { clock, backups: true, lanes: 2, ceiling: 6 });
  const ticks: (() => void)[] = [];
  const scheduler = new BackupScheduler(ctx, ctx.watch!, () => new Promise((r) => ticks.push(r)));
  const runner = new TaskRunner(ctx, scheduler);
  for (const index of [0, 1, 2]) await runner.run(index);
  const call = (index: number, attempt: number) =>
    invoker.calls.find((c) => c.payload.index === index && c.payload.attempt === attempt);
  return { clock, invoker, ctx, scheduler, runner, ticks, call };
}

describe('BackupScheduler', () => {
  it('backs up a task past its limit, and the backup’s outcome counts', async () => {
    const { clock, ctx, scheduler, runner, call } = await setup();
    const task = runner.run(3);
    await settle();
    clock.t = 10; // the floor (10 ms): not past it yet
    scheduler.speculate();
    expect(scheduler.due).toEqual([]);
    clock.t = 11;
    scheduler.speculate();
    expect(scheduler.due).toEqual([3]);
    const backup = scheduler.run(scheduler.due.shift()!);
    await settle();
    call(3, 2)?.answer({ records: 5 });
    expect(await backup).toBe(true);
    await task; // the task ended with the backup's outcome, its own attempt still running
    expect(ctx.kind.records[3]).toMatchObject({ attempts: 2, backups: 1, backupWon: true });
    expect(ctx.counts.records).toBe(3 + 5);
    call(3, 1)?.answer({ records: 5, duplicate: true }); // the original finds the outcome taken
    await settle();
    expect(ctx.kind.records[3]?.lost).toMatchObject([{ attempt: 1 }]);
    expect(ctx.counts.records).toBe(3 + 5);
  });

  it('gives the budget back when the task ends before its backup’s slot', async () => {
    const { clock, ctx, scheduler, runner, call } = await setup();
    const task = runner.run(3);
    await settle();
    clock.t = 100;
    scheduler.speculate();
    expect(ctx.watch?.backups).toBe(1);
    call(3, 1)?.answer({ records: 1 });
    await task;
    expect(await scheduler.run(scheduler.due.shift()!)).toBe(false);
    expect(ctx.watch?.backups).toBe(0);
    expect(ctx.kind.records[3]).not.toHaveProperty('backups');
  });

  it('queues a throttled backup again, first in line, with its attempt given back', async () => {
    const { clock, ctx, scheduler, runner, call } = await setup((_index, attempt) =>
      attempt === 2 ? new ThrottledError('worker') : 'hold',
    );
    const tasks = [runner.run(3), runner.run(4)];
    await settle();
    clock.t = 100;
    scheduler.speculate();
    expect(scheduler.due).toEqual([3, 4]);
    await scheduler.run(scheduler.due.shift()!);
    expect(scheduler.due).toEqual([3, 4]);
    expect(ctx.kind.records[3]).toMatchObject({ attempts: 1, backups: 0 });
    expect(ctx.counters.throttles).toBe(1);
    call(3, 1)?.answer({ records: 1 });
    call(4, 1)?.answer({ records: 1 });
    await Promise.all(tasks);
  });

  it('lets a running backup save a task whose own attempts failed for good', async () => {
    const { clock, ctx, scheduler, runner, call } = await setup();
    ctx.maxAttempts = 1;
    const task = runner.run(3);
    await settle();
    clock.t = 100;
    scheduler.speculate();
    const backup = scheduler.run(scheduler.due.shift()!);
    await settle();
    call(3, 1)?.fail(new FunctionError('worker', 'Error', 'socket hang up'));
    await settle();
    call(3, 2)?.answer({ records: 2 });
    await backup;
    await task;
    expect(ctx.counts.records).toBe(3 + 2);
    expect(ctx.kind.records[3]?.backupWon).toBe(true);
  });

  it('fails the task when its backup fails too', async () => {
    const { clock, ctx, scheduler, runner, call } = await setup();
    ctx.maxAttempts = 1;
    const task = runner.run(3).catch((e: unknown) => e);
    await settle();
    clock.t = 100;
    scheduler.speculate();
    const backup = scheduler.run(scheduler.due.shift()!);
    await settle();
    call(3, 1)?.fail(new FunctionError('worker', 'Error', 'first'));
    call(3, 2)?.fail(new FunctionError('worker', 'Error', 'second'));
    await backup;
    expect(String(await task)).toMatch(/task 3 failed: worker failed: Error: first/);
    expect(ctx.kind.records[3]?.failures?.map((f) => f.error)).toEqual([
      'worker failed: Error: first',
      'backup: worker failed: Error: second',
    ]);
  });

  it('backs up no task more than twice, nor past the job’s budget', async () => {
    const { clock, scheduler, runner, ctx } = await setup();
    void runner.run(3);
    await settle();
    for (const t of [100, 200, 300, 400]) {
      clock.t = t;
      scheduler.speculate();
      const index = scheduler.due.shift();
      if (index !== undefined) void scheduler.run(index);
      await settle();
    }
    expect(ctx.kind.records[3]?.backups).toBe(2);
    ctx.watch!.backups = ctx.watch!.maxBackups;
    void runner.run(4);
    await settle();
    clock.t = 1_000;
    scheduler.speculate();
    expect(scheduler.due).toEqual([]);
  });

  it('starts due backups beside the lanes while under the ceiling, until told to stop', async () => {
    const { clock, ctx, scheduler, runner, ticks, invoker } = await setup();
    void runner.run(3);
    void runner.run(4);
    await settle();
    ctx.gate.ceiling = 3; // two in flight: room for one backup
    const ticking = scheduler.tick();
    clock.t = 100;
    ticks.shift()?.();
    await settle();
    expect(invoker.inFlight).toBe(3);
    expect(scheduler.due).toEqual([4]); // no room: left for a lane
    scheduler.stopTicking();
    ticks.shift()?.();
    await ticking;
  });
});
