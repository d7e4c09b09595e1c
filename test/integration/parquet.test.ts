/**
 * Parquet input on the real local runtime: several row groups split over chunks by the groups'
 * first bytes, results equal to the same records as JSONL (and as CSV, whose values are text), a
 * column projection, a null column, and INT64 values both safe (numbers) and unsafe (strings).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preparePathJob } from '#local/job-path.ts';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';
import { runJob } from '../../cli/run.ts';

const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
const fields = ['math', 'physics', 'chemistry', 'astronomy'];
const rows = Array.from({ length: 50 }, (_, i) => ({
  name: `person ${i}`,
  field: fields[i % 4] as string,
  born: 1800 + i * 3,
  nobel: i % 5 === 0,
}));

let dir: string;
let runtime: LocalRuntime;
let parquet: string;
let jsonl: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-parquet-'));
  parquet = join(dir, 'people.parquet');
  jsonl = join(dir, 'people.jsonl');
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: 'name', data: rows.map((r) => r.name), type: 'STRING' },
      { name: 'field', data: rows.map((r) => r.field), type: 'STRING' },
      { name: 'born', data: rows.map((r) => BigInt(r.born)), type: 'INT64' },
      { name: 'nobel', data: rows.map((r) => r.nobel), type: 'BOOLEAN' },
      {
        name: 'big',
        data: rows.map((_, i) => (i % 2 === 0 ? BigInt(i) : 2n ** 60n + BigInt(i))),
        type: 'INT64',
      },
      { name: 'note', data: rows.map(() => null), type: 'STRING', nullable: true },
    ],
    rowGroupSize: 7, // 8 row groups
  });
  await writeFile(parquet, new Uint8Array(buffer));
  await writeFile(jsonl, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
  const echo = await preparePathJob('test/fixtures/echo-job.ts');
  runtime = await startRuntime({ registry: { module: echo.registry, jobs: echo.jobs } });
}, 120_000);
afterAll(async () => {
  await runtime?.close();
  await rm(dir, { recursive: true, force: true });
});

const run = (job: string, input: string, extra: Record<string, unknown> = {}) =>
  runJob(runtime, { job, input, stderr: quiet, ...extra });

describe('Parquet input', () => {
  it('gives the same results as JSONL for the built-in jobs, however it is chunked', async () => {
    for (const job of ['by-field', 'scientists', 'wordcount']) {
      const expected = (await run(job, jsonl)).resultText;
      for (const chunking of [{}, { chunks: 3 }, { chunkSize: 500 }]) {
        // The same data: the Parquet file's extra columns (big, note) are left out.
        const got = await run(job, parquet, {
          ...chunking,
          columns: ['name', 'field', 'born', 'nobel'],
        });
        expect(got.resultText, `${job} ${JSON.stringify(chunking)}`).toBe(expected);
        expect(got.status.records).toBe(50);
      }
    }
  });

  it('gives the same results from CSV, whose values arrive as text', async () => {
    const csv = join(dir, 'people.csv');
    await writeFile(
      csv,
      `name,field,born,nobel\n${rows.map((r) => `${r.name},${r.field},${r.born},${r.nobel}`).join('\n')}\n`,
    );
    for (const job of ['by-field', 'scientists', 'wordcount']) {
      expect((await run(job, csv, { chunks: 3 })).resultText, job).toBe(
        (await run(job, jsonl)).resultText,
      );
    }
  });

  it('reads only the asked columns; INT64 as numbers or, past 2^53, strings; nulls as null', async () => {
    const result = await run('echo', parquet, { columns: ['name', 'big', 'note'], chunks: 4 });
    const out = (result.resultText as string)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(out).toHaveLength(50);
    expect(out[0]).toEqual({ name: 'person 0', big: 0, note: null });
    expect(out[1]).toEqual({ name: 'person 1', big: (2n ** 60n + 1n).toString(), note: null });
    expect(out.every((r) => Object.keys(r).join() === 'name,big,note')).toBe(true);
  });

  it('refuses a gzip-compressed Parquet file, saying why', async () => {
    const gz = join(dir, 'people.parquet.gz');
    await writeFile(gz, 'whatever');
    await expect(run('by-field', gz)).rejects.toThrow(
      /gzip-compressed Parquet file cannot be read/,
    );
  });
});
