import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ChunkRange, defaultChunkSize, MiB, type PlanObject, planChunks } from '#core/plan.ts';

/** Each object's ranges, in order, tile [0, size) with no gap or overlap. */
function expectCoverage(objects: PlanObject[], chunks: ChunkRange[]) {
  expect(chunks.map((c) => c.index)).toEqual(chunks.map((_, i) => i));
  for (const [i, o] of objects.entries()) {
    const mine = chunks.filter((c) => c.object === i);
    if (o.size === 0) {
      expect(mine).toEqual([]);
      continue;
    }
    let at = 0;
    for (const c of mine) {
      expect(c.start).toBe(at);
      expect(c.end).toBeGreaterThan(c.start);
      at = c.end;
    }
    expect(at).toBe(o.size);
  }
  const objectOrder = chunks.map((c) => c.object);
  expect(objectOrder).toEqual([...objectOrder].sort((a, b) => a - b));
}

describe('defaultChunkSize', () => {
  it('aims at 4 chunks per slot within [1 MiB, 256 MiB]', () => {
    expect(defaultChunkSize(160 * MiB, 2)).toBe(20 * MiB);
    expect(defaultChunkSize(2 * MiB, 100)).toBe(MiB);
    expect(defaultChunkSize(1e12, 10)).toBe(256 * MiB);
  });
});

describe('planChunks', () => {
  const seven = { size: 500, recordStarts: [0, 70, 140, 210, 280, 350, 420] };

  it('runs the seven scientists as seven chunks of one record', () => {
    const chunks = planChunks([seven], { concurrency: 16 });
    expect(chunks.map((c) => [c.start, c.end])).toEqual([
      [0, 70],
      [70, 140],
      [140, 210],
      [210, 280],
      [280, 350],
      [350, 420],
      [420, 500],
    ]);
  });

  it('deals small inputs into near-equal record groups', () => {
    expect(
      planChunks([seven], { concurrency: 16, chunks: 3 }).map((c) => [c.start, c.end]),
    ).toEqual([
      [0, 140],
      [140, 280],
      [280, 500],
    ]);
    expect(planChunks([seven], { concurrency: 2 })).toHaveLength(2);
  });

  it('gives gzip objects one chunk and empty objects none', () => {
    const chunks = planChunks([{ size: 0 }, { size: 5 * MiB, gzip: true }, { size: 3 * MiB }], {
      concurrency: 1,
      chunkSize: MiB,
    });
    expect(chunks.map((c) => [c.object, c.start, c.end])).toEqual([
      [1, 0, 5 * MiB],
      [2, 0, MiB],
      [2, MiB, 2 * MiB],
      [2, 2 * MiB, 3 * MiB],
    ]);
  });

  it('rejects bad options with what was expected', () => {
    expect(() => planChunks([seven], { concurrency: 0 })).toThrow(
      /concurrency must be a positive integer; got 0/,
    );
    expect(() => planChunks([seven], { concurrency: 1, chunks: 2, chunkSize: 3 })).toThrow(
      /not both/,
    );
    expect(() => planChunks([seven], { concurrency: 1, chunkSize: 1.5 })).toThrow(/chunkSize/);
  });

  const objects = fc.array(
    fc.record({
      size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5000 })),
      gzip: fc.boolean(),
    }),
    { minLength: 1, maxLength: 5 },
  );

  it('property: byte ranges tile every object; chunks: N on one object gives N', () => {
    fc.assert(
      fc.property(
        objects,
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 1, max: 50 }),
        (os, chunkSize, n) => {
          expectCoverage(os, planChunks(os, { concurrency: 3, chunkSize }));
          expectCoverage(os, planChunks(os, { concurrency: 3, chunks: n }));
        },
      ),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 200 }),
        (size, n) => {
          fc.pre(size >= n);
          expect(
            planChunks([{ size: size + 2 * MiB }], { concurrency: 1, chunks: n }),
          ).toHaveLength(n);
        },
      ),
    );
  });

  it('property: small plans cut only at record starts into min(k, records) near-equal groups', () => {
    const smallObject = fc
      .array(fc.integer({ min: 1, max: 30 }), { maxLength: 12 })
      .chain((lengths) =>
        fc.integer({ min: 0, max: 5 }).map((lead) => {
          const starts: number[] = [];
          let at = lead;
          for (const l of lengths) {
            starts.push(at);
            at += l;
          }
          return { size: Math.max(at, lead), recordStarts: starts };
        }),
      );
    fc.assert(
      fc.property(
        fc.array(smallObject, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 20 }),
        (os, k) => {
          const chunks = planChunks(os, { concurrency: k });
          expectCoverage(os, chunks);
          const records = os.reduce((s, o) => s + o.recordStarts.length, 0);
          const perChunk = chunks.map((c) => {
            const o = os[c.object]!;
            expect(c.start === 0 || o.recordStarts.includes(c.start)).toBe(true);
            return o.recordStarts.filter((s) => s >= c.start && s < c.end).length;
          });
          expect(perChunk.reduce((a, b) => a + b, 0)).toBe(records);
          if (os.length === 1 && records > 0) {
            expect(chunks).toHaveLength(Math.min(k, records));
            expect(Math.max(...perChunk) - Math.min(...perChunk)).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
