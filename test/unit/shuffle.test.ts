import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as z from 'zod/mini';
import { systemClock } from '#core/base/ports.ts';
import type { PartitionOutcome, PartitionTask, SortRange } from '#core/model/documents.ts';
import { createRegistry, defineJob, MAX_PARTITIONS } from '#core/model/job.ts';
import { runPartition } from '#core/run/partition.ts';
import { bucketOf, checkKey, MAX_KEY_LENGTH } from '#core/shuffle/hash.ts';
import { mergeSorted } from '#core/shuffle/merge.ts';
import {
  checkOrderKey,
  compareKeys,
  comparePoints,
  cutPoints,
  encodeSorted,
  inRange,
  type OrderKey,
  runSlice,
  type SortedOutput,
  sortedLines,
} from '#core/shuffle/order.ts';
import { groupBuckets } from '#core/shuffle/partitions.ts';
import {
  BucketTable,
  decodeKey,
  encodeRuns,
  type RunLine,
  runBatches,
} from '#core/shuffle/runs.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

/** Keys that stress the line format: tabs, quotes, backslashes, newlines, astral characters. */
const key = fc.string({
  unit: fc.constantFrom('a', 'b', 'Z', '\t', '"', '\\', '\n', 'é', '😀', '\u2028', ' ', '0'),
  maxLength: 8,
});

/** The pieces of `bytes`, cut at the given sizes (cycled). */
async function* pieces(bytes: Uint8Array, sizes: number[]) {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    yield bytes.subarray(at, Math.min(bytes.length, at + n));
    at += n;
  }
}

async function collect(source: AsyncIterable<RunLine[]>): Promise<RunLine[]> {
  const out: RunLine[] = [];
  for await (const batch of source) out.push(...batch);
  return out;
}

describe('bucketOf', () => {
  it('is FNV-1a over UTF-16 code units, modulo the bucket count', () => {
    // FNV-1a 32 of "a" is 0xe40c292c (the published test vector).
    expect(bucketOf('a', 2 ** 32 - 1)).toBe(0xe40c292c);
    expect(bucketOf('a', 1000)).toBe(0xe40c292c % 1000);
    expect(bucketOf('', 7)).toBe(0x811c9dc5 % 7);
  });

  it('property: a bucket in range, the same for the same key', () => {
    fc.assert(
      fc.property(key, fc.integer({ min: 1, max: MAX_PARTITIONS }), (k, n) => {
        const b = bucketOf(k, n);
        expect(b).toBeGreaterThanOrEqual(0);
        expect(b).toBeLessThan(n);
        expect(bucketOf(`${k}`, n)).toBe(b);
      }),
    );
  });
});

describe('checkKey', () => {
  it('refuses what is not a string of at most 64 Ki characters, naming the job and the value', () => {
    expect(() => checkKey('j', 12)).toThrow(
      expect.objectContaining({
        code: 'VALIDATION',
        message: 'job j: key(out) returned 12; expected a string',
      }),
    );
    expect(() => checkKey('j', undefined)).toThrow(/returned undefined; expected a string/);
    expect(() => checkKey('j', null)).toThrow(/returned null; expected a string/);
    expect(() => checkKey('j', 'x'.repeat(MAX_KEY_LENGTH + 1))).toThrow(
      /a key of 65537 characters; expected at most 65536/,
    );
    expect(checkKey('j', 'x'.repeat(MAX_KEY_LENGTH))).toHaveLength(MAX_KEY_LENGTH);
  });
});

