/**
 * Each gap of s3rver 3.7.1 that the compatibility layer closes, shown at the wire level with
 * plain SDK clients and HTTP, plus the AWS CLI uploading to the local server.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '#adapters/s3-clients.ts';
import { type LocalS3Server, startS3Server } from '#local/s3/server.ts';
import { awsS3Copy } from '../fixtures/aws-cli.ts';

const BUCKET = 'compat';
let server: LocalS3Server;
let client: S3Client;
let dir: string;
let slowdown = false;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-s3compat-'));
  server = await startS3Server({
    dir,
    buckets: [BUCKET],
    faults: ({ key }) => (slowdown && key.startsWith('slow/') ? 'slowdown' : undefined),
  });
  client = createS3Client({ endpoint: server.endpoint });
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const put = (key: string, body: string, extra: Record<string, string> = {}) =>
  client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ...extra }));

/** Sends a PUT that declares `declared` bytes, sends `body`, then cuts the connection. */
function abortedPut(key: string, declared: number, body: string) {
  const { port } = new URL(server.endpoint);
  return new Promise<void>((resolve) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(
        `PUT /${BUCKET}/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${declared}\r\n\r\n${body}`,
      );
      setTimeout(() => socket.destroy(), 100);
    });
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
}

describe('s3rver compatibility layer', () => {
  it('stores nothing from a PUT whose body was cut short', async () => {
    const { ETag } = await put('cut/old', 'the whole old object');
    await abortedPut('cut/old', 1000, 'a partial new bo');
    await abortedPut('cut/new', 1000, 'a partial new bo');
    await new Promise((r) => setTimeout(r, 200)); // let the server notice the closed sockets
    const old = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'cut/old' }));
    expect(old.ETag).toBe(ETag);
    expect(await old.Body?.transformToString()).toBe('the whole old object');
    await expect(
      client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'cut/new' })),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    // And a complete PUT still stores exactly its body, with S3's ETag (the MD5).
    const { ETag: etag } = await put('cut/new', 'complete');
    expect(etag).toBe(`"${createHash('md5').update('complete').digest('hex')}"`);
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'cut/new' }));
    expect(await got.Body?.transformToString()).toBe('complete');
  });

  it('refuses a PUT whose body does not match its Content-MD5 (400 BadDigest)', async () => {
    const md5 = (text: string) => createHash('md5').update(text).digest('base64');
    const url = `${server.endpoint}/${BUCKET}/digest/a`;
    const bad = await fetch(url, {
      method: 'PUT',
      body: 'what arrived',
      headers: { 'content-md5': md5('what was sent') },
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/<Code>BadDigest<\/Code>/);
    expect((await fetch(url)).status).toBe(404);
    const good = await fetch(url, {
      method: 'PUT',
      body: 'what was sent',
      headers: { 'content-md5': md5('what was sent') },
    });
    expect(good.status).toBe(200);
    expect(await (await fetch(url)).text()).toBe('what was sent');
  });

  it('answers 412 to a GET or HEAD whose If-Match does not match', async () => {
    const { ETag } = await put('m/a', 'abc');
    const url = `${server.endpoint}/${BUCKET}/m/a`;
    expect((await fetch(url, { headers: { 'if-match': '"0000"' } })).status).toBe(412);
    expect((await fetch(url, { method: 'HEAD', headers: { 'if-match': '"0000"' } })).status).toBe(
      412,
    );
    const ok = await fetch(url, { headers: { 'if-match': ETag as string } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('abc');
    await expect(
      client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'm/a', IfMatch: '"0000"' })),
    ).rejects.toMatchObject({
      $metadata: { httpStatusCode: 412 },
    });
  });

  it('honours If-None-Match: * and If-Match on PutObject', async () => {
    const { ETag } = await put('w/a', 'one', { IfNoneMatch: '*' });
    await expect(put('w/a', 'two', { IfNoneMatch: '*' })).rejects.toMatchObject({
      name: 'PreconditionFailed',
    });
    await expect(put('w/a', 'two', { IfMatch: '"0000"' })).rejects.toMatchObject({
      name: 'PreconditionFailed',
    });
    await put('w/a', 'three', { IfMatch: ETag as string });
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'w/a' }));
    expect(await got.Body?.transformToString()).toBe('three');
  });

  it('refuses a key past 1,024 bytes as S3 does, KeyTooLongError, and takes one up to it', async () => {
    await expect(put(`long/${'k'.repeat(1100)}`, 'x')).rejects.toMatchObject({
      name: 'KeyTooLongError',
      $metadata: { httpStatusCode: 400 },
    });
    // 1,024 bytes exactly, in segments short enough for this server's file names.
    const longest = `long/${Array.from({ length: 4 }, () => 'é'.repeat(126)).join('/')}/${'k'.repeat(1)}`;
    expect(Buffer.byteLength(longest)).toBeLessThanOrEqual(1024);
    await expect(put(longest, 'x')).resolves.toBeDefined();
    await expect(
      put(`${longest}${'k'.repeat(1025 - Buffer.byteLength(longest))}`, 'x'),
    ).rejects.toMatchObject({
      name: 'KeyTooLongError',
    });
  });

  it('pages ListObjectsV2 with continuation tokens', async () => {
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((k) => put(`list/${k}`, k)));
    const keys: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await client.send(
        new ListObjectsV2Command({
          Bucket: BUCKET,
          Prefix: 'list/',
          MaxKeys: 2,
          ContinuationToken: token,
        }),
      );
      pages += 1;
      keys.push(...(page.Contents ?? []).map((o) => o.Key as string));
      token = page.NextContinuationToken;
      expect(page.IsTruncated).toBe(token !== undefined);
    } while (token);
    expect(pages).toBe(3);
    expect(keys).toEqual(['list/a', 'list/b', 'list/c', 'list/d', 'list/e']);
  });

  it('stores aws-chunked bodies (the SDK default checksums) byte-exactly', async () => {
    const defaults = new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const { Readable } = await import('node:stream');
    const body = 'x'.repeat(70_000);
    await defaults.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: 'chunked/a',
        Body: Readable.from([Buffer.from(body)]),
        ContentLength: body.length,
      }),
    );
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'chunked/a' }));
    expect(await got.Body?.transformToString()).toBe(body);
    expect(got.ContentEncoding).toBeUndefined();
  });

  it('tells write listeners of each stored object, and not of a refused write', async () => {
    const writes: string[] = [];
    const stop = server.onWrite((bucket, key) => writes.push(`${bucket}/${key}`));
    await put('watched/a.json', '{}');
    await expect(put('watched/a.json', '{}', { IfNoneMatch: '*' })).rejects.toThrow();
    await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'watched/a.json' }));
    stop();
    await put('watched/b.json', '{}');
    expect(writes).toEqual([`${BUCKET}/watched/a.json`]);
  });

  it('injects 503 SlowDown when the fault hook says so', async () => {
    slowdown = true;
    try {
      const res = await fetch(`${server.endpoint}/${BUCKET}/slow/x`);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain('<Code>SlowDown</Code>');
    } finally {
      slowdown = false;
    }
  });

  it('keeps data across a restart on the same directory', async () => {
    await put('keep/me', 'still here');
    await server.close();
    server = await startS3Server({ dir, buckets: [BUCKET] });
    client = createS3Client({ endpoint: server.endpoint });
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'keep/me' }));
    expect(await got.Body?.transformToString()).toBe('still here');
  });

  it('accepts uploads from the AWS CLI', async () => {
    const which = await promisify(execFile)('sh', ['-c', 'command -v aws']).catch(() => undefined);
    if (which === undefined) {
      console.warn('aws CLI not on PATH: skipping the AWS CLI upload check');
      return;
    }
    const file = join(dir, 'cli-upload.jsonl');
    const content = `${'{"name":"Ada"}\n'.repeat(40_000)}`;
    await writeFile(file, content);
    await awsS3Copy(server.endpoint, file, `s3://${BUCKET}/cli/upload.jsonl`);
    const got = await client.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: 'cli/upload.jsonl' }),
    );
    expect(await got.Body?.transformToString()).toBe(content);
  });

  it('stores keys whose last segment is just under the hashed length, beside which its temporary files must fit', async () => {
    // A segment of up to 200 bytes is a file name of its own, and a PUT writes its body and
    // metadata beside it first, under longer names: they too must stay within 255 bytes.
    for (const length of [180, 190, 195, 200]) {
      const key = `edge/${'s'.repeat(length)}`;
      await put(key, String(length));
      const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      expect(await got.Body?.transformToString(), `a ${length}-byte segment`).toBe(String(length));
    }
  });

  it('stores keys whose segments pass a file name, lists them in S3 order, and takes them from the AWS CLI', async () => {
    const long = 'x'.repeat(300);
    const accented = 'é'.repeat(150); // 300 bytes of UTF-8
    const keys = [
      `seg/${long}/a.jsonl`,
      `seg/${long}/b.jsonl`,
      `seg/${accented}`,
      `seg/${long}0`,
      'seg/y.jsonl',
    ];
    for (const key of keys) await put(key, key.slice(-8));
    for (const key of keys) {
      const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      expect(await got.Body?.transformToString(), key).toBe(key.slice(-8));
    }
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'seg/', MaxKeys: 2 }),
    );
    const rest = await client.send(
      new ListObjectsV2Command({
        Bucket: BUCKET,
        Prefix: 'seg/',
        ContinuationToken: listed.NextContinuationToken,
      }),
    );
    const all = [...(listed.Contents ?? []), ...(rest.Contents ?? [])].map((o) => o.Key);
    expect(all).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    const under = await client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `seg/${long}/` }),
    );
    expect(under.Contents?.map((o) => o.Key)).toEqual([
      `seg/${long}/a.jsonl`,
      `seg/${long}/b.jsonl`,
    ]);
    const which = await promisify(execFile)('sh', ['-c', 'command -v aws']).catch(() => undefined);
    if (which === undefined) return;
    const file = join(dir, 'long-segment.jsonl');
    await writeFile(file, '{"name":"Ada"}\n');
    await awsS3Copy(server.endpoint, file, `s3://${BUCKET}/cli/${long}.jsonl`);
    const got = await client.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: `cli/${long}.jsonl` }),
    );
    expect(await got.Body?.transformToString()).toBe('{"name":"Ada"}\n');
  });
});
