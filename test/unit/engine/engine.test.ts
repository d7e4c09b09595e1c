/**
 * runTasks as a whole, over a kind of task that is not a map chunk: the pieces wired, progress
 * in status.json, and each way a run ends.
 */
import { describe, expect, it } from 'vitest';
import { FunctionError } from '#core/base/errors.ts';
import { type JobStatus, taskOrder } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { readStatus, writeJson } from '#core/model/status.ts';
import { Billing } from '#core/run/engine/billing.ts';
import { type EngineDeps, runTasks } from '#core/run/engine/engine.ts';
import { kindOf, ManualClock, ScriptedInvoker } from '../../fixtures/engine.ts';
import { MemoryStore } from '../../fixtures/memory-store.ts';

const BUCKET = 'b';
const JOB = 'job-1';

async function depsOf(invoker: ScriptedInvoker, status: Partial<JobStatus> = {}) {
  const store = new MemoryStore();
  await writeJson(store, BUCKET, jobKeys(JOB).status, {
    jobId: JOB,
    job: 'x',
    status: 'RUNNING',
    input: 's3://b/i',
    createdAt: '2026-01-01T00:00:00.000Z',
    chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
    records: 0,
    bytes: 0,
    epoch: 1,
    ...status,
  } satisfies JobStatus);
  const clock = new ManualClock();
  const runs: unknown[] = [];
  const deps: EngineDeps = {
    store,
    invoker,
    clock,
    bucket: BUCKET,
    jobId: JOB,
    epoch: 1,
    fresh: false,
    concurrency: 3,
    maxAttempts: 2,
    tolerated: 0,
    billing: new Billing(clock, 1024),
    every: () => ({ stop: () => undefined }),
    sleep: async () => undefined,
    tick: async () => undefined,
    onRun: (run) => runs.push(run),
  };
  return { store, deps, runs, status: () => readStatus(store, BUCKET, JOB) };
}

