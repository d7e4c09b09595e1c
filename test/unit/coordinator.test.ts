/**
 * The coordinator → worker → reducer flow of the pure core, in-process: an in-memory store and
 * an invoker that calls the core functions directly.
 */

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { coordinateJob } from '#core/coordinator.ts';
import { createRegistry, defineJob } from '#core/job.ts';
import { jobKeys } from '#core/keys.ts';
import type { ChunkTask, Manifest } from '#core/model.ts';
import { systemClock } from '#core/ports.ts';
import { reduceGroup, reduceJob } from '#core/reducer.ts';
import { submitJob } from '#core/submit.ts';
import { runChunk } from '#core/worker.ts';
import { jobs as builtIns } from '#jobs/index.ts';
import { DirectInvoker } from '../fixtures/direct-invoker.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'fanout-test';

const csvTotal = defineJob({
  name: 'csv-total',
  format: 'csv',
  params: z.object({}).strict(),
  map: (row: Record<string, string>) => Number(row.amount),
  reduce: {
    init: () => 0,
    add: (a: number, n: number) => a + n,
    merge: (a: number, b: number) => a + b,
  },
});
const jobs = createRegistry([...builtIns.values(), csvTotal]);

function harness(fanIn?: number) {
  const store = new MemoryStore();
  const deps = { store, jobs, clock: systemClock, bucket: BUCKET };
  const invoker: DirectInvoker = new DirectInvoker({
    worker: (task: ChunkTask) => runChunk(task, { ...deps, gunzip: (x) => x }),
    reducer: ({ jobId, group }: { jobId: string; group?: { from: number; to: number } }) => {
      const reducerDeps = {
        ...deps,
        invoker,
        reducerFunction: 'reducer',
        ...(fanIn !== undefined && { fanIn }),
      };
      return group === undefined
        ? reduceJob(jobId, reducerDeps)
        : reduceGroup(jobId, group, reducerDeps);
    },
    coordinator: ({ jobId }: { jobId: string }) =>
      coordinateJob(jobId, {
        ...deps,
        invoker,
        workerFunction: 'worker',
        reducerFunction: 'reducer',
        coordinatorFunction: 'coordinator',
        workerTimeoutMs: 60_000,
        statusIntervalMs: 0,
        sleep: async () => undefined,
      }),
  });
  const submit = async (request: Parameters<typeof submitJob>[0]) => {
    const job = await submitJob(request, {
      ...deps,
      invoker,
      coordinatorFunction: 'coordinator',
    });
    await Promise.all(invoker.background);
    const status = JSON.parse(store.text(BUCKET, jobKeys(job.jobId).status));
    return { job, status };
  };
  return { store, invoker, submit };
}

