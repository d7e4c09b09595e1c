/**
 * The coordinator → worker → reducer flow of the pure core, in-process: an in-memory store and
 * an invoker that calls the core functions directly.
 */

import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { systemClock } from '#core/base/ports.ts';
import type { ChunkTask, Manifest } from '#core/model/documents.ts';
import { createRegistry, defineJob } from '#core/model/job.ts';
import { jobKeys } from '#core/model/keys.ts';
import { type ReduceGroup, reduceGroup, reduceJob } from '#core/reduce/reducer.ts';
import { coordinateJob } from '#core/run/coordinator.ts';
import { submitJob } from '#core/run/submit.ts';
import { DirectInvoker } from '../fixtures/direct-invoker.ts';
import { IN_PROCESS, runWorkerTask } from '../fixtures/in-process.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';
import { jobsWithWordTable } from '../fixtures/word-table.ts';

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
const jobs = createRegistry([...jobsWithWordTable.values(), csvTotal]);

async function* gunzip(source: AsyncIterable<Uint8Array>) {
  const pieces: Uint8Array[] = [];
  for await (const piece of source) pieces.push(piece);
  yield gunzipSync(Buffer.concat(pieces));
}

function harness(fanIn?: number, lanes: { initialLanes?: number; rampMs?: number } = {}) {
  const store = new MemoryStore();
  const deps = { store, jobs, clock: systemClock, bucket: BUCKET };
  const concurrent = { now: 0, max: 0 };
  const invoker: DirectInvoker = new DirectInvoker({
    worker: async (task: ChunkTask) => {
      concurrent.max = Math.max(concurrent.max, ++concurrent.now);
      try {
        return await runWorkerTask(task, { ...deps, gunzip });
      } finally {
        concurrent.now -= 1;
      }
    },
    reducer: ({ jobId, group }: { jobId: string; group?: ReduceGroup }) => {
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
        ...IN_PROCESS,
        // Widening waits for real; retries in these tests need not.
        ...(lanes.initialLanes === undefined
          ? { sleep: async () => undefined }
          : { ...lanes, sleep: (ms: number) => new Promise((r) => setTimeout(r, ms)) }),
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
  return { store, invoker, submit, concurrent };
}

describe('coordinateJob', () => {
  it('merges a small keyed shuffle in the reducer, and runs partition tasks when they are set', async () => {
    const lines = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({ name: `s${i}`, field: `f${i % 7}`, born: 1900 + i, nobel: i % 3 === 0 }),
    );
    const text = `${lines.join('\n')}\n`;
    const results: string[] = [];
    for (const partitions of [undefined, 3]) {
      const { store, invoker, submit } = harness();
      await store.put(BUCKET, 'datasets/t.jsonl', text);
      const { job, status } = await submit({
        job: 'by-field',
        input: `s3://${BUCKET}/datasets/t.jsonl`,
        concurrency: 4,
        chunks: 5,
        ...(partitions !== undefined && { partitions }),
      });
      expect(status).toMatchObject({ status: 'SUCCEEDED', result: { records: 40 } });
      const manifest = JSON.parse(store.text(BUCKET, jobKeys(job.jobId).manifest));
      const tasks = invoker.calls.filter(
        (c) => (c.payload as { kind?: string }).kind === 'partition',
      );
      expect(manifest.partitions).toHaveLength(partitions ?? 0);
      expect(tasks).toHaveLength(partitions ?? 0);
      results.push(store.text(BUCKET, jobKeys(job.jobId).result(false)));
    }
    // The same document either way, keys in order.
    expect(results[1]).toBe(results[0]);
    expect(Object.keys(JSON.parse(results[0]!))).toEqual([
      'f0',
      'f1',
      'f2',
      'f3',
      'f4',
      'f5',
      'f6',
    ]);
  });

  it("ranks a keyed job's result (wordcount) the same with no partitions, one, or several, with and without top", async () => {
    // Words with many ties, counts from 1 to 9, and integer-like words (which a plain object
    // would move first): the order is count descending, then word.
    const words = Array.from({ length: 300 }, (_, i) => `w${(i * 37) % 41} ${i % 9}`);
    const text = `${words.join(' x\n')}\n`;
    const counts = new Map<string, number>();
    for (const w of text.split(/[^a-z0-9]+/).filter(Boolean))
      counts.set(w, (counts.get(w) ?? 0) + 1);
    const ranked = [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
    const expected = (top?: number) =>
      `{${ranked
        .slice(0, top)
        .map(([w, n]) => `${JSON.stringify(w)}:${n}`)
        .join(',')}}`;
    for (const top of [undefined, 7]) {
      for (const partitions of [undefined, 1, 3]) {
        const { store, invoker, submit } = harness();
        await store.put(BUCKET, 'datasets/t.txt', text);
        const { job, status } = await submit({
          job: 'wordcount',
          input: `s3://${BUCKET}/datasets/t.txt`,
          concurrency: 4,
          chunks: 5,
          ...(top !== undefined && { params: { top } }),
          ...(partitions !== undefined && { partitions }),
        });
        expect(status).toMatchObject({ status: 'SUCCEEDED', result: { records: 300 } });
        const tasks = invoker.calls.filter(
          (c) => (c.payload as { kind?: string }).kind === 'partition',
        );
        expect(tasks).toHaveLength(partitions ?? 0);
        expect(store.text(BUCKET, jobKeys(job.jobId).result(false)), `${top} ${partitions}`).toBe(
          expected(top),
        );
      }
    }
  });

  it("writes a keyed job's result as a line per key, in key order, with resultFormat jsonl", async () => {
    const lines = Array.from({ length: 30 }, (_, i) =>
      JSON.stringify({ name: `s${i}`, field: `f${(i * 7) % 11}`, born: 1900 + i, nobel: false }),
    );
    const outputs: string[] = [];
    for (const partitions of [undefined, 2]) {
      const { store, submit } = harness();
      await store.put(BUCKET, 'datasets/t.jsonl', `${lines.join('\n')}\n`);
      const { job, status } = await submit({
        job: 'by-field',
        input: `s3://${BUCKET}/datasets/t.jsonl`,
        concurrency: 4,
        chunks: 3,
        resultFormat: 'jsonl',
        ...(partitions !== undefined && { partitions }),
      });
      expect(status.result.key).toBe(jobKeys(job.jobId).result(true));
      outputs.push(store.text(BUCKET, jobKeys(job.jobId).result(true)));
    }
    expect(outputs[1]).toBe(outputs[0]);
    const rows = outputs[0]!
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => r.key)).toEqual([...rows.map((r) => r.key)].sort());
    expect(rows).toHaveLength(11);
    expect(rows[0]).toEqual({ key: 'f0', value: expect.objectContaining({ count: 3 }) });
  });

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

  it('concatenates map-only outputs, inline and parts, in order; a changed part is refused', async () => {
    const { store, submit } = harness();
    // Chunk 1's output is large enough for a part; the others stay inline in their outcomes.
    const line = (i: number, width: number) =>
      JSON.stringify({ name: `s${i}`.padEnd(width, '.'), field: 'f', born: 1900, nobel: false });
    await store.put(BUCKET, 'datasets/a.jsonl', `${line(0, 10)}\n`);
    await store.put(
      BUCKET,
      'datasets/b.jsonl',
      `${Array.from({ length: 3000 }, (_, i) => line(i + 1, 100)).join('\n')}\n`,
    );
    await store.put(BUCKET, 'datasets/c.jsonl', `${line(3001, 10)}\n`);
    const { job, status } = await submit({
      job: 'scientists',
      input: `s3://${BUCKET}/datasets/`,
      concurrency: 3,
    });
    expect(status).toMatchObject({ status: 'SUCCEEDED', chunks: { total: 3 } });
    const keys = jobKeys(job.jobId);
    const kinds = [0, 1, 2].map((i) => JSON.parse(store.text(BUCKET, keys.outcome(i))).output.kind);
    expect(kinds).toEqual(['inline', 'part', 'inline']);
    const names = store
      .text(BUCKET, keys.result(true))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).name.replace(/\.+$/, ''));
    expect(names).toEqual(Array.from({ length: 3002 }, (_, i) => `s${i}`));

    // A part that changed after its outcome recorded it is not concatenated.
    const running = { ...status, status: 'RUNNING' as const };
    delete running.result;
    delete running.finishedAt;
    await store.put(BUCKET, keys.status, JSON.stringify(running));
    const outcome = JSON.parse(store.text(BUCKET, keys.outcome(1)));
    await store.put(BUCKET, outcome.output.key, 'changed\n');
    await expect(
      reduceJob(job.jobId, { store, jobs, clock: systemClock, bucket: BUCKET }),
    ).rejects.toMatchObject({ code: 'DATASET_CHANGED' });
  });

  it('packs many small objects, empty and gzip ones among them, into a few chunks', async () => {
    const { store, invoker, submit } = harness();
    const record = (i: number) =>
      JSON.stringify({
        name: `s${i}`,
        field: ['math', 'physics'][i % 2],
        born: 1900,
        nobel: i % 3 === 0,
      });
    const all: string[] = [];
    for (let f = 0; f < 60; f++) {
      const rows = Array.from({ length: f % 7 }, (_, k) => record(f * 10 + k));
      all.push(...rows);
      const body = rows.length === 0 ? '' : `${rows.join('\n')}\n`;
      const key = `datasets/dir/f${String(f).padStart(3, '0')}.jsonl`;
      if (f % 10 === 3) await store.put(BUCKET, `${key}.gz`, gzipSync(body));
      else await store.put(BUCKET, key, body);
    }
    const { job, status } = await submit({
      job: 'by-field',
      input: `s3://${BUCKET}/datasets/dir/`,
      concurrency: 4,
      chunkSize: 1000,
    });
    expect(status).toMatchObject({ status: 'SUCCEEDED', records: all.length });
    const manifest: Manifest = JSON.parse(store.text(BUCKET, jobKeys(job.jobId).manifest));
    expect(manifest.chunks.length).toBeLessThan(20);
    expect(manifest.chunks.some((c) => c.lastObject !== undefined)).toBe(true);
    const tasks = invoker.calls.filter((c) => c.functionName === 'worker');
    expect(tasks.some((c) => (c.payload as ChunkTask).segments.length > 3)).toBe(true);
    // The same answer as one pass over every record.
    const single = harness();
    await single.store.put(BUCKET, 'datasets/one.jsonl', `${all.join('\n')}\n`);
    const one = await single.submit({
      job: 'by-field',
      input: `s3://${BUCKET}/datasets/one.jsonl`,
      concurrency: 1,
    });
    expect(store.text(BUCKET, jobKeys(job.jobId).result(false))).toBe(
      single.store.text(BUCKET, jobKeys(one.job.jobId).result(false)),
    );
  });

  it('merges a large fan-in as a tree of reducer invocations, with the same result', async () => {
    // A reduce to one accumulator (a keyed job's partitions are merged otherwise).
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
      job: 'word-table',
      input: `s3://${BUCKET}/datasets/t.jsonl`,
      concurrency: 10,
    });
    const tree = harness(3);
    await tree.store.put(BUCKET, 'datasets/t.jsonl', text);
    const many = await tree.submit({
      job: 'word-table',
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
      { job: 'word-table', from: 0, to: 2, chunks: [0, 1] },
      { job: 'word-table', from: 2, to: 5, chunks: [2, 3, 4] },
      { job: 'word-table', from: 5, to: 7, chunks: [5, 6] },
      { job: 'word-table', from: 7, to: 10, chunks: [7, 8, 9] },
    ]);
  });

  it('opens its initial lanes first, and the rest only once a chunk runs long', async () => {
    const lines = Array.from({ length: 6 }, (_, i) =>
      JSON.stringify({ name: `s${i}`, field: 'f', born: 1900 + i, nobel: false }),
    );
    const run = async (sleepMs: number) => {
      const h = harness(undefined, { initialLanes: 1, rampMs: 50 });
      await h.store.put(BUCKET, 'datasets/s.jsonl', `${lines.join('\n')}\n`);
      const { status } = await h.submit({
        job: 'scientists',
        input: `s3://${BUCKET}/datasets/s.jsonl`,
        params: { sleepMs },
        concurrency: 6,
        // Byte ranges, one 52-byte line each: a small input split by record opens every lane.
        chunkSize: 52,
      });
      expect(status).toMatchObject({ status: 'SUCCEEDED', chunks: { total: 6 } });
      return h.concurrent.max;
    };
    // Chunks of a millisecond finish long before 50 ms: one lane is all they get.
    expect(await run(0)).toBe(1);
    // Chunks that wait 300 ms each open the other five lanes.
    expect(await run(300)).toBe(6);
  });

  /** Max workers at once for `records` small records over 6 lanes: one at first, no ramp. */
  const smallInput = async (records: number) => {
    const lines = Array.from({ length: records }, (_, i) =>
      JSON.stringify({ name: `s${i}`, field: 'f', born: 1900 + i, nobel: false }),
    );
    // One lane at first and a ramp that never comes.
    const h = harness(undefined, { initialLanes: 1, rampMs: 60_000 });
    await h.store.put(BUCKET, 'datasets/s.jsonl', `${lines.join('\n')}\n`);
    const { job, status } = await h.submit({
      job: 'scientists',
      input: `s3://${BUCKET}/datasets/s.jsonl`,
      params: { sleepMs: 20 },
      concurrency: 6,
    });
    expect(status).toMatchObject({ status: 'SUCCEEDED', chunks: { total: 6 } });
    const manifest: Manifest = JSON.parse(h.store.text(BUCKET, jobKeys(job.jobId).manifest));
    return { max: h.concurrent.max, taskPerItem: manifest.taskPerItem };
  };

  it('opens every lane at once for one task per record of a small input, as executor.map would', async () => {
    expect(await smallInput(6)).toEqual({ max: 6, taskPerItem: true });
  });

  it('ramps up a small input whose tasks hold several records each', async () => {
    expect(await smallInput(12)).toEqual({ max: 1, taskPerItem: undefined });
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
