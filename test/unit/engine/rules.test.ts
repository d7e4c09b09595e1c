/**
 * The engine's pure rules: the stop signal, the ownership rule, and what a failed attempt means
 * (retryDecision, as a table).
 */
import { describe, expect, it } from 'vitest';
import { FunctionError, InvocationTimeoutError, ThrottledError } from '#core/base/errors.ts';
import type { JobStatus } from '#core/model/documents.ts';
import { ownership } from '#core/run/engine/ownership.ts';
import {
  DETERMINISTIC,
  type RetryContext,
  type RetryDecision,
  retryDecision,
} from '#core/run/engine/retry.ts';
import { Stop } from '#core/run/engine/stop.ts';

describe('Stop', () => {
  it('keeps the first reason asked, until the run fails past its tolerance', () => {
    const stop = new Stop();
    expect(stop.stopped).toBe(false);
    stop.request('continue');
    stop.request('cancelled');
    expect(stop.reason).toBe('continue');
    stop.fail();
    expect(stop.reason).toBe('failed');
    stop.request('superseded');
    expect(stop.reason).toBe('failed');
    expect(stop.stopped).toBe(true);
  });
});

describe('ownership', () => {
  const status = (s: Partial<JobStatus>): JobStatus =>
    ({ jobId: 'j', job: 'x', status: 'RUNNING', epoch: 2, ...s }) as JobStatus;

  it.each([
    [{}, 2, 'owned'],
    [{ cancelRequested: true }, 2, 'cancel-requested'],
    [{}, 1, 'superseded'], // a newer run raised the epoch
    [{}, 3, 'superseded'], // status.json was rewritten under this run
    [{ cancelRequested: true }, 1, 'superseded'], // a newer run acknowledges the cancel
    [{ status: 'SUCCEEDED' as const }, 2, 'superseded'],
    [{ status: 'CANCELLED' as const, cancelRequested: true }, 2, 'superseded'],
    [{ status: 'FAILED' as const }, 2, 'superseded'],
    [{ status: 'QUEUED' as const }, 2, 'owned'],
  ])('status %o seen by the run of epoch %i: %s', (s, epoch, expected) => {
    expect(ownership(status(s), epoch)).toBe(expected);
  });
});

describe('retryDecision', () => {
  const base = {
    ownThrottle: false,
    throttled: 0,
    maxThrottled: 50,
    attempt: 1,
    maxAttempts: 3,
    failing: false,
  };
  const throttle = new ThrottledError('worker');
  const transient = new FunctionError('worker', 'Error', 'socket hang up');
  const timeout = new InvocationTimeoutError('worker', 1000);
  const oom = new FunctionError('worker', 'Runtime.OutOfMemory', 'Runtime exited: out of memory');
  const lambdaTimeout = new FunctionError(
    'worker',
    'Sandbox.Timedout',
    'Task timed out after 2.00 seconds',
  );
  /** What a worker reports when a job's own code threw a TypeError. */
  const jobCodeError = (what: string) => new FunctionError('worker', 'TypeError', `job ${what}`);

  const table: [string, unknown, Partial<RetryContext>, RetryDecision][] = [
    ['own throttle', throttle, { ownThrottle: true }, 'own-throttle'],
    [
      'own throttle, even past the throttle limit',
      throttle,
      { ownThrottle: true, throttled: 50 },
      'own-throttle',
    ],
    ['other throttle, under the limit', throttle, { throttled: 49 }, 'throttle'],
    ['other throttle, on its last attempt', throttle, { attempt: 3 }, 'throttle'],
    ['other throttle, at the limit, attempts left', throttle, { throttled: 50 }, 'retry'],
    ['other throttle, at the limit, last attempt', throttle, { throttled: 50, attempt: 3 }, 'fail'],
    ['transient error', transient, {}, 'retry'],
    ['timeout', timeout, { attempt: 2 }, 'retry'],
    ['transient error, last attempt', transient, { attempt: 3 }, 'fail'],
    ['transient error, job failing', transient, { failing: true }, 'fail'],
    ['plain Error', new Error('boom'), {}, 'retry'],
    [
      'the job code threw, first attempt',
      jobCodeError('map threw on the record at byte 0'),
      {},
      'retry',
    ],
    [
      'the job code threw, second attempt',
      jobCodeError('map threw on the record at byte 0'),
      { attempt: 2, maxAttempts: 8 },
      'fail',
    ],
    [
      'the job code threw, second attempt, of a job that asks for three',
      jobCodeError('map threw on the record at byte 0'),
      { attempt: 2, jobCodeAttempts: 3 },
      'retry',
    ],
    [
      'the job code threw, third attempt, of a job that asks for three',
      jobCodeError('map threw on the record at byte 0'),
      { attempt: 3, maxAttempts: 8, jobCodeAttempts: 3 },
      'fail',
    ],
    [
      'the job reduce threw, second attempt',
      jobCodeError('reduce.merge threw: x'),
      { attempt: 2 },
      'fail',
    ],
    [
      'a TypeError that is not the job code, second attempt',
      new FunctionError('worker', 'TypeError', 'fanout broke'),
      { attempt: 2 },
      'retry',
    ],
    ['out of memory, a kind that splits', oom, { splittable: true }, 'split'],
    ['out of memory, even on the last attempt', oom, { splittable: true, attempt: 3 }, 'split'],
    ['out of memory, a kind that cannot split', oom, {}, 'retry'],
    ['out of memory, job failing', oom, { splittable: true, failing: true }, 'fail'],
    ['Lambda timed out, a kind that splits', lambdaTimeout, { splittable: true }, 'split'],
    ['unanswered past the timeout, a kind that splits', timeout, { splittable: true }, 'split'],
    [
      'a heap exhausted on Lambda (the process aborted)',
      new FunctionError(
        'worker',
        'Runtime.ExitError',
        'Error: Runtime exited with error: signal: aborted',
      ),
      { splittable: true },
      'split',
    ],
    [
      'a process that exited with a status of its own',
      new FunctionError(
        'worker',
        'Runtime.ExitError',
        'Error: Runtime exited with error: exit status 1',
      ),
      { splittable: true },
      'retry',
    ],
    ['a transient error, a kind that splits', transient, { splittable: true }, 'retry'],
  ];
  for (const type of DETERMINISTIC) {
    table.push([type, new FunctionError('worker', type, 'no'), {}, 'fail']);
  }

  it.each(table)('%s → %s', (_name, error, context, expected) => {
    expect(retryDecision(error, { ...base, ...context })).toBe(expected);
  });

  it('names the deterministic errors that a retry cannot mend', () => {
    expect([...DETERMINISTIC].sort()).toEqual([
      'AccessDeniedError',
      'BadRecordError',
      'CorruptInputError',
      'DatasetChangedError',
      'NotFoundError',
      'ValidationError',
    ]);
  });
});
