/**
 * The ObjectStore contract, run against the S3 adapter talking to the local S3 server, and
 * against the worker's lean store (its hot requests signed by hand, the rest through the S3
 * adapter). Every behaviour the core relies on is here: pinned reads, conditional writes,
 * paging, streaming.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeanObjectStore, leanStoreFromEnv } from '#adapters/lean-store.ts';
import { createS3Client } from '#adapters/s3-clients.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { crc64nvme } from '#core/base/crc64.ts';
import type { ObjectStore } from '#core/base/ports.ts';
import { type LocalS3Server, startS3Server } from '#local/s3/server.ts';

const BUCKET = 'contract';
let server: LocalS3Server;
const stores: Record<string, ObjectStore> = {};
/** Calls the lean store made to the SDK's store. */
const fallbacks = { count: 0 };

/** `store`, counting the calls made to it in `fallbacks`. */
function counted(store: ObjectStore): ObjectStore {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        fallbacks.count += 1;
        return value.apply(target, args);
      };
    },
  });
}

beforeAll(async () => {
  server = await startS3Server({ buckets: [BUCKET, `${BUCKET}-lean`] });
  const sdk = () =>
    new S3ObjectStore(createS3Client({ endpoint: server.endpoint }), {
      pageSize: 3,
      partSize: 5 * 1024 * 1024,
    });
  stores['S3 adapter'] = sdk();
  const lean = leanStoreFromEnv(
    {
      AWS_ENDPOINT_URL_S3: server.endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    },
    async () => counted(sdk()),
    { singlePutBytes: 6 * 1024 * 1024 },
  );
  if (!(lean instanceof LeanObjectStore)) throw new Error('no lean store from the environment');
  stores['lean store'] = lean;
});
afterAll(() => server?.close());

async function text(stream: AsyncIterable<Uint8Array>) {
  const pieces: Uint8Array[] = [];
  for await (const p of stream) pieces.push(p);
  return Buffer.concat(pieces).toString('utf8');
}

