import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ObjectInfo, systemClock } from '#core/base/ports.ts';
import { MiB } from '#core/data/plan.ts';
import type { ChunkOutcome, ChunkTask } from '#core/model/documents.ts';
import { cachePrefix, decodeEntry, encodeEntry, pieceKey } from '#core/run/cache.ts';
import { CacheMissError, runChunk } from '#core/run/worker.ts';
import { jobs } from '#jobs/index.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'fanout-test';

describe('cache entries', () => {
  it('decode what they encode, and nothing that was truncated, extended or altered', async () => {
    const result = {
      recordsIn: 3,
      recordsOut: 2,
      bad: { count: 1, samples: [{ key: 'k', offset: 4, snippet: 's', reason: 'r' }] },
      text: '{"a":1}\n{"b":"ü"}\n',
    };
    const bytes = await encodeEntry(result);
    expect(await decodeEntry(bytes)).toEqual(result);
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (at, flip) => {
          const altered = bytes.slice();
          altered[at] = (altered[at] as number) ^ flip;
          expect(await decodeEntry(altered)).toBeUndefined();
          expect(await decodeEntry(bytes.subarray(0, at))).toBeUndefined();
        },
      ),
      { numRuns: 200 },
    );
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(await decodeEntry(longer)).toBeUndefined();
  });

  it('are addressed by the code, the job, its params and decoding, and the exact bytes', async () => {
    const identity = {
      codeId: 'c1',
      job: 'by-field',
      params: { year: 2017 },
      format: 'jsonl',
      onBadRecord: 'fail',
      shape: 'keyed' as const,
    };
    const base = await cachePrefix(identity);
    expect(base).toMatch(/^cache\/[0-9a-f]{32}\/$/);
    for (const change of [
      { codeId: 'c2' },
      { job: 'wordcount' },
      { params: { year: 2018 } },
      { format: 'csv' },
      { onBadRecord: 'skip' },
      { columns: ['a'] },
      { shape: 'acc' as const },
    ]) {
      expect(await cachePrefix({ ...identity, ...change })).not.toBe(base);
    }
    const object: ObjectInfo = { bucket: 'b', key: 'k', size: 10, etag: '"e1"' };
    const key = await pieceKey(base, object, 0, 5);
    expect(key.startsWith(base)).toBe(true);
    expect(await pieceKey(base, object, 0, 5)).toBe(key);
    for (const other of [
      pieceKey(base, { ...object, etag: '"e2"' }, 0, 5),
      pieceKey(base, { ...object, versionId: 'v' }, 0, 5),
      pieceKey(base, { ...object, key: 'k2' }, 0, 5),
      pieceKey(base, object, 0, 6),
    ]) {
      expect(await other).not.toBe(key);
    }
  });
});

/** JSONL scientists, at most `bytes` bytes: 3 MiB makes three pieces of one object (1 MiB cells). */
function scientists(bytes: number): string {
  const fields = ['math', 'physics', 'chemistry', 'biology', 'ü-field'];
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; ; i++) {
    const line = JSON.stringify({
      name: `Scientist ${i}`,
      field: fields[i % fields.length],
      born: 1800 + (i % 200),
      nobel: i % 7 === 0,
    });
    size += Buffer.byteLength(line) + 1;
    if (size > bytes) break;
    lines.push(line);
  }
  return `${lines.join('\n')}\n`;
}

