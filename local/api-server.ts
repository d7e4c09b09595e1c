/**
 * The local HTTP API: an HTTP server on loopback that turns each request into an API Gateway
 * HTTP API (payload v2) event, invokes the api function through the local Lambda server (the
 * same bundle as on AWS), and turns its answer back into HTTP. Without `auth`, requests carry
 * no credentials; with it, each must carry a valid SigV4 signature of a principal it names (as
 * API Gateway's IAM authorizer checks), or gets a 403 before anything runs, and the api function
 * is told the caller as API Gateway tells it (requestContext.authentication.iamIdentity).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ThrottledError, ValidationError } from '#core/base/errors.ts';
import type { Invoker } from '#core/base/ports.ts';
import { type AuthPrincipal, verifySigV4 } from './sigv4.ts';

/** Hosts the local servers may bind: loopback only, so nothing is reachable from the network. */
export const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', 'localhost', '::1'];

/** Throws ValidationError unless `host` is a loopback address. */
export function assertLoopback(host: string): void {
  if (!LOOPBACK_HOSTS.includes(host)) {
    throw new ValidationError(
      `refusing to bind ${host}: the local servers accept no credentials, so they listen on loopback only (${LOOPBACK_HOSTS.join(', ')})`,
    );
  }
}

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  invoker: Invoker;
  /** The api function's name on the local Lambda server. */
  functionName: string;
  /** @default 0 (any free port) */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /**
   * Requests that wait for a busy api function's sandbox, and how long each waits, before the
   * next gets a 429 with Retry-After. @default { size: 200, waitMs: 10_000 }
   */
  queue?: { size: number; waitMs: number };
  /**
   * Verify every request's SigV4 signature against these principals (`fanout dev --auth FILE`),
   * in this region. @default none: requests are not authenticated
   */
  auth?: { principals: readonly AuthPrincipal[]; region: string; now?: () => number };
}

/** A running local API. */
export interface LocalApiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 6 * 1024 * 1024; // API Gateway's and Lambda's payload limit

/** How often a queued request asks the busy function again. */
const QUEUE_POLL_MS = 20;

/** What the api function answers: an API Gateway proxy result. */
interface ProxyResult {
  statusCode: number;
  headers?: Record<string, string>;
  body?: string;
}