describe('runTasks', () => {
  it('runs the tasks left, retries, and writes the final progress', async () => {
    const invoker = new ScriptedInvoker((p, n) =>
      n === 0 ? new FunctionError('worker', 'Error', 'flaky') : { records: p.index },
    );
    const { deps, runs, status } = await depsOf(invoker);
    const kind = kindOf(6, { finished: [0, 4] });
    expect(await runTasks(kind, deps)).toEqual({ reason: 'done', dispatched: 4 });
    expect(invoker.calls.map((c) => c.payload.index).sort()).toEqual([1, 1, 2, 3, 5]);
    expect(runs).toEqual([{ dispatched: 4, retries: 1, throttles: 0 }]);
    expect(await status()).toMatchObject({
      chunks: { total: 6, pending: 0, running: 0, succeeded: 6, failed: 0 },
      records: 2 + 1 + 2 + 3 + 5, // two loaded from outcomes (1 each), then indexes 1, 2, 3, 5
      bytes: 600,
    });
    expect(deps.billing.usage.lambdaRequests).toBe(5);
  });

  it('ends failed with the failing task’s error past the tolerance', async () => {
    const invoker = new ScriptedInvoker((p) =>
      p.index === 1 ? new FunctionError('worker', 'BadRecordError', 'line 9') : { records: 1 },
    );
    const { deps, status } = await depsOf(invoker);
    const end = await runTasks(kindOf(3), { ...deps, concurrency: 1 });
    expect(end).toMatchObject({ reason: 'failed', dispatched: 2 });
    expect(String((end as { error: unknown }).error)).toMatch(/task 1 failed: .*BadRecordError/);
    expect((await status()).chunks).toMatchObject({ succeeded: 1, failed: 1, pending: 1 });
  });

  it('dispatches nothing for a job cancelled before it ran', async () => {
    const invoker = new ScriptedInvoker();
    const { deps } = await depsOf(invoker, { cancelRequested: true });
    expect(await runTasks(kindOf(4), deps)).toEqual({ reason: 'cancelled', dispatched: 0 });
    expect(invoker.calls).toHaveLength(0);
  });

  it('writes nothing once a newer run owns the job', async () => {
    const invoker = new ScriptedInvoker();
    const { deps, status } = await depsOf(invoker, { epoch: 2 });
    expect(await runTasks(kindOf(4), deps)).toEqual({ reason: 'superseded', dispatched: 0 });
    expect((await status()).chunks.total).toBe(0);
  });

  it('hands over when time runs short, after dispatching at least one task', async () => {
    const invoker = new ScriptedInvoker();
    const { deps } = await depsOf(invoker);
    const end = await runTasks(kindOf(5), { ...deps, concurrency: 1, shortOfTime: () => true });
    expect(end).toEqual({ reason: 'continue', dispatched: 1 });
  });

  it('opens no more lanes than tasks, nor than the invocation cap', async () => {
    const invoker = new ScriptedInvoker(() => 'hold');
    const { deps } = await depsOf(invoker);
    const run = runTasks(kindOf(10), { ...deps, concurrency: 8, maxInvocations: 2 });
    await new Promise((r) => setTimeout(r, 10));
    expect(invoker.inFlight).toBe(2);
    for (let i = 0; i < 10 && invoker.inFlight > 0; i++) {
      for (const call of invoker.calls.splice(0)) call.answer({ records: 1 });
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(await run).toEqual({ reason: 'done', dispatched: 10 });
  });
});

describe('runTasks: splitting a task that ran out of memory or time', () => {
  /**
   * A kind whose tasks are byte ranges: one bigger than `fits` runs out of memory, and a split
   * halves it, down to one byte. The records are the ranges, so the test can check the parts
   * cover each task exactly.
   */
  function rangesKind(sizes: number[], fits: number) {
    const kind = kindOf(sizes.length);
    const ranges = new Map<number, [number, number]>();
    let at = 0;
    for (const [i, size] of sizes.entries()) {
      ranges.set(i, [at, at + size]);
      at += size;
    }
    const writes: number[][] = [];
    kind.size = (i) => {
      const [a, b] = ranges.get(i)!;
      return b - a;
    };
    kind.split = async (index) => {
      const [a, b] = ranges.get(index)!;
      if (b - a < 2) throw kind.failure(index, new Error(`${b - a} byte at ${a} is too big`));
      const mid = Math.floor((a + b) / 2);
      const parts = [
        [a, mid],
        [mid, b],
      ].map(([from, to]) => {
        const part = kind.records.length;
        kind.records.push({ index: part, attempts: 0, from: index });
        ranges.set(part, [from!, to!]);
        return part;
      });
      kind.records[index]!.split = parts;
      writes.push(parts);
      return parts;
    };
    const invoker = new ScriptedInvoker((p) => {
      const [a, b] = ranges.get(p.index)!;
      return b - a > fits
        ? new FunctionError('worker', 'Runtime.OutOfMemory', 'out of memory')
        : { records: b - a };
    });
    return { kind, ranges, invoker, writes };
  }

  it('splits instead of retrying, recursively, and the parts in input order cover each task once', async () => {
    const { kind, ranges, invoker, writes } = rangesKind([10, 40, 5], 12);
    const { deps, runs, status } = await depsOf(invoker);
    expect(await runTasks(kind, deps)).toMatchObject({ reason: 'done' });
    // 40 → 20 + 20 → 10 + 10 + 10 + 10: two levels, three splits, no retries, no failure.
    expect(writes).toHaveLength(3);
    expect(runs).toEqual([{ dispatched: 9, retries: 0, throttles: 0 }]);
    const order = taskOrder(kind.records);
    expect(order.map((i) => ranges.get(i))).toEqual([
      [0, 10],
      [10, 20],
      [20, 30],
      [30, 40],
      [40, 50],
      [50, 55],
    ]);
    expect(kind.records[1]).toMatchObject({ split: [3, 4], attempts: 1 });
    expect(kind.records[1]?.failed).toBeUndefined();
    // The split tasks are not counted; their parts are, and every record was read once.
    expect(await status()).toMatchObject({
      chunks: { total: 6, pending: 0, running: 0, succeeded: 6, failed: 0 },
      records: 55,
      bytes: 55,
    });
  });

  it('fails the task with its own failure once it cannot be split, within the tolerance or not', async () => {
    const { kind, invoker } = rangesKind([4, 1], 0);
    const { deps, status } = await depsOf(invoker);
    const end = await runTasks(kind, { ...deps, concurrency: 1 });
    expect(end).toMatchObject({ reason: 'failed' });
    expect(String((end as { error: unknown }).error)).toMatch(/1 byte at 0 is too big/);
    expect((await status()).chunks).toMatchObject({ failed: 1 });
  });

  it('on a later run, runs the parts of a split task and not the task', async () => {
    const { kind, ranges, invoker } = rangesKind([30], 100);
    ranges.set(1, [0, 15]).set(2, [15, 30]);
    kind.records.push({ index: 1, attempts: 0, from: 0 }, { index: 2, attempts: 0, from: 0 });
    kind.records[0]!.split = [1, 2];
    const { deps, status } = await depsOf(invoker);
    expect(await runTasks(kind, deps)).toMatchObject({ reason: 'done', dispatched: 2 });
    expect(invoker.calls.map((c) => c.payload.index).sort()).toEqual([1, 2]);
    expect((await status()).chunks).toMatchObject({ total: 2, succeeded: 2 });
  });
});
