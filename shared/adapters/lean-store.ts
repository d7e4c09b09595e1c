/**
 * The worker's object store. Its hot requests (ranged GETs of the dataset, the outcome's
 * create-only PUT, a part's PUT, a lost part's DELETE) are lean signed requests (s3-lean.ts);
 * everything else, and any bucket the lean path cannot address, goes through the SDK's
 * S3ObjectStore, loaded on first use. A worker that only reads its chunk and writes its
 * outcome never loads the S3 client: its cold start compiled ~45 ms of it, and its first
 * request cost ~30 ms more.
 */
import { concatBytes } from '#core/base/bytes.ts';
import {
  AccessDeniedError,
  DatasetChangedError,
  PreconditionFailedError,
} from '#core/base/errors.ts';
import type { ObjectInfo, ObjectStore, PutOptions, UploadOptions } from '#core/base/ports.ts';
import { keepAliveAgents } from './agents.ts';
import { LeanS3, LeanS3Error, NodeSha256, type TargetSource, targetFrom } from './s3-lean.ts';

type Env = Record<string, string | undefined>;

/** Options of {@link LeanObjectStore}. */
export interface LeanObjectStoreOptions {
  /**
   * A streamed write up to this many bytes goes up as one PUT; a longer one goes to the SDK's
   * multipart upload (its first bytes included). @default 8 MiB (the SDK's part size)
   */
  singlePutBytes?: number;
  /** Sockets of the lean requests. @default 64 */
  maxSockets?: number;
}

const encoder = new TextEncoder();

/**
 * An ObjectStore whose hot requests are lean (see the module's comment). `full` makes the SDK
 * store, once, when something needs it.
 */
export class LeanObjectStore implements ObjectStore {
  private fullStore: Promise<ObjectStore> | undefined;
  private readonly singlePutBytes: number;

  constructor(
    private readonly lean: LeanS3,
    private readonly makeFull: () => Promise<ObjectStore>,
    options: LeanObjectStoreOptions = {},
  ) {
    this.singlePutBytes = options.singlePutBytes ?? 8 * 1024 * 1024;
  }

  /** The SDK store (made on first use). */
  private full(): Promise<ObjectStore> {
    this.fullStore ??= this.makeFull();
    return this.fullStore;
  }

  async head(bucket: string, key: string, options?: { checksum?: boolean }) {
    return (await this.full()).head(bucket, key, options);
  }

  async list(bucket: string, prefix: string) {
    return (await this.full()).list(bucket, prefix);
  }

  async listPrefixes(
    bucket: string,
    prefix: string,
    options: { startAfter?: string; limit: number },
  ) {
    return (await this.full()).listPrefixes(bucket, prefix, options);
  }

  async getBytes(bucket: string, key: string) {
    return (await this.full()).getBytes(bucket, key);
  }

  async compose(
    bucket: string,
    key: string,
    sources: ObjectInfo[],
    options?: { contentType?: string },
  ) {
    return (await this.full()).compose(bucket, key, sources, options);
  }

  async *readRange(object: ObjectInfo, start: number, end: number): AsyncIterable<Uint8Array> {
    const stop = Math.min(end, object.size);
    if (start >= stop) return;
    let body: AsyncIterable<Uint8Array> | undefined;
    try {
      body = await this.lean.open(object, start, stop);
    } catch (error) {
      // 403 for a missing key (no ListBucket), or a refusal: the SDK store tells them apart.
      if (error instanceof LeanS3Error && error.status === 403) {
        yield* (await this.full()).readRange(object, start, stop);
        return;
      }
      if (error instanceof LeanS3Error && (error.status === 404 || error.status === 412)) {
        throw new DatasetChangedError(object.key, { cause: error });
      }
      throw error;
    }
    yield* body ?? (await this.full()).readRange(object, start, stop);
  }

  async delete(bucket: string, key: string): Promise<void> {
    const response = await this.lean.send({ method: 'DELETE', bucket, key });
    if (response === undefined) return (await this.full()).delete(bucket, key);
    response.resume();
  }

  async put(
    bucket: string,
    key: string,
    body: string | Uint8Array,
    options: PutOptions = {},
  ): Promise<{ etag: string }> {
    const bytes = typeof body === 'string' ? encoder.encode(body) : body;
    const conditional = options.ifNoneMatch !== undefined || options.ifMatch !== undefined;
    let response: Awaited<ReturnType<LeanS3['send']>>;
    try {
      response = await this.lean.send({
        method: 'PUT',
        bucket,
        key,
        body: bytes,
        headers: {
          ...(options.contentType !== undefined && { 'content-type': options.contentType }),
          ...(options.ifNoneMatch !== undefined && { 'if-none-match': options.ifNoneMatch }),
          ...(options.ifMatch !== undefined && { 'if-match': options.ifMatch }),
        },
      });
    } catch (error) {
      if (!(error instanceof LeanS3Error)) throw error;
      const lost =
        error.status === 412 ||
        error.status === 409 ||
        (options.ifMatch !== undefined && error.status === 404);
      if (conditional && lost) {
        throw new PreconditionFailedError(
          `conditional write to s3://${bucket}/${key} lost (${options.ifNoneMatch !== undefined ? 'the object already exists' : 'its ETag changed'})`,
          { cause: error },
        );
      }
      if (error.status === 403) {
        throw new AccessDeniedError(
          `PUT s3://${bucket}/${key} was refused (403 ${error.code}); the deployment's role for this function lacks the permission`,
          { cause: error },
        );
      }
      throw error;
    }
    if (response === undefined) return (await this.full()).put(bucket, key, body, options);
    response.resume();
    return { etag: String(response.headers.etag ?? '') };
  }

