/** The ObjectStore port over `@aws-sdk/client-s3` (AWS, or the local S3 server). */

import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { crc64FromBase64 } from '#core/base/crc64.ts';
import {
  AccessDeniedError,
  DatasetChangedError,
  NotFoundError,
  PreconditionFailedError,
  ValidationError,
} from '#core/base/errors.ts';
import type {
  ObjectInfo,
  ObjectStore,
  PutOptions,
  UploadOptions,
  UrlSigner,
} from '#core/base/ports.ts';
import { keepAliveAgents } from './agents.ts';
import { clientAttempts, clientTargets, LeanS3, LeanS3Error } from './s3-lean.ts';

/**
 * Presigning (the API's uploads and downloads) and multipart uploads of unknown length (a large
 * map-only part) are loaded when first used: every worker, coordinator and reducer cold start
 * would otherwise compile them, and most never use them.
 */
const getSignedUrl: typeof import('@aws-sdk/s3-request-presigner').getSignedUrl = async (...args) =>
  (await import('@aws-sdk/s3-request-presigner')).getSignedUrl(...args);

/** S3's largest single PUT. */
const MAX_SINGLE_PUT = 5 * 1024 ** 3;

/** Options of {@link S3ObjectStore}. */
export interface S3ObjectStoreOptions {
  /** Keys per ListObjectsV2 page (S3's maximum is 1000). @default 1000 */
  pageSize?: number;
  /** Multipart part size for `upload`. @default 8 MiB */
  partSize?: number;
  /** Parts uploaded at once by `upload`. @default 4 */
  queueSize?: number;
  /** Sockets of the lean dataset GETs (beside the client's own). @default 64 */
  leanSockets?: number;
}

