import * as z from 'zod/mini';
import { defineJob } from '#core/model/job.ts';

const SEPARATORS = /[^\p{L}\p{N}]+/u;

/**
 * Counts words: each line is lowercased and split on anything that is not a letter or a digit.
 * The result lists words by count (descending), ties by word (ascending); `top` keeps the first N.
 * A record that is not a line (a JSONL, CSV or Parquet row) is counted by its values, every
 * number and boolean as its text, so the same data gives the same count in every format.
 *
 * A keyed job (a group-by on the word): `flat` makes each word of a line an output of its own,
 * each chunk counts its words, the counts are shuffled to the partition that owns the word, and
 * `rank` orders the merged counts, so a corpus with millions of distinct words fits.
 */
export const wordcount = defineJob({
  name: 'wordcount',
  description: 'count words (lowercased, split on non-letters/digits), most frequent first',
  format: 'lines',
  params: z.strictObject({ top: z.optional(z.int().check(z.positive())) }),
  flat: true,
  map(record: unknown) {
    return textOf(record)
      .toLowerCase()
      .split(SEPARATORS)
      .filter((w) => w !== '');
  },
  key: (word: string) => word,
  reduce: {
    init: () => 0,
    add: (n: number) => n + 1,
    merge: (a: number, b: number) => a + b,
  },
  rank: {
    // Most frequent first; ties by word, as the ranking breaks them.
    by: (count: number) => -count,
    top: (params) => params.top,
  },
});

/** A record's words as text: a line itself; a row's values (nested ones too), space-separated. */
function textOf(record: unknown): string {
  if (typeof record === 'string') return record;
  if (record === null || record === undefined) return '';
  if (typeof record === 'object') return Object.values(record).map(textOf).join(' ');
  return String(record);
}
