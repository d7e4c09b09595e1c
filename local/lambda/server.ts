/**
 * The local Lambda server: the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
 * on 127.0.0.1, running each function's bundle in worker_threads sandboxes with Lambda's
 * semantics. This module holds its public shapes and wires three pieces: function-pool.ts (one
 * function's sandboxes: one invocation per sandbox at a time, warm ones reused, timeouts that
 * discard the sandbox, function errors as Lambda reports them), event-queue.ts (Event
 * invocations: queued, retried, then handed to a failure destination) and invoke-api.ts (the HTTP
 * API: 429 past a function's concurrency, payload limits, authorization, and the events sink).
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventQueue } from './event-queue.ts';
import { FunctionPool } from './function-pool.ts';
import { invokeHandler, type RegisteredFunction, sendError } from './invoke-api.ts';

/** One function the server runs. */
export interface FunctionSpec {
  name: string;
  /** Absolute path of the function's ESM bundle (see local/bundle.ts). */
  bundle: string;
  /** Exported handler name. @default 'handler' */
  handler?: string;
  /** Environment of the function's sandboxes (their own process.env). */
  env?: Record<string, string>;
  timeoutSeconds: number;
  /** Reserved concurrency: the most sandboxes, and so invocations in flight. */
  concurrency: number;
  /** The function's memory setting: what its context and environment report. @default 1024 */
  memoryMb?: number;
  /** Enforce `memoryMb` as each sandbox's heap limit. @default false */
  heapLimit?: boolean;
  /** Retries of a failed Event invocation (Lambda's MaximumRetryAttempts). @default 2 */
  retryAttempts?: number;
  /**
   * The on-failure destination of asynchronous invocations: called with Lambda's invocation
   * record (condition `RetriesExhausted`) once an Event invocation has failed its attempts.
   * On AWS the record goes to a function; locally to this callback. @default dropped
   */
  onFailure?: (record: FailureRecord) => void;
}

/** A request refused by `authorize`: status, AWS error type and message. */
export interface InvokeRefusal {
  ok: false;
  status: number;
  code: string;
  message: string;
}

/** An EventBridge PutEvents entry, as the events sink receives it. */
export interface EventEntry {
  Source?: string;
  DetailType?: string;
  Detail?: string;
  EventBusName?: string;
  Resources?: string[];
}

/** The record Lambda sends an on-failure destination (the fields fanout reads). */
export interface FailureRecord {
  version: '1.0';
  timestamp: string;
  requestContext: {
    requestId: string;
    functionArn: string;
    condition: 'RetriesExhausted';
    approximateInvokeCount: number;
  };
  requestPayload: unknown;
  responseContext: { statusCode: number; executedVersion: string; functionError: 'Unhandled' };
  responsePayload: { errorType: string; errorMessage: string };
}

/** Options of {@link startLambdaServer}. */
export interface LambdaServerOptions {
  functions?: FunctionSpec[];
  /** @default 0 (any free port) */
  port?: number;
  /**
   * Fault injection for chaos tests: the invocation fails this way instead of running. `event` is
   * the invocation's, for a test that aims a fault at one task.
   */
  faults?: (
    functionName: string,
    invocationType: string,
    event?: unknown,
  ) => 'error' | 'timeout' | 'throttle' | 'slow' | undefined;
  /**
   * Called as each invocation starts (after fault injection, before it runs), with its event:
   * what CloudTrail data events would show on AWS. Tests count invocations per chunk with it.
   */
  onInvoke?: (functionName: string, event: unknown, invocationType: string) => void;
  /** Receives what sandboxes print (console output). Default: dropped, like unread logs. */
  log?: (functionName: string, text: string) => void;
  /** Idle sandboxes are stopped after this long. @default 300_000 */
  idleMs?: number;
  /**
   * Authorizes every Invoke request as IAM would (local/iam/enforce.ts), given the function and
   * its ARN as named (qualifier included). A refusal is answered in Lambda's shape.
   * @default every request is allowed
   */
  authorize?: (
    req: IncomingMessage,
    functionName: string,
    functionArn: string,
  ) => InvokeRefusal | { ok: true };
  /**
   * The events sink: EventBridge's PutEvents (`X-Amz-Target: AWSEvents.PutEvents`) on this
   * server's endpoint, which the functions reach as AWS_ENDPOINT_URL_EVENTBRIDGE. `authorize`
   * sees the buses the entries name; `publish` gets the accepted entries. @default no sink
   */
  events?: {
    authorize: (req: IncomingMessage, buses: readonly string[]) => InvokeRefusal | { ok: true };
    publish: (entries: readonly EventEntry[]) => void;
  };
  /** The region and account of function ARNs. @default us-east-1, 000000000000 */
  region?: string;
  account?: string;
}

