/**
 * The local S3 API server: s3rver 3.7.1 (a real S3 API over a data directory) behind a thin
 * compatibility layer for what fanout relies on and s3rver lacks:
 *
 * - If-Match on GET/HEAD answers 412 when the ETag differs (s3rver ignores it: a changed
 *   dataset would be read silently);
 * - If-None-Match: * and If-Match on PUT / CompleteMultipartUpload (conditional writes: job.json
 *   is create-only, status.json is compare-and-swap);
 * - per-key reader/writer locks, because s3rver writes objects in place (a GET racing a PUT
 *   could see half an object);
 * - ListObjectsV2 continuation tokens (s3rver encrypts them with DES, which OpenSSL 3 refuses:
 *   every truncated listing was a 500);
 * - aws-chunked request bodies (SigV4 streaming and default trailing checksums), which s3rver
 *   stores with their chunk framing;
 * - UploadPartCopy (a multipart part copied from another object), which s3rver does not
 *   implement and fanout uses to assemble map-only results without moving data;
 * - PutObject that stores nothing unless the whole body arrived intact: s3rver writes in place
 *   and keeps whatever a client sent before it aborted (a truncated object under the old
 *   metadata, or a new object holding part of its body), and ignores Content-MD5. Plain PUTs
 *   are received into a temporary file, checked against Content-Length and Content-MD5, and
 *   only then moved into place.
 *
 * It binds 127.0.0.1 only.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import S3rver from 's3rver';
import s3rverAccounts from 's3rver/lib/models/account.js';
import { crc64nvme, crc64ToBase64 } from '#core/base/crc64.ts';
import { keyProblem, MAX_KEY_BYTES } from '#core/model/keys.ts';
import type { S3Verdict } from '../iam/enforce.ts';
import { accessKeyOf } from '../iam/principals.ts';
import { createAwsChunkedDecoder, isAwsChunked } from './aws-chunked.ts';
import { type FileStore, replaceObject, storeDurably, writeAside } from './durable.ts';
import { FileBucket } from './files.ts';
import { KeyLocks } from './locks.ts';
import { keyOfStored, storedSegment, storeLongSegments } from './long-names.ts';
import {
  byUtf8,
  decodeCursor,
  encodeCursor,
  type ListCursor,
  listPage,
  parseRange,
  renderListV2,
  s3ErrorXml,
  sendS3Error,
} from './protocol.ts';

/** Options of {@link startS3Server}. */
export interface S3ServerOptions {
  /** Data directory; a temporary one, removed on close, when absent. Data here survives restarts. */
  dir?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** Buckets to create when missing. */
  buckets?: string[];
  /** Fault injection: return 'slowdown' to answer a request with 503 SlowDown. */
  faults?: (request: { method: string; bucket: string; key: string }) => 'slowdown' | undefined;
  /**
   * Authorizes every request as IAM would (local/iam/enforce.ts): a refusal is answered in S3's
   * shape; `denyMissing` makes a read of a missing key a 403 rather than a 404, as S3 answers a
   * caller that may not list the bucket. @default every request is allowed
   */
  authorize?: (
    req: IncomingMessage,
    target: { bucket: string; key: string; mounted: boolean },
    query: URLSearchParams,
  ) => S3Verdict;
}

/** Set on a request whose signer may not learn that a key is missing (see `authorize`). */
const DENY_MISSING = Symbol('deny missing');
const denyMissing = (req: unknown) =>
  (req as { [DENY_MISSING]?: boolean } | undefined)?.[DENY_MISSING] === true;

/** Request counts of a local S3 server. */
export interface S3Requests {
  get: number;
  put: number;
  head: number;
  list: number;
  post: number;
  delete: number;
  /** Requests that copy from another object (UploadPartCopy, CopyObject): also counted as PUTs. */
  copy: number;
}