/** Starts the local HTTP API. */
export async function startApiServer(options: ApiServerOptions): Promise<LocalApiServer> {
  const host = options.host ?? '127.0.0.1';
  assertLoopback(host);
  const queue = options.queue ?? { size: 200, waitMs: 10_000 };
  const invoke = queuedInvoker(options, queue);
  const authenticate = options.auth === undefined ? undefined : authenticator(options.auth);
  const server = createServer((req, res) => {
    handle(req, res, { invoke, authenticate, queueSize: queue.size }).catch(() => {
      if (!res.headersSent) sendJson(res, 500, { message: 'Internal Server Error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Answers with a JSON body. */
function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Invokes the api function; a burst larger than its sandboxes waits for one, in a bounded queue,
 * as a busy function's callers would retry on AWS. Past the queue (or its wait), the throttle is
 * thrown, for a 429 with Retry-After.
 */
function queuedInvoker(
  options: ApiServerOptions,
  queue: { size: number; waitMs: number },
): (event: unknown) => Promise<ProxyResult> {
  let waiting = 0;
  return async (event) => {
    let queued = false;
    const until = Date.now() + queue.waitMs;
    try {
      for (;;) {
        try {
          return await options.invoker.invoke<ProxyResult>(options.functionName, event);
        } catch (error) {
          if (!(error instanceof ThrottledError) || Date.now() >= until) throw error;
          if (!queued) {
            if (waiting >= queue.size) throw error;
            waiting += 1;
            queued = true;
          }
          await new Promise((r) => setTimeout(r, QUEUE_POLL_MS));
        }
      }
    } finally {
      if (queued) waiting -= 1;
    }
  };
}

/** What a request's signature says: the caller's identity, or why it is refused. */
type Authentication = { identity: Record<string, unknown> } | { refused: string };

/** Verifies each request's SigV4 signature against `auth`'s principals (local/sigv4.ts). */
function authenticator(
  auth: NonNullable<ApiServerOptions['auth']>,
): (req: IncomingMessage, headers: Record<string, string>, body: Buffer) => Authentication {
  const principals = new Map(auth.principals.map((p) => [p.accessKeyId, p]));
  return (req, headers, body) => {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const verdict = verifySigV4(
      {
        method: req.method ?? 'GET',
        path: q < 0 ? raw : raw.slice(0, q),
        query: q < 0 ? '' : raw.slice(q + 1),
        headers,
        body,
      },
      principals,
      { region: auth.region, now: auth.now?.() ?? Date.now() },
    );
    return 'refused' in verdict ? verdict : { identity: iamIdentity(verdict.principal) };
  };
}

/** A request's body, or undefined when it passes the payload limit (read to its end anyway). */
async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  }
  return size > MAX_BODY ? undefined : Buffer.concat(chunks);
}

/**
 * The request path as a URL, resolved against a fixed origin by concatenation: `new URL('//x',
 * base)` would read '//x' as a host, and a request line can carry any path.
 */
function requestUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(`http://localhost${(req.url ?? '/').startsWith('/') ? req.url : `/${req.url}`}`);
  } catch {
    return undefined;
  }
}

/** One request: read, authenticated (with --auth), turned into an event, invoked, answered. */
async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: {
    invoke: (event: unknown) => Promise<ProxyResult>;
    authenticate: ReturnType<typeof authenticator> | undefined;
    queueSize: number;
  },
): Promise<void> {
  const body = await readBody(req);
  if (body === undefined) {
    return sendJson(res, 413, {
      error: {
        code: 'PAYLOAD_TOO_LARGE',
        message: `request bodies are limited to ${MAX_BODY} bytes`,
      },
    });
  }
  const url = requestUrl(req);
  if (url === undefined) {
    return sendJson(res, 400, {
      error: { code: 'BAD_REQUEST', message: 'the request path is not a valid URL path' },
    });
  }
  const headers = Object.fromEntries(
    Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : (v ?? '')]),
  );
  const auth = ctx.authenticate?.(req, headers, body);
  // As API Gateway's IAM authorizer answers: 403, before the function runs.
  if (auth !== undefined && 'refused' in auth) return sendJson(res, 403, { message: auth.refused });
  const requestId = randomUUID();
  let answer: ProxyResult;
  try {
    answer = await ctx.invoke(gatewayEvent(req, url, headers, body, requestId, auth?.identity));
  } catch (error) {
    if (error instanceof ThrottledError) {
      // Past the queue: the client is told to come back, never that the server broke.
      res.setHeader('retry-after', '1');
      return sendJson(res, 429, {
        error: {
          code: 'TOO_MANY_REQUESTS',
          message: `the API is busy (${ctx.queueSize} requests waiting for the api function); retry after 1 s`,
        },
        requestId,
      });
    }
    // What API Gateway answers when its Lambda integration fails.
    return sendJson(res, 502, { message: 'Internal Server Error', requestId });
  }
  const text = answer.body ?? '';
  res.writeHead(answer.statusCode, {
    ...answer.headers,
    'content-length': Buffer.byteLength(text),
    'x-request-id': requestId,
  });
  res.end(text);
}

/** The API Gateway HTTP API (payload v2) event of a request. */
function gatewayEvent(
  req: IncomingMessage,
  url: URL,
  headers: Record<string, string>,
  body: Buffer,
  requestId: string,
  identity: Record<string, unknown> | undefined,
) {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    queryStringParameters: url.search === '' ? undefined : Object.fromEntries(url.searchParams),
    requestContext: {
      http: {
        method: req.method ?? 'GET',
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      stage: '$default',
      timeEpoch: Date.now(),
      ...(identity !== undefined && { authentication: { iamIdentity: identity } }),
    },
    body: body.length === 0 ? undefined : body.toString('base64'),
    isBase64Encoded: body.length > 0,
  };
}

/**
 * What API Gateway's IAM authorizer puts in requestContext.authentication.iamIdentity for a
 * caller: its access key, account, ARN and ids (an organization id it has none of locally).
 */
function iamIdentity(principal: AuthPrincipal): Record<string, unknown> {
  const account =
    /^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):/.exec(principal.arn)?.[1] ?? '000000000000';
  return {
    accessKey: principal.accessKeyId,
    accountId: account,
    callerId: principal.accessKeyId,
    userArn: principal.arn,
    userId: principal.accessKeyId,
    principalOrgId: null,
    cognitoIdentity: null,
  };
}
