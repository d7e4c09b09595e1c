/**
 * Lambda client construction. The coordinator does its own retries (with backoff and jitter,
 * counting attempts per chunk), so the SDK's retries are off: they would hide throttles and
 * double-count attempts. Sockets are kept alive and are not capped below the job's concurrency:
 * the coordinator bounds the requests in flight itself.
 */
import { LambdaClient } from '@aws-sdk/client-lambda';
import { type KeepAliveAgents, keepAliveAgents } from './agents.ts';
import { keepAliveHandler } from './http.ts';

/** Options of {@link createLambdaClient}. */
export interface LambdaClientOptions {
  /** A Lambda endpoint such as the local server's; AWS when absent. */
  endpoint?: string;
  /** @default 'us-east-1' with an endpoint, else the SDK's region resolution */
  region?: string;
  /**
   * Sockets per host, when `agents` is not given. A cap below the concurrency of a job would
   * silently shrink its pool, so the default is no cap. @default Infinity
   */
  maxSockets?: number;
  /** Agents to share with other clients (see {@link LambdaInvoker}); overrides `maxSockets`. */
  agents?: KeepAliveAgents;
  /**
   * An invocation not answered within this many milliseconds fails with a `TimeoutError`.
   * @default none (Lambda ends a function at its own timeout of at most 15 minutes)
   */
  requestTimeoutMs?: number;
  /**
   * Static credentials, for a client of the local runtime's own. @default the SDK's chain, or
   * dummy ones against a local endpoint when the environment has none
   */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/**
 * Creates a Lambda client for RequestResponse and Event invocations.
 *
 * `cacheMiddleware` is on: the SDK then builds the middleware chain once per command type
 * instead of once per call, which measured about 30% more invocations per second from one
 * coordinator (bench/dispatch.ts). It applies to `send` calls without per-call options, which is
 * why deadlines live in the request handler (`requestTimeoutMs`) rather than in an abort signal.
 */
export function createLambdaClient(options: LambdaClientOptions = {}): LambdaClient {
  const agents = options.agents ?? keepAliveAgents(options.maxSockets ?? Number.POSITIVE_INFINITY);
  const requestHandler = keepAliveHandler(
    agents,
    options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs },
  );
  const hasCredentials = process.env.AWS_ACCESS_KEY_ID !== undefined;
  const client = new LambdaClient({
    requestHandler,
    maxAttempts: 1,
    cacheMiddleware: true,
    ...(options.region !== undefined && { region: options.region }),
    ...(options.endpoint !== undefined && {
      endpoint: options.endpoint,
      region: options.region ?? 'us-east-1',
      ...(options.credentials !== undefined
        ? { credentials: options.credentials }
        : !hasCredentials && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
    }),
  });
  useStaticUserAgent(client);
  return client;
}

/** What fanout's invocations say they are: the same on every request. */
const USER_AGENT = `fanout aws-sdk-js md/nodejs#${process.versions.node} os/${process.platform}`;

/**
 * Replaces the SDK's user-agent middleware, which rebuilds and escapes the same string on every
 * request (about a tenth of one coordinator's CPU per invocation, bench/dispatch.ts), with a
 * constant header. Lambda needs no particular user agent; the SDK's feature codes in it are
 * telemetry.
 */
function useStaticUserAgent(client: LambdaClient): void {
  client.middlewareStack.remove('getUserAgentMiddleware');
  client.middlewareStack.add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers !== undefined) request.headers['user-agent'] = USER_AGENT;
      return next(args);
    },
    { name: 'fanoutUserAgentMiddleware', step: 'build', priority: 'low' },
  );
}