describe.each([
  ['S3 adapter', BUCKET],
  ['lean store', `${BUCKET}-lean`],
])('ObjectStore contract (%s, local server)', (name, BUCKET) => {
  let store: ObjectStore;
  beforeAll(() => {
    store = stores[name] as ObjectStore;
  });

  it('heads objects and reports missing ones as NotFoundError', async () => {
    const { etag } = await store.put(BUCKET, 'h/a.txt', 'hello');
    expect(await store.head(BUCKET, 'h/a.txt')).toEqual({
      bucket: BUCKET,
      key: 'h/a.txt',
      size: 5,
      etag,
    });
    await expect(store.head(BUCKET, 'h/missing')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(store.getBytes(BUCKET, 'h/missing')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Asked for, the full-object CRC-64/NVME S3 keeps (reuse proves appends with it).
    expect(await store.head(BUCKET, 'h/a.txt', { checksum: true })).toEqual({
      bucket: BUCKET,
      key: 'h/a.txt',
      size: 5,
      etag,
      crc64: crc64nvme(new TextEncoder().encode('hello')),
    });
  });

  it('lists every object under a prefix across pages, in key order', async () => {
    const keys = ['l/e', 'l/a', 'l/c', 'l/b', 'l/d', 'l/f', 'l/g', 'other'];
    await Promise.all(keys.map((k) => store.put(BUCKET, k, k)));
    const listed = await store.list(BUCKET, 'l/');
    expect(listed.map((o) => o.key)).toEqual(['l/a', 'l/b', 'l/c', 'l/d', 'l/e', 'l/f', 'l/g']);
    expect(listed[0]).toMatchObject({ size: 3, etag: expect.stringMatching(/^"[0-9a-f]{32}"$/) });
  });

  it('reads byte ranges, clamped to the object, nothing for an empty range', async () => {
    await store.put(BUCKET, 'r/digits', '0123456789');
    const object = await store.head(BUCKET, 'r/digits');
    expect(await text(store.readRange(object, 2, 5))).toBe('234');
    expect(await text(store.readRange(object, 8, 100))).toBe('89');
    expect(await text(store.readRange(object, 4, 4))).toBe('');
    expect(await text(store.readRange(object, 10, 12))).toBe('');
  });

  it('refuses a pinned read after the object was overwritten or deleted', async () => {
    await store.put(BUCKET, 'p/data', 'version 1');
    const pinned = await store.head(BUCKET, 'p/data');
    await store.put(BUCKET, 'p/data', 'version 2');
    await expect(text(store.readRange(pinned, 0, 5))).rejects.toMatchObject({
      code: 'DATASET_CHANGED',
      context: { key: 'p/data' },
    });
    const current = await store.head(BUCKET, 'p/data');
    const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    await createS3Client({ endpoint: server.endpoint }).send(
      new DeleteObjectCommand({ Bucket: BUCKET, Key: 'p/data' }),
    );
    await expect(text(store.readRange(current, 0, 5))).rejects.toMatchObject({
      code: 'DATASET_CHANGED',
    });
  });

  it('creates only once with ifNoneMatch and swaps only on a matching ETag', async () => {
    const first = await store.put(BUCKET, 'c/job.json', '{}', { ifNoneMatch: '*' });
    await expect(
      store.put(BUCKET, 'c/job.json', '{"x":1}', { ifNoneMatch: '*' }),
    ).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    const second = await store.put(BUCKET, 'c/job.json', '{"n":2}', { ifMatch: first.etag });
    await expect(
      store.put(BUCKET, 'c/job.json', '{"n":3}', { ifMatch: first.etag }),
    ).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    await expect(
      store.put(BUCKET, 'c/none.json', '{}', { ifMatch: first.etag }),
    ).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    const { body, etag } = await store.getBytes(BUCKET, 'c/job.json');
    expect(Buffer.from(body).toString()).toBe('{"n":2}');
    expect(etag).toBe(second.etag);
  });

  it('serialises concurrent compare-and-swap writers: exactly one wins per round', async () => {
    const { etag } = await store.put(BUCKET, 'c/counter', '0');
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        store.put(BUCKET, 'c/counter', String(i + 1), { ifMatch: etag }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('composes whole objects in order on the server (UploadPartCopy), pinned by ETag', async () => {
    const big = 5 * 1024 * 1024;
    await store.put(BUCKET, 'k/a', new Uint8Array(big).fill(97));
    await store.put(BUCKET, 'k/b', new Uint8Array(big + 3).fill(98));
    await store.put(BUCKET, 'k/c', 'tail');
    const sources = await Promise.all(['k/a', 'k/b', 'k/c'].map((k) => store.head(BUCKET, k)));
    const out = await store.compose(BUCKET, 'k/all', sources);
    expect(out.size).toBe(2 * big + 3 + 4);
    const all = await store.head(BUCKET, 'k/all');
    expect(all.size).toBe(out.size);
    expect(await text(store.readRange(all, big - 2, big + 2))).toBe('aabb');
    expect(await text(store.readRange(all, all.size - 6, all.size))).toBe('bbtail');
    await store.put(BUCKET, 'k/b', 'changed');
    await expect(store.compose(BUCKET, 'k/again', sources)).rejects.toThrow();
  });

  it('sends a body of known length as one streaming PUT, and refuses a wrong length', async () => {
    const piece = 1024 * 1024;
    async function* body(pieces: number) {
      for (let i = 0; i < pieces; i++) yield new Uint8Array(piece).fill(i + 1);
    }
    let progress = 0;
    const out = await store.upload(BUCKET, 'u/known.bin', body(9), {
      contentLength: 9 * piece,
      onProgress: (n) => {
        progress = n;
      },
    });
    expect(out.size).toBe(9 * piece);
    expect(progress).toBe(9 * piece);
    const object = await store.head(BUCKET, 'u/known.bin');
    expect(object).toMatchObject({ size: 9 * piece, etag: out.etag });
    // One PUT: S3 gives a multipart object an ETag ending in -{parts}.
    expect(out.etag).not.toMatch(/-\d+"$/);
    expect([...Buffer.from(await text(store.readRange(object, 9 * piece - 2, 9 * piece)))]).toEqual(
      [9, 9],
    );
    for (const [pieces, declared] of [
      [2, 3 * piece],
      [3, 2 * piece],
    ] as const) {
      await expect(
        store.upload(BUCKET, 'u/wrong.bin', body(pieces), { contentLength: declared }),
      ).rejects.toThrow(/declared/);
      await expect(store.head(BUCKET, 'u/wrong.bin')).rejects.toThrow();
    }
  });

  it('streams a multipart upload byte-exactly, reporting progress', async () => {
    const piece = 1024 * 1024;
    async function* body() {
      for (let i = 0; i < 13; i++) yield new Uint8Array(piece).fill(i);
    }
    let progress = 0;
    const out = await store.upload(BUCKET, 'u/big.bin', body(), {
      onProgress: (n) => {
        progress = n;
      },
    });
    expect(out.size).toBe(13 * piece);
    expect(progress).toBeGreaterThan(0);
    const object = await store.head(BUCKET, 'u/big.bin');
    expect(object.size).toBe(13 * piece);
    const tail = Buffer.from(
      await text(store.readRange(object, 12 * piece, 12 * piece + 3)),
      'utf8',
    );
    expect([...tail]).toEqual([12, 12, 12]);
  });
});

describe('the lean store', () => {
  it('reads, writes create-only, uploads a small part and deletes without the SDK', async () => {
    const store = stores['lean store'] as ObjectStore;
    await stores['S3 adapter']?.put(BUCKET, 'lean/data', 'abcdefgh');
    const object = await (stores['S3 adapter'] as ObjectStore).head(BUCKET, 'lean/data');
    const before = fallbacks.count;
    expect(await text(store.readRange(object, 2, 6))).toBe('cdef');
    await store.put(BUCKET, 'lean/outcome.json', '{}', { ifNoneMatch: '*' });
    await expect(
      store.put(BUCKET, 'lean/outcome.json', '{}', { ifNoneMatch: '*' }),
    ).rejects.toMatchObject({ code: 'PRECONDITION_FAILED' });
    async function* part() {
      yield new TextEncoder().encode('{"a":1}\n');
      yield new TextEncoder().encode('{"a":2}\n');
    }
    let progress = 0;
    const up = await store.upload(BUCKET, 'lean/part.jsonl', part(), {
      onProgress: (n) => {
        progress = n;
      },
    });
    expect(up).toMatchObject({ size: 16, etag: expect.stringMatching(/^"[0-9a-f]{32}"$/) });
    expect(progress).toBe(16);
    await store.delete(BUCKET, 'lean/part.jsonl');
    await store.delete(BUCKET, 'lean/never-was');
    expect(fallbacks.count).toBe(before);
    const sdk = stores['S3 adapter'] as ObjectStore;
    expect(Buffer.from((await sdk.getBytes(BUCKET, 'lean/outcome.json')).body).toString()).toBe(
      '{}',
    );
    await expect(sdk.head(BUCKET, 'lean/part.jsonl')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('hands a part longer than one PUT to the SDK’s multipart upload, first bytes included', async () => {
    const store = stores['lean store'] as ObjectStore;
    const piece = 1024 * 1024;
    async function* body() {
      for (let i = 0; i < 7; i++) yield new Uint8Array(piece).fill(i + 1);
    }
    const before = fallbacks.count;
    const out = await store.upload(BUCKET, 'lean/big.bin', body());
    // One call: the SDK store's upload (multipart, 5 MiB parts here), not a PUT of it all.
    expect(fallbacks.count).toBe(before + 1);
    expect(out.size).toBe(7 * piece);
    const object = await (stores['S3 adapter'] as ObjectStore).head(BUCKET, 'lean/big.bin');
    expect([...Buffer.from(await text(store.readRange(object, 0, 2)))]).toEqual([1, 1]);
    expect([...Buffer.from(await text(store.readRange(object, 7 * piece - 2, 7 * piece)))]).toEqual(
      [7, 7],
    );
  });
});
