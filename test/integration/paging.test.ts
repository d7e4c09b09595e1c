/**
 * Paging that pages, locally as on S3: ListObjectsV2 with a delimiter honours MaxKeys (through
 * the SDK adapter), and `GET /jobs?limit=` returns that many jobs, newest first, with `next`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalApiServer, startApiServer } from '#local/api-server.ts';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';

let runtime: LocalRuntime;
let api: LocalApiServer;

beforeAll(async () => {
  runtime = await startRuntime();
  api = await startApiServer({ invoker: runtime.invoker, functionName: runtime.functions.api });
});
afterAll(async () => {
  await api?.close();
  await runtime?.close();
});

describe('paging', () => {
  it('lists "folders" a page at a time with the delimiter, none twice, none lost', async () => {
    for (const key of ['p/a/1', 'p/a/2', 'p/b', 'p/c/1', 'p/d/1', 'p/e/1']) {
      await runtime.store.put(runtime.bucket, key, 'x');
    }
    const seen: string[] = [];
    let startAfter: string | undefined;
    for (let page = 0; page < 10; page++) {
      const { prefixes, next } = await runtime.store.listPrefixes(runtime.bucket, 'p/', {
        limit: 2,
        ...(startAfter !== undefined && { startAfter }),
      });
      expect(prefixes.length).toBeLessThanOrEqual(2);
      seen.push(...prefixes);
      if (next === undefined) break;
      startAfter = next;
    }
    expect(seen).toEqual(['p/a/', 'p/c/', 'p/d/', 'p/e/']);
  });

  it('GET /jobs?limit=1 returns one job and next, newest first, through every job', async () => {
    await runtime.store.put(
      runtime.bucket,
      'datasets/paging/lesson.jsonl',
      '{"name":"Ada","field":"math","born":1815,"nobel":false}\n',
    );
    const submitted: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${api.url}/jobs`, {
        method: 'POST',
        body: JSON.stringify({
          job: 'by-field',
          input: `s3://${runtime.bucket}/datasets/paging/lesson.jsonl`,
        }),
      });
      expect(res.status).toBe(202);
      submitted.push(((await res.json()) as { jobId: string }).jobId);
      await new Promise((r) => setTimeout(r, 5)); // ids carry milliseconds
    }
    const listed: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const query = cursor === undefined ? '' : `&cursor=${cursor}`;
      const body = (await (await fetch(`${api.url}/jobs?limit=1${query}`)).json()) as {
        jobs: { jobId: string }[];
        next?: string;
      };
      expect(body.jobs).toHaveLength(1);
      listed.push(...body.jobs.map((j) => j.jobId));
      if (body.next === undefined) break;
      cursor = body.next;
    }
    expect(listed).toEqual([...submitted].reverse());
  });
});
