/**
 * s3rver's file store, made crash-safe. s3rver writes an object's body, its metadata file and
 * its MD5 file in place, one after another. `fanout dev` killed in the middle of a write (SIGKILL,
 * a power cut; crash-only means that is a normal way to stop) then leaves a torn metadata file,
 * which fails every later GET and LIST of the key with a 500, or an MD5 that no longer matches
 * the body, which is a wrong ETag. A server taking PUTs and killed at random 25 times left 6
 * torn files.
 *
 * Here every file is written aside and renamed into place (a rename is atomic), and an object is
 * replaced in an order whose every crash point leaves a readable object with a true ETag:
 *
 * 1. the new body, metadata and MD5 are written to temporary files;
 * 2. the old MD5 and metadata are removed;
 * 3. the body is renamed into place;
 * 4. the metadata, then the MD5, are renamed into place.
 *
 * A crash after 2 leaves a body without an MD5 (computed again from the body when it is read)
 * and without stored headers (it reads as `binary/octet-stream`), never another body's. Reads
 * also take what an older version left behind: a metadata file that does not parse reads as
 * none, and an MD5 that is not 32 hex digits is computed again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** The part of s3rver's FilesystemStore this module replaces or uses. */
export interface FileStore {
  getResourcePath(bucket: string, key?: string, resource?: string): string;
  getMetadata(bucket: string, key: string): Promise<Record<string, unknown>>;
  putMetadata(
    bucket: string,
    key: string,
    metadata: Record<string, unknown>,
    md5?: string,
  ): Promise<void>;
  putObject(object: {
    bucket: string;
    key: string;
    content: NodeJS.ReadableStream | Buffer;
    metadata: Record<string, unknown>;
  }): Promise<{ size: number; md5: string }>;
  copyObject(
    srcBucket: string,
    srcKey: string,
    destBucket: string,
    destKey: string,
    replacementMetadata?: Record<string, unknown>,
  ): Promise<Record<string, unknown>>;
}

/** The headers s3rver keeps in an object's metadata file (its S3Object.ALLOWED_METADATA). */
const KEPT =
  /^(cache-control|content-disposition|content-encoding|content-language|content-type|expires|x-amz-storage-class|x-amz-website-redirect-location|x-amz-meta-.*)$/;

const MD5 = /^[0-9a-f]{32}$/;

/** An object's metadata file: the headers s3rver keeps, as JSON. */
const keptJson = (metadata: Record<string, unknown>) =>
  JSON.stringify(
    Object.fromEntries(Object.entries(metadata).filter(([name]) => KEPT.test(name))),
    null,
    2,
  );

/**
 * A path beside `path` for a file being written, renamed onto `path` once whole. Short: a key
 * segment of up to 200 bytes is a file name of its own (long-names.ts), and its longest
 * companion (`._S3rver_metadata.json`) with these 18 characters must stay within 255 bytes.
 * Writers of one key take turns (locks.ts), so 32 random bits keep concurrent names apart.
 */
export function aside(path: string): string {
  return `${path}.${randomBytes(4).toString('hex')}.incoming`;
}

/** Writes `text` to `path` whole or not at all. */
async function writeWhole(path: string, text: string): Promise<void> {
  const temporary = aside(path);
  await writeFile(temporary, text);
  await rename(temporary, path);
}

/**
 * Makes `bodyFile` (a whole file, written aside) the body of bucket/key, with `metadata` and
 * `md5`, in the crash-safe order above.
 */
