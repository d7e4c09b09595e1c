/**
 * HTTP-shaped requests and responses for the api handler, independent of API Gateway's event
 * format (functions/api converts), and the one mapping from fanout errors to HTTP statuses.
 */

import { FanoutError } from '../base/errors.ts';
import type { Caller } from './owners.ts';

/** A request as the api core sees it. */
export interface ApiRequest {
  method: string;
  /** The path, without the query string, e.g. `/jobs/abc`. */
  path: string;
  query: Record<string, string | undefined>;
  /** The raw body text, if any. */
  body?: string;
  /** Echoed in 500 responses so a user can quote it; the detail goes to the log. */
  requestId: string;
  /** Who is asking, as the IAM authorizer named them (absent: `fanout dev` without --auth). */
  caller?: Caller;
}

/** A response as the api core produces it. */
export interface ApiResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A 4xx from the API: the status, a stable code and a message for the user. */
export class HttpError extends FanoutError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** HTTP status for fanout error codes a client caused. Anything else is a 500. */
const STATUS_BY_CODE: Record<string, number> = {
  VALIDATION: 400,
  NOT_FOUND: 404,
  PRECONDITION_FAILED: 409,
  CONFLICT: 409,
  DATASET_CHANGED: 409,
};

/** JSON response helper. */
export function json(
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): ApiResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(value),
  };
}

/**
 * The one place errors become HTTP: a client's mistake is a 4xx with its message; anything else
 * is a generic 500 with the request id, and the detail goes to `log`.
 */
export function errorResponse(
  error: unknown,
  requestId: string,
  log: (message: string, detail: unknown) => void,
): ApiResponse {
  if (error instanceof HttpError) {
    return json(error.status, { error: { code: error.code, message: error.message } });
  }
  if (error instanceof FanoutError && STATUS_BY_CODE[error.code] !== undefined) {
    return json(STATUS_BY_CODE[error.code] as number, {
      error: { code: error.code, message: error.message },
    });
  }
  log(`request ${requestId} failed`, error);
  return json(500, {
    error: {
      code: 'INTERNAL',
      message: `internal error; quote request id ${requestId} when reporting it`,
      requestId,
    },
  });
}
