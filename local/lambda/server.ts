/**
 * The local Lambda server: the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
 * on 127.0.0.1, running each function's bundle in worker_threads sandboxes with Lambda's
 * semantics: one invocation per sandbox at a time, warm sandboxes reused, a concurrency limit
 * per function (429 TooManyRequestsException past it), timeouts that discard the sandbox, and
 * function errors reported with `X-Amz-Function-Error: Unhandled`. Event invocations are queued
 * and retried twice on failure, as Lambda does for asynchronous invocations.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { repoRoot } from '../paths.ts';

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
  /** Fault injection for chaos tests: the invocation fails this way instead of running. */
  faults?: (
    functionName: string,
    invocationType: string,
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

/** Lambda's payload limits (Invoke API): 6 MB synchronous, 1 MB asynchronous. */
const MAX_PAYLOAD = 6 * 1024 * 1024;
const MAX_EVENT_PAYLOAD = 1024 * 1024;

/** How long a `slow` fault stalls an invocation (chaos worker-slow). */
const SLOW_MS = 10_000;

/** What one invocation produced, as the HTTP layer sends it. */
type Outcome =
  | { kind: 'ok'; payload: string }
  | { kind: 'function-error'; errorType: string; errorMessage: string; trace?: string[] };

interface Sandbox {
  worker: Worker;
  ready: Promise<void>;
  pending?: { id: number; resolve: (o: Outcome) => void };
  /** When the sandbox last became idle (performance.now()); the sweeper reaps old ones. */
  idleSince: number;
}

interface FunctionState {
  spec: FunctionSpec;
  idle: Sandbox[];
  /** Sandboxes started ahead of demand (prewarm) that are not ready yet. */
  warming: Sandbox[];
  all: Set<Sandbox>;
  inFlight: number;
  events: { event: unknown; attempt: number }[];
  /** Event invocations whose retry is scheduled. */
  retrying: number;
  stats: FunctionStats;
}

const sandboxScript = join(repoRoot, 'local/lambda/sandbox.mjs');

/** Starts the Invoke API server on 127.0.0.1. */
export async function startLambdaServer(
  options: LambdaServerOptions = {},
): Promise<LocalLambdaServer> {
  const functions = new Map<string, FunctionState>();
  const idleMs = options.idleMs ?? 300_000;
  let nextId = 1;
  let closing = false;
  const region = options.region ?? 'us-east-1';
  const account = options.account ?? '000000000000';
  const arnOf = (name: string) => `arn:aws:lambda:${region}:${account}:function:${name}`;

  const register = (spec: FunctionSpec) => {
    const old = functions.get(spec.name);
    if (old) for (const s of old.all) void s.worker.terminate();
    functions.set(spec.name, {
      spec,
      idle: [],
      warming: [],
      all: new Set(),
      inFlight: 0,
      events: [],
      retrying: 0,
      stats: {
        invocations: 0,
        coldStarts: 0,
        throttles: 0,
        timeouts: 0,
        errors: 0,
        sandboxes: 0,
        busy: 0,
        queued: 0,
      },
    });
  };
  for (const spec of options.functions ?? []) register(spec);

  const discard = (fn: FunctionState, sandbox: Sandbox) => {
    fn.all.delete(sandbox);
    fn.idle = fn.idle.filter((s) => s !== sandbox);
    fn.warming = fn.warming.filter((s) => s !== sandbox);
    fn.stats.sandboxes = fn.all.size;
    void sandbox.worker.terminate();
  };

  const startSandbox = (fn: FunctionState): Sandbox => {
    const { spec } = fn;
    const region = spec.env?.AWS_REGION ?? 'us-east-1';
    const worker = new Worker(sandboxScript, {
      workerData: {
        bundle: spec.bundle,
        handlerName: spec.handler ?? 'handler',
        functionName: spec.name,
        memoryMb: spec.memoryMb ?? 1024,
        region,
      },
      env: {
        AWS_REGION: region,
        AWS_LAMBDA_FUNCTION_NAME: spec.name,
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(spec.memoryMb ?? 1024),
        // Node 20 locally; the Lambda runtime is nodejs24.x, where the SDK does not warn.
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ...spec.env,
      },
      stdout: true,
      stderr: true,
      ...(spec.memoryMb !== undefined &&
        spec.heapLimit === true && {
          resourceLimits: { maxOldGenerationSizeMb: spec.memoryMb },
        }),
    });
    const forward = (chunk: Buffer) => options.log?.(spec.name, chunk.toString('utf8'));
    worker.stdout.on('data', forward);
    worker.stderr.on('data', forward);
    const sandbox: Sandbox = {
      worker,
      idleSince: 0,
      ready: new Promise<void>((resolve, reject) => {
        worker.once('message', (m: { type: string; errorType?: string; errorMessage?: string }) => {
          if (m.type === 'ready') resolve();
          else reject(Object.assign(new Error(m.errorMessage), { errorType: m.errorType }));
        });
      }),
    };
    sandbox.ready.catch(() => undefined);
    worker.on('message', (m: { type: string; id?: number } & Record<string, unknown>) => {
      const pending = sandbox.pending;
      if (m.type !== 'result' || pending === undefined || pending.id !== m.id) return;
      sandbox.pending = undefined;
      const { resolve } = pending;
      resolve(
        m.ok
          ? { kind: 'ok', payload: m.payload as string }
          : {
              kind: 'function-error',
              errorType: m.errorType as string,
              errorMessage: m.errorMessage as string,
              trace: m.trace as string[],
            },
      );
    });
    const crashed = (error?: Error) => {
      if (fn.all.has(sandbox)) discard(fn, sandbox);
      const pending = sandbox.pending;
      sandbox.pending = undefined;
      pending?.resolve({
        kind: 'function-error',
        errorType: 'Runtime.ExitError',
        errorMessage: `RequestId: sandbox exited${error ? `: ${error.message}` : ''}`,
      });
    };
    worker.on('error', crashed);
    worker.on('exit', () => crashed());
    fn.all.add(sandbox);
    fn.stats.sandboxes = fn.all.size;
    fn.stats.coldStarts += 1;
    return sandbox;
  };

  const release = (fn: FunctionState, sandbox: Sandbox) => {
    if (!fn.all.has(sandbox) || closing) return;
    sandbox.idleSince = performance.now();
    fn.idle.push(sandbox);
  };

  // The most recently released sandbox is reused first (as Lambda tends to), so idle ones sit at
  // the bottom of the stack; one sweeper reaps them instead of a timer per invocation.
  const sweeper = setInterval(
    () => {
      const cutoff = performance.now() - idleMs;
      for (const fn of functions.values()) {
        for (const sandbox of fn.idle.filter((s) => s.idleSince <= cutoff)) discard(fn, sandbox);
      }
    },
    Math.max(10, Math.min(idleMs / 4, 30_000)),
  );
  sweeper.unref();

  // An invocation that finds no idle sandbox takes one still warming up before it starts
  // another: it waits for that one's init, which is already under way.
  const acquire = (fn: FunctionState): Sandbox =>
    fn.idle.pop() ?? fn.warming.shift() ?? startSandbox(fn);

  /** Runs one invocation in a sandbox. The caller has already taken a concurrency slot. */
  const run = async (fn: FunctionState, event: unknown, type: string): Promise<Outcome> => {
    fn.stats.invocations += 1;
    fn.stats.busy += 1;
    const requestId = randomUUID();
    const timeoutMs = fn.spec.timeoutSeconds * 1000;
    const timedOut = (): Outcome => {
      fn.stats.timeouts += 1;
      return {
        kind: 'function-error',
        errorType: 'Sandbox.Timedout',
        errorMessage: `${new Date().toISOString()} ${requestId} Task timed out after ${fn.spec.timeoutSeconds.toFixed(2)} seconds`,
      };
    };
    try {
      const fault = options.faults?.(fn.spec.name, type);
      if (fault === 'error') {
        return {
          kind: 'function-error',
          errorType: 'InjectedFault',
          errorMessage: 'fault injected by the local runtime',
        };
      }
      if (fault === 'timeout') {
        await new Promise((r) => setTimeout(r, timeoutMs));
        return timedOut();
      }
      // A straggler: the invocation stalls before it does any work, then runs as usual.
      if (fault === 'slow') await new Promise((r) => setTimeout(r, SLOW_MS));
      options.onInvoke?.(fn.spec.name, event, type);
      const sandbox = acquire(fn);
      const deadline = Date.now() + timeoutMs;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await new Promise<Outcome>((resolve) => {
        // The timeout covers the cold start too, as on Lambda.
        timer = setTimeout(() => {
          sandbox.pending = undefined;
          discard(fn, sandbox);
          resolve(timedOut());
        }, timeoutMs);
        sandbox.ready.then(
          () => {
            const id = nextId++;
            sandbox.pending = { id, resolve };
            sandbox.worker.postMessage({ type: 'invoke', id, event, deadline, requestId });
          },
          (error: Error & { errorType?: string }) => {
            discard(fn, sandbox);
            resolve({
              kind: 'function-error',
              errorType: error.errorType ?? 'Runtime.ImportModuleError',
              errorMessage: error.message,
            });
          },
        );
      });
      clearTimeout(timer);
      if (outcome.kind === 'function-error') fn.stats.errors += 1;
      if (outcome.kind === 'ok' && Buffer.byteLength(outcome.payload) > MAX_PAYLOAD) {
        release(fn, sandbox);
        return {
          kind: 'function-error',
          errorType: 'Function.ResponseSizeTooLarge',
          errorMessage: `Response payload size exceeded maximum allowed payload size (${MAX_PAYLOAD} bytes).`,
        };
      }
      release(fn, sandbox);
      return outcome;
    } finally {
      fn.stats.busy -= 1;
    }
  };

  const drainEvents = (fn: FunctionState) => {
    while (!closing && fn.events.length > 0 && fn.inFlight < fn.spec.concurrency) {
      const item = fn.events.shift()!;
      fn.inFlight += 1;
      void run(fn, item.event, 'Event').then((outcome) => {
        fn.inFlight -= 1;
        if (outcome.kind === 'function-error' && item.attempt <= (fn.spec.retryAttempts ?? 2)) {
          options.log?.(
            fn.spec.name,
            `async invocation failed (attempt ${item.attempt}): ${outcome.errorType}: ${outcome.errorMessage}\n`,
          );
          fn.retrying += 1;
          setTimeout(() => {
            fn.retrying -= 1;
            fn.events.push({ event: item.event, attempt: item.attempt + 1 });
            drainEvents(fn);
          }, 1000 * item.attempt).unref();
        } else if (outcome.kind === 'function-error' && !closing) {
          fn.spec.onFailure?.({
            version: '1.0',
            timestamp: new Date().toISOString(),
            requestContext: {
              requestId: randomUUID(),
              functionArn: `${arnOf(fn.spec.name)}:$LATEST`,
              condition: 'RetriesExhausted',
              approximateInvokeCount: item.attempt,
            },
            requestPayload: item.event,
            responseContext: {
              statusCode: 200,
              executedVersion: '$LATEST',
              functionError: 'Unhandled',
            },
            responsePayload: { errorType: outcome.errorType, errorMessage: outcome.errorMessage },
          });
        }
        drainEvents(fn);
      });
    }
  };

  const sendJson = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  };
  const sendError = (
    res: ServerResponse,
    status: number,
    type: string,
    message: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) =>
    sendJson(
      res,
      status,
      { Type: 'User', message, ...extra },
      { 'x-amzn-errortype': type, ...headers },
    );

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers['x-amz-target'] === 'AWSEvents.PutEvents' && options.events !== undefined) {
      return putEvents(req, res, options.events);
    }
    const match = /^\/2015-03-31\/functions\/([^/]+)\/invocations\/?(?:\?.*)?$/.exec(req.url ?? '');
    if (req.method !== 'POST' || match === null) {
      req.resume();
      return sendError(
        res,
        404,
        'UnknownOperationException',
        `no route for ${req.method} ${req.url}`,
      );
    }
    // Accept a name, a name:qualifier, or a function ARN.
    const raw = decodeURIComponent(match[1] as string);
    const named = raw.startsWith('arn:') ? raw.split(':').slice(6).join(':') : raw;
    const [name = '', qualifier] = named.split(':');
    const fn = functions.get(name);
    const chunks: Buffer[] = [];
    let size = 0;
    // Events rather than `for await`: the async iterator costs more than the tiny bodies here.
    await new Promise<void>((resolve, reject) => {
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_PAYLOAD) chunks.push(chunk);
      });
      req.once('end', resolve);
      req.once('error', reject);
    });
    if (fn === undefined) {
      return sendError(
        res,
        404,
        'ResourceNotFoundException',
        `Function not found: arn:aws:lambda:us-east-1:000000000000:function:${name}`,
      );
    }
    const verdict = options.authorize?.(
      req,
      name,
      qualifier === undefined ? arnOf(name) : `${arnOf(name)}:${qualifier}`,
    );
    if (verdict !== undefined && !verdict.ok) {
      return sendError(res, verdict.status, verdict.code, verdict.message);
    }
    const type = String(req.headers['x-amz-invocation-type'] ?? 'RequestResponse');
    const limit = type === 'Event' ? MAX_EVENT_PAYLOAD : MAX_PAYLOAD;
    if (size > limit) {
      return sendError(
        res,
        413,
        'RequestTooLargeException',
        `Request must be smaller than ${limit} bytes for the InvokeFunction operation`,
      );
    }
    let event: unknown;
    try {
      const text = Buffer.concat(chunks).toString('utf8');
      event = text === '' ? {} : JSON.parse(text);
    } catch {
      return sendError(
        res,
        400,
        'InvalidRequestContentException',
        'Could not parse request body into json',
      );
    }
    if (type === 'DryRun') return void res.writeHead(204).end();
    if (type === 'Event') {
      fn.events.push({ event, attempt: 1 });
      drainEvents(fn);
      return void res.writeHead(202, { 'content-length': 0 }).end();
    }
    if (type !== 'RequestResponse') {
      return sendError(
        res,
        400,
        'InvalidParameterValueException',
        `X-Amz-Invocation-Type must be RequestResponse, Event or DryRun; got ${type}`,
      );
    }
    if (fn.inFlight >= fn.spec.concurrency || options.faults?.(name, type) === 'throttle') {
      fn.stats.throttles += 1;
      return sendError(
        res,
        429,
        'TooManyRequestsException',
        'Rate Exceeded.',
        { Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' },
        { 'retry-after': '1' },
      );
    }
    fn.inFlight += 1;
    let outcome: Outcome;
    try {
      outcome = await run(fn, event, type);
    } finally {
      fn.inFlight -= 1;
      drainEvents(fn);
    }
    if (outcome.kind === 'ok') {
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(outcome.payload),
        'x-amz-executed-version': '$LATEST',
      });
      return void res.end(outcome.payload);
    }
    const { errorType, errorMessage, trace } = outcome;
    return sendJson(
      res,
      200,
      { errorType, errorMessage, ...(trace && { trace }) },
      {
        'x-amz-function-error': 'Unhandled',
        'x-amz-executed-version': '$LATEST',
      },
    );
  };

  /** EventBridge PutEvents (JSON 1.1): authorized per bus, then handed to the sink. */
  const putEvents = async (
    req: IncomingMessage,
    res: ServerResponse,
    sink: NonNullable<LambdaServerOptions['events']>,
  ) => {
    const pieces: Buffer[] = [];
    for await (const piece of req as AsyncIterable<Buffer>) pieces.push(piece);
    let entries: EventEntry[];
    try {
      const body = JSON.parse(Buffer.concat(pieces).toString('utf8')) as { Entries?: unknown };
      if (!Array.isArray(body.Entries) || body.Entries.length === 0) throw new Error('no entries');
      entries = body.Entries as EventEntry[];
    } catch {
      return sendJson(
        res,
        400,
        { __type: 'ValidationException', message: 'PutEvents needs a JSON body with Entries' },
        { 'x-amzn-errortype': 'ValidationException' },
      );
    }
    const buses = [...new Set(entries.map((e) => e.EventBusName ?? 'default'))];
    const verdict = sink.authorize(req, buses);
    if (!verdict.ok) {
      return sendJson(
        res,
        verdict.status,
        { __type: verdict.code, message: verdict.message },
        { 'x-amzn-errortype': verdict.code },
      );
    }
    sink.publish(entries);
    return sendJson(res, 200, {
      FailedEntryCount: 0,
      Entries: entries.map(() => ({ EventId: randomUUID() })),
    });
  };

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
    async prewarm(name, count) {
      const fn = functions.get(name);
      if (fn === undefined) throw new Error(`no function ${name}`);
      const starting: Promise<void>[] = [];
      while (fn.all.size < Math.min(count, fn.spec.concurrency)) {
        const sandbox = startSandbox(fn);
        fn.warming.push(sandbox);
        starting.push(
          sandbox.ready.then(() => {
            // Unless an invocation took it meanwhile, it is now idle.
            const at = fn.warming.indexOf(sandbox);
            if (at < 0) return;
            fn.warming.splice(at, 1);
            release(fn, sandbox);
          }),
        );
      }
      await Promise.all(starting);
    },
    stats(name) {
      const fn = functions.get(name);
      if (fn === undefined) throw new Error(`no function ${name}`);
      return { ...fn.stats, queued: fn.events.length + fn.retrying };
    },
    invokeEvent(name, event) {
      const fn = functions.get(name);
      if (fn === undefined) throw new Error(`no function ${name}`);
      fn.events.push({ event, attempt: 1 });
      drainEvents(fn);
    },
    terminateSandboxes(name) {
      const fn = functions.get(name);
      if (fn === undefined) return;
      for (const sandbox of [...fn.all]) {
        discard(fn, sandbox);
        const pending = sandbox.pending;
        sandbox.pending = undefined;
        pending?.resolve({
          kind: 'function-error',
          errorType: 'Runtime.ExitError',
          errorMessage: 'sandbox terminated',
        });
      }
    },
    async close(closeOptions = {}) {
      closing = true;
      clearInterval(sweeper);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (closeOptions.exiting === true) return;
      await Promise.all(
        [...functions.values()].flatMap((fn) => [...fn.all].map((s) => s.worker.terminate())),
      );
    },
  };
}
