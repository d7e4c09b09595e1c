/**
 * The HTTP API's core: every 4xx path, that none of them writes anything, the happy paths, and
 * that the OpenAPI document and the router agree.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ApiDeps, handleApiRequest, ROUTES } from '#core/api/api.ts';
import { openApiDocument } from '#core/api/openapi.ts';
import { type Caller, LOCAL_OWNER } from '#core/api/owners.ts';
import type { UrlSigner } from '#core/base/ports.ts';
import { systemClock } from '#core/base/ports.ts';
import { tokenKey } from '#core/run/submit.ts';
import { jobs } from '#jobs/index.ts';
import { jobRoutes } from '../fixtures/cli.ts';
import { DirectInvoker } from '../fixtures/direct-invoker.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'fanout-test';
const LESSON = '{"name":"Ada","field":"math","born":1815,"nobel":false}\n';

const signer: UrlSigner = {
  presignGet: async (b, k) => `https://signed.example/${b}/${k}?get`,
  presignPut: async (b, k) => `https://signed.example/${b}/${k}?put`,
  createMultipartUpload: async () => 'upload-1',
  presignUploadPart: async (b, k, u, n) =>
    `https://signed.example/${b}/${k}?uploadId=${u}&partNumber=${n}`,
  completeMultipartUpload: async () => ({ etag: '"done"' }),
};

async function setup() {
  const store = new MemoryStore();
  await store.put(BUCKET, 'datasets/lesson.jsonl', LESSON);
  const invoker = new DirectInvoker({ coordinator: async () => null });
  const deps: ApiDeps = {
    store,
    signer,
    invoker,
    jobs,
    clock: systemClock,
    bucket: BUCKET,
    coordinatorFunction: 'coordinator',
    allowedInputs: [`s3://${BUCKET}/datasets/`],
    defaultConcurrency: 4,
    maxConcurrency: 10,
    log: () => undefined,
    admins: [ADMIN_ROLE],
    // The one local user of `fanout dev` without --auth, unless a test names a caller.
    implicitOwner: true,
  };
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    query: Record<string, string> = {},
    caller?: Caller,
  ) => {
    const response = await handleApiRequest(
      {
        method,
        path,
        query,
        ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        requestId: 'req-1',
        ...(caller !== undefined && { caller }),
      },
      deps,
    );
    return {
      ...response,
      json:
        response.headers['content-type'] === 'application/json'
          ? JSON.parse(response.body)
          : undefined,
    };
  };
  return { store, invoker, deps, call };
}

const input = `s3://${BUCKET}/datasets/lesson.jsonl`;

describe('POST /jobs', () => {
  it("records a keyed job's partitions in job.json", async () => {
    const { store, call } = await setup();
    const res = await call('POST', '/jobs', { job: 'by-field', input, partitions: 3 });
    expect(res.status).toBe(202);
    expect(JSON.parse(store.text(BUCKET, `jobs/${res.json.jobId}/job.json`))).toMatchObject({
      partitions: 3,
    });
  });

  it('queues a job: 202 with links, job.json and a QUEUED status, coordinator started', async () => {
    const { store, invoker, call } = await setup();
    const res = await call('POST', '/jobs', { job: 'by-field', input });
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({
      status: 'QUEUED',
      links: { self: `/jobs/${res.json.jobId}` },
    });
    expect(store.text(BUCKET, `jobs/${res.json.jobId}/job.json`)).toContain('"concurrency":4');
    expect(invoker.calls).toEqual([
      { functionName: 'coordinator', payload: { jobId: res.json.jobId } },
    ]);
  });

  const rejected: [string, unknown, number, RegExp][] = [
    ['malformed JSON', '{', 400, /must be a JSON object/],
    ['not an object', [1], 400, /invalid request body/],
    ['unknown field', { job: 'by-field', input, colour: 1 }, 400, /colour/],
    [
      'unknown job',
      { job: 'nope', input },
      400,
      /expected one of: by-field, scientists, wordcount/,
    ],
    ['malformed URI', { job: 'by-field', input: 'datasets/x' }, 400, /not an S3 URI/],
    [
      'bucket outside the allowed inputs',
      { job: 'by-field', input: 's3://elsewhere/datasets/x' },
      400,
      /outside the allowed inputs/,
    ],
    [
      'prefix outside the allowed inputs',
      { job: 'by-field', input: `s3://${BUCKET}/jobs/x` },
      400,
      /outside the allowed inputs/,
    ],
    [
      'missing object',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/none.jsonl` },
      404,
      /no object/,
    ],
    [
      'empty prefix',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/empty/` },
      404,
      /no objects under/,
    ],
    ['bad params', { job: 'scientists', input, params: { sleepMs: -5 } }, 400, /sleepMs/],
    ['concurrency 0', { job: 'by-field', input, concurrency: 0 }, 400, /concurrency/],
    [
      'concurrency over the maximum',
      { job: 'by-field', input, concurrency: 11 },
      400,
      /at most 10/,
    ],
    ['fractional chunks', { job: 'by-field', input, chunks: 1.5 }, 400, /chunks/],
    [
      'chunks and chunkSize',
      { job: 'by-field', input, chunks: 2, chunkSize: 100 },
      400,
      /not both/,
    ],
    ['bad policy', { job: 'by-field', input, onBadRecord: 'ignore' }, 400, /onBadRecord/],
    [
      'a key past 1,024 bytes',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/${'k'.repeat(1100)}` },
      400,
      /key is 1109 bytes long \(UTF-8\); S3 keys are at most 1024 bytes/,
    ],
    // Non-canonical keys: `..` would read another job's result through an allowed prefix.
    [
      'a ".." segment',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/../jobs/x/result.json` },
      400,
      /key must not contain "\." or "\.\." segments/,
    ],
    [
      'a "." segment',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/./lesson.jsonl` },
      400,
      /"\." or "\.\." segments/,
    ],
    [
      'an empty segment',
      { job: 'by-field', input: `s3://${BUCKET}/datasets//lesson.jsonl` },
      400,
      /empty segments/,
    ],
    [
      'a backslash',
      { job: 'by-field', input: `s3://${BUCKET}/datasets\\lesson.jsonl` },
      400,
      /backslashes/,
    ],
    [
      'a percent-encoded dot',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/%2e%2e/x.jsonl` },
      400,
      /percent-encoded dots/,
    ],
    [
      'a control character',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/a\u0007.jsonl` },
      400,
      /control characters/,
    ],
    [
      'a prefix with a ".." segment',
      { job: 'by-field', input: `s3://${BUCKET}/datasets/../` },
      400,
      /prefix must not contain/,
    ],
    ['partitions 0', { job: 'by-field', input, partitions: 0 }, 400, /partitions/],
    ['partitions above 10,000', { job: 'by-field', input, partitions: 10_001 }, 400, /partitions/],
    [
      'a line per key for a job without a key',
      { job: 'scientists', input, resultFormat: 'jsonl' },
      400,
      /resultFormat "jsonl" applies only to a keyed job; scientists's result is JSONL already/,
    ],
    [
      'partitions for a job without a key',
      { job: 'scientists', input, partitions: 2 },
      400,
      /partitions applies only to a keyed \(key\) or sorted \(orderBy\) job; scientists has neither/,
    ],
  ];
  for (const [name, body, status, message] of rejected) {
    it(`rejects ${name} with ${status} and writes nothing`, async () => {
      const { store, invoker, call } = await setup();
      const before = [...store.objects.keys()];
      const res = await call('POST', '/jobs', body);
      expect(res.status).toBe(status);
      expect(res.json.error.message).toMatch(message);
      expect([...store.objects.keys()]).toEqual(before);
      expect(invoker.calls).toEqual([]);
    });
  }
});

describe('POST /jobs with a clientToken', () => {
  it('returns the job the token created, and creates one job only', async () => {
    const { call, store } = await setup();
    const first = await call('POST', '/jobs', { job: 'by-field', input, clientToken: 't-1' });
    const again = await call('POST', '/jobs', { job: 'by-field', input, clientToken: 't-1' });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.json.jobId).toBe(first.json.jobId);
    const jobs = (await store.list(BUCKET, 'jobs/')).filter((o) => o.key.endsWith('/job.json'));
    expect(jobs).toHaveLength(1);
    const other = await call('POST', '/jobs', { job: 'by-field', input, clientToken: 't-2' });
    expect(other.json.jobId).not.toBe(first.json.jobId);
  });

  it('takes over a claim whose submission failed before writing its job, once it is old', async () => {
    const { call, store } = await setup();
    // The local user's claim (fanout dev without --auth), where a submission left it.
    const key = await tokenKey('lost', { arn: LOCAL_OWNER, principal: LOCAL_OWNER });
    const claim = (ago: number) =>
      store.put(
        BUCKET,
        key,
        JSON.stringify({
          jobId: 'zzzzzzzzzzzzzzzzz',
          claimedAt: new Date(Date.now() - ago).toISOString(),
        }),
      );
    await claim(5_000);
    const young = await call('POST', '/jobs', { job: 'by-field', input, clientToken: 'lost' });
    expect(young.status).toBe(409);
    expect(young.json.error.message).toMatch(/still being created; retry in a few seconds/);
    await claim(60_000);
    const old = await call('POST', '/jobs', { job: 'by-field', input, clientToken: 'lost' });
    expect(old.status).toBe(202);
    expect(old.json.jobId).not.toBe('zzzzzzzzzzzzzzzzz');
  });

  it('refuses a malformed token with 400', async () => {
    const { call } = await setup();
    const res = await call('POST', '/jobs', { job: 'by-field', input, clientToken: 'a b' });
    expect(res.status).toBe(400);
    expect(res.json.error.message).toMatch(/clientToken/);
  });
});

describe('GET /jobs/{id} and /result', () => {
  it('404s unknown and malformed ids', async () => {
    const { call } = await setup();
    expect((await call('GET', '/jobs/zzzzzzzzzzzz')).status).toBe(404);
    expect((await call('GET', '/jobs/..%2f')).status).toBe(404);
    expect((await call('GET', '/jobs/NOT-AN-ID/result')).status).toBe(404);
  });

  it("points a FAILED or CANCELLED job's result at redrive", async () => {
    const { store, call } = await setup();
    const { json } = await call('POST', '/jobs', { job: 'by-field', input });
    const status = (await call('GET', `/jobs/${json.jobId}`)).json;
    for (const ended of ['CANCELLED', 'FAILED']) {
      await store.put(
        BUCKET,
        `jobs/${json.jobId}/status.json`,
        JSON.stringify({ ...status, status: ended }),
      );
      const res = await call('GET', `/jobs/${json.jobId}/result`);
      expect(res.status).toBe(409);
      expect(res.json.error.message).toBe(
        `job ${json.jobId} is ${ended} and has no result; rerun the chunks that did not finish with fanout redrive ${json.jobId} (POST /jobs/${json.jobId}/redrive)`,
      );
    }
  });

  it('serves the status, 409s the result until SUCCEEDED, then serves it inline or by 303', async () => {
    const { store, call } = await setup();
    const { json } = await call('POST', '/jobs', { job: 'by-field', input });
    const status = await call('GET', `/jobs/${json.jobId}`);
    expect(status.json).toMatchObject({
      jobId: json.jobId,
      status: 'QUEUED',
      chunks: { total: 0 },
    });
    expect((await call('GET', `/jobs/${json.jobId}/result`)).status).toBe(409);

    const key = `jobs/${json.jobId}/result.json`;
    await store.put(BUCKET, key, '{"math":1}');
    const done = {
      ...status.json,
      status: 'SUCCEEDED',
      result: { key, bytes: 10, records: 1, badRecords: 0 },
    };
    await store.put(BUCKET, `jobs/${json.jobId}/status.json`, JSON.stringify(done));
    const inline = await call('GET', `/jobs/${json.jobId}/result`);
    expect(inline).toMatchObject({ status: 200, body: '{"math":1}' });

    done.result.bytes = 2_000_000;
    await store.put(BUCKET, `jobs/${json.jobId}/status.json`, JSON.stringify(done));
    const redirect = await call('GET', `/jobs/${json.jobId}/result`);
    expect(redirect.status).toBe(303);
    expect(redirect.headers.location).toBe(`https://signed.example/${BUCKET}/${key}?get`);
  });
});

describe('POST /jobs/{id}/cancel and /redrive', () => {
  it('cancels a QUEUED job at once, then refuses with 409; redrive needs FAILED or CANCELLED', async () => {
    const { call, invoker } = await setup();
    const { json } = await call('POST', '/jobs', { job: 'by-field', input });
    expect((await call('POST', `/jobs/${json.jobId}/redrive`)).status).toBe(409);
    const cancelled = await call('POST', `/jobs/${json.jobId}/cancel`);
    expect(cancelled).toMatchObject({
      status: 202,
      json: { status: 'CANCELLED', cancelRequested: true },
    });
    expect((await call('POST', `/jobs/${json.jobId}/cancel`)).json.error.code).toBe('CONFLICT');
    const redriven = await call('POST', `/jobs/${json.jobId}/redrive`);
    expect(redriven).toMatchObject({ status: 202, json: { status: 'RUNNING', redrives: 1 } });
    expect(invoker.calls.at(-1)).toEqual({
      functionName: 'coordinator',
      payload: { jobId: json.jobId },
    });
  });

  it('404s unknown jobs', async () => {
    const { call } = await setup();
    expect((await call('POST', '/jobs/zzzzzzzzz0000000/cancel')).status).toBe(404);
    expect((await call('POST', '/jobs/zzzzzzzzz0000000/redrive')).status).toBe(404);
  });
});

describe('GET /jobs', () => {
  it('lists the newest jobs first, paginated', async () => {
    const { call } = await setup();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await call('POST', '/jobs', { job: 'by-field', input })).json.jobId);
      await new Promise((r) => setTimeout(r, 2));
    }
    const first = await call('GET', '/jobs', undefined, { limit: '2' });
    expect(first.json.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([ids[2], ids[1]]);
    const second = await call('GET', '/jobs', undefined, { limit: '2', cursor: first.json.next });
    expect(second.json.jobs.map((j: { jobId: string }) => j.jobId)).toEqual([ids[0]]);
    expect(second.json.next).toBeUndefined();
    expect((await call('GET', '/jobs', undefined, { limit: '0' })).status).toBe(400);
    expect((await call('GET', '/jobs', undefined, { cursor: '../x' })).status).toBe(400);
  });
});

describe('POST /uploads', () => {
  it('refuses a key that would pass 1,024 bytes under datasets/, naming the rule', async () => {
    const { call } = await setup();
    const res = await call('POST', '/uploads', { key: 'k'.repeat(1100) });
    expect(res.status).toBe(400);
    expect(res.json.error.message).toMatch(
      /is 1109 bytes long \(UTF-8\); S3 keys are at most 1024 bytes/,
    );
  });

  it('presigns a PUT under datasets/', async () => {
    const { call } = await setup();
    const res = await call('POST', '/uploads', { key: 'sci/a.jsonl' });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      s3Uri: `s3://${BUCKET}/datasets/sci/a.jsonl`,
      url: expect.stringContaining('?put'),
    });
  });

  it('presigns multipart parts for large uploads and completes them', async () => {
    const { call } = await setup();
    const res = await call('POST', '/uploads', { key: 'big.jsonl', bytes: 100 * 1024 * 1024 });
    expect(res.json.multipart.parts).toHaveLength(7);
    expect(res.json.multipart.partSize).toBe(16 * 1024 * 1024);
    const done = await call('POST', '/uploads/complete', {
      key: 'big.jsonl',
      uploadId: res.json.multipart.uploadId,
      parts: [{ partNumber: 1, etag: '"a"' }],
    });
    expect(done).toMatchObject({
      status: 200,
      json: { s3Uri: `s3://${BUCKET}/datasets/big.jsonl` },
    });
  });

  it('answers a 200 GiB upload in under 1 MB, and gives every part URL once, by page', async () => {
    const { deps, call } = await setup();
    // URLs signed with session credentials are 1.5-2 KB; all 10,000 at once passed 6 MB.
    deps.signer = {
      ...signer,
      presignUploadPart: async (b, k, u, n) =>
        `https://signed.example/${b}/${k}?uploadId=${u}&partNumber=${n}&X-Amz-Security-Token=${'t'.repeat(1900)}`,
    };
    const res = await call('POST', '/uploads', { key: 'huge.jsonl', bytes: 200 * 1024 ** 3 });
    expect(res.status).toBe(201);
    expect(new TextEncoder().encode(res.body).length).toBeLessThan(1_000_000);
    const { partCount, partSize } = res.json.multipart;
    expect(partCount * partSize).toBeGreaterThanOrEqual(200 * 1024 ** 3);
    expect(partCount).toBeLessThanOrEqual(10_000);
    const seen: number[] = res.json.multipart.parts.map(
      (p: { partNumber: number }) => p.partNumber,
    );
    let next = res.json.multipart.nextParts;
    while (next !== undefined) {
      expect(next).toMatchObject({ method: 'POST', path: '/uploads/parts' });
      const page = await call(next.method, next.path, next.body);
      expect(page.status).toBe(200);
      expect(new TextEncoder().encode(page.body).length).toBeLessThan(1_000_000);
      seen.push(...page.json.parts.map((p: { partNumber: number }) => p.partNumber));
      next = page.json.nextParts;
    }
    expect(seen).toEqual(Array.from({ length: partCount }, (_, i) => i + 1));
    // A page past the last part is a 400 that says what was expected.
    const past = await call('POST', '/uploads/parts', {
      key: 'huge.jsonl',
      uploadId: 'upload-1',
      partCount,
      from: partCount + 1,
    });
    expect(past.status).toBe(400);
    expect(past.json.error.message).toMatch(/past the upload's last part/);
  });

  for (const key of [
    '../etc/passwd',
    '/abs',
    'a/../../b',
    'a//b',
    'bad\u0001key',
    'back\\slash',
    'a/%2E%2E/b',
    'a/./b',
    '',
  ]) {
    it(`rejects the key ${JSON.stringify(key)}`, async () => {
      const { store, call } = await setup();
      const before = store.objects.size;
      const res = await call('POST', '/uploads', { key });
      expect(res.status).toBe(400);
      expect(res.json.error.message).toMatch(/must|key/);
      expect(store.objects.size).toBe(before);
    });
  }
});

describe('GET /jobs/{id}/report', () => {
  it('answers a report inline by its bytes in the Lambda response, not its characters', async () => {
    const { store, call } = await setup();
    const jobId = 'zd34glc7a0c3otgdq';
    const status = (message: string) =>
      store.put(
        BUCKET,
        `jobs/${jobId}/status.json`,
        JSON.stringify({
          jobId,
          job: 'by-field',
          status: 'FAILED',
          input: `s3://${BUCKET}/datasets/lesson.jsonl`,
          createdAt: '2026-01-01T00:00:00.000Z',
          finishedAt: '2026-01-01T00:00:01.000Z',
          chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
          records: 0,
          bytes: 0,
          error: { code: 'X', name: 'Error', message },
        }),
      );
    // 2.6 million characters of two-byte UTF-8: under 5,000,000 characters, over 5 MB.
    await status('é'.repeat(2_600_000));
    const big = await call('GET', `/jobs/${jobId}/report`);
    expect(big.status).toBe(303);
    expect(big.headers.location).toContain(`jobs/${jobId}/report.html`);
    expect(store.objects.has(`${BUCKET}/jobs/${jobId}/report.html`)).toBe(true);
    await status('é'.repeat(1000));
    const small = await call('GET', `/jobs/${jobId}/report`);
    expect(small.status).toBe(200);
    expect(small.body).toContain('é'.repeat(1000));
  });
});

describe('routing and errors', () => {
  it('404s unknown routes and 405s wrong methods with Allow', async () => {
    const { call } = await setup();
    expect((await call('GET', '/nope')).status).toBe(404);
    const res = await call('DELETE', '/jobs');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('POST, GET');
  });

  it('turns an unexpected error into a generic 500 with the request id', async () => {
    const { deps } = await setup();
    const logged: unknown[] = [];
    const broken = {
      ...deps,
      log: (_m: string, d: unknown) => logged.push(d),
      store: { ...deps.store, getBytes: () => Promise.reject(new Error('disk on fire')) },
    };
    const res = await handleApiRequest(
      { method: 'GET', path: '/jobs/zd34glc7a0c3otgdq', query: {}, requestId: 'req-9' },
      broken as ApiDeps,
    );
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toEqual({
      error: {
        code: 'INTERNAL',
        message: 'internal error; quote request id req-9 when reporting it',
        requestId: 'req-9',
      },
    });
    expect(String(logged[0])).toMatch(/disk on fire/);
  });

  it('answers any generated request with a JSON 2xx/4xx and never creates a job from a bad one', async () => {
    const { store, call } = await setup();
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH');
    const path = fc.oneof(
      fc.constantFrom(
        '/jobs',
        '/uploads',
        '/uploads/complete',
        '/openapi.json',
        '/',
        '/jobs/x/result',
      ),
      fc.string().map((s) => `/${s}`),
    );
    const body = fc.oneof(
      fc.constant(undefined),
      fc.string(),
      fc.json(),
      fc.record({ job: fc.string(), input: fc.string() }),
    );
    await fc.assert(
      fc.asyncProperty(method, path, body, async (m, p, b) => {
        const res = await call(m, p, b);
        expect(res.status < 300 || (res.status >= 400 && res.status < 500)).toBe(true);
        expect(() => JSON.parse(res.body)).not.toThrow();
      }),
      { numRuns: 300 },
    );
    expect([...store.objects.keys()].filter((k) => k.includes('/jobs/'))).toEqual([]);
  });
});

describe('OpenAPI document', () => {
  it('documents exactly the routed operations', () => {
    const documented = Object.entries(openApiDocument().paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort());
  });

  it('is served at /openapi.json', async () => {
    const { call } = await setup();
    const res = await call('GET', '/openapi.json');
    expect(res.json.openapi).toBe('3.1.0');
    expect(
      res.json.paths['/jobs'].post.requestBody.content['application/json'].schema.properties,
    ).toHaveProperty('job');
    // What a client needs to call it: SigV4, where, which jobs, and what comes back.
    expect(res.json.components.securitySchemes.sigv4).toMatchObject({
      'x-amazon-apigateway-authtype': 'awsSigv4',
    });
    expect(res.json.security).toEqual([{ sigv4: [] }]);
    expect(res.json.servers[0].variables.api.default).toBe('http://127.0.0.1:3000');
    expect(
      res.json.paths['/jobs'].post.requestBody.content['application/json'].schema.properties.job
        .enum,
    ).toEqual(['by-field', 'scientists', 'wordcount']);
    const status =
      res.json.paths['/jobs/{jobId}'].get.responses['200'].content['application/json'].schema;
    expect(Object.keys(status.properties)).toEqual(
      expect.arrayContaining(['cost', 'usage', 'runs', 'heartbeatAt', 'epoch', 'result']),
    );
    expect(status.properties.result.properties.failedChunks.type).toBe('array');
    const list = res.json.paths['/jobs'].get.responses['200'].content['application/json'].schema;
    expect(list.properties.jobs.items.required).toContain('jobId');
    expect(
      Object.keys(res.json.paths['/jobs/{jobId}/result'].get.responses['200'].content),
    ).toEqual(['application/json', 'application/x-ndjson']);
  });
});

/** An admin role (a path in its ARN, which its sessions' ARNs do not show). */
const ADMIN_ROLE = 'arn:aws:iam::111122223333:role/ops/FanoutAdmin';
const alice: Caller = {
  arn: 'arn:aws:sts::111122223333:assumed-role/Analyst/alice',
  accountId: '111122223333',
};
const aliceLater: Caller = { arn: 'arn:aws:sts::111122223333:assumed-role/Analyst/alice-2' };
const bob: Caller = { arn: 'arn:aws:iam::111122223333:user/bob', accountId: '111122223333' };
const carol: Caller = { arn: 'arn:aws:sts::111122223333:assumed-role/FanoutAdmin/carol' };

