/**
 * Every error fanout raises on purpose is a {@link FanoutError} with a stable `code`, so callers
 * (the CLI's exit codes, the coordinator's retry decision, later the api handler's HTTP status)
 * branch on the code and never on message text.
 */

/** Context carried by an error: the ids and offsets a person needs to find the failing piece. */
export type ErrorContext = Record<string, string | number | boolean | undefined>;

/** The base of every deliberate fanout error. */
export class FanoutError extends Error {
  /** Stable, machine-readable error code, e.g. `BAD_RECORD`. */
  readonly code: string;
  /** Ids and offsets that locate the failure (job id, chunk index, key, byte offset). */
  readonly context: ErrorContext;

  constructor(
    code: string,
    message: string,
    options: { cause?: unknown; context?: ErrorContext } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = options.context ?? {};
  }
}

/** Bad input from a user: flags, params, a request. Never retried; a 4xx / exit code 2. */
export class ValidationError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('VALIDATION', message, options);
  }
}

/** An object, job or function that does not exist. */
export class NotFoundError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('NOT_FOUND', message, options);
  }
}

/**
 * A request the caller's permissions refuse (S3's or Lambda's AccessDenied): a missing grant in
 * the deployment, the same on every attempt.
 */
export class AccessDeniedError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('ACCESS_DENIED', message, options);
  }
}

/** A conditional write (If-None-Match / If-Match) lost: someone else wrote first. */
export class PreconditionFailedError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('PRECONDITION_FAILED', message, options);
  }
}

/**
 * A pinned input object changed (overwritten or deleted) after the coordinator planned the job.
 * Deterministic: retrying cannot help, and mixing versions would produce a wrong result.
 */
export class DatasetChangedError extends FanoutError {
  constructor(key: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(
      'DATASET_CHANGED',
      `input object ${key} changed while the job ran (its ETag / VersionId no longer matches the one pinned at planning); rerun the job on the new data`,
      { ...options, context: { key, ...options.context } },
    );
  }
}

/** An input object whose encoding is broken (a corrupt gzip): the same on every attempt. */
export class CorruptInputError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('CORRUPT_INPUT', message, options);
  }
}

/** A record that does not parse under the job's format, with `onBadRecord: 'fail'`. */
export class BadRecordError extends FanoutError {
  constructor(
    message: string,
    options: { cause?: unknown; context?: ErrorContext & { offset: number; snippet: string } },
  ) {
    super('BAD_RECORD', message, options);
  }
}

/**
 * An error thrown by a job's own code (its map, key or reduce): the user's bug. It keeps the
 * original's name (TypeError, RangeError…), so the job's error reads as the user's code threw
 * it, and its message says which part of the job threw and where ({@link JOB_CODE_MESSAGE}). It
 * fails the same way on every attempt, so the engine retries it once at most (retry.ts).
 */
export class JobCodeError extends FanoutError {
  constructor(original: unknown, message: string, context: ErrorContext = {}) {
    super('JOB_CODE', message, { cause: original, context });
    this.name = original instanceof Error && original.name !== '' ? original.name : 'Error';
  }
}

/** How a {@link JobCodeError}'s message begins: which part of the job threw. */
export const JOB_CODE_MESSAGE =
  /^job (map|key|orderBy|reduce\.(add|merge|finish)|rank\.(by|top)) (threw|returned)\b/;

/** A function invocation ended in a function error (the handler threw, or timed out). */
export class FunctionError extends FanoutError {
  /** Lambda's `errorType`, e.g. `BadRecordError` or `Sandbox.Timedout`. */
  readonly errorType: string;
  /** Lambda's `errorMessage`, as the function threw it. */
  readonly errorMessage: string;
  constructor(
    functionName: string,
    errorType: string,
    errorMessage: string,
    options: { cause?: unknown; context?: ErrorContext } = {},
  ) {
    super('FUNCTION_ERROR', `${functionName} failed: ${errorType}: ${errorMessage}`, {
      ...options,
      context: { functionName, errorType, ...options.context },
    });
    this.errorType = errorType;
    this.errorMessage = errorMessage;
  }
}

/** The function's concurrency limit is reached (Lambda's 429 TooManyRequestsException). */
export class ThrottledError extends FanoutError {
  /** Seconds Lambda asks the caller to wait, when it says. */
  readonly retryAfterSeconds: number | undefined;
  constructor(functionName: string, retryAfterSeconds?: number, options: { cause?: unknown } = {}) {
    super('THROTTLED', `${functionName} is at its concurrency limit (TooManyRequestsException)`, {
      ...options,
      context: { functionName, retryAfterSeconds },
    });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** An invocation that neither answered nor failed within its deadline. Retryable. */
export class InvocationTimeoutError extends FanoutError {
  constructor(functionName: string, timeoutMs: number, options: { cause?: unknown } = {}) {
    super(
      'INVOCATION_TIMEOUT',
      `${functionName} did not answer within ${Math.round(timeoutMs / 1000)} s`,
      {
        ...options,
        context: { functionName, timeoutMs },
      },
    );
  }
}

/** A request that conflicts with the job's state (cancel a finished job, redrive a running one). */
export class ConflictError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('CONFLICT', message, options);
  }
}

/** A job that ended FAILED; `context.jobId` names it. */
export class JobFailedError extends FanoutError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super('JOB_FAILED', message, options);
  }
}

/** Serialisable form of an error, as stored in status.json and chunk outcomes. */
export interface ErrorInfo {
  code: string;
  name: string;
  message: string;
  context?: ErrorContext;
}

/** Turns anything thrown into an {@link ErrorInfo}; unknown errors get code `INTERNAL`. */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof FanoutError) {
    return { code: error.code, name: error.name, message: error.message, context: error.context };
  }
  if (error instanceof Error) return { code: 'INTERNAL', name: error.name, message: error.message };
  return { code: 'INTERNAL', name: 'Error', message: String(error) };
}