/** A running local S3 server. */
export interface LocalS3Server {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  port: number;
  dir: string;
  /**
   * Serves a local directory in place as a read-only bucket (see local/s3/files.ts) and returns
   * the bucket's name; the same directory always gets the same bucket. Nothing is copied.
   */
  mount(directory: string): Promise<string>;
  /**
   * Requests answered so far, by kind as S3 bills them: `list` is a bucket-level GET
   * (ListObjectsV2), `get` an object GET; the others are by method.
   */
  requests(): S3Requests;
  /**
   * Calls `listener` with the bucket and key of every successful write (a PUT, a copy, a
   * completed multipart upload) once its answer is sent. What lets a local client follow an
   * object (a job's status.json) without polling it. Returns the unsubscribe function.
   */
  onWrite(listener: (bucket: string, key: string) => void): () => void;
  close(): Promise<void>;
}

type Ctx = Parameters<S3rver['middleware'][number]>[0];

function sendError(ctx: Ctx, status: number, code: string, message: string, extra = '') {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = s3ErrorXml(code, message, extra);
}

function parsePath(path: string): { bucket: string; key: string } {
  const [, bucket = '', ...rest] = path.split('/');
  return { bucket: decodeURIComponent(bucket), key: rest.map(decodeURIComponent).join('/') };
}

