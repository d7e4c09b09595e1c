/** The attempt ledger (the only writer of the tasks' records), billing, and loaded progress. */
import { describe, expect, it } from 'vitest';
import { FunctionError } from '#core/base/errors.ts';
import { Billing } from '#core/run/engine/billing.ts';
import { AttemptLedger } from '#core/run/engine/ledger.ts';
import { loadProgress } from '#core/run/engine/progress.ts';
import { kindOf, ManualClock, records } from '../../fixtures/engine.ts';

describe('AttemptLedger', () => {
  it('numbers attempts and never reuses a number a later attempt took', () => {
    const tasks = records(2);
    const ledger = new AttemptLedger(tasks, new ManualClock());
    expect(ledger.number(0)).toBe(1);
    expect(ledger.number(0)).toBe(2);
    ledger.unnumber(0, 2); // attempt 2 was throttled: its number is given back
    expect(ledger.number(0)).toBe(2);
    const backup = ledger.number(0); // 3: a backup took a number meanwhile
    ledger.unnumber(0, 2); // attempt 2 throttled again: 3 stays taken
    expect(backup).toBe(3);
    expect(ledger.attempts(0)).toBe(3);
    expect(tasks[1]?.attempts).toBe(0);
  });

  it('notes failures, errors, lost attempts, backups and the end of a task', () => {
    const clock = new ManualClock(5_000);
    const tasks = records(1);
    const ledger = new AttemptLedger(tasks, clock);
    ledger.failed(0, { attempt: 1, dispatchedAt: 10 }, { throttled: true });
    ledger.error(0, new FunctionError('worker', 'Error', 'boom'));
    ledger.failed(0, { attempt: 2, dispatchedAt: 20 }, { error: 'boom' });
    ledger.backupStarted(0);
    ledger.backupStarted(0);
    ledger.backupRequeued(0);
    ledger.lost(0, { attempt: 3, dispatchedAt: 30 }, true);
    ledger.lost(0, { attempt: 2, dispatchedAt: 20 }, false, 99);
    ledger.backupWon(0);
    ledger.succeeded(0, 1234);
    const endedAt = Date.parse(clock.iso());
    expect(tasks[0]).toMatchObject({
      index: 0,
      failures: [
        { attempt: 1, dispatchedAt: 10, endedAt, throttled: true },
        { attempt: 2, dispatchedAt: 20, endedAt, error: 'boom' },
      ],
      errors: [{ code: 'FUNCTION_ERROR', message: 'worker failed: Error: boom' }],
      backups: 1,
      lost: [
        { attempt: 3, dispatchedAt: 30, backup: true },
        { attempt: 2, dispatchedAt: 20, endedAt: 99 },
      ],
      backupWon: true,
      durationMs: 1234,
    });
    expect(tasks[0]?.lost?.[0]).not.toHaveProperty('endedAt');
  });

  it('reopens a task the last run failed for good', () => {
    const tasks = records(2);
    const ledger = new AttemptLedger(tasks, new ManualClock());
    ledger.failedForGood(1);
    expect(tasks[1]?.failed).toBe(true);
    ledger.reopen();
    expect(tasks[1]).not.toHaveProperty('failed');
  });
});

describe('Billing', () => {
  it('adds reported usage, or bills the measured duration at the function memory', () => {
    const clock = new ManualClock(2_000);
    const billing = new Billing(clock, 2048);
    billing.charge(500); // ran 1.5 s at 2 GB
    billing.charge(0, {
      lambdaGbSeconds: 0.25,
      lambdaRequests: 1,
      s3Requests: { get: 3, put: 1, list: 0 },
      apiRequests: 0,
    });
    expect(billing.usage).toEqual({
      lambdaGbSeconds: 3.25,
      lambdaRequests: 2,
      s3Requests: { get: 3, put: 1, list: 0 },
      apiRequests: 0,
    });
  });
});

describe('loadProgress', () => {
  it('runs every task of a fresh job without reading outcomes', async () => {
    const kind = kindOf(4, { finished: [1] });
    kind.finished = () => {
      throw new Error('a fresh job reads no outcome');
    };
    const { todo, counts } = await loadProgress(kind, true);
    expect(todo).toEqual([0, 1, 2, 3]);
    expect(counts).toEqual({ succeeded: 0, failed: 0, running: 0, records: 0, bytes: 0 });
  });

  it('counts the tasks an earlier run finished and leaves the rest, in index order', async () => {
    const { todo, counts } = await loadProgress(kindOf(5, { finished: [3, 0] }), false);
    expect(todo).toEqual([1, 2, 4]);
    expect(counts).toEqual({ succeeded: 2, failed: 0, running: 0, records: 2, bytes: 200 });
  });
});
