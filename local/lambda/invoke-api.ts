/**
 * The Lambda Invoke API over HTTP (`POST /2015-03-31/functions/{name}/invocations`), as the
 * SDK's LambdaClient speaks it: RequestResponse, Event and DryRun, Lambda's errors and payload
 * limits, authorization of every request; and the events sink, EventBridge's `PutEvents` on the
 * same endpoint.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EventQueue } from './event-queue.ts';
import { type FunctionPool, MAX_PAYLOAD, type Outcome } from './function-pool.ts';
import type { EventEntry, LambdaServerOptions } from './server.ts';

/** Lambda's asynchronous payload limit (Invoke API): 1 MB. */
export const MAX_EVENT_PAYLOAD = 1024 * 1024;

/** A registered function: its sandboxes and its queue of Event invocations. */
export interface RegisteredFunction {
  pool: FunctionPool;
  events: EventQueue;
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** An error in the shape Lambda answers it (`x-amzn-errortype`, `{ Type, message }`). */
export function sendError(
  res: ServerResponse,
  status: number,
  type: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): void {
  sendJson(
    res,
    status,
    { Type: 'User', message, ...extra },
    { 'x-amzn-errortype': type, ...headers },
  );
}

/** A request body, read up to `limit` bytes (the rest is counted, not kept). */
async function readBody(req: IncomingMessage, limit: number) {
  const chunks: Buffer[] = [];
  let size = 0;
  // Events rather than `for await`: the async iterator costs more than the tiny bodies here.
  await new Promise<void>((resolve, reject) => {
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.once('end', resolve);
    req.once('error', reject);
  });
  return { size, body: Buffer.concat(chunks) };
}

/** The HTTP handler of a Lambda server over its functions. */
export function invokeHandler(
  functions: ReadonlyMap<string, RegisteredFunction>,
  options: LambdaServerOptions,
  arnOf: (name: string) => string,
) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
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
    const { size, body } = await readBody(req, MAX_PAYLOAD);
    if (fn === undefined) {
      return sendError(res, 404, 'ResourceNotFoundException', `Function not found: ${arnOf(name)}`);
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
      const text = body.toString('utf8');
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
      fn.events.push(event);
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
    return invokeSync(fn, name, event, res, options);
  };
}

/** A RequestResponse invocation: 429 past the concurrency, else run and answer its outcome. */
async function invokeSync(
  fn: RegisteredFunction,
  name: string,
  event: unknown,
  res: ServerResponse,
  options: LambdaServerOptions,
): Promise<void> {
  const { pool } = fn;
  if (
    pool.inFlight >= pool.spec.concurrency ||
    options.faults?.(name, 'RequestResponse') === 'throttle'
  ) {
    pool.stats.throttles += 1;
    return sendError(
      res,
      429,
      'TooManyRequestsException',
      'Rate Exceeded.',
      { Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' },
      { 'retry-after': '1' },
    );
  }
  pool.inFlight += 1;
  let outcome: Outcome;
  try {
    outcome = await pool.run(event, 'RequestResponse');
  } finally {
    pool.inFlight -= 1;
    fn.events.drain();
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
    { 'x-amz-function-error': 'Unhandled', 'x-amz-executed-version': '$LATEST' },
  );
}

/** EventBridge PutEvents (JSON 1.1): authorized per bus, then handed to the sink. */
async function putEvents(
  req: IncomingMessage,
  res: ServerResponse,
  sink: NonNullable<LambdaServerOptions['events']>,
): Promise<void> {
  const { body } = await readBody(req, MAX_EVENT_PAYLOAD);
  let entries: EventEntry[];
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { Entries?: unknown };
    if (!Array.isArray(parsed.Entries) || parsed.Entries.length === 0)
      throw new Error('no entries');
    entries = parsed.Entries as EventEntry[];
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
}
