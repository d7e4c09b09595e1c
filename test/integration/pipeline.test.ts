/**
 * The whole pipeline on the embedded runtime: real local S3 server, real Lambda Invoke API
 * server running the function bundles, the real SDK clients in between.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';
import { byFieldSinglePass } from '../../bench/baseline.ts';
import { generate } from '../../bench/gen.ts';
import { runJob } from '../../cli/run.ts';

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
  });

  it('scientists keeps input order, and seven 1-second records take about a second', async () => {
    await runtime.lambda.prewarm(runtime.functions.worker, 7);
    const result = await run({ job: 'scientists', input: lesson, params: { sleepMs: 1000 } });
    const ages = result
      .resultText!.trim()
      .split('\n')
      .map((l) => JSON.parse(l).age);
    expect(ages).toEqual([202, 135, 150, 87, 78, 89, 66]);
    expect(result.status.chunks.total).toBe(7);
    expect(result.durationMs).toBeLessThan(1500);
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
    const expected = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => {
        const r = JSON.parse(l);
        return JSON.stringify({ name: r.name, age: 2017 - r.born });
      });
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
    const result = await run({ job: 'scientists', input: file, chunks: 2, output: out });
    expect(result.status.result?.bytes).toBeGreaterThan(10 * 1024 * 1024);
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
