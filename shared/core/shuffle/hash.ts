import { ValidationError } from '../base/errors.ts';

/**
 * The bucket of a key: FNV-1a (32-bit) over the key's UTF-16 code units, modulo the bucket
 * count. Stable by design: the same key goes to the same bucket in every process, run and
 * version, so an attempt, a retry and a backup of a map task write the same runs.
 */
export function bucketOf(key: string, buckets: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % buckets;
}

/** The longest key a keyed job may produce, in UTF-16 code units (64 KiB of them). */
export const MAX_KEY_LENGTH = 64 * 1024;

/**
 * Checks what a job's `key` returned: a string of at most {@link MAX_KEY_LENGTH} code units.
 * Throws a ValidationError naming the job, the value and what was expected: a bug in the job,
 * which a retry would only repeat (so it is not retried).
 */
export function checkKey(job: string, key: unknown): string {
  if (typeof key !== 'string') {
    const shown = typeof key === 'number' || typeof key === 'boolean' ? String(key) : typeof key;
    throw new ValidationError(
      `job ${job}: key(out) returned ${key === null ? 'null' : shown}; expected a string`,
    );
  }
  if (key.length > MAX_KEY_LENGTH) {
    throw new ValidationError(
      `job ${job}: key(out) returned a key of ${key.length} characters; expected at most ${MAX_KEY_LENGTH}`,
    );
  }
  return key;
}
