/**
 * The whole pipeline on the embedded runtime: real local S3 server, real Lambda Invoke API
 * server running the function bundles, the real SDK clients in between.
 */
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readStatus } from '#core/model/status.ts';
import { submitJob } from '#core/run/submit.ts';
import { type LocalRuntime, startRuntime, submitDeps } from '#local/runtime.ts';
import { byFieldSinglePass, wordcountSinglePass } from '../../bench/baseline.ts';
import { generate } from '../../bench/gen.ts';
import { followJob, runJob } from '../../cli/run.ts';
import { scientistsOutput } from '../fixtures/expected.ts';

const root = resolve(import.meta.dirname, '../..');
const lesson = join(root, 'examples/scientists.jsonl');
const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;

let runtime: LocalRuntime;
let dir: string;

beforeAll(async () => {
  runtime = await startRuntime();
  dir = await mkdtemp(join(tmpdir(), 'fanout-pipeline-'));
});
afterAll(async () => {
  await runtime?.close();
  await rm(dir, { recursive: true, force: true });
});

const run = (options: Omit<Parameters<typeof runJob>[1], 'stderr'>) =>
  runJob(runtime, { ...options, stderr: quiet });

describe('the lesson', () => {
  it('by-field groups the seven scientists', async () => {
    const result = await run({ job: 'by-field', input: lesson });
    expect(result.status.chunks.total).toBe(7);
    expect(result.resultText).toBe(
      '{"astronomy":{"count":1,"nobels":0,"ageSum":89},"chemistry":{"count":2,"nobels":2,"ageSum":165},"math":{"count":2,"nobels":0,"ageSum":337},"physics":{"count":2,"nobels":1,"ageSum":216}}',
    );
    expect(result.status.result).toMatchObject({ records: 7 });
    // What it would cost deployed: every worker, the coordinator and the reducer, and their S3
    // requests (docs/COST.md).
    const { cost } = result.status;
    expect(cost?.usd).toBeGreaterThan(0);
    // by-field is keyed, and its few groups need no partition task: the reducer merges them.
    expect(result.status.partitions).toBeUndefined();
    expect(cost?.lambdaRequests).toBe(result.status.chunks.total + 2);
    expect(cost?.s3Requests.get).toBeGreaterThan(result.status.chunks.total);
    // The coordinator and reducer runs, for the report's timeline.
    expect(result.status.runs?.map((r) => r.role)).toEqual(['coordinator', 'reducer']);
    expect(cost?.prices).toMatch(/^us-east-1 arm64 list prices checked \d{4}-\d{2}-\d{2}$/);
  });

  it('runs on a key whose segment is longer than a file name may be (300 bytes)', async () => {
    const key = `datasets/${'x'.repeat(300)}/lesson.jsonl`;
    await runtime.store.put(runtime.bucket, key, await readFile(lesson));
    // Removed after: a later test checks that nothing else lands in datasets/.
    const result = await run({ job: 'by-field', input: `s3://${runtime.bucket}/${key}` }).finally(
      () => runtime.store.delete(runtime.bucket, key),
    );
    expect(JSON.parse(result.resultText!)).toEqual({
      astronomy: { count: 1, nobels: 0, ageSum: 89 },
      chemistry: { count: 2, nobels: 2, ageSum: 165 },
      math: { count: 2, nobels: 0, ageSum: 337 },
      physics: { count: 2, nobels: 1, ageSum: 216 },
    });
  });

  it('scientists keeps input order, and seven 1-second records run side by side', async () => {
    await runtime.lambda.prewarm(runtime.functions.worker, 7);
    // How many workers run at once, sampled through the job: seven side by side, not one at a
    // time. (Timings belong to bench 2; this is the structure behind them.)
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, runtime.lambda.stats(runtime.functions.worker).busy);
    }, 10);
    const result = await run({ job: 'scientists', input: lesson, params: { sleepMs: 1000 } });
    clearInterval(sampler);
    const ages = result
      .resultText!.trim()
      .split('\n')
      .map((l) => JSON.parse(l).age);
    expect(ages).toEqual([202, 135, 150, 87, 78, 89, 66]);
    expect(result.status.chunks.total).toBe(7);
    expect(peak).toBe(7);
  });
});

