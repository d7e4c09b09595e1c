/**
 * Bad uploads are 4xx, never a crash: multipart completion with an unknown upload, missing
 * parts, wrong ETags, parts out of order or too small answers as S3 does, through the local S3
 * server and through the HTTP API; a stream of malformed multipart sequences leaves both
 * servers answering. Also: the local S3 server refuses non-canonical keys itself.
 */
import { request } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useRuntimeWithApi } from '../fixtures/runtime-api.ts';

const env = useRuntimeWithApi();

/** A raw request to the local S3 server: no SDK, no URL normalisation of `..`. */
function s3(method: string, path: string, body?: string | Buffer) {
  return new Promise<{ status: number; body: string; etag?: string }>((resolve, reject) => {
    // Options, not a URL: a URL would be normalised (`a/../b` → `b`) before it is sent.
    const req = request(
      {
        host: '127.0.0.1',
        port: env.runtime.s3.port,
        path,
        method,
        headers: body === undefined ? {} : { 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const pieces: Buffer[] = [];
        res.on('data', (p: Buffer) => pieces.push(p));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(pieces).toString(),
            ...(typeof res.headers.etag === 'string' && { etag: res.headers.etag }),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const KEY = '/fanout-local/datasets/mp/big.jsonl';
const MiB = 1024 * 1024;

async function initiate(): Promise<string> {
  const res = await s3('POST', `${KEY}?uploads`);
  expect(res.status).toBe(200);
  return /<UploadId>([^<]+)<\/UploadId>/.exec(res.body)?.[1] as string;
}
const uploadPart = (id: string, n: number, body: string | Buffer) =>
  s3('PUT', `${KEY}?partNumber=${n}&uploadId=${id}`, body);
const complete = (id: string, parts: { n: number; etag: string }[]) =>
  s3(
    'POST',
    `${KEY}?uploadId=${id}`,
    `<CompleteMultipartUpload>${parts
      .map((p) => `<Part><PartNumber>${p.n}</PartNumber><ETag>${p.etag}</ETag></Part>`)
      .join('')}</CompleteMultipartUpload>`,
  );
const code = (body: string) => /<Code>([^<]+)<\/Code>/.exec(body)?.[1];

describe('multipart uploads on the local S3 server', () => {
  it('answers every bad completion as S3 does, and completes a good one', async () => {
    const unknown = await complete('0123456789abcdef0123456789abcdef', [{ n: 1, etag: '"x"' }]);
    expect([unknown.status, code(unknown.body)]).toEqual([404, 'NoSuchUpload']);

    const id = await initiate();
    const big = Buffer.alloc(5 * MiB, 97);
    const one = await uploadPart(id, 1, big);
    expect(one.status).toBe(200);
    const two = await uploadPart(id, 2, 'tail\n');
    const cases: [string, { n: number; etag: string }[], number, string][] = [
      [
        'a part never uploaded',
        [
          { n: 1, etag: one.etag! },
          { n: 3, etag: '"abc"' },
        ],
        400,
        'InvalidPart',
      ],
      ['a wrong ETag', [{ n: 1, etag: '"00000000000000000000000000000000"' }], 400, 'InvalidPart'],
      [
        'parts out of order',
        [
          { n: 2, etag: two.etag! },
          { n: 1, etag: one.etag! },
        ],
        400,
        'InvalidPartOrder',
      ],
      [
        'a part listed twice',
        [
          { n: 1, etag: one.etag! },
          { n: 1, etag: one.etag! },
        ],
        400,
        'InvalidPartOrder',
      ],
      ['no parts', [], 400, 'MalformedXML'],
    ];
    for (const [name, parts, status, expected] of cases) {
      const res = await complete(id, parts);
      expect([res.status, code(res.body)], name).toEqual([status, expected]);
    }
    // A small part that is not the last.
    const small = await initiate();
    const a = await uploadPart(small, 1, 'tiny\n');
    const b = await uploadPart(small, 2, 'tail\n');
    const tooSmall = await complete(small, [
      { n: 1, etag: a.etag! },
      { n: 2, etag: b.etag! },
    ]);
    expect([tooSmall.status, code(tooSmall.body)]).toEqual([400, 'EntityTooSmall']);

    // Nothing above created the object; the good completion does.
    expect((await s3('HEAD', KEY)).status).toBe(404);
    const done = await complete(id, [
      { n: 1, etag: one.etag! },
      { n: 2, etag: two.etag! },
    ]);
    expect(done.status).toBe(200);
    expect((await s3('GET', KEY)).body.length).toBe(5 * MiB + 5);
    // Completed: the upload is gone.
    const again = await complete(id, [
      { n: 1, etag: one.etag! },
      { n: 2, etag: two.etag! },
    ]);
    expect(code(again.body)).toBe('NoSuchUpload');
  });

  it('refuses parts and aborts of unknown uploads, removes aborted ones, never follows a path id', async () => {
    const part = await uploadPart('0123456789abcdef0123456789abcdef', 1, 'x');
    expect([part.status, code(part.body)]).toEqual([404, 'NoSuchUpload']);
    const traversal = await uploadPart('../../../../tmp', 1, 'x');
    expect([traversal.status, code(traversal.body)]).toEqual([404, 'NoSuchUpload']);
    const id = await initiate();
    const badNumber = await uploadPart(id, 10_001, 'x');
    expect([badNumber.status, code(badNumber.body)]).toEqual([400, 'InvalidArgument']);
    const otherKey = await s3(
      'PUT',
      `/fanout-local/datasets/mp/other.jsonl?partNumber=1&uploadId=${id}`,
      'x',
    );
    expect(code(otherKey.body)).toBe('NoSuchUpload');
    expect((await s3('DELETE', `${KEY}?uploadId=${id}`)).status).toBe(204);
    expect(code((await uploadPart(id, 1, 'x')).body)).toBe('NoSuchUpload');
    expect(code((await s3('DELETE', `${KEY}?uploadId=${id}`)).body)).toBe('NoSuchUpload');
  });

  it('survives a storm of malformed multipart sequences, and still answers', async () => {
    const ids = [await initiate(), await initiate()];
    const step = fc.record({
      op: fc.constantFrom('part', 'complete', 'abort', 'initiate'),
      id: fc.oneof(
        fc.constantFrom(0, 1).map((i) => ids[i] as string),
        fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 32, maxLength: 32 }),
        fc.string({ maxLength: 40 }).map(encodeURIComponent),
      ),
      n: fc.integer({ min: -2, max: 10_002 }),
      parts: fc.array(
        fc.record({ n: fc.integer({ min: 0, max: 5 }), etag: fc.string({ maxLength: 40 }) }),
        { maxLength: 4 },
      ),
      body: fc.string({ maxLength: 30 }),
    });
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
        for (const s of steps) {
          const res =
            s.op === 'part'
              ? await uploadPart(s.id, s.n, s.body)
              : s.op === 'complete'
                ? await complete(
                    s.id,
                    s.parts.map((p) => ({ n: p.n, etag: p.etag.replace(/[<&]/g, '') })),
                  )
                : s.op === 'abort'
                  ? await s3('DELETE', `${KEY}?uploadId=${s.id}`)
                  : await s3('POST', `${KEY}?uploads`);
          statuses.add(res.status);
          if (res.status >= 500) return false;
        }
        return true;
      }),
      { numRuns: 60, seed: 7 },
    );
    expect([...statuses].every((s) => s < 500)).toBe(true);
    // Still answering: a plain write and read, and the API.
    expect((await s3('PUT', '/fanout-local/datasets/mp/alive.txt', 'ok')).status).toBe(200);
    expect((await s3('GET', '/fanout-local/datasets/mp/alive.txt')).body).toBe('ok');
    expect((await fetch(`${env.api.url}/jobs?limit=1`)).status).toBe(200);
  });
});

describe('multipart completion through the HTTP API', () => {
  it('answers an unknown upload with 404 and a part never uploaded with 400, in JSON', async () => {
    const started = await fetch(`${env.api.url}/uploads`, {
      method: 'POST',
      body: JSON.stringify({ key: 'big3.jsonl', bytes: 100_000_000 }),
    });
    expect(started.status).toBe(201);
    const { multipart } = (await started.json()) as { multipart: { uploadId: string } };
    const missing = await fetch(`${env.api.url}/uploads/complete`, {
      method: 'POST',
      body: JSON.stringify({
        key: 'big3.jsonl',
        uploadId: multipart.uploadId,
        parts: [{ partNumber: 1, etag: '"d41d8cd98f00b204e9800998ecf8427e"' }],
      }),
    });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({
      error: { code: 'VALIDATION', message: expect.stringMatching(/InvalidPart/) },
    });
    const unknown = await fetch(`${env.api.url}/uploads/complete`, {
      method: 'POST',
      body: JSON.stringify({
        key: 'big3.jsonl',
        uploadId: '0123456789abcdef0123456789abcdef',
        parts: [{ partNumber: 1, etag: '"x"' }],
      }),
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
  });
});

describe('keys on the local S3 server', () => {
  it('refuses non-canonical keys, prefixes and copy sources with 400 naming the rule', async () => {
    await env.runtime.store.put(env.runtime.bucket, 'jobs/secret/result.json', '{"secret":1}');
    const cases: [string, string, RegExp][] = [
      ['GET', '/fanout-local/datasets/../jobs/secret/result.json', /"\." or "\.\." segments/],
      ['GET', '/fanout-local/datasets/./x.jsonl', /"\." or "\.\." segments/],
      ['PUT', '/fanout-local/datasets//x.jsonl', /empty segments/],
      ['GET', '/fanout-local/datasets/%5Cx.jsonl', /backslashes/],
      ['GET', '/fanout-local/datasets/%252e%252e/x', /percent-encoded dots/],
      ['GET', '/fanout-local/datasets/a%07b', /control characters/],
      ['GET', '/fanout-local?list-type=2&prefix=datasets/../jobs/', /prefix .* segments/],
    ];
    for (const [method, path, rule] of cases) {
      const res = await s3(method, path, method === 'PUT' ? 'x' : undefined);
      expect(res.status, path).toBe(400);
      expect(code(res.body), path).toBe('InvalidArgument');
      expect(res.body.replaceAll('&#34;', '"'), path).toMatch(rule);
    }
  });
});