describe('encodeRuns and runBatches', () => {
  it('property: every bucket holds its keys in order, and reads back whole from any pieces', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(key, { maxLength: 40 }),
        fc.integer({ min: 1, max: 9 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 4 }),
        async (keys, buckets, sizes) => {
          const accs = new Map(keys.map((k, i) => [k, { n: i, s: k }]));
          const runs = encodeRuns(accs, buckets);
          expect(runs.offsets).toHaveLength(buckets + 1);
          expect(runs.offsets.at(-1)).toBe(runs.bytes.length);
          const seen = new Map<string, unknown>();
          for (let b = 0; b < buckets; b++) {
            const bytes = runs.bytes.subarray(runs.offsets[b], runs.offsets[b + 1]);
            const lines = await collect(runBatches(pieces(bytes, sizes)));
            const got = lines.map((l) => l.key);
            expect(got).toEqual([...got].sort());
            for (const line of lines) {
              expect(bucketOf(line.key, buckets)).toBe(b);
              expect(line.keyJson).toBe(JSON.stringify(line.key));
              seen.set(line.key, JSON.parse(line.valueJson));
            }
          }
          expect(seen).toEqual(accs);
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 200) },
    );
  });

  it("property: a combiner's table of a Map per bucket encodes the same bytes as one Map", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(key, { maxLength: 60 }),
        fc.integer({ min: 1, max: 9 }),
        (keys, buckets) => {
          const accs = new Map(keys.map((k, i) => [k, { n: i }]));
          const table = new BucketTable(buckets);
          for (const [k, v] of accs) table.mapOf(k).set(k, v);
          expect(table.size).toBe(accs.size);
          expect(new Map(table)).toEqual(accs);
          for (const k of keys) expect(table.get(k)).toBe(accs.get(k));
          expect(encodeRuns(table, buckets)).toEqual(encodeRuns(accs, buckets));
          // A table of another bucket count is re-bucketed, with the same bytes.
          expect(encodeRuns(table, buckets + 1)).toEqual(encodeRuns(accs, buckets + 1));
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 200) },
    );
  });

  it('decodes a key from its JSON, escapes included', () => {
    for (const k of ['plain', 'tab\there', 'quote"', 'back\\slash', '😀', '']) {
      expect(decodeKey(JSON.stringify(k))).toBe(k);
    }
  });
});

describe('mergeSorted', () => {
  it('property: sorted sources in any batches merge in order, equal items in source order', async () => {
    const source = fc
      .array(fc.integer({ min: 0, max: 20 }), { maxLength: 20 })
      .map((a) => [...a].sort((x, y) => x - y));
    await fc.assert(
      fc.asyncProperty(
        fc.array(source, { maxLength: 6 }),
        fc.integer({ min: 1, max: 5 }),
        async (sources, batch) => {
          const batched = sources.map((items) =>
            (async function* () {
              for (let i = 0; i < items.length; i += batch) yield items.slice(i, i + batch);
            })(),
          );
          const out: [number, number][] = [];
          await mergeSorted(
            batched,
            (a, b) => a - b,
            (item, from) => {
              out.push([item, from]);
              return undefined;
            },
          );
          const expected = sources
            .flatMap((items, from) => items.map((item) => [item, from] as [number, number]))
            .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
          expect(out).toEqual(expected);
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 200) },
    );
  });
});

