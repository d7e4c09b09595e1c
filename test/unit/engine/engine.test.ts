/**
 * runTasks as a whole, over a kind of task that is not a map chunk: the pieces wired, progress
 * in status.json, and each way a run ends.
 */
import { describe, expect, it } from 'vitest';
import { FunctionError } from '#core/base/errors.ts';
import type { JobStatus } from '#core/model/documents.ts';
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
