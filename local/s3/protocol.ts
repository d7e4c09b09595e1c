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
