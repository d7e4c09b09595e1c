/**
 * Lambda client construction. The coordinator does its own retries (with backoff and jitter,
 * counting attempts per chunk), so the SDK's retries are off: they would hide throttles and
 * double-count attempts. Sockets are kept alive and plentiful: one socket per chunk in flight.
 */
import { LambdaClient } from '@aws-sdk/client-lambda';
import { keepAliveHandler } from './http.ts';

/** Options of {@link createLambdaClient}. */
export interface LambdaClientOptions {
  /** A Lambda endpoint such as the local server's; AWS when absent. */
  endpoint?: string;
  region?: string;
  /** Sockets per host; at least the job's concurrency. @default 256 */
  maxSockets?: number;
}

/** Creates a Lambda client for RequestResponse invocations of up to 15 minutes. */
export function createLambdaClient(options: LambdaClientOptions = {}): LambdaClient {
  const maxSockets = options.maxSockets ?? 256;
  // A worker may run for Lambda's maximum of 15 minutes; leave room for the response.
  const requestHandler = keepAliveHandler(maxSockets, 16 * 60 * 1000);
  const hasCredentials = process.env.AWS_ACCESS_KEY_ID !== undefined;
  return new LambdaClient({
    requestHandler,
    maxAttempts: 1,
    ...(options.region !== undefined && { region: options.region }),
    ...(options.endpoint !== undefined && {
      endpoint: options.endpoint,
      region: options.region ?? 'us-east-1',
      ...(!hasCredentials && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
    }),
  });
}
