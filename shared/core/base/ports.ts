/**
 * The I/O the core needs, as small interfaces (ports). Adapters in shared/adapters implement them
 * over the AWS SDK; the core and its tests never see an SDK type.
 */

/** One S3 object as seen at a moment: its identity pins the exact bytes a job reads. */
export interface ObjectInfo {
  bucket: string;
  key: string;
  /** Size in bytes. */
  size: number;
  /** The ETag, quoted as S3 returns it (e.g. `"9b2cf535f27731c974343645a3985328"`). */
  etag: string;
  /** The version id when the bucket is versioned; absent on unversioned buckets and locally. */
  versionId?: string;
  /**
   * The object's full-object CRC-64/NVME (16 hex digits), when a HEAD asked for checksums and
   * the store keeps one (S3 does for objects uploaded since 2025, unless another was chosen).
   */
  crc64?: string;
}

/** S3's minimum size of every multipart part but the last: the floor for {@link ObjectStore.compose}. */
export const MIN_COMPOSE_PART = 5 * 1024 * 1024;

/** Options for a single-request write. */
export interface PutOptions {
  contentType?: string;
  /** `'*'`: write only if no object exists at the key (S3 conditional write). */
  ifNoneMatch?: '*';
  /** Write only if the current object's ETag equals this one (compare-and-swap). */
  ifMatch?: string;
}

/** Options for a streamed write of unknown length. */
export interface UploadOptions {
  contentType?: string;
  /** Called with the bytes sent so far (for progress bars). */
  onProgress?: (bytesSent: number) => void;
  /**
   * The body's exact length, when known (a local file). Up to 5 GiB the object then goes up as
   * one streaming PUT rather than a multipart upload, which costs a request per part and, on the
   * local server, a copy of every part. A body of another length fails the upload.
   */
  contentLength?: number;
}

/** The object store (S3). Errors: NotFoundError, PreconditionFailedError, DatasetChangedError. */
export interface ObjectStore {
  /**
   * HEAD one object. Throws NotFoundError when it does not exist. With `checksum`, its
   * full-object CRC-64/NVME too, where there is one (S3's ChecksumMode).
   */
  head(bucket: string, key: string, options?: { checksum?: boolean }): Promise<ObjectInfo>;
  /** Every object under `prefix`, in key order, across all list pages. */
  list(bucket: string, prefix: string): Promise<ObjectInfo[]>;
  /**
   * One page of the "folders" directly under `prefix` (delimiter `/`), in key order, after
   * `startAfter`. `next` is the value to pass as `startAfter` for the following page.
   */
  listPrefixes(
    bucket: string,
    prefix: string,
    options: { startAfter?: string; limit: number },
  ): Promise<{ prefixes: string[]; next?: string }>;
  /**
   * The bytes `[start, end)` of a pinned object, as a stream. The read is conditional on the
   * pinned ETag (If-Match) and VersionId: if the object changed or vanished it throws
   * DatasetChangedError naming the key. `end` is clamped to the object's size.
   */
  readRange(object: ObjectInfo, start: number, end: number): AsyncIterable<Uint8Array>;
  /** The whole object. Throws NotFoundError. */
  getBytes(bucket: string, key: string): Promise<{ body: Uint8Array; etag: string }>;
  /** Deletes an object; deleting one that does not exist succeeds, as on S3. */
  delete(bucket: string, key: string): Promise<void>;
  /** One-request write. Throws PreconditionFailedError when a condition in `options` fails. */
  put(
    bucket: string,
    key: string,
    body: string | Uint8Array,
    options?: PutOptions,
  ): Promise<{ etag: string }>;
  /**
   * Writes the concatenation of whole objects, in order, without moving their bytes through the
   * caller (S3 multipart UploadPartCopy). Every source but the last must be at least
   * {@link MIN_COMPOSE_PART} bytes, and there may be at most 10,000; sources are pinned by ETag.
   */
  compose(
    bucket: string,
    key: string,
    sources: ObjectInfo[],
    options?: { contentType?: string },
  ): Promise<{ etag: string; size: number }>;
  /**
   * Streamed write (multipart when large, or one streaming PUT when `options.contentLength` is
   * known); memory stays bounded whatever the length.
   */
  upload(
    bucket: string,
    key: string,
    body: AsyncIterable<Uint8Array>,
    options?: UploadOptions,
  ): Promise<{ etag: string; size: number }>;
}

/** Presigned URLs, so clients move dataset and result bytes to and from S3 directly. */
export interface UrlSigner {
  presignGet(bucket: string, key: string, expiresSeconds: number): Promise<string>;
  presignPut(bucket: string, key: string, expiresSeconds: number): Promise<string>;
  /** Starts a multipart upload; returns its upload id. */
  createMultipartUpload(bucket: string, key: string): Promise<string>;
  presignUploadPart(
    bucket: string,
    key: string,
    uploadId: string,
    partNumber: number,
    expiresSeconds: number,
  ): Promise<string>;
  /** Completes a multipart upload. Throws NotFoundError for an unknown upload id. */
  completeMultipartUpload(
    bucket: string,
    key: string,
    uploadId: string,
    parts: { partNumber: number; etag: string }[],
  ): Promise<{ etag: string }>;
}

/** Invokes a Lambda function (or the local runtime's stand-in for one). */
export interface Invoker {
  /**
   * Synchronous invocation (RequestResponse). Resolves with the function's JSON result.
   * Throws FunctionError when the function threw or timed out, ThrottledError on 429, and
   * InvocationTimeoutError when no answer came within `options.timeoutMs` (no wait is unbounded).
   */
  invoke<T = unknown>(
    functionName: string,
    payload: unknown,
    options?: { timeoutMs?: number },
  ): Promise<T>;
  /** Asynchronous invocation (Event): resolves once the invocation is queued. */
  invokeEvent(functionName: string, payload: unknown): Promise<void>;
}

/** A monotonic clock in milliseconds and a wall clock, injectable for tests. */
export interface Clock {
  now(): number;
  iso(): string;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  iso: () => new Date().toISOString(),
};
