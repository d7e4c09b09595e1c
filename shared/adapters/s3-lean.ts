/**
 * Lean S3 requests: one SigV4-signed HTTP request each over keep-alive sockets, for the few
 * object operations on a hot path (a worker's ranged GETs, its outcome's create-only PUT, a
 * part's PUT, a lost part's DELETE), without the SDK's request path.
 *
 * Why: a worker reading a chunk of many small objects makes one GET each, and the SDK's request
 * path (its middleware stack, serialisers and response parsing) measured 0.5-1 ms of client CPU
 * per GET; this one measured 0.12-0.18 ms. And a worker that sends only these requests need not
 * load the S3 client at all: a cold start compiled ~45 ms of it and paid ~30 ms more for its
 * first request.
 *
 * It is the same S3 REST call, signed the same way, on AWS and against the local server. A
 * bucket's endpoint comes from S3's own endpoint rules (an S3 client's, or the same rules
 * loaded alone), so FIPS, dual-stack, path-style and custom endpoints resolve as the SDK
 * would; anything those rules do not sign with plain SigV4 (S3 Express directory buckets,
 * multi-region access points) is left to the SDK (`undefined` from {@link LeanS3.send}).
 */
import { createHash, createHmac } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { backoff } from '#core/base/backoff.ts';
import type { KeepAliveAgents } from './agents.ts';

/** A request S3 refused: its status and S3's error code. */
export class LeanS3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = code;
  }
}

/** Where a bucket's requests go, and how they are signed. */
export interface LeanTarget {
  url: URL;
  signer: SignatureV4;
}

/** A bucket's target, or undefined when the bucket needs the SDK (not plain SigV4). */
export type TargetSource = (bucket: string) => Promise<LeanTarget | undefined>;

/** What S3's endpoint rules take, as an S3 client passes them. */
export interface EndpointParams {
  Bucket: string;
  Region: string;
  UseFIPS: boolean;
  UseDualStack: boolean;
  ForcePathStyle: boolean;
  Accelerate: boolean;
  UseGlobalEndpoint: boolean;
  Endpoint?: string;
}

/** S3's endpoint rules: an S3 client's `endpointProvider`, or the same rules loaded alone. */
export type EndpointRules = (params: EndpointParams) => {
  url: URL;
  properties?: {
    authSchemes?: { name: string; signingName?: string; signingRegion?: string }[];
  };
};

/** One request: its method, object, query and headers (host and signature are added). */
export interface LeanRequest {
  method: 'GET' | 'PUT' | 'DELETE';
  bucket: string;
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** A body held in memory (so a retry can send it again). */
  body?: Uint8Array;
}

type Resolved = Record<string, unknown>;
/** What the signer takes as credentials (a provider, or the credentials themselves). */
type Credentials = ConstructorParameters<typeof SignatureV4>[0]['credentials'];
const settle = async (x: unknown): Promise<unknown> =>
  typeof x === 'function' ? (x as () => unknown)() : x;

/** Status codes (and network errors) worth another attempt, as the SDK's standard retries. */
const RETRYABLE = new Set([429, 500, 502, 503, 504]);

/** What the signer hashes: text or bytes. */
type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytesOf = (data: SourceData): string | Uint8Array =>
  typeof data === 'string'
    ? data
    : data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** SHA-256 and HMAC-SHA-256 for the signer, from node:crypto. */