async function setup(text: string, job: string) {
  const store = new MemoryStore();
  await store.put(BUCKET, 'datasets/in.jsonl', text);
  const object = await store.head(BUCKET, 'datasets/in.jsonl');
  const prefix = await cachePrefix({
    codeId: 'test',
    job,
    params: {},
    format: 'jsonl',
    onBadRecord: 'fail',
    shape: 'lines',
  });
  const deps = {
    store,
    jobs,
    clock: systemClock,
    gunzip: () => {
      throw new Error('no gzip here');
    },
  };
  let index = 0;
  /** A chunk of the whole object, as a new job (its own index) would send it. */
  const task = (hits?: string): ChunkTask => ({
    jobId: 'cachetest0000001',
    job,
    params: job === 'by-field' ? { year: 2017 } : {},
    format: 'jsonl',
    onBadRecord: 'fail',
    bucket: BUCKET,
    index: index++,
    attempt: 1,
    segments: [{ object, start: 0, end: object.size, gzip: false }],
    ...(job === 'by-field' && { buckets: 4 }),
    ...(hits !== undefined && { cache: { prefix, hits } }),
  });
  const outcome = (t: ChunkTask) =>
    JSON.parse(store.text(BUCKET, `jobs/${t.jobId}/chunks/${t.index}.json`)) as ChunkOutcome;
  const entries = () => [...store.objects.keys()].filter((k) => k.includes(`/${prefix}`));
  return { store, deps, task, outcome, entries, object, prefix };
}

/** What a chunk made, whatever it reused: its counts and its output (runs or text, not keys). */
function made(outcome: ChunkOutcome, store: MemoryStore) {
  const { output } = outcome;
  const body =
    output.kind === 'part' || output.kind === 'runs'
      ? store.text(BUCKET, output.key)
      : output.kind === 'inline' || output.kind === 'runs-inline'
        ? output.text
        : output.kind === 'acc'
          ? JSON.stringify(output.value)
          : '';
  return { recordsIn: outcome.recordsIn, recordsOut: outcome.recordsOut, body };
}

describe('a chunk with reuse', () => {
  for (const job of ['scientists', 'by-field']) {
    it(`${job}: keeps each piece, takes every piece back with nothing read, and recomputes only an unsound entry`, async () => {
      const { store, deps, task, outcome, entries, object } = await setup(scientists(3 * MiB), job);
      const plain = task();
      await runChunk(plain, deps);
      const expected = made(outcome(plain), store);

      const cold = task('');
      const first = await runChunk(cold, deps);
      expect(first).toMatchObject({ bytesProcessed: object.size, reused: { segments: 0 } });
      expect(made(outcome(cold), store)).toEqual(expected);
      const kept = entries();
      expect(kept).toHaveLength(3);

      const warm = task('111');
      const second = await runChunk(warm, deps);
      expect(second).toMatchObject({ bytesProcessed: 0, bytesRead: 0, reused: { segments: 3 } });
      expect(made(outcome(warm), store)).toEqual(expected);

      // The middle piece's entry truncated: it is read again (and kept again), the rest reused.
      const middle = await pieceKey(
        (warm.cache as { prefix: string }).prefix,
        object,
        MiB,
        2 * MiB,
      );
      const entry = () => store.objects.get(`${BUCKET}/${middle}`)?.body ?? new Uint8Array();
      expect(await decodeEntry(entry())).toBeDefined();
      await store.put(BUCKET, middle, entry().subarray(0, 100));
      const repaired = task('111');
      const third = await runChunk(repaired, deps);
      expect(third).toMatchObject({ bytesProcessed: MiB, reused: { segments: 2 } });
      expect(made(outcome(repaired), store)).toEqual(expected);
      expect(await decodeEntry(entry())).toBeDefined();
    });
  }

  it('run by the coordinator (only from entries) stops at a piece without a sound entry', async () => {
    const { deps, task, store, prefix, object } = await setup(scientists(2 * MiB), 'scientists');
    await runChunk(task(''), deps);
    const last = await pieceKey(prefix, object, MiB, object.size);
    await store.delete(BUCKET, last);
    const only = { ...task('11'), onlyCached: true };
    await expect(runChunk(only, deps)).rejects.toBeInstanceOf(CacheMissError);
    expect(store.objects.has(`${BUCKET}/jobs/${only.jobId}/chunks/${only.index}.json`)).toBe(false);
  });
});