const header = (ctx: Ctx, name: string) => {
  const value = ctx.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** Why a request names a non-canonical key, list prefix or copy source; undefined if none. */
function nonCanonical(
  key: string,
  query: URLSearchParams,
  copySource: string | string[] | undefined,
): string | undefined {
  if (key !== '') {
    const problem = keyProblem(key);
    if (problem !== undefined) return `the key ${JSON.stringify(key)} ${problem}`;
  }
  const prefix = query.get('prefix');
  if (prefix !== null && keyProblem(prefix, true) !== undefined) {
    return `the prefix ${JSON.stringify(prefix)} ${keyProblem(prefix, true)}`;
  }
  if (typeof copySource === 'string') {
    let source: string;
    try {
      source = decodeURIComponent(copySource.split('?')[0] ?? '').replace(/^\//, '');
    } catch {
      return 'the copy source is not a valid URI';
    }
    const sourceKey = source.slice(source.indexOf('/') + 1);
    const problem = keyProblem(sourceKey);
    if (problem !== undefined) return `the copy source key ${JSON.stringify(sourceKey)} ${problem}`;
  }
  return undefined;
}

const OBJECT_SUFFIX = '._S3rver_object';

/**
 * The keys of a bucket's objects under `prefix`, in S3 order, from s3rver's files: only the
 * directory that holds the prefix is walked, and uploads in progress are not objects.
 */
async function keysUnder(ctx: Ctx, bucket: string, prefix: string): Promise<string[]> {
  const root = dirname(ctx.store.getResourcePath(bucket, 'x', 'object'));
  const slash = prefix.lastIndexOf('/');
  // The prefix's directories as stored (a long segment under its hashed name).
  const start =
    slash < 0 ? root : join(root, ...prefix.slice(0, slash).split('/').map(storedSegment));
  const entries = await readdir(start, { recursive: true, withFileTypes: true }).catch(() => []);
  const keys: string[] = [];
  for (const e of entries) {
    if (!e.isFile() || !e.name.endsWith(OBJECT_SUFFIX)) continue;
    const path = relative(root, join(e.parentPath, e.name));
    if (path.split(sep).some((part) => part.startsWith('._S3rver_'))) continue;
    const key = keyOfStored(root, path.slice(0, -OBJECT_SUFFIX.length).split(sep));
    if (key.startsWith(prefix)) keys.push(key);
  }
  return keys.sort(byUtf8);
}

/**
 * ListObjectsV2, answered here rather than by s3rver, whose listing counts only keys against
 * MaxKeys (a delimiter listing returned every common prefix), resumes after the last key (a
 * prefix listed twice), walks in file-name order rather than S3's, and encrypts its tokens with
 * DES, which OpenSSL 3 refuses.
 */
async function listObjectsV2(ctx: Ctx, bucket: string) {
  if ((await ctx.store.getBucket(bucket)) === null) {
    return sendError(ctx, 404, 'NoSuchBucket', 'The specified bucket does not exist');
  }
  const q = ctx.query as Record<string, string | undefined>;
  const maxKeys = Math.min(1000, Math.max(0, Number(q['max-keys'] ?? 1000) || 0));
  const prefix = q.prefix ?? '';
  const delimiter = q.delimiter ?? '';
  const token = q['continuation-token'];
  let after: ListCursor | undefined;
  if (token) {
    after = decodeCursor(token)?.cursor;
    if (after === undefined) {
      return sendError(ctx, 400, 'InvalidArgument', 'The continuation token provided is incorrect');
    }
  } else if (q['start-after']) {
    after = { after: q['start-after'], isPrefix: false };
  }
  const page = listPage(await keysUnder(ctx, bucket, prefix), {
    prefix,
    delimiter,
    maxKeys,
    ...(after && { after }),
  });
  const contents = (
    await Promise.all(
      page.keys.map(async (key) => {
        const meta = await ctx.store.getMetadata(bucket, key).catch(() => undefined);
        return meta === undefined
          ? undefined // removed since the walk
          : {
              key,
              size: Number(meta['content-length']),
              etag: meta.etag ?? '',
              lastModified: new Date(meta['last-modified'] ?? Date.now()),
            };
      }),
    )
  ).filter((c) => c !== undefined);
  ctx.status = 200;
  ctx.type = 'application/xml';
  ctx.body = renderListV2({
    bucket,
    prefix,
    delimiter,
    maxKeys,
    ...(token && { token }),
    ...(q['start-after'] && { startAfter: q['start-after'] }),
    contents,
    prefixes: page.prefixes,
    ...(page.next !== undefined && { next: encodeCursor(page.next) }),
  });
}

type Metadata = Record<string, string> | undefined;

function compatLayer(locks: KeyLocks) {
  return async (ctx: Ctx, next: () => Promise<void>) => {
    const { bucket, key } = parsePath(ctx.path);
    if (key === '') {
      if (ctx.method === 'GET' && ctx.query['list-type'] === '2' && bucket !== '') {
        return listObjectsV2(ctx, bucket);
      }
      return next();
    }
    if (isAwsChunked(ctx.headers)) decodeAwsChunked(ctx);
    const isPart = ctx.query.partNumber !== undefined;
    const uploadId = ctx.query.uploadId === undefined ? undefined : String(ctx.query.uploadId);
    // Multipart requests are checked against the upload before s3rver sees them: it answers
    // an unknown upload with 500 or by creating it, and a completion naming a part never
    // uploaded crashed the whole process (an unhandled ENOENT on the part's file).
    if (uploadId !== undefined && (ctx.method === 'PUT' || ctx.method === 'DELETE')) {
      const problem = await checkUpload(ctx, bucket, key, uploadId);
      if (problem !== undefined) return sendError(ctx, ...problem);
      if (ctx.method === 'DELETE') return abortUpload(ctx, bucket, uploadId, locks, key);
      if (isPart) {
        const partNumber = Number(ctx.query.partNumber);
        if (!(Number.isInteger(partNumber) && partNumber >= 1 && partNumber <= 10_000)) {
          return sendError(
            ctx,
            400,
            'InvalidArgument',
            'Part number must be an integer between 1 and 10000, inclusive',
          );
        }
        ctx.query = { ...ctx.query, partNumber: String(partNumber) };
      }
    }
    if (isPart && ctx.method === 'PUT' && header(ctx, 'x-amz-copy-source') !== undefined) {
      return uploadPartCopy(ctx, bucket, locks);
    }
    const isWrite =
      !isPart &&
      (ctx.method === 'PUT' ||
        ctx.method === 'DELETE' ||
        (ctx.method === 'POST' && ctx.query.uploadId !== undefined));
    const isRead = ctx.method === 'GET' || ctx.method === 'HEAD';
    if (!isWrite && !isRead) return next();

    const release = await locks.acquire(`${bucket}/${key}`, isWrite);
    ctx.res.once('close', release);
    // The object's metadata, read at most once per request (a pinned GET needs it twice).
    let metadata: Promise<Metadata> | undefined;
    const metadataOf = () =>
      (metadata ??= ctx.store.getMetadata(bucket, key).catch(() => undefined));
    try {
      const ifMatch = header(ctx, 'if-match');
      const ifNoneMatch = isWrite ? header(ctx, 'if-none-match') : undefined;
      if (ifMatch !== undefined || ifNoneMatch !== undefined) {
        const etag = (await metadataOf())?.etag;
        if (
          isRead &&
          ifMatch !== undefined &&
          etag !== undefined &&
          ifMatch !== '*' &&
          ifMatch !== etag
        ) {
          return sendError(
            ctx,
            412,
            'PreconditionFailed',
            'At least one of the pre-conditions you specified did not hold',
            '<Condition>If-Match</Condition>',
          );
        }
        if (isWrite && ifNoneMatch === '*' && etag !== undefined) {
          return sendError(
            ctx,
            412,
            'PreconditionFailed',
            'At least one of the pre-conditions you specified did not hold',
            '<Condition>If-None-Match</Condition>',
          );
        }
        if (
          isWrite &&
          ifMatch !== undefined &&
          (etag === undefined || (ifMatch !== '*' && ifMatch !== etag))
        ) {
          return etag === undefined
            ? sendError(ctx, 404, 'NoSuchKey', 'The specified key does not exist.')
            : sendError(
                ctx,
                412,
                'PreconditionFailed',
                'At least one of the pre-conditions you specified did not hold',
                '<Condition>If-Match</Condition>',
              );
        }
      }
      if (isRead && denyMissing(ctx.req) && (await metadataOf()) === undefined) {
        return sendError(ctx, 403, 'AccessDenied', 'Access Denied');
      }
      if (ctx.method === 'POST' && uploadId !== undefined) {
        const problem = await checkCompletion(ctx, bucket, key, uploadId);
        if (problem !== undefined) return sendError(ctx, ...problem);
      }
      if (ctx.method === 'GET' && (await serveObject(ctx, bucket, key, metadataOf))) return;
      if (ctx.method === 'PUT' && !isPart && (await putObject(ctx, bucket, key))) return;
      await next();
      if (ctx.method === 'HEAD' && ctx.status === 200)
        await addChecksum(ctx, bucket, key, metadataOf);
    } catch (error) {
      release();
      throw error;
    }
  };
}

/**
 * A body in aws-chunked framing (SigV4 streaming, default trailing checksums), decoded before
 * s3rver sees it: s3rver would store the framing with the bytes.
 */
function decodeAwsChunked(ctx: Ctx): void {
  const decoded = createAwsChunkedDecoder();
  const length = header(ctx, 'x-amz-decoded-content-length');
  const headers = ctx.req.headers;
  delete headers['content-encoding'];
  delete headers['x-amz-trailer'];
  headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  if (length !== undefined) headers['content-length'] = length;
  ctx.req.pipe(decoded);
  Object.assign(decoded, { headers });
  ctx.req = decoded as unknown as Ctx['req'];
}

/**
 * S3's ChecksumMode on a HEAD s3rver answered: the full-object CRC-64/NVME S3 keeps for new
 * objects (s3rver keeps none), computed once per object version.
 */
async function addChecksum(
  ctx: Ctx,
  bucket: string,
  key: string,
  metadataOf: () => Promise<Metadata>,
): Promise<void> {
  if (header(ctx, 'x-amz-checksum-mode')?.toUpperCase() !== 'ENABLED') return;
  const etag = (await metadataOf())?.etag;
  if (etag === undefined) return;
  const crc = await storedChecksum(ctx.store.getResourcePath(bucket, key, 'object'), etag);
  ctx.set('x-amz-checksum-crc64nvme', crc64ToBase64(crc));
  ctx.set('x-amz-checksum-type', 'FULL_OBJECT');
}

/** Stored objects' CRC-64/NVME by path and ETag (a stored object is replaced, never edited). */
const checksums = new Map<string, string>();

async function storedChecksum(path: string, etag: string): Promise<string> {
  const id = `${path}\0${etag}`;
  let crc = checksums.get(id);
  if (crc === undefined) {
    crc = crc64nvme(new Uint8Array());
    for await (const piece of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
      crc = crc64nvme(piece as Uint8Array, crc);
    }
    checksums.set(id, crc);
  }
  return crc;
}

type S3Problem = [status: number, code: string, message: string];

const NO_SUCH_UPLOAD: S3Problem = [
  404,
  'NoSuchUpload',
  'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
];

/** s3rver's directory of one upload (its parts, `key` and `metadata` files). */
const uploadDir = (ctx: Ctx, bucket: string, uploadId: string) =>
  join(ctx.store.getResourcePath(bucket, '', 'uploads'), uploadId);

/** NoSuchUpload unless `uploadId` names an upload in progress for this very key. */
async function checkUpload(
  ctx: Ctx,
  bucket: string,
  key: string,
  uploadId: string,
): Promise<S3Problem | undefined> {
  // s3rver's ids are 32 hex digits; anything else (`../x`) must not become a path.
  if (!/^[0-9a-f]{32}$/.test(uploadId)) return NO_SUCH_UPLOAD;
  const owner = await readFile(join(uploadDir(ctx, bucket, uploadId), 'key'), 'utf8').catch(
    () => undefined,
  );
  return owner === key ? undefined : NO_SUCH_UPLOAD;
}

/** S3's minimum size of every part but the last. */
const MIN_PART_BYTES = 5 * 1024 * 1024;

/**
 * CompleteMultipartUpload, checked as S3 checks it before s3rver assembles anything: the upload
 * exists (404 NoSuchUpload), the body lists parts (400 MalformedXML) in strictly ascending order
 * (400 InvalidPartOrder), each uploaded in full with the ETag given (400 InvalidPart), all but
 * the last at least 5 MiB (400 EntityTooSmall). The body is read here and handed on to s3rver.
 */
async function checkCompletion(
  ctx: Ctx,
  bucket: string,
  key: string,
  uploadId: string,
): Promise<S3Problem | undefined> {
  const missing = await checkUpload(ctx, bucket, key, uploadId);
  if (missing !== undefined) return missing;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const piece of ctx.req as AsyncIterable<Buffer>) {
    size += piece.length;
    if (size > 1024 * 1024) return [400, 'MalformedXML', 'The XML you provided was too large.'];
    chunks.push(piece);
  }
  const body = Buffer.concat(chunks);
  const headers = ctx.req.headers;
  ctx.req = Object.assign(Readable.from([body]), { headers }) as unknown as Ctx['req'];
  const parts = [...body.toString('utf8').matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
    number: Number(/<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(m[1] ?? '')?.[1]),
    etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1] ?? '')?.[1] ?? '')
      .replace(/&quot;|&#34;|"/g, '')
      .trim()
      .toLowerCase(),
  }));
  const malformed: S3Problem = [
    400,
    'MalformedXML',
    'The XML you provided was not well-formed or did not validate against our published schema.',
  ];
  if (parts.length === 0 || parts.some((p) => !Number.isInteger(p.number) || p.etag === '')) {
    return malformed;
  }
  if (parts.some((p, i) => i > 0 && p.number <= (parts[i - 1] as { number: number }).number)) {
    return [400, 'InvalidPartOrder', 'The list of parts was not in ascending order.'];
  }
  const dir = uploadDir(ctx, bucket, uploadId);
  for (const [i, part] of parts.entries()) {
    const invalid: S3Problem = [
      400,
      'InvalidPart',
      `One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part ${part.number})`,
    ];
    // s3rver writes a part's .md5 once the whole part has arrived.
    const md5 = await readFile(join(dir, `${part.number}.md5`), 'utf8').catch(() => undefined);
    const stats = await stat(join(dir, String(part.number))).catch(() => undefined);
    if (md5 === undefined || stats === undefined || md5.trim() !== part.etag) return invalid;
    if (i < parts.length - 1 && stats.size < MIN_PART_BYTES) {
      return [
        400,
        'EntityTooSmall',
        `Your proposed upload is smaller than the minimum allowed object size. (part ${part.number}: ${stats.size} bytes; every part but the last must be at least 5 MiB)`,
      ];
    }
  }
  return undefined;
}

