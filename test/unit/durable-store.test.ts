/**
 * The local S3 server's file store survives a crash at any point of a write (local/s3
 * /durable.ts): every file-system step of replacing an object is made to fail in turn, as a
 * SIGKILL there would stop it, and what is left must read as the old object or the new one,
 * each with its own ETag and headers. Torn files an older version left read too.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type FileStore, storeDurably } from '../../local/s3/durable.ts';

/** How many more file-system writes may run before the "crash"; every one after it fails. */
const crash = vi.hoisted(() => ({ left: Number.POSITIVE_INFINITY }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const mortal =
    <A extends unknown[], R>(step: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (crash.left <= 0) throw new Error('crashed');
      crash.left -= 1;
      return step(...args);
    };
  return {
    ...real,
    writeFile: mortal(real.writeFile),
    rename: mortal(real.rename),
    rm: mortal(real.rm),
    copyFile: mortal(real.copyFile),
  };
});

const root = mkdtempSync(join(tmpdir(), 'fanout-durable-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A store laid out as s3rver's FilesystemStore, with the durable writes and reads. */
function durableStore(dir: string): FileStore {
  const unused = () => Promise.reject(new Error('replaced by storeDurably'));
  const store: FileStore = {
    getResourcePath: (bucket, key = '', resource = '') =>
      join(dir, bucket, `${key}._S3rver_${resource}`),
    getMetadata: unused,
    putMetadata: unused,
    putObject: unused,
    copyObject: unused,
  };
  storeDurably(store);
  mkdirSync(join(dir, 'b'), { recursive: true });
  return store;
}

const md5 = (text: string) => createHash('md5').update(text).digest('hex');
const OLD = { body: 'the old body\n', type: 'text/old' };
const NEW = { body: 'the new body, longer\n', type: 'text/new' };

describe('the local S3 store, crashed in the middle of replacing an object', () => {
  it('leaves the old object or the new one at every step, each with its own ETag', async () => {
    const seen = new Set<string>();
    for (let steps = 0; ; steps++) {
      const store = durableStore(join(root, `put-${steps}`));
      crash.left = Number.POSITIVE_INFINITY;
      await store.putObject({
        bucket: 'b',
        key: 'status.json',
        content: Buffer.from(OLD.body),
        metadata: { 'content-type': OLD.type },
      });
      crash.left = steps;
      const finished = await store
        .putObject({
          bucket: 'b',
          key: 'status.json',
          content: Buffer.from(NEW.body),
          metadata: { 'content-type': NEW.type },
        })
        .then(
          () => true,
          () => false,
        );
      crash.left = Number.POSITIVE_INFINITY;
      const body = readFileSync(store.getResourcePath('b', 'status.json', 'object'), 'utf8');
      const version = body === NEW.body ? NEW : OLD;
      expect(body).toBe(version.body);
      const metadata = await store.getMetadata('b', 'status.json');
      expect(metadata.etag, `after ${steps} steps`).toBe(JSON.stringify(md5(body)));
      expect(metadata['content-length']).toBe(Buffer.byteLength(body));
      // Its own headers, or none: never the other version's.
      expect([version.type, undefined]).toContain(metadata['content-type']);
      seen.add(version.body);
      if (finished) break;
    }
    expect(seen).toEqual(new Set([OLD.body, NEW.body]));
  });

  it('reads an object whose metadata or MD5 file an older version left torn', async () => {
    const store = durableStore(join(root, 'torn'));
    const path = (resource: string) => store.getResourcePath('b', 'k', resource);
    mkdirSync(dirname(path('object')), { recursive: true });
    writeFileSync(path('object'), OLD.body);
    writeFileSync(path('metadata.json'), '{"content-ty');
    writeFileSync(path('object.md5'), 'd41d8');
    const metadata = await store.getMetadata('b', 'k');
    expect(metadata.etag).toBe(JSON.stringify(md5(OLD.body)));
    expect(metadata['content-type']).toBeUndefined();
    // The MD5 is whole again on disk.
    expect(readFileSync(path('object.md5'), 'utf8')).toBe(md5(OLD.body));
  });

  it('copies an object whole or not at all', async () => {
    for (let steps = 0; ; steps++) {
      const store = durableStore(join(root, `copy-${steps}`));
      crash.left = Number.POSITIVE_INFINITY;
      for (const [key, version] of [
        ['src', NEW],
        ['dest', OLD],
      ] as const) {
        await store.putObject({
          bucket: 'b',
          key,
          content: Buffer.from(version.body),
          metadata: { 'content-type': version.type },
        });
      }
      crash.left = steps;
      const finished = await store.copyObject('b', 'src', 'b', 'dest').then(
        () => true,
        () => false,
      );
      crash.left = Number.POSITIVE_INFINITY;
      const body = readFileSync(store.getResourcePath('b', 'dest', 'object'), 'utf8');
      expect([OLD.body, NEW.body]).toContain(body);
      const metadata = await store.getMetadata('b', 'dest');
      expect(metadata.etag).toBe(JSON.stringify(md5(body)));
      if (finished) {
        expect(body).toBe(NEW.body);
        expect(metadata['content-type']).toBe(NEW.type);
        break;
      }
    }
  });
});
