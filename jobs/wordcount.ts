import * as z from 'zod/mini';
import { defineJob } from '#core/model/job.ts';
import { OrderedEntries, table } from '#core/reduce/result-json.ts';

type Acc = Record<string, number>;

const SEPARATORS = /[^\p{L}\p{N}]+/u;

/**
 * Counts words: each line is lowercased and split on anything that is not a letter or a digit.
 * The result lists words by count (descending), ties by word (ascending); `top` keeps the first N.
 * A record that is not a line (a JSONL, CSV or Parquet row) is counted by its values, every
 * number and boolean as its text, so the same data gives the same count in every format.
 */
export const wordcount = defineJob({
  name: 'wordcount',
  description: 'count words (lowercased, split on non-letters/digits), most frequent first',
  format: 'lines',
  params: z.strictObject({ top: z.optional(z.int().check(z.positive())) }),
  map(record: unknown) {
    const words = textOf(record).toLowerCase().split(SEPARATORS);
    return words.some((w) => w !== '') ? words : undefined;
  },
  reduce: {
    init: (): Acc => table(),
    add(acc: Acc, words: string[]): Acc {
      for (const word of words) if (word !== '') acc[word] = (acc[word] ?? 0) + 1;
      return acc;
    },
    merge(a: Acc, b: Acc): Acc {
      const out = table<number>();
      for (const side of [a, b]) {
        for (const [word, n] of Object.entries(side)) out[word] = (out[word] ?? 0) + n;
      }
      return out;
    },
    finish: (acc: Acc, params) => ranked(acc, params.top),
  },
});

/** A record's words as text: a line itself; a row's values (nested ones too), space-separated. */
function textOf(record: unknown): string {
  if (typeof record === 'string') return record;
  if (record === null || record === undefined) return '';
  if (typeof record === 'object') return Object.values(record).map(textOf).join(' ');
  return String(record);
}

/** Orders counts most frequent first, ties alphabetically (by code point, stable everywhere). */
function ranked(acc: Acc, top: number | undefined): OrderedEntries<number> {
  const entries = Object.entries(acc).sort(([wa, a], [wb, b]) =>
    b !== a ? b - a : wa < wb ? -1 : wa > wb ? 1 : 0,
  );
  return new OrderedEntries(top === undefined ? entries : entries.slice(0, top));
}
