/**
 * What to do when an attempt fails, as a pure decision over the error and the attempt's place,
 * so that the rules read as a table (and are tested as one):
 *
 * | the error | decision |
 * |---|---|
 * | a throttle the job's own invocations caused | try again at once, when one of them ends |
 * | any other throttle, fewer than the limit so far | try again after a backoff; no attempt used |
 * | a deterministic error (bad input, access denied, …) | fail the task |
 * | the job's own code threw (a JobCodeError), on a second attempt | fail the task |
 * | the task's last attempt, or the job is failing | fail the task |
 * | anything else | retry after a backoff |
 */
import { FunctionError, JOB_CODE_MESSAGE, ThrottledError } from '../../base/errors.ts';

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
}

/** What to do next. */
export type RetryDecision = 'own-throttle' | 'throttle' | 'retry' | 'fail';

/** The decision for a failed attempt (see the table above). */
export function retryDecision(error: unknown, context: RetryContext): RetryDecision {
  if (context.ownThrottle) return 'own-throttle';
  if (error instanceof ThrottledError && context.throttled < context.maxThrottled) {
    return 'throttle';
  }
  const deterministic = error instanceof FunctionError && DETERMINISTIC.has(error.errorType);
  const jobCode = error instanceof FunctionError && JOB_CODE_MESSAGE.test(error.errorMessage);
  if (jobCode && context.attempt >= (context.jobCodeAttempts ?? JOB_CODE_ATTEMPTS)) return 'fail';
  if (deterministic || context.attempt >= context.maxAttempts || context.failing) return 'fail';
  return 'retry';
}