/** Counters of one function. */
export interface FunctionStats {
  invocations: number;
  coldStarts: number;
  throttles: number;
  timeouts: number;
  errors: number;
  sandboxes: number;
  busy: number;
  /** Event invocations waiting for a sandbox or for their retry. */
  queued: number;
}

/** A running local Lambda server. */
export interface LocalLambdaServer {
  /** `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_LAMBDA`. */
  endpoint: string;
  port: number;
  /** Adds or replaces a function (its sandboxes restart on next use). */
  register(spec: FunctionSpec): void;
  /**
   * Gives a function new code, as UpdateFunctionCode does: invocations from now on run `bundle`;
   * those under way finish on the old code, and queued events are kept.
   */
  updateCode(name: string, bundle: string, env?: Record<string, string>): void;
  /** Starts sandboxes ahead of demand, like provisioned concurrency. */
  prewarm(name: string, count: number): Promise<void>;
  stats(name: string): FunctionStats;
  /**
   * Queues an asynchronous invocation from inside the runtime (a schedule, a failure
   * destination), as an AWS service would make it: not through HTTP, so not authorized here;
   * the caller checks the permission the template gives it.
   */
  invokeEvent(name: string, event: unknown): void;
  /** Kills a function's sandboxes now; in-flight invocations fail like a crash. */
  terminateSandboxes(name: string): void;
  /**
   * Stops the server and its sandboxes. With `exiting`, the process is about to exit and the
   * sandboxes' threads end with it: they are not terminated one by one, which costs about
   * 35 ms of CPU each.
   */
  close(options?: { exiting?: boolean }): Promise<void>;
}

/** Starts the Invoke API server on 127.0.0.1. */
export async function startLambdaServer(
  options: LambdaServerOptions = {},
): Promise<LocalLambdaServer> {
  const functions = new Map<string, RegisteredFunction>();
  const idleMs = options.idleMs ?? 300_000;
  let closing = false;
  const region = options.region ?? 'us-east-1';
  const account = options.account ?? '000000000000';
  const arnOf = (name: string) => `arn:aws:lambda:${region}:${account}:function:${name}`;
  const hooks = {
    log: options.log,
    onInvoke: options.onInvoke,
    faults: options.faults,
    closing: () => closing,
  };

  const register = (spec: FunctionSpec) => {
    functions.get(spec.name)?.pool.stopAll();
    const pool = new FunctionPool(spec, hooks);
    functions.set(spec.name, {
      pool,
      events: new EventQueue(pool, {
        log: options.log,
        closing: hooks.closing,
        arn: arnOf(spec.name),
      }),
    });
  };
  for (const spec of options.functions ?? []) register(spec);
  const named = (name: string) => {
    const fn = functions.get(name);
    if (fn === undefined) throw new Error(`no function ${name}`);
    return fn;
  };
  const updateCode = (name: string, bundle: string, env?: Record<string, string>) =>
    named(name).pool.updateCode(bundle, env);

  // The most recently released sandbox is reused first (as Lambda tends to), so idle ones sit at
  // the bottom of each pool; one sweeper reaps them instead of a timer per invocation.
  const sweeper = setInterval(
    () => {
      const cutoff = performance.now() - idleMs;
      for (const fn of functions.values()) fn.pool.reap(cutoff);
    },
    Math.max(10, Math.min(idleMs / 4, 30_000)),
  );
  sweeper.unref();

  const handle = invokeHandler(functions, options, arnOf);
  const server = createServer((req, res) => {
    handle(req, res).catch((error: Error) => {
      if (!res.headersSent) sendError(res, 500, 'ServiceException', error.message);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    register,
    updateCode,
    prewarm: (name, count) => named(name).pool.prewarm(count),
    stats(name) {
      const fn = named(name);
      return { ...fn.pool.stats, queued: fn.events.queued };
    },
    invokeEvent: (name, event) => named(name).events.push(event),
    terminateSandboxes(name) {
      functions.get(name)?.pool.terminate();
    },
    async close(closeOptions = {}) {
      closing = true;
      clearInterval(sweeper);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (closeOptions.exiting === true) return;
      await Promise.all([...functions.values()].map((fn) => fn.pool.stopAll()));
    },
  };
}