describe('byte-range chunks', () => {
  it('gives the single-pass answer for any chunking, over one file or a directory', async () => {
    const file = join(dir, 'sci.jsonl');
    await generate({ records: 20_000, out: file, seed: 7 });
    const expected = JSON.stringify((await byFieldSinglePass(file)).result);
    for (const chunkSize of [4099, 65_536]) {
      const result = await run({ job: 'by-field', input: file, chunkSize });
      expect(result.resultText).toBe(expected);
    }
    // A guided tail cuts the last round smaller: more chunks, the same answer.
    const guided = await run({ job: 'by-field', input: file, chunkSize: 65_536, guidedTail: true });
    expect(guided.resultText).toBe(expected);
    const plain = await run({ job: 'by-field', input: file, chunkSize: 65_536 });
    expect(guided.status.chunks.total).toBeGreaterThan(plain.status.chunks.total);
    // The same records split over three objects, read as one dataset in name order.
    const text = await readFile(file, 'utf8');
    const lines = text.split('\n');
    const parts = join(dir, 'parts');
    await rm(parts, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(parts));
    await writeFile(join(parts, 'a.jsonl'), `${lines.slice(0, 7000).join('\n')}\n`);
    await writeFile(join(parts, 'b.jsonl'), `${lines.slice(7000, 7001).join('\n')}\n`);
    await writeFile(join(parts, 'c.jsonl'), lines.slice(7001).join('\n'));
    const fromDir = await run({ job: 'by-field', input: parts, chunks: 5 });
    expect(fromDir.resultText).toBe(expected);
  });

  it('keeps map-only output in input order across chunks', async () => {
    const file = join(dir, 'order.jsonl');
    await generate({ records: 5_000, out: file, seed: 3 });
    const expected = await scientistsOutput(file);
    const out = join(dir, 'order.out.jsonl');
    const result = await run({ job: 'scientists', input: file, chunkSize: 10_007, output: out });
    expect(result.status.chunks.total).toBeGreaterThan(30);
    expect((await readFile(out, 'utf8')).trim().split('\n')).toEqual(expected);
  });

  it('assembles large map-only parts on the server, byte for byte in input order', async () => {
    const file = join(dir, 'wide.jsonl');
    const names = Array.from({ length: 6000 }, (_, i) => `n${i}`.padEnd(2000, '.'));
    await writeFile(
      file,
      `${names.map((name) => JSON.stringify({ name, field: 'f', born: 1917, nobel: false })).join('\n')}\n`,
    );
    const out = join(dir, 'wide.out.jsonl');
    const before = runtime.s3.requests().copy;
    const result = await run({ job: 'scientists', input: file, chunks: 2, output: out });
    expect(result.status.result?.bytes).toBeGreaterThan(10 * 1024 * 1024);
    // On the server: one UploadPartCopy per part, no byte through the reducer (a streamed
    // upload of the same bytes would make no copy at all).
    expect(runtime.s3.requests().copy - before).toBe(2);
    expect(await readFile(out, 'utf8')).toBe(
      names.map((name) => `${JSON.stringify({ name, age: 100 })}\n`).join(''),
    );
  });

  it('counts words', async () => {
    const result = await run({
      job: 'wordcount',
      input: join(root, 'examples/words.txt'),
      params: { top: 3 },
    });
    expect(result.resultText).toBe('{"the":11,"it":10,"of":10}');
  });

  it('counts 5,000 distinct words through partition tasks, ranked as a single pass ranks them', async () => {
    const file = join(dir, 'many-words.txt');
    await generate({ records: 4000, out: file, seed: 7, kind: 'text', keys: 5000 });
    const single = await wordcountSinglePass(file);
    const expected = JSON.stringify(single);
    const top = `{${Object.entries(single)
      .slice(0, 25)
      .map(([w, n]) => `${JSON.stringify(w)}:${n}`)
      .join(',')}}`;
    for (const [params, want] of [
      [{}, expected],
      [{ top: 25 }, top],
    ] as const) {
      const result = await run({ job: 'wordcount', input: file, chunks: 4, partitions: 3, params });
      expect(result.status.partitions?.total).toBe(3);
      expect(result.resultText).toBe(want);
    }
  });
});

