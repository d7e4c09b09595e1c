import * as z from 'zod/mini';
import { defineJob } from '#core/model/job.ts';
import { asScientist } from './scientists.ts';

/** Per-field totals. */
export interface FieldStats {
  count: number;
  nobels: number;
  ageSum: number;
}

/** What by-field maps a scientist to. */
interface FieldOut {
  field: string;
  nobel: boolean;
  age: number;
}

/**
 * The lesson's reduce: scientists grouped by field, with how many there are, how many won a
 * Nobel prize and the sum of their ages (age = year - born). A keyed job: each field's totals
 * are folded per chunk, shuffled to the partition that owns the field, and merged there, so a
 * group-by over any number of fields fits; the result's keys are sorted.
 */
export const byField = defineJob({
  name: 'by-field',
  description: 'count scientists, Nobel laureates and summed ages per field',
  format: 'jsonl',
  params: z.strictObject({ year: z._default(z.int(), 2017) }),
  map(record: unknown, params) {
    const s = asScientist(record);
    return { field: s.field, nobel: s.nobel === true, age: params.year - s.born };
  },
  key: (out: FieldOut) => out.field,
  reduce: {
    init: (): FieldStats => ({ count: 0, nobels: 0, ageSum: 0 }),
    add(acc: FieldStats, out: FieldOut): FieldStats {
      acc.count += 1;
      acc.nobels += out.nobel ? 1 : 0;
      acc.ageSum += out.age;
      return acc;
    },
    merge: (a: FieldStats, b: FieldStats): FieldStats => ({
      count: a.count + b.count,
      nobels: a.nobels + b.nobels,
      ageSum: a.ageSum + b.ageSum,
    }),
  },
});
