import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defineJob } from '#core/model/job.ts';
import { Ranking } from '#core/shuffle/rank.ts';

/** A keyed job ranked by its value, or by `by` when given; `top` from its params. */
function ranked(by?: (value: number, key: string) => number) {
  return defineJob({
    name: 'ranked',
    format: 'lines',
    map: (line: string) => line,
    key: (line: string) => line,
    reduce: { init: () => 0, add: (n: number) => n + 1, merge: (a: number, b: number) => a + b },
    rank: {
      by: by ?? ((n: number) => -n),
      top: (params: { top?: number }) => params.top,
    },
  });
}

/** Feeds entries in key order, as the merge gives them, and returns the ranking's order. */
function rankAll(ranking: Ranking, entries: Map<string, number>): [string, number][] {
  for (const key of [...entries.keys()].sort()) {
    ranking.add(key, JSON.stringify(key), JSON.stringify(entries.get(key)));
  }
  return [...ranking.ranked()].map(([k, v]) => [JSON.parse(k), JSON.parse(v)]);
}

describe('Ranking', () => {
  it('orders by rank ascending, ties by key, and keeps the first top, however many keys come', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 4 }), fc.integer({ min: 0, max: 20 }), {
          maxKeys: 3000,
        }),
        fc.option(fc.nat(40), { nil: undefined }),
        (counts, top) => {
          const entries = new Map(Object.entries(counts));
          const expected = [...entries]
            .sort(([ka, a], [kb, b]) => b - a || (ka < kb ? -1 : ka > kb ? 1 : 0))
            .slice(0, top ?? entries.size);
          const ranking = Ranking.of(ranked(), top === undefined ? {} : { top })!;
          expect(rankAll(ranking, entries)).toEqual(expected);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('trims to the top as it goes (past twice the top and 1,024), with the same answer', () => {
    const entries = new Map(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, (i * 7919) % 1000]));
    const ranking = Ranking.of(ranked(), { top: 5 })!;
    expect(rankAll(ranking, entries)).toEqual(
      [...entries].sort(([ka, a], [kb, b]) => b - a || (ka < kb ? -1 : 1)).slice(0, 5),
    );
  });

  it('is absent for a job without a rank', () => {
    const plain = defineJob({
      name: 'plain',
      format: 'lines',
      map: (line: string) => line,
      key: (line: string) => line,
      reduce: { init: () => 0, add: (n: number) => n + 1, merge: (a: number, b: number) => a + b },
    });
    expect(Ranking.of(plain, {})).toBeUndefined();
  });

  it('refuses a rank that is not a number, and a top that is not a count, naming what it got', () => {
    const byText = Ranking.of(ranked((() => 'high') as never), {})!;
    expect(() => byText.add('a', '"a"', '1')).toThrow(
      'job ranked: rank.by(value, key) returned "high" for key "a"; expected a number',
    );
    const byNaN = Ranking.of(
      ranked(() => Number.NaN),
      {},
    )!;
    expect(() => byNaN.add('a', '"a"', '1')).toThrow(/returned NaN for key "a"; expected a number/);
    expect(() => Ranking.of(ranked(), { top: -1 })).toThrow(
      'job ranked: rank.top(params) returned -1; expected a non-negative integer or undefined',
    );
  });

  it("reports an error thrown by rank.by as the job's code", () => {
    const throws = Ranking.of(
      ranked(() => {
        throw new RangeError('no rank');
      }),
      {},
    )!;
    expect(() => throws.add('a', '"a"', '1')).toThrow(/^job rank\.by threw: no rank$/);
  });
});

describe('defineJob with flat and rank', () => {
  const base = {
    name: 'j',
    format: 'lines' as const,
    map: (line: string) => line,
    reduce: { init: () => 0, add: (n: number) => n + 1, merge: (a: number, b: number) => a + b },
  };
  it('refuses a rank without a key, a rank without by, and a flat that is not a boolean', () => {
    expect(() => defineJob({ ...base, rank: { by: (n: number) => n } })).toThrow(
      "job j: rank orders a keyed job's result; expected key(out) beside it",
    );
    expect(() => defineJob({ ...base, key: (l: string) => l, rank: {} as never })).toThrow(
      'job j: rank must be { by(value, key): number, top?(params): number | undefined }',
    );
    expect(() => defineJob({ ...base, flat: 'yes' as never })).toThrow(
      'job j: flat must be true or false (true: map returns an array of outputs)',
    );
  });
});
