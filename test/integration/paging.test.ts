/**
 * Paging that pages, locally as on S3: ListObjectsV2 with a delimiter honours MaxKeys (through
 * the SDK adapter), and `GET /jobs?limit=` returns that many jobs, newest first, with `next`.
 */
import { describe, expect, it } from 'vitest';
import { useRuntimeWithApi } from '../fixtures/runtime-api.ts';

const env = useRuntimeWithApi();

describe('paging', () => {
  it('lists "folders" a page at a time with the delimiter, none twice, none lost', async () => {
    for (const key of ['p/a/1', 'p/a/2', 'p/b', 'p/c/1', 'p/d/1', 'p/e/1']) {
      await env.runtime.store.put(env.runtime.bucket, key, 'x');
    }
    const seen: string[] = [];
    let startAfter: string | undefined;
    for (let page = 0; page < 10; page++) {
      const { prefixes, next } = await env.runtime.store.listPrefixes(env.runtime.bucket, 'p/', {
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
    await env.runtime.store.put(
      env.runtime.bucket,
      'datasets/paging/lesson.jsonl',
      '{"name":"Ada","field":"math","born":1815,"nobel":false}\n',
    );
    const submitted: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${env.api.url}/jobs`, {
        method: 'POST',
        body: JSON.stringify({
          job: 'by-field',
          input: `s3://${env.runtime.bucket}/datasets/paging/lesson.jsonl`,
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
      const body = (await (await fetch(`${env.api.url}/jobs?limit=1${query}`)).json()) as {
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
