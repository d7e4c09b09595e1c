/**
 * Verifies an AWS Signature Version 4 on a request to the local HTTP API, as API Gateway's IAM
 * authorizer does for a deployment (`fanout dev --auth FILE`): the canonical request (method,
 * path, query, the signed headers, the body's SHA-256), the credential scope (the date of
 * X-Amz-Date, the region, `execute-api`, `aws4_request`), a clock skew of at most 15 minutes,
 * and the session token when the principal has one. Written from the published algorithm; any
 * doubt answers "not verified", never an exception.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** A caller `--auth FILE` names: its keys, its ARN, whether it administers every job. */
export interface AuthPrincipal {
  accessKeyId: string;
  secretAccessKey: string;
  /** The caller as AWS would name it, e.g. `arn:aws:iam::111122223333:user/alice`. */
  arn: string;
  /** May see and manage every job (grantAdmin on AWS). */
  admin?: boolean;
  /** A temporary credential's session token: requests must then carry and sign it. */
  sessionToken?: string;
}

/** The request as it arrived. */
export interface SignedRequest {
  method: string;
  /** The path as sent, percent-encoded, without the query string. */
  path: string;
  /** The query string as sent, without `?`. */
  query: string;
  /** Header names in lower case; a repeated header's values joined by commas. */
  headers: Record<string, string>;
  body: Uint8Array;
}

/** Why a request was refused (what API Gateway would answer 403 for). */
export type Verdict = { principal: AuthPrincipal } | { refused: string };

/** The most a request's clock may be off. */
export const MAX_SKEW_MS = 15 * 60 * 1000;

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]{1,128})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32})\/aws4_request, ?SignedHeaders=([a-z0-9;-]{1,1024}), ?Signature=([0-9a-f]{64})$/;

/** Verifies the request's signature against `principals` (see the module's comment). */
export function verifySigV4(
  request: SignedRequest,
  principals: ReadonlyMap<string, AuthPrincipal>,
  options: { region: string; now: number },
): Verdict {
  const authorization = request.headers.authorization;
  if (authorization === undefined) return { refused: 'the request is not signed (SigV4)' };
  if (authorization.length > 4096) return { refused: 'the Authorization header is too long' };
  const match = AUTHORIZATION.exec(authorization);
  if (match === null) {
    return {
      refused:
        'the Authorization header is not AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/execute-api/aws4_request, SignedHeaders=..., Signature=...',
    };
  }
  const [, keyId, day, region, service, signedList, signature] = match as unknown as string[];
  const principal = principals.get(keyId as string);
  if (principal === undefined) return { refused: `the access key ${keyId} is not known` };
  if (region !== options.region || service !== 'execute-api') {
    return {
      refused: `the credential scope is ${region}/${service}; expected ${options.region}/execute-api`,
    };
  }
  const amzDate = request.headers['x-amz-date'] ?? '';
  const at = parseAmzDate(amzDate);
  if (at === undefined) return { refused: 'X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ' };
  if (amzDate.slice(0, 8) !== day) return { refused: 'the credential date is not X-Amz-Date’s' };
  if (Math.abs(options.now - at) > MAX_SKEW_MS) {
    return { refused: 'X-Amz-Date is more than 15 minutes from the server’s clock' };
  }
  const signed = (signedList as string).split(';');
  const sorted = [...signed].sort();
  if (signed.some((h, i) => h === '' || h !== sorted[i] || h === signed[i - 1])) {
    return { refused: 'SignedHeaders must be distinct lower-case names in order' };
  }
  for (const required of ['host', 'x-amz-date']) {
    if (!signed.includes(required)) return { refused: `${required} must be signed` };
  }
  for (const name of signed) {
    if (request.headers[name] === undefined) return { refused: `signed header ${name} is missing` };
  }
  const token = request.headers['x-amz-security-token'];
  if (principal.sessionToken !== undefined || token !== undefined) {
    if (token !== principal.sessionToken) return { refused: 'the session token does not match' };
    if (!signed.includes('x-amz-security-token')) {
      return { refused: 'x-amz-security-token must be signed' };
    }
  }
  const bodyHash = sha256(request.body);
  const claimed = request.headers['x-amz-content-sha256'];
  if (claimed !== undefined && claimed !== bodyHash) {
    return { refused: 'the body is not the one that was signed (X-Amz-Content-Sha256)' };
  }
  const canonical = [
    request.method.toUpperCase(),
    canonicalPath(request.path),
    canonicalQuery(request.query),
    `${signed.map((h) => `${h}:${canonicalValue(request.headers[h] as string)}`).join('\n')}\n`,
    signed.join(';'),
    bodyHash,
  ].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  let key: Buffer = hmac(`AWS4${principal.secretAccessKey}`, day as string);
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part as string);
  const expected = hmac(key, toSign);
  const given = Buffer.from(signature as string, 'hex');
  if (!timingSafeEqual(expected, given)) {
    return {
      refused: 'the signature does not match the request (wrong secret, or changed after signing)',
    };
  }
  return { principal };
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** `20261207T120000Z` as ms since the epoch; undefined when it is not that. */
function parseAmzDate(value: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  const at = Date.UTC(y as number, (mo as number) - 1, d, h, mi, s);
  return Number.isNaN(at) ? undefined : at;
}

/** RFC 3986 encoding, as SigV4 wants it: everything but unreserved characters. */
function encode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Each segment of the path as sent, encoded once more (SigV4 for services other than S3). */
function canonicalPath(path: string): string {
  return path
    .split('/')
    .map((segment) => encode(segment))
    .join('/');
}

/** The query's parameters, each name and value encoded, sorted by name then value. */
function canonicalQuery(query: string): string {
  if (query === '') return '';
  return query
    .split('&')
    .map((pair) => {
      const at = pair.indexOf('=');
      const [name, value] = at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
      return [encode(safeDecode(name)), encode(safeDecode(value))] as const;
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, '%20'));
  } catch {
    return text;
  }
}

/** A header's value trimmed, with runs of spaces made one. */
function canonicalValue(value: string): string {
  return value.trim().replace(/\s+/g, ' ');
}