  async upload(
    bucket: string,
    key: string,
    body: AsyncIterable<Uint8Array>,
    options: UploadOptions = {},
  ): Promise<{ etag: string; size: number }> {
    // A declared length is the SDK store's streaming PUT, which checks it.
    if (options.contentLength !== undefined) {
      return (await this.full()).upload(bucket, key, body, options);
    }
    const source = body[Symbol.asyncIterator]();
    const pieces: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const next = await source.next();
      if (next.done === true) break;
      pieces.push(next.value);
      size += next.value.length;
      options.onProgress?.(size);
      if (size > this.singlePutBytes) {
        // Too long for one PUT: the SDK's multipart upload, from the first byte.
        const rest = async function* () {
          yield* pieces;
          for (;;) {
            const more = await source.next();
            if (more.done === true) return;
            yield more.value;
          }
        };
        return (await this.full()).upload(bucket, key, rest(), {
          ...options,
          ...(options.onProgress !== undefined && {
            onProgress: (sent: number) => options.onProgress?.(Math.max(sent, size)),
          }),
        });
      }
    }
    const whole = concatBytes(pieces);
    const { etag } = await this.put(bucket, key, whole, {
      ...(options.contentType !== undefined && { contentType: options.contentType }),
    });
    return { etag, size };
  }
}

/** A commercial AWS region's name (eu-west-1, ap-southeast-2, …); others go to the SDK. */
const COMMERCIAL_REGION = /^(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d+$/;
/** A bucket name that is a single DNS label, so it addresses as `{bucket}.s3.{region}…`. */
const VIRTUAL_HOSTABLE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/**
 * Lean targets from the environment, as the handlers' S3 client would address buckets
 * (createS3Client): a custom endpoint (`AWS_ENDPOINT_URL_S3`, the local runtime) path-style;
 * on AWS, a DNS-label bucket in a commercial region at `https://{bucket}.s3.{region}.amazonaws.com`
 * (what S3's endpoint rules give for it; a test holds the two together). Anything else (FIPS or
 * dual-stack asked, another partition, a bucket name with dots) resolves to undefined: the
 * SDK, with its rules, takes it. Undefined as a whole when the environment has no credentials
 * (the SDK's provider chain finds them).
 */
export function envTargets(env: Env = process.env): TargetSource | undefined {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) return undefined;
  const credentials = {
    accessKeyId,
    secretAccessKey,
    ...(env.AWS_SESSION_TOKEN && { sessionToken: env.AWS_SESSION_TOKEN }),
  };
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : '');
  const special = ['AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT'].some(
    (name) => env[name]?.toLowerCase() === 'true',
  );
  const signing = { credentials: async () => credentials, sha256: NodeSha256 };
  return async (bucket) => {
    if (endpoint !== undefined) {
      const base = endpoint.replace(/\/$/, '');
      return targetFrom(
        () => ({ url: new URL(`${base}/${bucket}`) }),
        params(bucket, region),
        signing,
      );
    }
    if (special || !COMMERCIAL_REGION.test(region) || !VIRTUAL_HOSTABLE.test(bucket)) {
      return undefined;
    }
    return targetFrom(
      () => ({ url: new URL(`https://${bucket}.s3.${region}.amazonaws.com`) }),
      params(bucket, region),
      signing,
    );
  };
}

const params = (bucket: string, region: string) => ({
  Bucket: bucket,
  Region: region,
  UseFIPS: false,
  UseDualStack: false,
  ForcePathStyle: false,
  Accelerate: false,
  UseGlobalEndpoint: false,
});

/**
 * The worker's store from the environment: lean where {@link envTargets} can address a bucket,
 * the SDK's store (`full`, made on first use) for the rest. `attempts`: the SDK's default of 3
 * unless AWS_MAX_ATTEMPTS says otherwise.
 */
export function leanStoreFromEnv(
  env: Env,
  full: () => Promise<ObjectStore>,
  options: LeanObjectStoreOptions = {},
): ObjectStore | undefined {
  const targets = envTargets(env);
  if (targets === undefined) return undefined;
  const attempts = Number(env.AWS_MAX_ATTEMPTS) || 3;
  return new LeanObjectStore(
    new LeanS3(targets, keepAliveAgents(options.maxSockets ?? 64), async () => attempts),
    full,
    options,
  );
}
