/** The task runner: one task's attempts, with retries as retryDecision says. */
import { describe, expect, it } from 'vitest';
import { FunctionError, ThrottledError } from '#core/base/errors.ts';
import { NOT_RETRIED, TaskRunner } from '#core/run/engine/runner.ts';
import { contextOf, kindOf, ScriptedInvoker } from '../../fixtures/engine.ts';

const transient = () => new FunctionError('worker', 'Error', 'socket hang up');

/** A runner whose invoker answers call n with answers[n] (and then a success). */
function runnerOf(answers: (Error | 'ok')[], options: Parameters<typeof contextOf>[2] = {}) {
  const invoker = new ScriptedInvoker((_p, n) => {
    const answer = answers[n] ?? 'ok';
    return answer === 'ok' ? { records: 7 } : answer;
  });
  const sleeps: number[] = [];
  const ctx = contextOf(kindOf(3, { size: 50 }), invoker, { sleeps, ...options });
  return { ctx, invoker, sleeps, runner: new TaskRunner(ctx, undefined) };
}

describe('TaskRunner', () => {
  it('counts the first result: records, bytes, and the time the task took', async () => {
    const { ctx, runner, invoker } = runnerOf([]);
    await runner.run(1);
    expect(invoker.calls.map((c) => c.payload)).toMatchObject([{ index: 1, attempt: 1 }]);
    expect(ctx.counts).toMatchObject({ records: 7, bytes: 50 });
    expect(ctx.kind.records[1]).toMatchObject({ attempts: 1, durationMs: 0 });
  });

  it('retries a transient error after a backoff, numbering the next attempt', async () => {
    const { ctx, runner, invoker, sleeps } = runnerOf([transient(), transient()]);
    await runner.run(0);
    expect(invoker.calls.map((c) => c.payload.attempt)).toEqual([1, 2, 3]);
    expect(ctx.counters.retries).toBe(2);
    expect(sleeps).toHaveLength(2);
    expect(ctx.kind.records[0]?.failures).toHaveLength(2);
    expect(ctx.kind.records[0]?.errors).toHaveLength(2);
  });

  it('fails the task once its attempts are used, with the kind’s failure', async () => {
    const { ctx, runner } = runnerOf([transient(), transient(), transient()]);
    await expect(runner.run(2)).rejects.toThrow(
      'task 2 failed: worker failed: Error: socket hang up',
    );
    expect(ctx.kind.records[2]?.attempts).toBe(3);
  });

  it('fails a deterministic error at once', async () => {
    const { runner, invoker } = runnerOf([new FunctionError('worker', 'BadRecordError', 'line 3')]);
    await expect(runner.run(0)).rejects.toThrow(/BadRecordError/);
    expect(invoker.calls).toHaveLength(1);
  });

  it('spends no attempt on throttles: their numbers are given back', async () => {
    const throttles = Array.from({ length: 5 }, () => new ThrottledError('worker', 2));
    const { ctx, runner, invoker, sleeps } = runnerOf(throttles, { maxAttempts: 1 });
    await runner.run(0);
    expect(invoker.calls.map((c) => c.payload.attempt)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(ctx.counters).toMatchObject({ throttles: 5, retries: 0 });
    expect(ctx.kind.records[0]?.failures?.every((f) => f.throttled)).toBe(true);
    // Lambda asked for 2 s: no wait is shorter.
    expect(Math.min(...sleeps)).toBeGreaterThanOrEqual(2000);
  });

  it('counts throttles as failures past the throttle limit', async () => {
    const throttles = Array.from({ length: 10 }, () => new ThrottledError('worker'));
    const { runner, invoker } = runnerOf(throttles, { maxAttempts: 2, maxThrottled: 3 });
    await expect(runner.run(0)).rejects.toThrow(/concurrency limit/);
    // Three throttles given back, then two attempts spent on throttles.
    expect(invoker.calls.map((c) => c.payload.attempt)).toEqual([1, 1, 1, 1, 2]);
  });

  it('starts no retry once the job is cancelled: the task is left for a later run', async () => {
    const { ctx, runner, invoker } = runnerOf([transient()]);
    ctx.sleep = async () => {
      ctx.stop.request('cancelled');
    };
    await expect(runner.run(0)).rejects.toBe(NOT_RETRIED);
    expect(invoker.calls).toHaveLength(1);
  });

  it('still retries when the run only stops for a continuation', async () => {
    const { ctx, runner, invoker } = runnerOf([transient()]);
    ctx.sleep = async () => {
      ctx.stop.request('continue');
    };
    await runner.run(0);
    expect(invoker.calls).toHaveLength(2);
  });
});
