/**
 * Read-only file buckets (local/s3/files.ts): a local directory served in place by the local S3
 * server, talked to through the same S3 adapter and SDK client the workers use.
 */
import { appendFile, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '#adapters/s3-clients.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { readAll } from '#core/base/bytes.ts';
import { type LocalS3Server, startS3Server } from '#local/s3/server.ts';

let s3: LocalS3Server;
let store: S3ObjectStore;
let dir: string;
let outside: string;
let bucket: string;

beforeAll(async () => {
  s3 = await startS3Server({ buckets: ['fanout-local'] });
  store = new S3ObjectStore(createS3Client({ endpoint: s3.endpoint }), { pageSize: 3 });
  dir = await mkdtemp(join(tmpdir(), 'fanout-files-'));
  outside = await mkdtemp(join(tmpdir(), 'fanout-outside-'));
  await mkdir(join(dir, 'sub/deeper'), { recursive: true });
  await writeFile(join(dir, 'a.jsonl'), '{"a":1}\n{"a":2}\n');
  await writeFile(join(dir, 'b.txt'), 'hello');
  await writeFile(join(dir, 'empty'), '');
  await writeFile(join(dir, 'sub/c.jsonl'), 'c\n');
  await writeFile(join(dir, 'sub/deeper/d.jsonl'), 'd\n');
  await writeFile(join(dir, 'é.txt'), 'accent');
  await writeFile(join(outside, 'secret'), 'not yours');
  await symlink(join(outside, 'secret'), join(dir, 'link'));
  await symlink(outside, join(dir, 'linkdir'));
  bucket = await s3.mount(dir);
});
afterAll(async () => {
  await s3?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** A GET of a raw request path: fetch would normalise `.` and `..` segments away first. */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${s3.endpoint}/`, { path }, (response) => {
      let body = '';
      response.on('data', (piece) => {
        body += piece;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

describe('a file bucket', () => {
  it('gets the same bucket for the same directory', async () => {
    expect(await s3.mount(`${dir}/`)).toBe(bucket);
    expect(bucket).toMatch(/^fanout-files-[0-9a-f]{12}$/);
  });

  it('lists regular files in UTF-8 key order across pages, without symlinks', async () => {
    const keys = (await store.list(bucket, '')).map((o) => o.key);
    expect(keys).toEqual([
      'a.jsonl',
      'b.txt',
      'empty',
      'sub/c.jsonl',
      'sub/deeper/d.jsonl',
      'é.txt',
    ]);
    expect((await store.list(bucket, 'sub/')).map((o) => o.key)).toEqual([
      'sub/c.jsonl',
      'sub/deeper/d.jsonl',
    ]);
    const { prefixes } = await store.listPrefixes(bucket, '', { limit: 10 });
    expect(prefixes).toEqual(['sub/']);
  });

  it('serves HEAD, whole and ranged GETs, with the ETag the listing gave', async () => {
    const listed = (await store.list(bucket, '')).find((o) => o.key === 'a.jsonl')!;
    const head = await store.head(bucket, 'a.jsonl');
    expect(head).toEqual(listed);
    expect(head.size).toBe(16);
    expect(head.etag).toMatch(/^"[0-9a-f]{32}-1"$/);
    expect(text(await readAll(store.readRange(head, 0, head.size)))).toBe('{"a":1}\n{"a":2}\n');
    expect(text(await readAll(store.readRange(head, 8, 12)))).toBe('{"a"');
    expect(text((await store.getBytes(bucket, 'é.txt')).body)).toBe('accent');
    expect((await store.getBytes(bucket, 'empty')).body).toHaveLength(0);
  });

  it('gives a file a new ETag when it changes, and a pinned read of the old one fails', async () => {
    const file = join(dir, 'b.txt');
    const before = await store.head(bucket, 'b.txt');
    await appendFile(file, '!');
    const after = await store.head(bucket, 'b.txt');
    expect(after.etag).not.toBe(before.etag);
    await expect(readAll(store.readRange(before, 0, before.size))).rejects.toMatchObject({
      code: 'DATASET_CHANGED',
    });
    // Same size, same content, only the times changed: still a new ETag.
    await utimes(file, new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect((await store.head(bucket, 'b.txt')).etag).not.toBe(after.etag);
  });

  it('is read-only', async () => {
    await expect(store.put(bucket, 'new.txt', 'x')).rejects.toThrow(/read-only|AccessDenied/);
  });

  it('refuses keys that are not canonical, and paths that leave the directory', async () => {
    for (const key of ['../secret', '..%2Fsecret', 'sub/../a.jsonl', './a.jsonl', 'sub//c.jsonl']) {
      const { status, body } = await rawGet(`/${bucket}/${key}`);
      expect(status, key).toBe(400);
      expect(body).toMatch(/must not contain/);
    }
    for (const key of ['link', 'linkdir/secret']) {
      const viaLink = await rawGet(`/${bucket}/${key}`);
      expect(viaLink.status, key).toBe(404);
      expect(viaLink.body).not.toMatch(/not yours/);
    }
  });

  it('answers 404 for a missing key and 416 for a range past the end', async () => {
    await expect(store.head(bucket, 'missing.txt')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const response = await fetch(`${s3.endpoint}/${bucket}/a.jsonl`, {
      headers: { range: 'bytes=100-200' },
    });
    expect(response.status).toBe(416);
  });
});
