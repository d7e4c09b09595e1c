/** The bits of S3's wire format the local S3 layer writes itself: errors, listings, ranges. */
import type { ServerResponse } from 'node:http';

export const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** An S3 error document. */
export function s3ErrorXml(code: string, message: string, extra = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>${extra}<RequestId>local</RequestId></Error>`;
}

/** Answers with an S3 error document. */
export function sendS3Error(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  extra = '',
): void {
  const body = s3ErrorXml(code, message, extra);
  res.writeHead(status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** One page of a ListObjectsV2 answer. */
export interface ListPage {
  bucket: string;
  prefix: string;
  delimiter: string;
  maxKeys: number;
  /** The continuation token the request carried. */
  token?: string;
  startAfter?: string;
  contents: { key: string; size: number; etag: string; lastModified: Date }[];
  prefixes: string[];
  /** The token of the next page, when the listing is truncated. */
  next?: string;
}

/** The ListBucketResult document of a ListObjectsV2 page. */
export function renderListV2(page: ListPage): string {
  const contents = page.contents
    .map(
      (o) =>
        `<Contents><Key>${xmlEscape(o.key)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${xmlEscape(o.etag)}</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
    )
    .join('');
  const prefixes = page.prefixes
    .map((p) => `<CommonPrefixes><Prefix>${xmlEscape(p)}</Prefix></CommonPrefixes>`)
    .join('');
  const keyCount = page.contents.length + page.prefixes.length;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${xmlEscape(page.bucket)}</Name><Prefix>${xmlEscape(page.prefix)}</Prefix>${page.token ? `<ContinuationToken>${xmlEscape(page.token)}</ContinuationToken>` : ''}${!page.token && page.startAfter ? `<StartAfter>${xmlEscape(page.startAfter)}</StartAfter>` : ''}<KeyCount>${keyCount}</KeyCount><MaxKeys>${page.maxKeys}</MaxKeys>${page.delimiter ? `<Delimiter>${xmlEscape(page.delimiter)}</Delimiter>` : ''}<IsTruncated>${page.next !== undefined}</IsTruncated>${page.next !== undefined ? `<NextContinuationToken>${page.next}</NextContinuationToken>` : ''}${contents}${prefixes}</ListBucketResult>`;
}

/** S3 lists keys in the order of their UTF-8 bytes. */
export const byUtf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Where a listing page ended: its last key, or its last common prefix. */
export interface ListCursor {
  after: string;
  isPrefix: boolean;
}

/** A continuation token for a cursor (opaque to clients, as on S3), and back. */
export const encodeCursor = (cursor: ListCursor, extra: unknown[] = []) =>
  Buffer.from(JSON.stringify([cursor.after, cursor.isPrefix, ...extra]), 'utf8').toString(
    'base64url',
  );
export function decodeCursor(token: string): { cursor: ListCursor; extra: unknown[] } | undefined {
  try {
    const [after, isPrefix, ...extra] = JSON.parse(
      Buffer.from(token, 'base64url').toString('utf8'),
    );
    if (typeof after !== 'string' || typeof isPrefix !== 'boolean') return undefined;
    return { cursor: { after, isPrefix }, extra };
  } catch {
    return undefined;
  }
}

/**
 * One ListObjectsV2 page over keys sorted in S3 order ({@link byUtf8}), as S3 pages: keys under
 * `prefix` after the cursor, those with `delimiter` past the prefix rolled up into common
 * prefixes, keys and common prefixes together counted against `maxKeys`. The page ends early
 * (with `next`) when more remain. A page that ended on a common prefix resumes after every key
 * under it, so no prefix is listed twice and none is lost; likewise a StartAfter that is a
 * common prefix skips it.
 */
export function listPage(
  sorted: readonly string[],
  options: { prefix: string; delimiter: string; maxKeys: number; after?: ListCursor },
): { keys: string[]; prefixes: string[]; next?: ListCursor } {
  const { prefix, delimiter, maxKeys, after } = options;
  const keys: string[] = [];
  const prefixes: string[] = [];
  let last: ListCursor | undefined;
  for (const key of sorted) {
    if (!key.startsWith(prefix)) continue;
    if (
      after !== undefined &&
      (byUtf8(key, after.after) <= 0 || (after.isPrefix && key.startsWith(after.after)))
    ) {
      continue;
    }
    const rest = key.slice(prefix.length);
    const cut = delimiter === '' ? -1 : rest.indexOf(delimiter);
    const common = cut < 0 ? undefined : prefix + rest.slice(0, cut + delimiter.length);
    if (common !== undefined && last?.isPrefix === true && common === last.after) continue;
    // As on S3, a common prefix at or before the start (StartAfter `a/` after a page that ended
    // on `a/`) is not listed again, though keys under it sort after the start.
    if (common !== undefined && after !== undefined && byUtf8(common, after.after) <= 0) continue;
    if (keys.length + prefixes.length >= maxKeys) {
      return last === undefined ? { keys, prefixes } : { keys, prefixes, next: last };
    }
    if (common === undefined) {
      keys.push(key);
      last = { after: key, isPrefix: false };
    } else {
      prefixes.push(common);
      last = { after: common, isPrefix: true };
    }
  }
  return { keys, prefixes };
}

/**
 * A `Range` header (`bytes=a-b`, `bytes=a-` or `bytes=-n`) over an object of `size` bytes: the
 * inclusive byte range, `undefined` without a header, or `'invalid'` (416) when it is malformed
 * or starts past the end. Multiple ranges are not supported (`'invalid'`).
 */
export function parseRange(
  header: string | undefined,
  size: number,
): [number, number] | undefined | 'invalid' {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end = size - 1;
  if (m[1] === '') start = Math.max(0, size - Number(m[2]));
  else {
    start = Number(m[1]);
    if (m[2] !== '') end = Math.min(end, Number(m[2]));
  }
  return start >= size || start > end ? 'invalid' : [start, end];
}