/** AbortMultipartUpload (s3rver answers 405 and keeps the parts): removes the upload. */
async function abortUpload(
  ctx: Ctx,
  bucket: string,
  uploadId: string,
  locks: KeyLocks,
  key: string,
) {
  const release = await locks.acquire(`${bucket}/${key}`, true);
  try {
    await rm(uploadDir(ctx, bucket, uploadId), { recursive: true, force: true });
    ctx.status = 204;
    ctx.body = '';
  } finally {
    release();
  }
}

/** UploadPartCopy: copies (a range of) a source object into a multipart upload's part. */
async function uploadPartCopy(ctx: Ctx, bucket: string, locks: KeyLocks) {
  const raw = decodeURIComponent(header(ctx, 'x-amz-copy-source') ?? '').replace(/^\//, '');
  const slash = raw.indexOf('/');
  const sourceBucket = raw.slice(0, slash);
  const sourceKey = raw.slice(slash + 1).split('?')[0] ?? '';
  const release = await locks.acquire(`${sourceBucket}/${sourceKey}`, false);
  try {
    let meta: Record<string, string>;
    try {
      meta = await ctx.store.getMetadata(sourceBucket, sourceKey);
    } catch {
      return sendError(ctx, 404, 'NoSuchKey', 'The specified key does not exist.');
    }
    const ifMatch = header(ctx, 'x-amz-copy-source-if-match');
    if (ifMatch !== undefined && ifMatch !== meta.etag) {
      return sendError(
        ctx,
        412,
        'PreconditionFailed',
        'At least one of the pre-conditions you specified did not hold',
        '<Condition>x-amz-copy-source-If-Match</Condition>',
      );
    }
    const size = Number(meta['content-length']);
    const range = /^bytes=(\d+)-(\d+)$/.exec(header(ctx, 'x-amz-copy-source-range') ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range ? Math.min(size - 1, Number(range[2])) : size - 1;
    const content =
      size === 0
        ? Readable.from([])
        : createReadStream(ctx.store.getResourcePath(sourceBucket, sourceKey, 'object'), {
            start,
            end,
            highWaterMark: 1024 * 1024,
          });
    const { md5 } = await ctx.store.putPart(
      bucket,
      String(ctx.query.uploadId),
      Number(ctx.query.partNumber),
      content,
    );
    ctx.status = 200;
    ctx.type = 'application/xml';
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><LastModified>${new Date().toISOString()}</LastModified><ETag>"${md5}"</ETag></CopyPartResult>`;
  } finally {
    release();
  }
}

/**
 * Plain and single-range GETs of an object, served straight from its file in 1 MiB reads.
 * Workers stream datasets through these; s3rver's own path reads 64 KiB at a time through
 * Koa's routing and costs the host several times the CPU. Anything else (subresources,
 * If-None-Match, multiple ranges) goes to s3rver.
 */
async function serveObject(
  ctx: Ctx,
  bucket: string,
  key: string,
  metadataOf: () => Promise<Metadata>,
): Promise<boolean> {
  const extra = Object.keys(ctx.query).filter((q) => q !== 'x-id');
  if (
    extra.length > 0 ||
    header(ctx, 'if-none-match') !== undefined ||
    header(ctx, 'if-modified-since') !== undefined
  ) {
    return false;
  }
  const meta = await metadataOf();
  if (meta === undefined) return false; // s3rver answers NoSuchKey / NoSuchBucket itself
  const size = Number(meta['content-length']);
  const range = parseRange(header(ctx, 'range'), size);
  if (range === 'invalid') return false; // s3rver answers InvalidRange (or ignores the header)
  const [start, end] = range ?? [0, size - 1];
  if (range === undefined) ctx.status = 200;
  else {
    ctx.status = 206;
    ctx.set('Content-Range', `bytes ${start}-${end}/${size}`);
  }
  for (const name of [
    'content-type',
    'etag',
    'last-modified',
    'content-encoding',
    'cache-control',
    'content-disposition',
  ]) {
    if (meta[name] !== undefined) ctx.set(name, String(meta[name]));
  }
  for (const [name, value] of Object.entries(meta)) {
    if (name.startsWith('x-amz-meta-')) ctx.set(name, value);
  }
  ctx.set('Accept-Ranges', 'bytes');
  const path = ctx.store.getResourcePath(bucket, key, 'object');
  ctx.body = size === 0 ? '' : createReadStream(path, { start, end, highWaterMark: 1024 * 1024 });
  ctx.set('Content-Length', String(size === 0 ? 0 : end - start + 1));
  return true;
}

/** The object metadata s3rver keeps (its S3Object.ALLOWED_METADATA), plus x-amz-meta-*. */
const STORED_HEADERS = [
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-type',
  'expires',
  'x-amz-website-redirect-location',
];

/**
 * A plain PutObject, all or nothing: the body goes to a temporary file (hashed as it arrives)
 * and replaces the object, in s3rver's own layout, only when exactly Content-Length bytes came
 * and they match a Content-MD5 if one was sent. A body cut short is 400 IncompleteBody, a wrong
 * digest 400 BadDigest, and an aborted request leaves the old object as it was. Copies,
 * subresources, storage classes and unknown buckets go to s3rver. Runs under the key's write
 * lock.
 */
async function putObject(ctx: Ctx, bucket: string, key: string): Promise<boolean> {
  const declared = header(ctx, 'content-length');
  if (
    Object.keys(ctx.query).some((q) => q !== 'x-id') ||
    header(ctx, 'x-amz-copy-source') !== undefined ||
    header(ctx, 'x-amz-storage-class') !== undefined ||
    declared === undefined ||
    !(await ctx.store.getBucket(bucket))
  ) {
    return false;
  }
  let written: { file: string; size: number; md5: string };
  try {
    written = await writeAside(ctx.store as unknown as FileStore, bucket, key, ctx.req);
  } catch (error) {
    if ((ctx.req as unknown as Readable).destroyed) {
      ctx.res.destroy(); // the client is gone: there is no one to answer
      return true;
    }
    throw error;
  }
  const temporary = written.file;
  if (written.size !== Number(declared)) {
    await rm(temporary, { force: true });
    sendError(
      ctx,
      400,
      'IncompleteBody',
      'You did not provide the number of bytes specified by the Content-Length HTTP header.',
    );
    return true;
  }
  const digest = Buffer.from(written.md5, 'hex');
  // S3 checks a Content-MD5 the client sent; s3rver ignores it and would keep a corrupted body.
  const contentMd5 = header(ctx, 'content-md5');
  if (contentMd5 !== undefined && contentMd5 !== digest.toString('base64')) {
    await rm(temporary, { force: true });
    sendError(
      ctx,
      400,
      'BadDigest',
      'The Content-MD5 you specified did not match what we received.',
    );
    return true;
  }
  const etag = written.md5;
  const metadata: Record<string, string> = { 'content-type': 'binary/octet-stream' };
  for (const [name, value] of Object.entries(ctx.headers)) {
    if (typeof value !== 'string') continue;
    if (STORED_HEADERS.includes(name) || name.startsWith('x-amz-meta-')) metadata[name] = value;
  }
  // Body, metadata and MD5 in an order that a crash at any point leaves readable (durable.ts).
  await replaceObject(ctx.store as unknown as FileStore, bucket, key, temporary, metadata, etag);
  ctx.status = 200;
  ctx.set('ETag', JSON.stringify(etag));
  ctx.body = '';
  return true;
}

/** Starts the local S3 server on 127.0.0.1. */
export async function startS3Server(options: S3ServerOptions = {}): Promise<LocalS3Server> {
  const owned = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'fanout-s3-')));
  const server = new S3rver({
    address: '127.0.0.1',
    port: options.port ?? 0,
    silent: true,
    directory: dir,
    vhostBuckets: false,
    configureBuckets: (options.buckets ?? []).map((name) => ({ name })),
  });
  // Koa composes its middleware list per request, so a layer put first sees every request.
  server.middleware.unshift(compatLayer(new KeyLocks()) as S3rver['middleware'][number]);
  // Any legal key, however long its segments: file names are limited to 255 bytes.
  storeLongSegments(server.store as unknown as Parameters<typeof storeLongSegments>[0]);
  // Every write whole or not at all, so a killed server leaves no torn object behind.
  storeDurably(server.store as unknown as FileStore);
  server.on('error', () => undefined); // per-request errors are answered; don't crash the host
  const { port } = await server.run();

  // In front of s3rver's Koa app: fault injection for every request, and the file buckets,
  // which never reach Koa.
  const mounts = new Map<string, FileBucket>();
  const httpServer = server.httpServer as Server;
  const [koa] = httpServer.listeners('request') as ((
    req: IncomingMessage,
    res: ServerResponse,
  ) => void)[];
  httpServer.removeAllListeners('request');
  const counts: S3Requests = { get: 0, put: 0, head: 0, list: 0, post: 0, delete: 0, copy: 0 };
  const writeListeners = new Set<(bucket: string, key: string) => void>();
  httpServer.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let target: { bucket: string; key: string };
    try {
      target = parsePath(q < 0 ? url : url.slice(0, q));
    } catch {
      req.resume();
      return sendS3Error(res, 400, 'InvalidURI', "Couldn't parse the specified URI.");
    }
    const method = (req.method ?? 'GET').toLowerCase();
    // Keys map to file paths here: a key that is not canonical (`..`, `.` or empty segments,
    // backslashes, %2e, control characters) could name another object's file, so it is refused
    // before anything reads or writes it, as are such list prefixes and copy sources.
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    const problem = nonCanonical(target.key, query, req.headers['x-amz-copy-source']);
    if (problem !== undefined) {
      req.resume();
      // S3's own code for a key past 1,024 bytes; InvalidArgument for the rest of our rules.
      const code =
        Buffer.byteLength(target.key) > MAX_KEY_BYTES ? 'KeyTooLongError' : 'InvalidArgument';
      return sendS3Error(res, 400, code, problem);
    }
    const files = mounts.get(target.bucket);
    const verdict = options.authorize?.(req, { ...target, mounted: files !== undefined }, query);
    if (verdict !== undefined && !verdict.ok) {
      req.resume();
      return sendS3Error(res, verdict.status, verdict.code, verdict.message);
    }
    if (verdict?.denyMissing === true) {
      (req as unknown as { [DENY_MISSING]: boolean })[DENY_MISSING] = true;
    }
    if (verdict !== undefined) {
      // Authorized here: s3rver's own check (is the access key id one it knows?) must agree.
      const key = accessKeyOf(req);
      if (key !== undefined && !s3rverAccounts.registry.has(key)) {
        s3rverAccounts.DUMMY_ACCOUNT.createKeyPair(key, key);
      }
    }
    if (req.headers['x-amz-copy-source'] !== undefined) counts.copy += 1;
    if (method === 'get' && target.key === '') counts.list += 1;
    else if (method in counts) counts[method as keyof S3Requests] += 1;
    if (options.faults?.({ method: req.method ?? 'GET', ...target }) === 'slowdown') {
      req.resume();
      return sendS3Error(res, 503, 'SlowDown', 'Please reduce your request rate.');
    }
    if (method === 'put' || (method === 'post' && query.has('uploadId'))) {
      res.once('finish', () => {
        if (res.statusCode < 300)
          for (const listener of writeListeners) listener(target.bucket, target.key);
      });
    }
    if (files === undefined) return koa?.(req, res);
    files.handle(req, res, target.key, query, denyMissing(req)).catch((error: Error) => {
      if (!res.headersSent) sendS3Error(res, 500, 'InternalError', error.message);
      else res.destroy();
    });
  });

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    dir,
    requests: () => ({ ...counts }),
    onWrite(listener) {
      writeListeners.add(listener);
      return () => writeListeners.delete(listener);
    },
    async mount(directory) {
      const root = await realpath(directory);
      if (!(await stat(root)).isDirectory()) {
        throw new Error(`${directory} is not a directory`);
      }
      const name = `fanout-files-${createHash('sha256').update(root).digest('hex').slice(0, 12)}`;
      if (!mounts.has(name)) mounts.set(name, new FileBucket(name, root));
      return name;
    },
    async close() {
      server.httpServer?.closeAllConnections();
      await server.close();
      if (owned) await rm(dir, { recursive: true, force: true });
    },
  };
}
