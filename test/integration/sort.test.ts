/**
 * The sort (a job's orderBy) on the embedded runtime: the same order as a stable sort in one
 * process, by numbers and by strings, ranges of about equal bytes however skewed the keys, and
 * a clear error for keys a sort cannot order.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '#core/base/random.ts';
import type { Manifest, PartitionOutcome } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { readJson } from '#core/model/status.ts';
import { parseChaos } from '#local/chaos.ts';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';
import { runJob } from '../../cli/run.ts';
import { jobs } from '../fixtures/sorted-registry.ts';

const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
const registry = resolve(import.meta.dirname, '../fixtures/sorted-registry.ts');

let runtime: LocalRuntime;
let dir: string;

beforeAll(async () => {
  runtime = await startRuntime({
    registry: { module: registry, jobs },
    // A budget this small makes every chunk of more than a few hundred records spill to disk
    // and merge its spills back: the sorts below go through that path, and so does the keyed
    // job's combiner.
    functionEnv: { worker: { FANOUT_SPILL_BYTES: String(64 * 1024) } },
  });
  dir = await mkdtemp(join(tmpdir(), 'fanout-sort-'));
});
afterAll(async () => {
  await runtime?.close();
  await rm(dir, { recursive: true, force: true });
});

type Row = { k: unknown; i: number; pad?: string };

/** Sorts a job with its rows written to a file; returns the job and its result's rows. */
async function sortRows(
  name: string,
  rows: Row[],
  options: { chunks: number; partitions?: number },
) {
  const file = join(dir, `${name}.jsonl`);
  await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  const result = await runJob(runtime, {
    job: 'sort-by-k',
    input: file,
    chunks: options.chunks,
    ...(options.partitions !== undefined && { partitions: options.partitions }),
    stderr: quiet,
  });
  return { result, rows: rowsOf(result.resultText) };
}

/** A sorted job's result text as its rows. */
const rowsOf = (text: string | undefined): Row[] =>
  text === undefined || text === ''
    ? []
    : text
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as Row);

/** A job's manifest, as its coordinator last wrote it. */
const manifestOf = async (own: LocalRuntime, jobId: string) =>
  (await readJson<Manifest>(own.store, own.bucket, jobKeys(jobId).manifest)).value;

/** What a stable sort in one process gives (Array.prototype.sort is stable). */
const stableSort = (rows: Row[]) =>
  [...rows].sort((a, b) =>
    typeof a.k === 'number' && typeof b.k === 'number'
      ? a.k - b.k
      : (a.k as string) < (b.k as string)
        ? -1
        : (a.k as string) > (b.k as string)
          ? 1
          : 0,
  );

