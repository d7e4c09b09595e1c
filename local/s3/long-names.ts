/**
 * Keys whose segments are longer than a file name may be. S3 allows any segment up to the key's
 * 1,024 bytes; a file system allows 255 bytes a name, and s3rver stores each key segment as a
 * directory or file name (with a suffix of its own). A segment past {@link MAX_SEGMENT_BYTES}
 * is stored as `~` and 32 hex digits of its SHA-256 instead, and the segment itself is kept
 * beside it in a `~….\_S3rver_segment` file, which listing reads to give the key back. The
 * mapping is indexed (a file per long segment), so listing order and paging stay S3's: they
 * are computed on the keys, not on the file names.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Segments longer than this (UTF-8) are stored under a hashed name (255 less s3rver's suffix). */
export const MAX_SEGMENT_BYTES = 200;

/** The file beside a hashed name that holds the segment it stands for. */
const SEGMENT_SUFFIX = '._S3rver_segment';

/** The stored name of a segment: itself, or `~` and its hash when it is too long for a name. */
export function storedSegment(segment: string): string {
  if (Buffer.byteLength(segment) <= MAX_SEGMENT_BYTES) return segment;
  return `~${createHash('sha256').update(segment).digest('hex').slice(0, 32)}`;
}

/** True for a stored name that stands for a long segment. */
const hashed = (name: string) => /^~[0-9a-f]{32}$/.test(name);

/**
 * Makes a FilesystemStore (s3rver's) store long segments under hashed names: its
 * getResourcePath maps every segment, and records each long one the first time it is seen.
 */
export function storeLongSegments(store: {
  rootDirectory: string;
  getResourcePath(bucket: string, key?: string, resource?: string): string;
}): void {
  const original = store.getResourcePath.bind(store);
  store.getResourcePath = (bucket, key = '', resource) => {
    if (!key.split('/').some((s) => Buffer.byteLength(s) > MAX_SEGMENT_BYTES)) {
      return original(bucket, key, resource);
    }
    const parts = key.split('/');
    let dir = join(store.rootDirectory, bucket);
    for (const part of parts) {
      const name = storedSegment(part);
      if (name !== part) {
        const record = join(dir, `${name}${SEGMENT_SUFFIX}`);
        if (!existsSync(record)) {
          mkdirSync(dir, { recursive: true });
          writeFileSync(record, part);
        }
      }
      dir = join(dir, name);
    }
    return original(bucket, parts.map(storedSegment).join('/'), resource);
  };
}

/** A stored path's segments (relative to the bucket) back as the key's segments. */
export function keyOfStored(bucketDir: string, storedParts: readonly string[]): string {
  let dir = bucketDir;
  const parts: string[] = [];
  for (const name of storedParts) {
    parts.push(hashed(name) ? readFileSync(join(dir, `${name}${SEGMENT_SUFFIX}`), 'utf8') : name);
    dir = join(dir, name);
  }
  return parts.join('/');
}