describe('groupBuckets', () => {
  it('gives the partitions set, cut by bytes, and one per bucket when there are as many', () => {
    expect(groupBuckets([5, 0, 7], { partitions: 3, concurrency: 1 })).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
    expect(groupBuckets([5, 5, 0, 7, 3], { partitions: 2, concurrency: 1 })).toEqual([
      [0, 2],
      [2, 5],
    ]);
    expect(groupBuckets([5, 5, 0, 7, 3], { partitions: 1, concurrency: 8 })).toEqual([[0, 5]]);
  });

  it('gives one partition to a small output, and four per lane to a larger one, each of 4 MiB or more', () => {
    expect(groupBuckets([10, 20, 30, 40], { concurrency: 4 })).toEqual([[0, 4]]);
    const mib = 1024 * 1024;
    // 128 MiB on 2 lanes: 8 partitions of two buckets.
    expect(groupBuckets(Array(16).fill(8 * mib), { concurrency: 2 })).toEqual(
      Array.from({ length: 8 }, (_, i) => [2 * i, 2 * i + 2]),
    );
    // 12 MiB on 2 lanes: no more partitions than hold 4 MiB each.
    expect(groupBuckets(Array(12).fill(mib), { concurrency: 2 })).toEqual([
      [0, 4],
      [4, 8],
      [8, 12],
    ]);
  });

  it('property: contiguous groups that cover every bucket, each within a bucket of its share', () => {
    const mib = 1024 * 1024;
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 600 * mib }), { minLength: 1, maxLength: 64 }),
        fc.integer({ min: 1, max: 100 }),
        (sizes, concurrency) => {
          const groups = groupBuckets(sizes, { concurrency });
          expect(groups[0]![0]).toBe(0);
          expect(groups.at(-1)![1]).toBe(sizes.length);
          for (let g = 0; g < groups.length; g++) {
            expect(groups[g]![1]).toBeGreaterThan(groups[g]![0]);
            if (g > 0) expect(groups[g]![0]).toBe(groups[g - 1]![1]);
          }
          const total = sizes.reduce((a, b) => a + b, 0);
          const share = total / groups.length;
          const biggest = Math.max(...sizes);
          for (const [first, end] of groups) {
            const bytes = sizes.slice(first, end).reduce((a, b) => a + b, 0);
            expect(bytes).toBeLessThanOrEqual(share + biggest);
          }
        },
      ),
    );
  });
});

describe('defineJob with a key', () => {
  const base = {
    name: 'k',
    format: 'jsonl' as const,
    params: z.strictObject({}),
    map: (r: unknown) => r,
  };
  const reduce = {
    init: () => 0,
    add: (a: number) => a + 1,
    merge: (a: number, b: number) => a + b,
  };

  it('refuses a key without a reduce, a partition count out of range, and partitions without a key', () => {
    expect(() => defineJob({ ...base, key: () => 'x' })).toThrow(
      'job k: key needs a reduce (init, add, merge) to apply per key',
    );
    for (const partitions of [0, 10_001, 1.5]) {
      expect(() => defineJob({ ...base, key: () => 'x', reduce, partitions })).toThrow(
        `job k: partitions ${partitions} is invalid; expected an integer from 1 to 10000`,
      );
    }
    expect(() => defineJob({ ...base, reduce, partitions: 2 })).toThrow(
      'job k: partitions applies only to a keyed (key) or sorted (orderBy) job',
    );
    expect(defineJob({ ...base, key: () => 'x', reduce, partitions: 10_000 }).partitions).toBe(
      10_000,
    );
  });
});

describe('defineJob with an orderBy', () => {
  const base = { name: 's', format: 'jsonl' as const, map: (r: unknown) => r };

  it('refuses orderBy with a key or a reduce, and takes partitions', () => {
    const reduce = { init: () => 0, add: (a: number) => a, merge: (a: number) => a };
    expect(() => defineJob({ ...base, orderBy: () => 1, key: () => 'x', reduce })).toThrow(
      'job s: key and orderBy cannot go together; expected key (a group-by, with a reduce) or orderBy (a sort, map-only)',
    );
    expect(() => defineJob({ ...base, orderBy: () => 1, reduce })).toThrow(
      'job s: orderBy applies to a map-only job',
    );
    expect(defineJob({ ...base, orderBy: () => 1, partitions: 3 }).partitions).toBe(3);
  });
});

describe('checkOrderKey', () => {
  it('takes finite numbers and strings of one kind, and names what else it got', () => {
    expect(checkOrderKey('j', -0.5, undefined)).toBe(-0.5);
    expect(checkOrderKey('j', 'a', 'string')).toBe('a');
    for (const [value, shown] of [
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
      [null, 'null'],
      [undefined, 'undefined'],
      [true, 'true'],
      [{}, 'object'],
    ] as const) {
      expect(() => checkOrderKey('j', value, undefined)).toThrow(
        `job j: orderBy(out) returned ${shown}; expected a finite number or a string`,
      );
    }
    expect(() => checkOrderKey('j', 'a', 'number')).toThrow(
      'job j: orderBy(out) returned a string after a number; expected one kind of key per job',
    );
    expect(() => checkOrderKey('j', 'x'.repeat(MAX_KEY_LENGTH + 1), undefined)).toThrow(
      `expected at most ${MAX_KEY_LENGTH}`,
    );
  });
});