describe('sort', () => {
  it('orders by a number, equal keys in input order, across chunks and ranges', async () => {
    const random = mulberry32(1);
    const rows = Array.from({ length: 20_000 }, (_, i) => ({
      k: Math.floor(random() * 500) - 250 + (random() < 0.1 ? 0.5 : 0),
      i,
    }));
    const { result, rows: sorted } = await sortRows('numbers', rows, { chunks: 9, partitions: 4 });
    expect(result.status).toMatchObject({ status: 'SUCCEEDED', records: 20_000 });
    expect(result.status.partitions).toMatchObject({ total: 4, succeeded: 4 });
    expect(sorted).toEqual(stableSort(rows));
  });

  it('orders by a string in JavaScript order, escapes and astral characters included', async () => {
    const random = mulberry32(2);
    const units = ['a', 'B', 'é', '😀', '\t', '"', '\\', '\n', 'z', '\u2028', ' '];
    const rows = Array.from({ length: 5_000 }, (_, i) => ({
      k: Array.from(
        { length: Math.floor(random() * 4) },
        () => units[Math.floor(random() * units.length)],
      ).join(''),
      i,
    }));
    const { rows: sorted } = await sortRows('strings', rows, { chunks: 5, partitions: 3 });
    expect(sorted).toEqual(stableSort(rows));
  });

  it('splits a key that 30% of the records share: no range gets twice its share of bytes', async () => {
    const random = mulberry32(3);
    const pad = 'x'.repeat(60);
    const rows = Array.from({ length: 40_000 }, (_, i) => ({
      k: random() < 0.3 ? 'hot' : `k${Math.floor(random() * 100_000)}`,
      i,
      pad,
    }));
    const partitions = 8;
    const { result, rows: sorted } = await sortRows('skew', rows, { chunks: 10, partitions });
    expect(sorted).toEqual(stableSort(rows));
    const keys = jobKeys(result.jobId);
    const manifest = (await readJson<Manifest>(runtime.store, runtime.bucket, keys.manifest)).value;
    expect(manifest.partitions).toHaveLength(partitions);
    const sizes: number[] = [];
    for (let r = 0; r < partitions; r++) {
      const outcome = await readJson<PartitionOutcome>(
        runtime.store,
        runtime.bucket,
        keys.partitionOutcome(r),
      );
      sizes.push(outcome.value.part.bytes);
    }
    const share = sizes.reduce((a, b) => a + b, 0) / partitions;
    for (const size of sizes) expect(size).toBeLessThanOrEqual(2 * share);
    // The hot key's records fill more than one range.
    const hot = manifest.partitions!.filter((p) => p.range?.from?.key === 'hot');
    expect(hot.length).toBeGreaterThan(1);
  });

  it('splits a range that runs out of time at a sample inside it, and keeps the stable order', async () => {
    const random = mulberry32(11);
    const rows = Array.from({ length: 6_000 }, (_, i) => ({ k: Math.floor(random() * 1e6), i }));
    const file = join(dir, 'split-range.jsonl');
    await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    // The first attempt of range 1 times out, as a range too big for the worker would.
    const own = await startRuntime({
      registry: { module: registry, jobs },
      workerTimeoutSeconds: 2,
      faults: (_name, _type, event) => {
        const e = event as { kind?: string; index?: number; attempt?: number } | undefined;
        return e?.kind === 'partition' && e.index === 1 && e.attempt === 1 ? 'timeout' : undefined;
      },
    });
    try {
      const result = await runJob(own, {
        job: 'sort-by-k',
        input: file,
        chunks: 4,
        partitions: 3,
        stderr: quiet,
      });
      expect(rowsOf(result.resultText)).toEqual(stableSort(rows));
      const { partitions = [] } = await manifestOf(own, result.jobId);
      // Range 1 was split in two at a point strictly inside it, and only it.
      expect(partitions.map((p) => p.split ?? null)).toEqual([null, [3, 4], null, null, null]);
      expect(partitions[3]?.range?.from).toEqual(partitions[1]?.range?.from);
      expect(partitions[4]?.range?.to).toEqual(partitions[1]?.range?.to);
      expect(partitions[3]?.range?.to).toEqual(partitions[4]?.range?.from);
      expect(partitions[3]).toMatchObject({ from: 1, first: 3, end: 4 });
    } finally {
      await own.close();
    }
  }, 120_000);

  it('gives exactly the stable order under injected faults in both stages', async () => {
    const random = mulberry32(4);
    const rows = Array.from({ length: 20_000 }, (_, i) => ({
      k: random() < 0.3 ? 'hot' : `k${Math.floor(random() * 5_000)}`,
      i,
    }));
    const file = join(dir, 'chaos.jsonl');
    await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    const own = await startRuntime({
      registry: { module: registry, jobs },
      functionEnv: { worker: { FANOUT_SPILL_BYTES: String(64 * 1024) } },
      workerTimeoutSeconds: 2,
      chaos: {
        spec: parseChaos('worker-error=0.15,worker-timeout=0.02,throttle=0.05,s3-slowdown=0.02'),
        seed: 9,
      },
    });
    try {
      const result = await runJob(own, {
        job: 'sort-by-k',
        input: file,
        chunks: 12,
        partitions: 6,
        maxAttempts: 8,
        speculation: false,
        stderr: quiet,
      });
      expect(rowsOf(result.resultText)).toEqual(stableSort(rows));
      const manifest = await manifestOf(own, result.jobId);
      // Faults hit both stages, and every attempt but the last of a task failed.
      const retried = (tasks: { attempts: number }[]) => tasks.filter((t) => t.attempts > 1);
      expect(
        retried(manifest.chunks).length + retried(manifest.partitions ?? []).length,
      ).toBeGreaterThan(0);
      // A task split after a timeout failed in every attempt: its parts did its work.
      for (const t of [...manifest.chunks, ...(manifest.partitions ?? [])]) {
        const failed = t.split === undefined ? t.attempts - 1 : t.attempts;
        expect((t.errors ?? []).length, `task ${t.index}`).toBe(failed);
      }
    } finally {
      await own.close();
    }
  }, 120_000);

  it('gives an empty result for a dataset with no records', async () => {
    const { result, rows } = await sortRows('none', [], { chunks: 1 });
    expect(result.status).toMatchObject({ status: 'SUCCEEDED', records: 0 });
    expect(rows).toEqual([]);
  });

  it.each([
    [
      'numbers in one chunk and strings in another',
      [
        { k: 1, i: 0 },
        { k: 'a', i: 1 },
      ],
      2,
      /returned a string after a number \(numbers in chunk 0, strings in chunk 1\); expected one kind of key per job/,
    ],
    [
      'numbers and strings in one chunk',
      [
        { k: 'a', i: 0 },
        { k: 2, i: 1 },
      ],
      1,
      /returned a number after a string; expected one kind of key per job/,
    ],
    [
      'NaN',
      [
        { k: 1, i: 0 },
        { k: 'NaN', i: 1 },
      ],
      1,
      /returned NaN; expected a finite number or a string/,
    ],
    ['null', [{ k: null, i: 0 }], 1, /returned null; expected a finite number or a string/],
  ])(
    'fails a job whose orderBy returns %s, naming what was expected',
    async (what, rows, chunks, message) => {
      const file = join(dir, `bad-${what.replace(/\W+/g, '-')}.jsonl`);
      await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
      // The job fails at once: a key a sort cannot order is a bug in the job, not retried.
      await expect(
        runJob(runtime, { job: 'sort-by-k', input: file, chunks, stderr: quiet }),
      ).rejects.toThrow(message);
    },
  );
});

describe('a keyed chunk past its spill budget', () => {
  it('spills its combiner to disk and merges it back: the same groups as a single pass', async () => {
    const random = mulberry32(11);
    const rows = Array.from({ length: 20_000 }, (_, i) => ({
      k: `k${Math.floor(random() * 6000)}`,
      i,
    }));
    const expected = new Map<string, { n: number; sum: number }>();
    for (const r of rows) {
      const g = expected.get(r.k) ?? { n: 0, sum: 0 };
      expected.set(r.k, { n: g.n + 1, sum: g.sum + r.i });
    }
    const file = join(dir, 'keyed-spill.jsonl');
    await writeFile(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    const result = await runJob(runtime, {
      job: 'count-by-k',
      input: file,
      chunks: 3,
      partitions: 2,
      stderr: quiet,
    });
    expect(result.status.status).toBe('SUCCEEDED');
    const keys = [...expected.keys()].sort();
    expect(result.resultText).toBe(
      JSON.stringify(Object.fromEntries(keys.map((k) => [k, expected.get(k)]))),
    );
  });
});