export class NodeSha256 {
  private readonly hash: ReturnType<typeof createHash>;
  constructor(secret?: SourceData) {
    this.hash = (
      secret === undefined ? createHash('sha256') : createHmac('sha256', bytesOf(secret))
    ) as ReturnType<typeof createHash>;
  }
  update(data: SourceData): void {
    this.hash.update(bytesOf(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

/** Lean requests over a source of bucket targets and keep-alive agents. */
export class LeanS3 {
  private readonly targets = new Map<string, Promise<LeanTarget | undefined>>();

  constructor(
    private readonly source: TargetSource,
    private readonly agents: KeepAliveAgents,
    /** Attempts per request (retries of throttling, 5xx and network errors). */
    private readonly maxAttempts: () => Promise<number>,
    private readonly sleep: (ms: number) => Promise<void> = (ms) =>
      new Promise((r) => setTimeout(r, ms)),
  ) {}

  /**
   * GETs `[start, end)` of an object, conditional on its ETag (and VersionId). Resolves with the
   * body, or `undefined` when this bucket needs the SDK; a refused request rejects with
   * {@link LeanS3Error} (status 412 for a changed object, 404 for a missing one).
   */
  open(
    object: { bucket: string; key: string; etag: string; versionId?: string },
    start: number,
    end: number,
  ): Promise<IncomingMessage | undefined> {
    return this.send({
      method: 'GET',
      bucket: object.bucket,
      key: object.key,
      ...(object.versionId !== undefined && { query: { versionId: object.versionId } }),
      headers: { range: `bytes=${start}-${end - 1}`, 'if-match': object.etag },
    });
  }

  /**
   * Sends one request, retrying throttling, 5xx answers and network errors before an answer.
   * Resolves with a 2xx response (its body unread), or `undefined` when this bucket needs the
   * SDK; any other answer rejects with {@link LeanS3Error}.
   */
  async send(request: LeanRequest): Promise<IncomingMessage | undefined> {
    const target = await this.target(request.bucket);
    if (target === undefined) return undefined;
    const path = objectPath(target.url, request.key);
    const maxAttempts = await this.maxAttempts();
    for (let attempt = 1; ; attempt++) {
      const signed = await target.signer.sign({
        method: request.method,
        protocol: target.url.protocol,
        hostname: target.url.hostname,
        port: target.url.port === '' ? undefined : Number(target.url.port),
        path,
        query: request.query ?? {},
        headers: {
          ...request.headers,
          host: target.url.host,
          'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
          ...(request.body !== undefined && { 'content-length': String(request.body.length) }),
        },
      });
      let response: IncomingMessage;
      try {
        response = await send(target.url, signed, request.body, this.agents);
      } catch (error) {
        if (attempt >= maxAttempts) throw error;
        await this.sleep(retryWait(attempt));
        continue;
      }
      const status = response.statusCode ?? 0;
      if (status >= 200 && status < 300) return response;
      const body = await text(response);
      const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? `HTTP${status}`;
      if (RETRYABLE.has(status) && attempt < maxAttempts) {
        await this.sleep(retryWait(attempt, response.headers['retry-after']));
        continue;
      }
      throw new LeanS3Error(
        status,
        code,
        `${request.method} s3://${request.bucket}/${request.key} answered ${status} ${code}`,
      );
    }
  }

  /** The bucket's endpoint and signer (resolved once per bucket). */
  private target(bucket: string): Promise<LeanTarget | undefined> {
    let target = this.targets.get(bucket);
    if (target === undefined) {
      target = this.source(bucket);
      this.targets.set(bucket, target);
    }
    return target;
  }
}

/**
 * A bucket's target from S3's endpoint rules: the rules' URL, signed with SigV4 as the rules'
 * auth scheme names (signing name and region); undefined for any other scheme.
 */
export function targetFrom(
  rules: EndpointRules,
  params: EndpointParams,
  signing: {
    credentials: Credentials;
    sha256: ConstructorParameters<typeof SignatureV4>[0]['sha256'];
  },
): LeanTarget | undefined {
  const resolved = rules(params);
  const scheme = resolved.properties?.authSchemes?.[0];
  if (scheme !== undefined && scheme.name !== 'sigv4') return undefined;
  return {
    url: resolved.url,
    signer: new SignatureV4({
      credentials: signing.credentials,
      region: scheme?.signingRegion ?? params.Region,
      service: scheme?.signingName ?? 's3',
      sha256: signing.sha256,
      uriEscapePath: false,
      applyChecksum: false,
    }),
  };
}

/** Targets as an S3 client would address them: its region, endpoint, rules and credentials. */
export function clientTargets(client: S3Client): TargetSource {
  const config = client.config as unknown as Resolved;
  return async (bucket) => {
    const region = String(await settle(config.region));
    const custom = config.isCustomEndpoint === true ? await settle(config.endpoint) : undefined;
    const endpoint =
      custom === undefined
        ? undefined
        : (() => {
            const e = custom as {
              protocol: string;
              hostname: string;
              port?: number;
              path?: string;
            };
            return `${e.protocol}//${e.hostname}${e.port ? `:${e.port}` : ''}${e.path ?? ''}`;
          })();
    return targetFrom(
      config.endpointProvider as EndpointRules,
      {
        Bucket: bucket,
        Region: region,
        UseFIPS: Boolean(await settle(config.useFipsEndpoint)),
        UseDualStack: Boolean(await settle(config.useDualstackEndpoint)),
        ForcePathStyle: Boolean(await settle(config.forcePathStyle)),
        Accelerate: Boolean(await settle(config.useAccelerateEndpoint)),
        UseGlobalEndpoint: Boolean(await settle(config.useGlobalEndpoint)),
        ...(endpoint !== undefined && { Endpoint: endpoint }),
      },
      {
        credentials: config.credentials as Credentials,
        sha256: config.sha256 as ConstructorParameters<typeof SignatureV4>[0]['sha256'],
      },
    );
  };
}

/** An S3 client's attempts per request (its `maxAttempts`, 3 by default). */
export function clientAttempts(client: S3Client): () => Promise<number> {
  return async () => Number(await settle((client.config as unknown as Resolved).maxAttempts)) || 3;
}

/**
 * The request path of an object under a bucket's endpoint URL (path-style or virtual-hosted),
 * encoded as the SDK encodes it.
 */
export function objectPath(endpoint: URL, key: string): string {
  return `${endpoint.pathname.replace(/\/$/, '')}/${key.split('/').map(encodeSegment).join('/')}`;
}

/** RFC 3986 encoding of a path segment, as SigV4 canonicalises it (`!'()*` included). */
const encodeSegment = (segment: string) =>
  encodeURIComponent(segment).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );

/** The wait before a retry: up to 200 ms at first, doubling to 20 s, or what Retry-After asks. */
function retryWait(attempt: number, retryAfter?: string | string[]): number {
  const seconds = Number(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
  return backoff(attempt + 1, Math.random, {
    capMs: 20_000,
    ...(Number.isFinite(seconds) && seconds > 0 && { retryAfterSeconds: seconds }),
  });
}

function send(
  url: URL,
  signed: {
    method: string;
    path: string;
    query?: Record<string, unknown>;
    headers: Record<string, string>;
  },
  body: Uint8Array | undefined,
  agents: KeepAliveAgents,
): Promise<IncomingMessage> {
  const query = new URLSearchParams(signed.query as Record<string, string>).toString();
  const https = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      {
        method: signed.method,
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port === '' ? undefined : Number(url.port),
        path: query === '' ? signed.path : `${signed.path}?${query}`,
        headers: signed.headers,
        agent: https ? agents.httpsAgent : agents.httpAgent,
      },
      resolve,
    );
    req.once('error', reject);
    req.end(body);
  });
}

/** A response's body as text (an error's XML). */
async function text(response: IncomingMessage): Promise<string> {
  let body = '';
  for await (const piece of response) body += piece;
  return body;
}