const statusOf = (error: unknown) =>
  (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
const nameOf = (error: unknown) => (error as { name?: string })?.name;
const isMissing = (error: unknown) =>
  statusOf(error) === 404 ||
  ['NoSuchKey', 'NotFound', 'NoSuchVersion'].includes(nameOf(error) ?? '');
/** S3's 403: AccessDenied with a body, Forbidden for a HEAD (which has none). */
const isForbidden = (error: unknown) => statusOf(error) === 403;
const isConditionFailed = (error: unknown) =>
  statusOf(error) === 412 ||
  statusOf(error) === 409 ||
  ['PreconditionFailed', 'ConditionalRequestConflict'].includes(nameOf(error) ?? '');

/** S3 implementation of {@link ObjectStore} and {@link UrlSigner}; the client is injected. */
/** S3's answers to a CompleteMultipartUpload whose part list is wrong. */
const COMPLETION_ERRORS = new Set([
  'InvalidPart',
  'InvalidPartOrder',
  'EntityTooSmall',
  'MalformedXML',
]);

export class S3ObjectStore implements ObjectStore, UrlSigner {
  private readonly pageSize: number;
  private readonly partSize: number;
  private readonly queueSize: number;

  /** Dataset reads: one signed GET each, without the SDK's request path (see s3-lean.ts). */
  private readonly lean: LeanS3;

  constructor(
    private readonly client: S3Client,
    options: S3ObjectStoreOptions = {},
  ) {
    this.lean = new LeanS3(
      clientTargets(client),
      keepAliveAgents(options.leanSockets ?? 64),
      clientAttempts(client),
    );
    this.pageSize = options.pageSize ?? 1000;
    this.partSize = options.partSize ?? 8 * 1024 * 1024;
    this.queueSize = options.queueSize ?? 4;
  }

  async head(bucket: string, key: string, options?: { checksum?: boolean }): Promise<ObjectInfo> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({
          Bucket: bucket,
          Key: key,
          ...(options?.checksum === true && { ChecksumMode: 'ENABLED' }),
        }),
      );
      // Only a full-object checksum describes the bytes (a multipart upload's composite one
      // is a checksum of its parts' checksums).
      const crc64 =
        out.ChecksumCRC64NVME !== undefined && out.ChecksumType !== 'COMPOSITE'
          ? crc64FromBase64(out.ChecksumCRC64NVME)
          : undefined;
      return {
        bucket,
        key,
        size: out.ContentLength ?? 0,
        etag: out.ETag ?? '',
        ...(out.VersionId !== undefined &&
          out.VersionId !== 'null' && { versionId: out.VersionId }),
        ...(crc64 !== undefined && { crc64 }),
      };
    } catch (error) {
      if (isMissing(error) || (isForbidden(error) && (await this.absent(bucket, key)))) {
        throw new NotFoundError(`no object at s3://${bucket}/${key}`, { cause: error });
      }
      throw this.refused(error, `HEAD s3://${bucket}/${key}`);
    }
  }

  /**
   * A 403 that a listing did not show to be a missing key: a refusal, named with what was
   * refused. Anything else is passed on as it is.
   */
  private refused(error: unknown, what: string): unknown {
    if (!isForbidden(error)) return error;
    const detail = (error as Error).message;
    return new AccessDeniedError(
      `${what} was refused (403 AccessDenied${detail && detail !== 'UnknownError' ? `: ${detail}` : ''}); the deployment's role for this function lacks the permission`,
      { cause: error },
    );
  }

  /**
   * Whether `key` does not exist, asked of a listing: S3 answers a read of a missing key with
   * 403 rather than 404 when the caller may not list the bucket (s3:ListBucket, perhaps only
   * under a prefix). False when the key is there, or when the listing is refused too: a 403 is
   * then a refusal, and stays one.
   */
  private async absent(bucket: string, key: string): Promise<boolean> {
    try {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: key, MaxKeys: 1 }),
      );
      // The key itself sorts first among the keys it prefixes.
      return page.Contents?.[0]?.Key !== key;
    } catch {
      return false;
    }
  }

  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          MaxKeys: this.pageSize,
          ...(token !== undefined && { ContinuationToken: token }),
        }),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        out.push({ bucket, key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? '' });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    // S3 lists in UTF-8 binary key order; sort the same way whatever the server did.
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async listPrefixes(
    bucket: string,
    prefix: string,
    options: { startAfter?: string; limit: number },
  ): Promise<{ prefixes: string[]; next?: string }> {
    const page = await this.client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: prefix,
        Delimiter: '/',
        MaxKeys: options.limit,
        ...(options.startAfter !== undefined && { StartAfter: options.startAfter }),
      }),
    );
    const prefixes = (page.CommonPrefixes ?? []).flatMap((p) => (p.Prefix ? [p.Prefix] : []));
    const last = prefixes.at(-1);
    return { prefixes, ...(page.IsTruncated && last !== undefined && { next: last }) };
  }

  /**
   * A presigned URL stops working when the credentials that signed it expire, whatever it asked
   * for: where the credentials say when (an STS session's expiration), no URL asks for longer.
   */
  private async presignSeconds(requested: number): Promise<number> {
    const provider = this.client.config.credentials as unknown as () => Promise<{
      expiration?: Date;
    }>;
    const expiration = (await provider().catch(() => undefined))?.expiration;
    if (expiration === undefined) return requested;
    const left = Math.floor((expiration.getTime() - Date.now()) / 1000) - 30;
    return Math.max(1, Math.min(requested, left));
  }

  async presignGet(bucket: string, key: string, expiresSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: await this.presignSeconds(expiresSeconds),
    });
  }

  async presignPut(bucket: string, key: string, expiresSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new PutObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: await this.presignSeconds(expiresSeconds),
    });
  }

  async createMultipartUpload(bucket: string, key: string): Promise<string> {
    const out = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
    );
    if (out.UploadId === undefined) throw new Error(`S3 returned no upload id for ${key}`);
    return out.UploadId;
  }

  async presignUploadPart(
    bucket: string,
    key: string,
    uploadId: string,
    partNumber: number,
    expiresSeconds: number,
  ): Promise<string> {
    const expiresIn = await this.presignSeconds(expiresSeconds);
    return getSignedUrl(
      this.client,
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
      }),
      { expiresIn },
    );
  }

  async completeMultipartUpload(
    bucket: string,
    key: string,
    uploadId: string,
    parts: { partNumber: number; etag: string }[],
  ): Promise<{ etag: string }> {
    try {
      const out = await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: {
            Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })),
          },
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (error) {
      if (isMissing(error) || nameOf(error) === 'NoSuchUpload') {
        throw new NotFoundError(
          `no multipart upload ${uploadId} for s3://${bucket}/${key} (unknown, completed or aborted)`,
          { cause: error },
        );
      }
      // The parts the client listed do not make an upload (S3's 400s): the caller's mistake.
      const code = nameOf(error);
      if (code !== undefined && COMPLETION_ERRORS.has(code)) {
        throw new ValidationError(
          `cannot complete the upload of s3://${bucket}/${key}: ${code}: ${(error as Error).message}; list every uploaded part once, in ascending order, with the ETag its upload returned`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async *readRange(object: ObjectInfo, start: number, end: number): AsyncIterable<Uint8Array> {
    const stop = Math.min(end, object.size);
    if (start >= stop) return;
    let body: AsyncIterable<Uint8Array> | undefined;
    try {
      body = await this.lean.open(object, start, stop);
    } catch (error) {
      if (
        error instanceof LeanS3Error &&
        (error.status === 404 ||
          error.status === 412 ||
          (error.status === 403 && (await this.absent(object.bucket, object.key))))
      ) {
        throw new DatasetChangedError(object.key, { cause: error });
      }
      if (error instanceof LeanS3Error && error.status === 403) {
        throw new AccessDeniedError(
          `GET s3://${object.bucket}/${object.key} was refused (403 ${error.code}); the deployment's role for this function lacks the permission`,
          { cause: error },
        );
      }
      throw error;
    }
    if (body !== undefined) {
      yield* body;
      return;
    }
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: object.bucket,
          Key: object.key,
          Range: `bytes=${start}-${stop - 1}`,
          IfMatch: object.etag,
          ...(object.versionId !== undefined && { VersionId: object.versionId }),
        }),
      );
      body = out.Body as AsyncIterable<Uint8Array>;
    } catch (error) {
      if (
        isMissing(error) ||
        isConditionFailed(error) ||
        (isForbidden(error) && (await this.absent(object.bucket, object.key)))
      ) {
        throw new DatasetChangedError(object.key, { cause: error });
      }
      throw this.refused(error, `GET s3://${object.bucket}/${object.key}`);
    }
    yield* body;
  }

  async getBytes(bucket: string, key: string): Promise<{ body: Uint8Array; etag: string }> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const body = await out.Body?.transformToByteArray();
      return { body: body ?? new Uint8Array(), etag: out.ETag ?? '' };
    } catch (error) {
      if (isMissing(error) || (isForbidden(error) && (await this.absent(bucket, key)))) {
        throw new NotFoundError(`no object at s3://${bucket}/${key}`, { cause: error });
      }
      throw this.refused(error, `GET s3://${bucket}/${key}`);
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  async put(
    bucket: string,
    key: string,
    body: string | Uint8Array,
    options: PutOptions = {},
  ): Promise<{ etag: string }> {
    try {
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ...(options.contentType !== undefined && { ContentType: options.contentType }),
          ...(options.ifNoneMatch !== undefined && { IfNoneMatch: options.ifNoneMatch }),
          ...(options.ifMatch !== undefined && { IfMatch: options.ifMatch }),
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (error) {
      if (
        (options.ifNoneMatch !== undefined || options.ifMatch !== undefined) &&
        (isConditionFailed(error) || (options.ifMatch !== undefined && isMissing(error)))
      ) {
        throw new PreconditionFailedError(
          `conditional write to s3://${bucket}/${key} lost (${options.ifNoneMatch !== undefined ? 'the object already exists' : 'its ETag changed'})`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async compose(
    bucket: string,
    key: string,
    sources: ObjectInfo[],
    options: { contentType?: string } = {},
  ): Promise<{ etag: string; size: number }> {
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        ...(options.contentType !== undefined && { ContentType: options.contentType }),
      }),
    );
    try {
      const parts: { PartNumber: number; ETag: string }[] = new Array(sources.length);
      let next = 0;
      // Copies run server-side; 16 at a time keeps S3 busy without a burst of thousands.
      const lane = async () => {
        for (let i = next++; i < sources.length; i = next++) {
          const source = sources[i]!;
          const out = await this.client.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
              Key: key,
              UploadId,
              PartNumber: i + 1,
              CopySource: `${source.bucket}/${source.key.split('/').map(encodeURIComponent).join('/')}${source.versionId ? `?versionId=${encodeURIComponent(source.versionId)}` : ''}`,
              CopySourceIfMatch: source.etag,
            }),
          );
          parts[i] = { PartNumber: i + 1, ETag: out.CopyPartResult?.ETag ?? '' };
        }
      };
      await Promise.all(Array.from({ length: Math.min(16, sources.length) }, lane));
      const out = await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
      return { etag: out.ETag ?? '', size: sources.reduce((sum, s) => sum + s.size, 0) };
    } catch (error) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId }))
        .catch(() => undefined);
      throw error;
    }
  }

  async upload(
    bucket: string,
    key: string,
    body: AsyncIterable<Uint8Array>,
    options: UploadOptions = {},
  ): Promise<{ etag: string; size: number }> {
    let size = 0;
    const length = options.contentLength;
    const mismatch = () =>
      new ValidationError(
        size > (length as number)
          ? `upload of ${key}: the body is longer than the ${length} bytes declared`
          : `upload of ${key}: the body has ${size} bytes, not the ${length} declared`,
      );
    // A body whose length differs from the declared one must not complete the PUT (a short one
    // would leave the request waiting for bytes): the request is aborted. A stream error does
    // not reach the SDK's request, so the generator ends and the abort carries the failure.
    const abort = new AbortController();
    let failure: ValidationError | undefined;
    // Counted as it streams: lib-storage's progress events lag for single-part uploads. With a
    // declared length, the piece that completes it is held until the body is known to end
    // there, so a longer body never sends a complete request.
    async function* counted() {
      const source = body[Symbol.asyncIterator]();
      for (;;) {
        const next = await source.next();
        if (next.done === true) break;
        const piece = next.value;
        size += piece.length;
        if (length !== undefined && size >= length) {
          if (size > length || (await source.next()).done !== true) {
            size = Math.max(size, length + 1);
            break;
          }
        }
        options.onProgress?.(size);
        yield piece;
      }
      if (length !== undefined && size !== length) {
        failure = mismatch();
        abort.abort(failure);
        await source.return?.();
      }
    }
    if (length !== undefined && length <= MAX_SINGLE_PUT) {
      try {
        const out = await this.client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: Readable.from(counted()),
            ContentLength: length,
            ...(options.contentType !== undefined && { ContentType: options.contentType }),
          }),
          { abortSignal: abort.signal },
        );
        return { etag: out.ETag ?? '', size };
      } catch (error) {
        throw failure ?? error;
      }
    }
    const { Upload } = await import('@aws-sdk/lib-storage');
    const upload = new Upload({
      client: this.client,
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
      params: {
        Bucket: bucket,
        Key: key,
        Body: Readable.from(counted()),
        ...(options.contentType !== undefined && { ContentType: options.contentType }),
      },
    });
    const out = await upload.done();
    return { etag: out.ETag ?? '', size };
  }
}
