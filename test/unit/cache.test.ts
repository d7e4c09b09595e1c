import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ObjectInfo, systemClock } from '#core/base/ports.ts';
import { MiB } from '#core/data/plan.ts';
import type { ChunkOutcome, ChunkTask, Kept } from '#core/model/documents.ts';
import { cachePrefix, decodeEntry, encodeEntry, pieceId } from '#core/run/cache.ts';
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
    const key = await pieceId(object, 0, 5);
    expect(key).toMatch(/^[0-9a-f]{40}$/);
    expect(await pieceId(object, 0, 5)).toBe(key);
    for (const other of [
      pieceId({ ...object, etag: '"e2"' }, 0, 5),
      pieceId({ ...object, versionId: 'v' }, 0, 5),
      pieceId({ ...object, key: 'k2' }, 0, 5),
      pieceId({ ...object, bucket: 'c' }, 0, 5),
      pieceId(object, 0, 6),
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
  /**
   * A chunk of the whole object, as a new job (its own index) would send it: with reuse on
   * (`kept`: the pieces an earlier attempt kept, as the coordinator's index places them).
   */
  const task = (kept?: Kept | null): ChunkTask => ({
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
    ...(kept !== undefined && {
      cache: {
        prefix,
        packs: kept === null ? [] : [kept.pack],
        at: kept === null ? [] : kept.pieces.map(([, offset, length]) => [0, offset, length]),
      },
    }),
  });
  const outcome = (t: ChunkTask) =>
    JSON.parse(store.text(BUCKET, `jobs/${t.jobId}/chunks/${t.index}.json`)) as ChunkOutcome;
  return { store, deps, task, outcome, object };
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
      const { store, deps, task, outcome, object } = await setup(scientists(3 * MiB), job);
      const plain = task();
      await runChunk(plain, deps);
      const expected = made(outcome(plain), store);

      const cold = task(null);
      const first = await runChunk(cold, deps);
      expect(first).toMatchObject({ bytesProcessed: object.size, reused: { segments: 0 } });
      expect(made(outcome(cold), store)).toEqual(expected);
      // One pack of three entries, one per 1 MiB piece, in order.
      const kept = first.kept as Kept;
      expect(kept.pieces.map(([id]) => id)).toEqual(
        await Promise.all([
          pieceId(object, 0, MiB),
          pieceId(object, MiB, 2 * MiB),
          pieceId(object, 2 * MiB, object.size),
        ]),
      );
      expect(outcome(cold).kept).toEqual(kept);

      const warm = task(kept);
      const second = await runChunk(warm, deps);
      expect(second).toMatchObject({ bytesProcessed: 0, bytesRead: 0, reused: { segments: 3 } });
      expect(second.kept).toBeUndefined();
      expect(made(outcome(warm), store)).toEqual(expected);

      // A byte of the middle entry altered: that piece is read again (and kept in a new pack),
      // the rest reused.
      const packed = store.objects.get(`${BUCKET}/${kept.pack.key}`) as {
        body: Uint8Array;
        etag: string;
      };
      const [, offset, length] = kept.pieces[1] as [string, number, number];
      const altered = packed.body.slice();
      altered[offset + length - 2] = (altered[offset + length - 2] as number) ^ 1;
      store.objects.set(`${BUCKET}/${kept.pack.key}`, { ...packed, body: altered });
      const repaired = task(kept);
      const third = await runChunk(repaired, deps);
      expect(third).toMatchObject({ bytesProcessed: MiB, reused: { segments: 2 } });
      expect(made(outcome(repaired), store)).toEqual(expected);
      expect(third.kept?.pieces.map(([id]) => id)).toEqual([kept.pieces[1]?.[0]]);
    });
  }

  it('by-field past a spill budget: its table spills as each piece is folded in, read or reused, with the same runs', async () => {
    const { store, deps, task, outcome } = await setup(scientists(3 * MiB), 'by-field');
    const plain = task();
    await runChunk(plain, deps);
    const expected = made(outcome(plain), store);
    let spills = 0;
    let left = 0;
    const spilling = {
      ...deps,
      spill: {
        budgetBytes: 200,
        async write(bytes: Uint8Array) {
          spills += 1;
          left += 1;
          return {
            read: async function* () {
              yield bytes;
            },
            remove: async () => {
              left -= 1;
            },
          };
        },
      },
    };
    const cold = task(null);
    const { kept } = await runChunk(cold, spilling);
    expect(spills).toBe(3); // one per 1 MiB piece read
    expect(made(outcome(cold), store)).toEqual(expected);
    const warm = task(kept);
    await runChunk(warm, spilling);
    expect(spills).toBe(6); // one per piece taken from its entry
    expect(made(outcome(warm), store)).toEqual(expected);
    expect(left).toBe(0);
  });

  it('run by the coordinator (only from entries) stops at a piece without a sound entry', async () => {
    const { deps, task, store } = await setup(scientists(2 * MiB), 'scientists');
    const { kept } = await runChunk(task(null), deps);
    // The last entry cut short.
    const packed = store.objects.get(`${BUCKET}/${kept?.pack.key}`) as {
      body: Uint8Array;
      etag: string;
    };
    store.objects.set(`${BUCKET}/${kept?.pack.key}`, {
      ...packed,
      body: packed.body.subarray(0, packed.body.length - 3),
    });
    const only = { ...task(kept), onlyCached: true };
    await expect(runChunk(only, deps)).rejects.toBeInstanceOf(CacheMissError);
    expect(store.objects.has(`${BUCKET}/jobs/${only.jobId}/chunks/${only.index}.json`)).toBe(false);
  });
});