export async function replaceObject(
  store: FileStore,
  bucket: string,
  key: string,
  bodyFile: string,
  metadata: Record<string, unknown>,
  md5: string,
): Promise<void> {
  const objectPath = store.getResourcePath(bucket, key, 'object');
  const metadataPath = store.getResourcePath(bucket, key, 'metadata.json');
  const md5Path = store.getResourcePath(bucket, key, 'object.md5');
  const [metadataAside, md5Aside] = [aside(metadataPath), aside(md5Path)];
  try {
    await Promise.all([writeFile(metadataAside, keptJson(metadata)), writeFile(md5Aside, md5)]);
    await Promise.all([rm(md5Path, { force: true }), rm(metadataPath, { force: true })]);
    await rename(bodyFile, objectPath);
    await rename(metadataAside, metadataPath);
    await rename(md5Aside, md5Path);
  } finally {
    await Promise.all([bodyFile, metadataAside, md5Aside].map((f) => rm(f, { force: true })));
  }
}

/** The MD5 (hex) of a file's bytes. */
async function md5Of(path: string): Promise<string> {
  const hash = createHash('md5');
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

/**
 * Streams `content` to a file beside bucket/key, counting and hashing it (MD5, hex); the file is
 * the caller's. On a failure the file is removed and the error thrown.
 */
export async function writeAside(
  store: FileStore,
  bucket: string,
  key: string,
  content: NodeJS.ReadableStream | Buffer,
): Promise<{ file: string; size: number; md5: string }> {
  const objectPath = store.getResourcePath(bucket, key, 'object');
  await mkdir(dirname(objectPath), { recursive: true });
  const file = aside(objectPath);
  const hash = createHash('md5');
  let size = 0;
  const counted = new Transform({
    transform(piece: Buffer, _encoding, done) {
      hash.update(piece);
      size += piece.length;
      done(null, piece);
    },
  });
  try {
    const source = Buffer.isBuffer(content) ? [content] : content;
    await pipeline(source as NodeJS.ReadableStream, counted, createWriteStream(file));
  } catch (error) {
    await rm(file, { force: true });
    throw error;
  }
  return { file, size, md5: hash.digest('hex') };
}

/** Replaces the store's writes and metadata reads with the crash-safe ones above. */
export function storeDurably(store: FileStore): void {
  store.getMetadata = async (bucket, key) => {
    const objectPath = store.getResourcePath(bucket, key, 'object');
    const md5Path = store.getResourcePath(bucket, key, 'object.md5');
    const info = await stat(objectPath); // throws ENOENT for a missing object, as s3rver expects
    const [stored, md5] = await Promise.all([
      readFile(store.getResourcePath(bucket, key, 'metadata.json'), 'utf8').then(
        (text) => parsedOrNone(text),
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return undefined;
          throw error;
        },
      ),
      readFile(md5Path, 'utf8').catch(() => ''),
    ]);
    let etag = md5;
    if (!MD5.test(etag)) {
      etag = await md5Of(objectPath);
      await writeWhole(md5Path, etag);
    }
    return {
      ...stored,
      etag: JSON.stringify(etag),
      'last-modified': info.mtime.toUTCString(),
      'content-length': info.size,
    };
  };
  store.putMetadata = async (bucket, key, metadata, md5) => {
    if (md5 !== undefined) await writeWhole(store.getResourcePath(bucket, key, 'object.md5'), md5);
    await writeWhole(store.getResourcePath(bucket, key, 'metadata.json'), keptJson(metadata));
  };
  store.putObject = async (object) => {
    const { file, size, md5 } = await writeAside(store, object.bucket, object.key, object.content);
    await replaceObject(store, object.bucket, object.key, file, object.metadata, md5);
    return { size, md5 };
  };
  store.copyObject = async (srcBucket, srcKey, destBucket, destKey, replacement) => {
    const source = await store.getMetadata(srcBucket, srcKey);
    const destPath = store.getResourcePath(destBucket, destKey, 'object');
    await mkdir(dirname(destPath), { recursive: true });
    const file = aside(destPath);
    await copyFile(store.getResourcePath(srcBucket, srcKey, 'object'), file);
    const md5 = JSON.parse(source.etag as string) as string;
    await replaceObject(store, destBucket, destKey, file, replacement ?? source, md5);
    return store.getMetadata(destBucket, destKey);
  };
}

/** A metadata file's object, or none when a torn write left it unparsable. */
function parsedOrNone(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