describe('the sort', () => {
  const textOf = new TextDecoder();
  /**
   * Rows cut into chunks, each chunk's outputs sorted into a run, then ranged and merged; with
   * `split`, each range is cut in two once more where a sample inside it halves its bytes, as a
   * range that ran out of memory or time is.
   */
  const sortInRanges = (chunks: OrderKey[][], count: number, split = false) => {
    const runs = chunks.map((keys, chunk) => {
      const run = encodeSorted(keys.map((key, i) => ({ key, json: JSON.stringify([chunk, i]) })));
      return { chunk, bytes: run.bytes.length, samples: run.samples, run };
    });
    const cuts = cutPoints(runs, count);
    const planned: SortRange[] = Array.from({ length: cuts.length + 1 }, (_, r) => ({
      ...(r > 0 && { from: cuts[r - 1]! }),
      ...(r < cuts.length && { to: cuts[r]! }),
    }));
    const ranges = !split
      ? planned
      : planned.flatMap((range): SortRange[] => {
          const [at] = cutPoints(runs, 2, range);
          if (at === undefined) return [range];
          // Strictly inside the range: each part is smaller than the range.
          expect(inRange(at, range)).toBe(true);
          if (range.from !== undefined) expect(comparePoints(at, range.from)).toBeGreaterThan(0);
          return [
            { ...(range.from && { from: range.from }), to: at },
            { from: at, ...(range.to && { to: range.to }) },
          ];
        });
    return ranges.map((range) =>
      runs
        .flatMap((o) => {
          const slice = runSlice(o, range);
          const text = textOf.decode(o.run.bytes.subarray(slice.start, slice.end));
          return sortedLines(text, o.chunk, slice.pos).filter((l) => inRange(l.point, range));
        })
        .sort((a, b) => comparePoints(a.point, b.point))
        .map((l) => l.json),
    );
  };
  const numbers = fc.array(fc.array(fc.integer({ min: -3, max: 3 }), { maxLength: 300 }), {
    maxLength: 6,
  });
  const strings = fc.array(fc.array(key, { maxLength: 200 }), { maxLength: 6 });

  it('property: the ranges, in order, are a stable sort of every chunk in input order, and so are they split in two', () => {
    fc.assert(
      fc.property(
        fc.oneof(numbers, strings),
        fc.integer({ min: 1, max: 9 }),
        fc.boolean(),
        (chunks, count, split) => {
          const expected = chunks
            .flatMap((keys, chunk) => keys.map((k, i) => ({ k, json: JSON.stringify([chunk, i]) })))
            .sort((a, b) => compareKeys(a.k, b.k))
            .map((o) => o.json);
          expect(sortInRanges(chunks, count, split).flat()).toEqual(expected);
        },
      ),
    );
  });

  it('splits a range of many samples into two of about equal size', () => {
    const chunks = Array.from({ length: 4 }, (_, c) =>
      Array.from({ length: 5000 }, (_, i) => (i * 7 + c) % 1000),
    );
    const sizes = sortInRanges(chunks, 1, true).map((r) => r.length);
    expect(sizes).toHaveLength(2);
    for (const size of sizes) expect(size).toBeGreaterThan(20_000 / 2 / 2);
  });

  it('cuts one key shared by every record into ranges of about equal size', () => {
    const chunks = Array.from({ length: 4 }, () => Array.from({ length: 5000 }, () => 7));
    const sizes = sortInRanges(chunks, 8).map((r) => r.length);
    expect(sizes).toHaveLength(8);
    for (const size of sizes) expect(size).toBeGreaterThan(20_000 / 8 / 2);
  });

  it('reads a line back from any sample, with its position', () => {
    const run = encodeSorted(
      Array.from({ length: 3000 }, (_, i) => ({ key: `é${i % 10}`, json: `{"i":${i}}` })),
    );
    expect(run.samples.length).toBeGreaterThan(5);
    for (const s of run.samples) {
      const [line] = sortedLines(textOf.decode(run.bytes.subarray(s.offset)), 0, s.pos);
      expect(line?.point).toEqual({ key: s.key, chunk: 0, pos: s.pos });
    }
  });
});

