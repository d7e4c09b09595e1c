/**
 * Property-based fuzzing of the local HTTP API (the api bundle behind the local API server, with
 * the real S3 and Lambda servers): whatever the method, path or body, the answer is a 2xx or 4xx
 * with a JSON body, never a 5xx, and only well-formed submissions create jobs.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalApiServer, startApiServer } from '#local/api-server.ts';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';

let runtime: LocalRuntime;
let api: LocalApiServer;
const LESSON = 's3://fanout-local/datasets/fuzz/lesson.jsonl';

beforeAll(async () => {
  runtime = await startRuntime();
  api = await startApiServer({ invoker: runtime.gateway, functionName: runtime.functions.api });
  await runtime.store.put(
    runtime.bucket,
    'datasets/fuzz/lesson.jsonl',
    '{"name":"Ada","field":"math","born":1815,"nobel":false}\n',
  );
  await runtime.lambda.prewarm(runtime.functions.api, 4);
});
afterAll(async () => {
  await api?.close();
  await runtime?.close();
});

const jobCount = async () =>
  (await runtime.store.list(runtime.bucket, 'jobs/')).filter((o) => o.key.endsWith('/job.json'))
    .length;

describe('local HTTP API under fuzzing', () => {
  it('answers 1,000 generated requests with JSON 2xx/4xx and creates jobs only from valid ones', async () => {
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH');
    const path = fc.oneof(
      fc.constantFrom(
        '/jobs',
        '/jobs/',
        '/uploads',
        '/uploads/complete',
        '/openapi.json',
        '/',
        '/jobs/zzzzzzzzz0000000/result',
        '/jobs/x/cancel',
        '/jobs/x/redrive',
      ),
      fc.webPath(),
      fc.string({ maxLength: 40 }).map((s) => `/jobs/${encodeURIComponent(s)}`),
    );
    const submission = fc.record(
      {
        job: fc.oneof(fc.constantFrom('by-field', 'scientists', 'wordcount'), fc.string()),
        input: fc.oneof(fc.constant(LESSON), fc.string(), fc.webUrl()),
        params: fc.oneof(fc.constant({}), fc.dictionary(fc.string(), fc.jsonValue())),
        chunks: fc.oneof(fc.integer(), fc.double()),
        concurrency: fc.integer({ min: -5, max: 50 }),
        onBadRecord: fc.string(),
      },
      { requiredKeys: [] },
    );
    const body = fc.oneof(
      fc.constant(undefined),
      fc.string(),
      fc.json(),
      submission.map((s) => JSON.stringify(s)),
      fc.record({ key: fc.string(), bytes: fc.integer() }).map((u) => JSON.stringify(u)),
    );
    let created = 0;
    const before = await jobCount();
    await fc.assert(
      fc.asyncProperty(method, path, body, async (m, p, b) => {
        const res = await fetch(`${api.url}${p.startsWith('/') ? p : `/${p}`}`, {
          method: m,
          ...(b !== undefined && m !== 'GET' && { body: b }),
        });
        const text = await res.text();
        expect(res.status, `${m} ${p} ${b} → ${res.status} ${text}`).toSatisfy(
          (s: number) => (s >= 200 && s < 300) || (s >= 400 && s < 500),
        );
        expect(() => JSON.parse(text), text).not.toThrow();
        if (m === 'POST' && res.status === 202) created += 1;
      }),
      { numRuns: 1000 },
    );
    expect(await jobCount()).toBe(before + created);
  }, 120_000);
});
