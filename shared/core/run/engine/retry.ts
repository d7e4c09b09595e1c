/**
 * What to do when an attempt fails, as a pure decision over the error and the attempt's place,
 * so that the rules read as a table (and are tested as one):
 *
 * | the error | decision |
 * |---|---|
 * | a throttle the job's own invocations caused | try again at once, when one of them ends |
 * | any other throttle, fewer than the limit so far | try again after a backoff; no attempt used |
 * | out of memory or time, the kind can split, the job not failing | split the task in smaller ones |
 * | a deterministic error (bad input, access denied, …) | fail the task |
 * | the job's own code threw (a JobCodeError), on a second attempt | fail the task |
 * | the task's last attempt, or the job is failing | fail the task |
 * | anything else | retry after a backoff |
 */
import {
  FunctionError,
  InvocationTimeoutError,
  JOB_CODE_MESSAGE,
  ThrottledError,
} from '../../base/errors.ts';

/**
 * Attempts for a task whose job code threw: the user's bug fails the same way each time, but one
 * retry covers what a sandbox may have done to it (memory, a stray global).
 */
export const JOB_CODE_ATTEMPTS = 2;

/**
 * Errors that fail the same way however often the task is retried, by the error type the
 * invoked function reports.
 */
export const DETERMINISTIC: ReadonlySet<string> = new Set([
  'AccessDeniedError',
  'BadRecordError',
  'CorruptInputError',
  'DatasetChangedError',
  'ValidationError',
  'NotFoundError',
]);

/**
 * Errors of a task that needed more memory or time than its function has: the same bytes would
 * fail the same way, so the task is split rather than retried. Lambda reports them as these
 * function error types (a Node heap exhausted on Lambda ends as a Runtime.ExitError of a killed
 * or aborted process); an invocation unanswered past the function's timeout is one as well.
 */
export function isOutOfMemoryOrTime(error: unknown): boolean {
  if (error instanceof InvocationTimeoutError) return true;
  if (!(error instanceof FunctionError)) return false;
  if (error.errorType === 'Runtime.OutOfMemory' || error.errorType === 'Sandbox.Timedout') {
    return true;
  }
  return (
    error.errorType === 'Runtime.ExitError' && /signal: (killed|aborted)/.test(error.errorMessage)
  );
}

/** Where an attempt failed. */
export interface RetryContext {
  /** The throttle was caused by the job's own invocations (see InvocationGate). */
  ownThrottle: boolean;
  /** Throttles of this task so far in this run, and the most allowed. */
  throttled: number;
  maxThrottled: number;
  /** This attempt's number within the run, and the attempts a task may use. */
  attempt: number;
  maxAttempts: number;
  /** Attempts of a task whose error came from the job's own code. @default JOB_CODE_ATTEMPTS */
  jobCodeAttempts?: number;
  /** The job is already failing past its tolerance. */
  failing: boolean;
  /** The task's kind can split a task that ran out of memory or time. */
  splittable?: boolean;
}

/** What to do next. */
export type RetryDecision = 'own-throttle' | 'throttle' | 'split' | 'retry' | 'fail';

/** The decision for a failed attempt (see the table above). */
export function retryDecision(error: unknown, context: RetryContext): RetryDecision {
  if (context.ownThrottle) return 'own-throttle';
  if (error instanceof ThrottledError && context.throttled < context.maxThrottled) {
    return 'throttle';
  }
  if (context.splittable === true && !context.failing && isOutOfMemoryOrTime(error)) return 'split';
  const deterministic = error instanceof FunctionError && DETERMINISTIC.has(error.errorType);
  const jobCode = error instanceof FunctionError && JOB_CODE_MESSAGE.test(error.errorMessage);
  if (jobCode && context.attempt >= (context.jobCodeAttempts ?? JOB_CODE_ATTEMPTS)) return 'fail';
  if (deterministic || context.attempt >= context.maxAttempts || context.failing) return 'fail';
  return 'retry';
}