describe('coordinateJob', () => {
  it('runs a CSV job with the header handed to every chunk', async () => {
    const { store, submit } = harness();
    const rows = Array.from({ length: 50 }, (_, i) => `${i},"item, ${i}",${i * 2}`);
    await store.put(BUCKET, 'datasets/t.csv', `id,name,amount\r\n${rows.join('\r\n')}\r\n`);
    const { job, status } = await submit({
      job: 'csv-total',
      input: `s3://${BUCKET}/datasets/t.csv`,
      concurrency: 4,
      chunkSize: 97,
    });
    expect(status.status).toBe('SUCCEEDED');
    expect(store.text(BUCKET, `jobs/${job.jobId}/result.json`)).toBe(String((2 * (49 * 50)) / 2));
    const manifest: Manifest = JSON.parse(store.text(BUCKET, jobKeys(job.jobId).manifest));
    expect(manifest.objects[0]?.header).toEqual(['id', 'name', 'amount']);
    expect(manifest.chunks.length).toBeGreaterThanOrEqual(10);
  });

  it('splits a small input one record per chunk, at most `concurrency` chunks', async () => {
    const { store, invoker, submit } = harness();
    const lines = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify({ name: `s${i}`, field: 'f', born: 1900 + i, nobel: false }),
    );
    await store.put(BUCKET, 'datasets/s.jsonl', `${lines.join('\n')}\n`);
    const { status } = await submit({
      job: 'scientists',
      input: `s3://${BUCKET}/datasets/s.jsonl`,
      concurrency: 4,
    });
    expect(status).toMatchObject({
      status: 'SUCCEEDED',
      chunks: { total: 4, succeeded: 4 },
      records: 10,
    });
    const workerCalls = invoker.calls
      .filter((c) => c.functionName === 'worker')
      .map((c) => (c.payload as ChunkTask).index);
    expect(workerCalls).toHaveLength(4);
  });

  it('fails the job, writes no result, when a chunk fails deterministically', async () => {
    const { store, submit } = harness();
    await store.put(
      BUCKET,
      'datasets/bad.jsonl',
      '{"name":"a","field":"f","born":1,"nobel":false}\n{oops\n',
    );
    const { job, status } = await submit({
      job: 'by-field',
      input: `s3://${BUCKET}/datasets/bad.jsonl`,
      concurrency: 2,
    });
    expect(status.status).toBe('FAILED');
    expect(status.error.message).toMatch(
      /chunk 1 .* failed after 1 attempt\(s\).*malformed record at byte 48/,
    );
    expect(store.objects.has(`${BUCKET}/jobs/${job.jobId}/result.json`)).toBe(false);
  });

  it('assembles large map-only parts on the server and streams small ones', async () => {
    const { store, submit } = harness();
    const line = (i: number) =>
      JSON.stringify({ name: `n${i}`.padEnd(2000, '.'), field: 'f', born: 1900, nobel: false });
    const text = `${Array.from({ length: 6000 }, (_, i) => line(i)).join('\n')}\n`;
    await store.put(BUCKET, 'datasets/wide.jsonl', text);
    const { job, status } = await submit({
      job: 'scientists',
      input: `s3://${BUCKET}/datasets/wide.jsonl`,
      concurrency: 2,
      chunks: 2,
    });
    expect(status.status).toBe('SUCCEEDED');
    expect(store.composed).toBe(1);
    const out = store.text(BUCKET, `jobs/${job.jobId}/result.jsonl`).trim().split('\n');
    expect(out).toHaveLength(6000);
    expect(JSON.parse(out[5999]!).name).toBe('n5999'.padEnd(2000, '.'));

    const small = harness();
    await small.store.put(BUCKET, 'datasets/s.jsonl', `${line(1)}\n${line(2)}\n`);
    const r = await small.submit({
      job: 'scientists',
      input: `s3://${BUCKET}/datasets/s.jsonl`,
      concurrency: 2,
    });
    expect(r.status.status).toBe('SUCCEEDED');
    expect(small.store.composed).toBe(0);
  });

  it('concatenates map-only parts from their outcomes, with a HEAD only for outcomes without an ETag', async () => {
    const { store, submit } = harness();
    const lines = Array.from({ length: 12 }, (_, i) =>
      JSON.stringify({ name: `s${i}`, field: 'f', born: 1900 + i, nobel: false }),
    );
    await store.put(BUCKET, 'datasets/s.jsonl', `${lines.join('\n')}\n`);
    const { job, status } = await submit({
      job: 'scientists',
      input: `s3://${BUCKET}/datasets/s.jsonl`,
      concurrency: 5,
    });
    expect(status.status).toBe('SUCCEEDED');
    const keys = jobKeys(job.jobId);
    const expected = store.text(BUCKET, keys.result(true));
    expect(expected.trim().split('\n')).toHaveLength(12);

    // Reduce again from outcomes as an older worker wrote them (no part ETag): same result.
    const reduceAgain = async () => {
      const running = { ...status, status: 'RUNNING' as const };
      delete running.result;
      delete running.finishedAt;
      await store.put(BUCKET, keys.status, JSON.stringify(running));
      const deps = { store, jobs, clock: systemClock, bucket: BUCKET };
      return reduceJob(job.jobId, deps);
    };
    for (let i = 0; i < 5; i++) {
      const outcome = JSON.parse(store.text(BUCKET, keys.outcome(i)));
      expect(outcome.part.etag).toMatch(/^"/);
      delete outcome.part.etag;
      await store.put(BUCKET, keys.outcome(i), JSON.stringify(outcome));
    }
    expect((await reduceAgain()).status).toBe('SUCCEEDED');
    expect(store.text(BUCKET, keys.result(true))).toBe(expected);

    // A part that changed after its outcome recorded it is not concatenated.
    const outcome = JSON.parse(store.text(BUCKET, keys.outcome(2)));
    outcome.part.etag = '"stale"';
    await store.put(BUCKET, keys.outcome(2), JSON.stringify(outcome));
    await expect(reduceAgain()).rejects.toThrow();
  });

  it('merges a large fan-in as a tree of reducer invocations, with the same result', async () => {
    const lines = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify({
        name: `s${i}`,
        field: i % 3 === 0 ? 'math' : 'physics',
        born: 1900 + i,
        nobel: i % 2 === 0,
      }),
    );
    const text = `${lines.join('\n')}\n`;
    const flat = harness();
    await flat.store.put(BUCKET, 'datasets/t.jsonl', text);
    const one = await flat.submit({
      job: 'by-field',
      input: `s3://${BUCKET}/datasets/t.jsonl`,
      concurrency: 10,
    });
    const tree = harness(3);
    await tree.store.put(BUCKET, 'datasets/t.jsonl', text);
    const many = await tree.submit({
      job: 'by-field',
      input: `s3://${BUCKET}/datasets/t.jsonl`,
      concurrency: 10,
    });
    expect(many.status).toMatchObject({ status: 'SUCCEEDED', result: { records: 10 } });
    expect(tree.store.text(BUCKET, `jobs/${many.job.jobId}/result.json`)).toBe(
      flat.store.text(BUCKET, `jobs/${one.job.jobId}/result.json`),
    );
    const groups = tree.invoker.calls.filter(
      (c) => (c.payload as { group?: unknown }).group !== undefined,
    );
    expect(groups.map((c) => (c.payload as { group: unknown }).group)).toEqual([
      { from: 0, to: 2 },
      { from: 2, to: 5 },
      { from: 5, to: 7 },
      { from: 7, to: 10 },
    ]);
  });

  it('fails with a clear error when the input does not exist', async () => {
    const { submit } = harness();
    const { status } = await submit({
      job: 'by-field',
      input: `s3://${BUCKET}/datasets/none/`,
      concurrency: 2,
    });
    expect(status).toMatchObject({ status: 'FAILED', error: { code: 'NOT_FOUND' } });
  });

  it('validates a submission before writing anything', async () => {
    const { store, submit } = harness();
    for (const bad of [
      { job: 'nope', input: `s3://${BUCKET}/k`, concurrency: 1 },
      { job: 'by-field', input: 'file.jsonl', concurrency: 1 },
      { job: 'by-field', input: `s3://${BUCKET}/k`, concurrency: 0 },
      { job: 'by-field', input: `s3://${BUCKET}/k`, concurrency: 1, chunks: 2, chunkSize: 10 },
      { job: 'by-field', input: `s3://${BUCKET}/k`, concurrency: 1, params: { year: 'x' } },
    ]) {
      await expect(submit(bad)).rejects.toMatchObject({ code: 'VALIDATION' });
    }
    expect(store.objects.size).toBe(0);
  });
});