describe('a sorted range', () => {
  const byK = defineJob({
    name: 'by-k',
    format: 'jsonl',
    map: (r: { k: number }) => r,
    orderBy: (o: { k: number }) => o.k,
  });
  const jobs = createRegistry([byK]);

  it('property: read in windows of any size, each range holds its own lines in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 400 }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 7, max: 300 }),
        fc.integer({ min: 1, max: 200 }),
        async (chunks, count, windowBytes, step) => {
          const store = new MemoryStore({ pieceBytes: 13 });
          const runs: (SortedOutput & { key: string; etag: string })[] = [];
          for (const [chunk, keys] of chunks.entries()) {
            const run = encodeSorted(
              keys.map((k, i) => ({ key: k, json: `{"k":${k},"i":${i}}` })),
              step,
            );
            const key = `jobs/j1/shuffle/${chunk}.1.jsonl`;
            const { etag } = await store.put('b', key, run.bytes);
            runs.push({ chunk, key, etag, bytes: run.bytes.length, samples: run.samples });
          }
          const cuts = cutPoints(runs, count);
          const lines: string[] = [];
          for (let r = 0; r <= cuts.length; r++) {
            const range = {
              ...(r > 0 && { from: cuts[r - 1]! }),
              ...(r < cuts.length && { to: cuts[r]! }),
            };
            const task: PartitionTask = {
              kind: 'partition',
              jobId: 'j1',
              job: 'by-k',
              params: {},
              bucket: 'b',
              index: r,
              attempt: 1,
              first: r,
              end: r + 1,
              range,
              sources: runs
                .filter((o) => o.bytes > 0)
                .map((o) => ({
                  key: o.key,
                  etag: o.etag,
                  size: o.bytes,
                  chunk: o.chunk,
                  ...runSlice(o, range),
                })),
            };
            await runPartition(task, { store, jobs, clock: systemClock, windowBytes });
            const { part } = JSON.parse(
              store.text('b', `jobs/j1/partitions/${r}.json`),
            ) as PartitionOutcome;
            lines.push(
              ...store
                .text('b', part.key)
                .split('\n')
                .filter((l) => l !== ''),
            );
          }
          const expected = chunks
            .flatMap((keys) => keys.map((k, i) => ({ k, i })))
            .sort((a, b) => a.k - b.k)
            .map((o) => JSON.stringify(o));
          expect(lines.map((l) => JSON.parse(l) as { k: number; i: number })).toEqual(
            expected.map((l) => JSON.parse(l)),
          );
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('runPartition', () => {
  // A merge that is associative but not commutative: the order of chunks shows.
  const concat = defineJob({
    name: 'concat',
    format: 'jsonl',
    params: z.strictObject({}),
    map: (r: { k: string; v: string }) => r,
    key: (o: { k: string; v: string }) => o.k,
    reduce: {
      init: () => '',
      add: (a: string, o: { v: string }) => a + o.v,
      merge: (a: string, b: string) => a + b,
      finish: (acc: string, _params: unknown, key?: string) => `${key}=${acc}`,
    },
  });
  const jobs = createRegistry([concat]);

  async function setup(chunks: Record<string, string>[], buckets = 3) {
    const store = new MemoryStore({ pieceBytes: 5 });
    const sources: { key: string; etag: string; size: number; offsets: number[] }[] = [];
    for (const [i, accs] of chunks.entries()) {
      const runs = encodeRuns(new Map(Object.entries(accs)), buckets);
      const key = `jobs/j1/shuffle/${i}.1.jsonl`;
      const { etag } = await store.put('b', key, runs.bytes);
      sources.push({ key, etag, size: runs.bytes.length, offsets: runs.offsets });
    }
    // As the reduce stage sends it: with the job's bucket count (merged bucket by bucket).
    const task = (first: number, end: number, attempt = 1, grouped = true): PartitionTask => ({
      kind: 'partition',
      jobId: 'j1',
      job: 'concat',
      params: {},
      bucket: 'b',
      index: 0,
      attempt,
      first,
      end,
      ...(grouped && { buckets }),
      sources: sources.map((s) => ({
        key: s.key,
        etag: s.etag,
        size: s.size,
        start: s.offsets[first]!,
        end: s.offsets[end]!,
      })),
    });
    return { store, task };
  }

  it('merges each key in chunk order, finishes it with its key, and writes the part in key order', async () => {
    const { store, task } = await setup([
      { b: '1', a: '1', 'x\ty': '1' },
      { a: '2' },
      { b: '3', a: '3' },
    ]);
    const summary = await runPartition(task(0, 3), { store, jobs, clock: systemClock });
    expect(summary).toMatchObject({ index: 0, keys: 3 });
    const outcome = JSON.parse(store.text('b', 'jobs/j1/partitions/0.json')) as PartitionOutcome;
    expect(outcome).toMatchObject({ index: 0, attempt: 1, keys: 3, first: 0, end: 3 });
    const lines = store
      .text('b', outcome.part.key)
      .trim()
      .split('\n')
      .map((l) => l.split('\t').map((p) => JSON.parse(p)));
    expect(lines).toEqual([
      ['a', 'a=123'],
      ['b', 'b=13'],
      ['x\ty', 'x\ty=1'],
    ]);
    expect(outcome.part.bytes).toBe(Buffer.byteLength(store.text('b', outcome.part.key)));
  });

  it('property: merged bucket by bucket, the part is in ascending key order, as merged in one Map', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 3 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.integer({ min: 1, max: 9 }),
        async (chunks, buckets) => {
          const part = async (grouped: boolean) => {
            const { store, task } = await setup(chunks, buckets);
            await runPartition(task(0, buckets, 1, grouped), { store, jobs, clock: systemClock });
            const outcome = JSON.parse(
              store.text('b', 'jobs/j1/partitions/0.json'),
            ) as PartitionOutcome;
            return store.text('b', outcome.part.key);
          };
          const grouped = await part(true);
          expect(grouped).toBe(await part(false));
          const keys = grouped
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => JSON.parse(l.split('\t')[0]!) as string);
          expect(keys).toEqual([...new Set(chunks.flatMap((c) => Object.keys(c)))].sort());
        },
      ),
      { numRuns: 60 },
    );
  });

  it('reads only its buckets', async () => {
    const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const { store, task } = await setup([Object.fromEntries(keys.map((k) => [k, '1']))], 3);
    await runPartition(task(1, 2), { store, jobs, clock: systemClock });
    const outcome = JSON.parse(store.text('b', 'jobs/j1/partitions/0.json')) as PartitionOutcome;
    const got = store
      .text('b', outcome.part.key)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l.split('\t')[0]!) as string);
    expect(got).toEqual(keys.filter((k) => bucketOf(k, 3) === 1));
  });

  it('a second attempt loses to the first: it removes its part and says it lost', async () => {
    const { store, task } = await setup([{ a: '1' }]);
    await runPartition(task(0, 3, 1), { store, jobs, clock: systemClock });
    const second = await runPartition(task(0, 3, 2), { store, jobs, clock: systemClock });
    expect(second.duplicate).toBe(true);
    const keys = [...store.objects.keys()].filter((k) => k.includes('/reduced/'));
    expect(keys).toEqual([expect.stringContaining('jobs/j1/reduced/0.1.jsonl')]);
  });
});
