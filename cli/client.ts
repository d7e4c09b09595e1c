/**
 * A client of the fanout HTTP API. Against a deployment it signs every request with SigV4
 * (service `execute-api`) from the standard AWS credential chain; against the local server
 * (loopback) it sends no credentials, as `fanout dev` expects.
 */
import { Sha256 } from '@aws-crypto/sha256-js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { SignatureV4 } from '@smithy/signature-v4';
import { FanoutError, ValidationError } from '#core/base/errors.ts';

/** Where the CLI finds the API when --api is not given. */
export const DEFAULT_API_URL = 'http://127.0.0.1:3000';

/** An answer of the API. */
export interface ApiAnswer {
  status: number;
  headers: Headers;
  text: string;
}

/** The API's error, carrying its HTTP status and error code. */
export class ApiError extends FanoutError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    /** The answer's Retry-After header (seconds), when it had one. */
    readonly retryAfter: string | null = null,
  ) {
    super(code, message);
  }
}

/** Statuses of a busy or failing gateway, which a request is sent again for. */
const RETRIED = new Set([429, 502, 503, 504]);

/** How many times a request is sent again. */
const RETRIES = 5;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** The region of an API Gateway URL (`https://id.execute-api.REGION.amazonaws.com`). */
function regionOf(url: URL): string {
  const match = /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com/.exec(url.hostname);
  const region = match?.[1] ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (region === undefined) {
    throw new ValidationError(`cannot tell the AWS region of ${url.origin}; set AWS_REGION`);
  }
  return region;
}

/**
 * Calls the API at `baseUrl`, signing with the standard credential chain when it is not on
 * loopback, and on loopback when the environment names credentials (AWS_ACCESS_KEY_ID or
 * AWS_PROFILE): `fanout dev --auth FILE` verifies them; a `fanout dev` without it ignores them.
 */
export class ApiClient {
  private readonly base: URL;
  private readonly signer: SignatureV4 | undefined;

  constructor(baseUrl: string = process.env.FANOUT_API_URL ?? DEFAULT_API_URL) {
    let base: URL;
    try {
      base = new URL(baseUrl);
    } catch {
      throw new ValidationError(
        `--api ${JSON.stringify(baseUrl)} is not a URL; expected e.g. ${DEFAULT_API_URL}`,
      );
    }
    this.base = base;
    const loopback = LOOPBACK.has(base.hostname);
    const named =
      process.env.AWS_ACCESS_KEY_ID !== undefined || process.env.AWS_PROFILE !== undefined;
    this.signer =
      loopback && !named
        ? undefined
        : new SignatureV4({
            service: 'execute-api',
            // fanout dev's region unless the environment says another.
            region: loopback
              ? (process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1')
              : regionOf(base),
            credentials: fromNodeProviderChain(),
            sha256: Sha256,
          });
  }

  /**
   * Sends a request; a JSON body is serialised. A busy or failing gateway (429, 502, 503, 504)
   * is asked again, up to {@link RETRIES} times, after Retry-After when it says, else after a
   * capped, jittered backoff. Throws ApiError for other 4xx/5xx answers, and for those once the
   * retries are spent.
   */
  async request(
    method: string,
    path: string,
    body?: unknown,
    query: Record<string, string> = {},
  ): Promise<ApiAnswer> {
    for (let retry = 0; ; retry++) {
      try {
        return await this.once(method, path, body, query);
      } catch (error) {
        if (!(error instanceof ApiError) || !RETRIED.has(error.status) || retry >= RETRIES) {
          throw error;
        }
        const told = Number(error.retryAfter);
        const backoff = Math.min(4_000, 200 * 2 ** retry) * (0.5 + Math.random() / 2);
        await new Promise((r) => setTimeout(r, told > 0 ? told * 1000 : backoff));
      }
    }
  }

  /** One request, as {@link request} describes it, without retries. */
  private async once(
    method: string,
    path: string,
    body: unknown,
    query: Record<string, string>,
  ): Promise<ApiAnswer> {
    const url = new URL(
      path.replace(/^\//, ''),
      this.base.href.endsWith('/') ? this.base : `${this.base.href}/`,
    );
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const text = body === undefined ? undefined : JSON.stringify(body);
    let headers: Record<string, string> = {
      host: url.host,
      ...(text !== undefined && { 'content-type': 'application/json' }),
    };
    if (this.signer) {
      const signed = await this.signer.sign({
        method,
        protocol: url.protocol,
        hostname: url.hostname,
        ...(url.port !== '' && { port: Number(url.port) }),
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers,
        ...(text !== undefined && { body: text }),
      });
      headers = signed.headers as Record<string, string>;
    }
    const { host: _host, ...sent } = headers;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: sent,
        redirect: 'manual',
        ...(text !== undefined && { body: text }),
      });
    } catch (error) {
      throw new FanoutError(
        'API_UNREACHABLE',
        `cannot reach the fanout API at ${this.base.origin} (${(error as Error).message}); is \`fanout dev\` running, or is --api / FANOUT_API_URL right?`,
        { cause: error },
      );
    }
    const answer = {
      status: response.status,
      headers: response.headers,
      text: await response.text(),
    };
    if (answer.status >= 400) {
      let code = `HTTP_${answer.status}`;
      let message = answer.text;
      try {
        const parsed = JSON.parse(answer.text) as {
          error?: { code?: string; message?: string };
          message?: string;
        };
        code = parsed.error?.code ?? code;
        message = parsed.error?.message ?? parsed.message ?? message;
      } catch {
        // not JSON: keep the text
      }
      throw new ApiError(answer.status, code, message, answer.headers.get('retry-after'));
    }
    return answer;
  }

  /** Sends a request and parses its JSON answer. */
  async json<T>(
    method: string,
    path: string,
    body?: unknown,
    query?: Record<string, string>,
  ): Promise<T> {
    return JSON.parse((await this.request(method, path, body, query)).text) as T;
  }
}
