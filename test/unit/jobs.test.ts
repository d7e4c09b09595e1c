import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defineJob, parseParams } from '#core/model/job.ts';
import { OrderedEntries, stringifyResult } from '#core/reduce/result-json.ts';
import { Ranking } from '#core/shuffle/rank.ts';
import { byField } from '#jobs/by-field.ts';
import { jobs } from '#jobs/index.ts';
import { scientists } from '#jobs/scientists.ts';
import { wordcount } from '#jobs/wordcount.ts';

const LESSON = [
  { name: 'Ada Lovelace', field: 'math', born: 1815, nobel: false },
  { name: 'Emmy Noether', field: 'math', born: 1882, nobel: false },
  { name: 'Marie Curie', field: 'physics', born: 1867, nobel: true },
  { name: 'Tu Youyou', field: 'chemistry', born: 1930, nobel: true },
  { name: 'Ada Yonath', field: 'chemistry', born: 1939, nobel: true },
  { name: 'Vera Rubin', field: 'astronomy', born: 1928, nobel: false },
  { name: 'Sally Ride', field: 'physics', born: 1951, nobel: false },
];

/** Accumulators cross Lambda payloads and S3 as JSON: the property tests do too. */
const viaJson = <T>(value: T): T => JSON.parse(JSON.stringify(value));

describe('registry', () => {
  it('holds the built-in jobs by name', () => {
    expect([...jobs.keys()].sort()).toEqual(['by-field', 'scientists', 'wordcount']);
  });
});

describe('codeErrorAttempts', () => {
  it('takes 1 to 10, and refuses anything else by name', () => {
    const job = (codeErrorAttempts: number) =>
      defineJob({ name: 'j', format: 'lines', map: (l: string) => l, codeErrorAttempts });
    expect(job(1).codeErrorAttempts).toBe(1);
    expect(job(10).codeErrorAttempts).toBe(10);
    for (const bad of [0, 11, 2.5]) {
      expect(() => job(bad)).toThrow(
        `job j: codeErrorAttempts ${bad} is invalid; expected an integer from 1 to 10`,
      );
    }
  });
});

describe('a job without params', () => {
  const bare = defineJob({ name: 'bare', format: 'lines', map: (line: string) => line.length });

  it('runs with {} and refuses any parameter, by name', () => {
    expect(parseParams(bare, undefined)).toEqual({});
    expect(parseParams(bare, {})).toEqual({});
    expect(() => parseParams(bare, { year: 2020 })).toThrow(
      expect.objectContaining({
        code: 'VALIDATION',
        message:
          'invalid params for job bare: it declares no params (no `params` schema), so it takes none; got {"year":2020}',
      }),
    );
    expect(() => parseParams(bare, [1])).toThrow(/declares no params/);
  });
});

describe('scientists', () => {
  it('maps the lesson to names and ages in input order', () => {
    const params = parseParams(scientists, {});
    expect(LESSON.map((s) => scientists.map(s, params))).toEqual([
      { name: 'Ada Lovelace', age: 202 },
      { name: 'Emmy Noether', age: 135 },
      { name: 'Marie Curie', age: 150 },
      { name: 'Tu Youyou', age: 87 },
      { name: 'Ada Yonath', age: 78 },
      { name: 'Vera Rubin', age: 89 },
      { name: 'Sally Ride', age: 66 },
    ]);
  });

  it('rejects params of the wrong type with the field named', () => {
    expect(() => parseParams(scientists, { sleepMs: 'slow' })).toThrow(/sleepMs/);
    expect(() => parseParams(scientists, { colour: 1 })).toThrow(
      /invalid params for job scientists/,
    );
  });

  it('marks a record of the wrong shape as malformed', () => {
    expect(() => scientists.map({ name: 'x' }, parseParams(scientists, {}))).toThrow(
      expect.objectContaining({ code: 'RECORD_SYNTAX' }),
    );
  });

  it('waits sleepMs asynchronously', async () => {
    const out = scientists.map(LESSON[0], parseParams(scientists, { sleepMs: 5 }));
    expect(out).toBeInstanceOf(Promise);
    await expect(out).resolves.toEqual({ name: 'Ada Lovelace', age: 202 });
  });
});