describe('many objects', () => {
  const record = (i: number) =>
    JSON.stringify({
      name: `s${i}`,
      field: ['math', 'physics', 'chemistry'][i % 3],
      born: 1800 + (i % 200),
      nobel: i % 7 === 0,
    });

  it('packs a directory of many small files into a few chunks, read in place', async () => {
    const many = join(dir, 'many');
    await mkdir(many, { recursive: true });
    const all: string[] = [];
    for (let f = 0; f < 400; f++) {
      const rows = Array.from({ length: 25 }, (_, k) => record(f * 25 + k));
      all.push(...rows);
      await writeFile(
        join(many, `part-${String(f).padStart(4, '0')}.jsonl`),
        `${rows.join('\n')}\n`,
      );
    }
    const single = join(dir, 'many-single.jsonl');
    await writeFile(single, `${all.join('\n')}\n`);
    const expected = JSON.stringify((await byFieldSinglePass(single)).result);
    const result = await run({ job: 'by-field', input: many, chunkSize: 64 * 1024 });
    expect(result.resultText).toBe(expected);
    expect(result.status.chunks.total).toBeLessThanOrEqual(16);
    expect(result.status.records).toBe(10_000);
    // Served in place: nothing was copied into the S3 server's datasets/.
    expect(await runtime.store.list(runtime.bucket, 'datasets/')).toEqual([]);
  });

  it('gives the single-pass answer over a prefix of empty, small, large and .gz objects', async () => {
    const all: string[] = [];
    const objects: [string, string | Uint8Array][] = [];
    let n = 0;
    const rows = (count: number) => {
      const out = Array.from({ length: count }, () => record(n++));
      all.push(...out);
      return out.length === 0 ? '' : `${out.join('\n')}\n`;
    };
    objects.push(['datasets/mixed/a-empty.jsonl', rows(0)]);
    objects.push(['datasets/mixed/b-small.jsonl', rows(3)]);
    objects.push(['datasets/mixed/c-large.jsonl', rows(3000)]);
    objects.push(['datasets/mixed/d-small.jsonl.gz', gzipSync(rows(40))]);
    objects.push(['datasets/mixed/e-empty.jsonl.gz', gzipSync(rows(0))]);
    objects.push(['datasets/mixed/f-tiny.jsonl', rows(1).trimEnd()]);
    objects.push(['datasets/mixed/g-large.jsonl.gz', gzipSync(rows(2000))]);
    objects.push(['datasets/mixed/h-small.jsonl', rows(5)]);
    for (const [key, body] of objects) await runtime.store.put(runtime.bucket, key, body);
    const single = join(dir, 'mixed-single.jsonl');
    await writeFile(single, `${all.join('\n')}\n`);
    const expected = JSON.stringify((await byFieldSinglePass(single)).result);
    for (const chunkSize of [10_000, 100_000, 1_000_000]) {
      const result = await run({
        job: 'by-field',
        input: `s3://${runtime.bucket}/datasets/mixed/`,
        chunkSize,
      });
      expect(result.resultText, `chunkSize ${chunkSize}`).toBe(expected);
      expect(result.status.records).toBe(all.length);
    }
    // Map-only: every record once, in dataset order.
    const ordered = await run({
      job: 'scientists',
      input: `s3://${runtime.bucket}/datasets/mixed/`,
      chunkSize: 30_000,
    });
    expect(
      ordered
        .resultText!.trim()
        .split('\n')
        .map((l) => JSON.parse(l).name),
    ).toEqual(all.map((l) => JSON.parse(l).name));
  });

  it('fails with DatasetChangedError when a local file is edited while the job runs', async () => {
    const edited = join(dir, 'edited');
    await mkdir(edited, { recursive: true });
    await writeFile(join(edited, 'a.jsonl'), `${record(1)}\n`);
    await writeFile(join(edited, 'b.jsonl'), `${[2, 3, 4].map(record).join('\n')}\n`);
    const bucket = await runtime.s3.mount(edited);
    // A chunk per record, one at a time, one second each: the edit lands while b.jsonl's
    // chunks wait.
    const { jobId } = await submitJob(
      {
        job: 'scientists',
        input: `s3://${bucket}/`,
        params: { sleepMs: 1000 },
        chunks: 4,
        concurrency: 1,
      },
      submitDeps(runtime),
    );
    for (;;) {
      const status = await readStatus(runtime.store, runtime.bucket, jobId);
      if (status.chunks.succeeded >= 1) break;
      expect(status.status).not.toMatch(/SUCCEEDED|FAILED/);
      await new Promise((r) => setTimeout(r, 20));
    }
    await appendFile(join(edited, 'b.jsonl'), `${record(5)}\n`);
    const status = await followJob(runtime, jobId, {
      pollMs: 50,
      stallMs: 15_000,
      stderr: quiet,
      label: 'edited',
    });
    expect(status).toMatchObject({ status: 'FAILED', error: { code: 'DATASET_CHANGED' } });
    expect(status.error?.message).toMatch(/input object b\.jsonl changed/);
    expect(status.result).toBeUndefined();
  });
});

describe('bad input', () => {
  const bad =
    '{"name":"A","field":"math","born":1900,"nobel":false}\nnot json\n{"name":"B","field":"math","born":1950,"nobel":true}\n';

  it("fails the job at a malformed record under 'fail', naming the offset", async () => {
    const file = join(dir, 'bad.jsonl');
    await writeFile(file, bad);
    const error = await run({ job: 'by-field', input: file }).catch((e) => e);
    expect(error).toMatchObject({ code: 'JOB_FAILED' });
    expect(error.message).toMatch(/malformed record at byte 54 .*not json/);
  });

  it("skips and counts malformed records under 'skip'", async () => {
    const file = join(dir, 'bad.jsonl');
    await writeFile(file, bad);
    const result = await run({ job: 'by-field', input: file, onBadRecord: 'skip' });
    expect(JSON.parse(result.resultText!)).toEqual({ math: { count: 2, nobels: 1, ageSum: 184 } });
    expect(result.status.result).toMatchObject({ records: 2, badRecords: 1 });
  });

  it('rejects invalid params before anything is uploaded or written', async () => {
    const before = await runtime.store.list(runtime.bucket, '');
    await expect(
      run({ job: 'scientists', input: lesson, params: { sleepMs: -1 } }),
    ).rejects.toMatchObject({ code: 'VALIDATION', message: expect.stringMatching(/sleepMs/) });
    expect(await runtime.store.list(runtime.bucket, '')).toEqual(before);
  });
});