describe('who may see and do what', () => {
  it('records the caller as the owner, and answers another caller 404 on every route of the job, as for a job that does not exist', async () => {
    const { store, call } = await setup();
    const created = await call('POST', '/jobs', { job: 'scientists', input }, {}, alice);
    expect(created.status).toBe(202);
    const jobId = created.json.jobId as string;
    const owner = {
      arn: alice.arn,
      principal: 'arn:aws:sts::111122223333:assumed-role/Analyst',
      accountId: '111122223333',
    };
    expect((await call('GET', `/jobs/${jobId}`, undefined, {}, alice)).json.owner).toEqual(owner);
    const stored = JSON.parse(
      new TextDecoder().decode((await store.getBytes(BUCKET, `jobs/${jobId}/job.json`)).body),
    );
    expect(stored.owner).toEqual(owner);
    // Another session of the same role is the same owner.
    expect((await call('GET', `/jobs/${jobId}`, undefined, {}, aliceLater)).status).toBe(200);
    const random = 'zzzzzzzzzzzzzzzzz';
    // Every route of one job, as the API declares them: a new one is covered as it is added.
    for (const { method, suffix } of jobRoutes()) {
      const theirs = await call(method, `/jobs/${jobId}${suffix}`, undefined, {}, bob);
      const none = await call(method, `/jobs/${random}${suffix}`, undefined, {}, bob);
      expect(theirs.status, `${method} ${suffix}`).toBe(404);
      expect(theirs.json, `${method} ${suffix}`).toEqual({
        error: { code: 'NOT_FOUND', message: `no job "${jobId}"` },
      });
      expect(none.json.error.message).toBe(`no job "${random}"`);
    }
    // An admin's role session sees and manages it.
    expect((await call('GET', `/jobs/${jobId}`, undefined, {}, carol)).status).toBe(200);
    expect((await call('POST', `/jobs/${jobId}/cancel`, undefined, {}, carol)).status).toBe(202);
  });

  it("lists a caller's own jobs; an admin's all=true lists everyone's, and anyone else's is refused", async () => {
    const { call } = await setup();
    const mine = (await call('POST', '/jobs', { job: 'scientists', input }, {}, alice)).json.jobId;
    const theirs = (await call('POST', '/jobs', { job: 'scientists', input }, {}, bob)).json.jobId;
    const listed = async (caller: Caller, query: Record<string, string> = {}) =>
      ((await call('GET', '/jobs', undefined, query, caller)).json.jobs as { jobId: string }[]).map(
        (j) => j.jobId,
      );
    expect(await listed(alice)).toEqual([mine]);
    expect(await listed(bob)).toEqual([theirs]);
    expect(await listed(carol)).toEqual([]);
    expect((await listed(carol, { all: 'true' })).sort()).toEqual([mine, theirs].sort());
    const refused = await call('GET', '/jobs', undefined, { all: 'true' }, bob);
    expect(refused.status).toBe(403);
  });

  it("keeps a client token per caller: another's same token makes a job of its own", async () => {
    const { call } = await setup();
    const body = { job: 'scientists', input, clientToken: 'nightly-1' };
    const a = (await call('POST', '/jobs', body, {}, alice)).json.jobId;
    const again = (await call('POST', '/jobs', body, {}, aliceLater)).json.jobId;
    const b = (await call('POST', '/jobs', body, {}, bob)).json.jobId;
    expect(again).toBe(a);
    expect(b).not.toBe(a);
  });

  it('refuses a request that names no caller where there is no implicit local owner (AWS)', async () => {
    const { deps, call } = await setup();
    deps.implicitOwner = false;
    const res = await call('GET', '/jobs');
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('FORBIDDEN');
  });

  it('confines a caller to its own input folder with inputPrefixPerPrincipal; an admin is not confined', async () => {
    const { deps, store, call } = await setup();
    deps.inputPrefixPerPrincipal = true;
    const folder = '111122223333-role-Analyst';
    await store.put(BUCKET, `datasets/${folder}/mine.jsonl`, LESSON);
    const elsewhere = await call('POST', '/jobs', { job: 'scientists', input }, {}, alice);
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.json.error.message).toContain(`s3://${BUCKET}/datasets/${folder}/`);
    const own = { job: 'scientists', input: `s3://${BUCKET}/datasets/${folder}/mine.jsonl` };
    expect((await call('POST', '/jobs', own, {}, alice)).status).toBe(202);
    expect((await call('POST', '/jobs', { job: 'scientists', input }, {}, carol)).status).toBe(202);
    // Uploads go to the caller's folder; a key in another's is refused.
    const upload = await call('POST', '/uploads', { key: 'new.jsonl' }, {}, alice);
    expect(upload.json.key).toBe(`datasets/${folder}/new.jsonl`);
    const theirs = await call('POST', '/uploads', { key: 'datasets/other/new.jsonl' }, {}, alice);
    expect(theirs.status).toBe(400);
  });
});