describe('by-field', () => {
  const params = parseParams(byField, {});
  const reduce = byField.reduce!;
  type Stats = { count: number; nobels: number; ageSum: number };
  /** A single pass, as the shuffle does it: fold per key, keys in ascending order. */
  const byKey = (records: (typeof LESSON)[number][]) => {
    const accs = new Map<string, Stats>();
    for (const r of records) {
      const out = byField.map(r, params) as never;
      const key = byField.key!(out);
      accs.set(key, reduce.add(accs.get(key) ?? reduce.init(), out));
    }
    return accs;
  };

  it('groups the lesson by field with sorted keys', () => {
    const accs = byKey(LESSON);
    const sorted = new OrderedEntries(
      [...accs.keys()].sort().map((k) => [k, accs.get(k)] as const),
    );
    expect(stringifyResult(sorted)).toBe(
      JSON.stringify({
        astronomy: { count: 1, nobels: 0, ageSum: 89 },
        chemistry: { count: 2, nobels: 2, ageSum: 165 },
        math: { count: 2, nobels: 0, ageSum: 337 },
        physics: { count: 2, nobels: 1, ageSum: 216 },
      }),
    );
  });

  const record = fc.record({
    name: fc.string(),
    field: fc.constantFrom('math', 'physics', '__proto__', 'constructor', '2017'),
    born: fc.integer({ min: 1500, max: 2017 }),
    nobel: fc.boolean(),
  });
  const accOf = (rs: (typeof LESSON)[number][]) =>
    viaJson(rs.reduce((acc, r) => reduce.add(acc, byField.map(r, params) as never), reduce.init()));

  it('merge is associative with init() as identity, and agrees with a single pass, per key', () => {
    fc.assert(
      fc.property(fc.array(record), fc.array(record), fc.array(record), (a, b, c) => {
        const [x, y, z] = [accOf(a), accOf(b), accOf(c)];
        const left = reduce.merge(reduce.merge(x, y), z);
        expect(left).toEqual(reduce.merge(x, reduce.merge(y, z)));
        expect(reduce.merge(reduce.init(), x)).toEqual(x);
        expect(reduce.merge(x, reduce.init())).toEqual(x);
        expect(left).toEqual(accOf([...a, ...b, ...c]));
      }),
      { numRuns: 200 },
    );
  });

  it('keys each output by its field', () => {
    expect(byField.key!(byField.map(LESSON[2], params) as never)).toBe('physics');
  });
});

describe('wordcount', () => {
  const reduce = wordcount.reduce!;
  /** A single pass, as the shuffle does it: fold per word, then rank the merged counts. */
  const count = (lines: string[], raw: unknown = {}) => {
    const params = parseParams(wordcount, raw);
    const counts = new Map<string, number>();
    for (const line of lines) {
      for (const word of wordcount.map(line, params) as string[]) {
        const key = wordcount.key!(word);
        counts.set(key, reduce.add(counts.get(key) ?? reduce.init(), word));
      }
    }
    const ranking = Ranking.of(wordcount, params)!;
    for (const key of [...counts.keys()].sort()) {
      ranking.add(key, JSON.stringify(key), JSON.stringify(counts.get(key)));
    }
    return [...ranking.ranked()].map(([k, v]) => [JSON.parse(k), JSON.parse(v)]);
  };

  it('lowercases, splits on non-letters/digits and ranks by count then word', () => {
    expect(count(['It was the best of times, it was', 'the WORST of times; 2017 — été'])).toEqual([
      ['it', 2],
      ['of', 2],
      ['the', 2],
      ['times', 2],
      ['was', 2],
      ['2017', 1],
      ['best', 1],
      ['worst', 1],
      ['été', 1],
    ]);
  });

  it('keeps only the first `top` entries', () => {
    expect(count(['b a a c c c'], { top: 2 })).toEqual([
      ['c', 3],
      ['a', 2],
    ]);
  });

  it('gives a line without words no outputs', () => {
    expect(wordcount.map(' ,;- ', parseParams(wordcount, {}))).toEqual([]);
  });

  it('merge is associative with init() as identity', () => {
    const n = fc.nat(1000);
    fc.assert(
      fc.property(n, n, n, (x, y, z) => {
        expect(reduce.merge(reduce.merge(x, y), z)).toBe(reduce.merge(x, reduce.merge(y, z)));
        expect(reduce.merge(reduce.init(), x)).toBe(x);
        expect(reduce.merge(x, reduce.init())).toBe(x);
      }),
    );
  });
});
