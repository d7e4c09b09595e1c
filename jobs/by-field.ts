import * as z from 'zod/mini';
import { defineJob } from '#core/model/job.ts';
import { OrderedEntries, table } from '#core/reduce/result-json.ts';
import { asScientist } from './scientists.ts';

/** Per-field totals. */
export interface FieldStats {
  count: number;
  nobels: number;
  ageSum: number;
}

type Acc = Record<string, FieldStats>;

/**
 * The lesson's reduce: scientists grouped by field, with how many there are, how many won a
 * Nobel prize and the sum of their ages (age = year - born). Result keys are sorted.
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
  reduce: {
    init: (): Acc => table(),
    add(acc: Acc, out: { field: string; nobel: boolean; age: number }): Acc {
      const stats = acc[out.field];
      if (stats === undefined) {
        acc[out.field] = { count: 1, nobels: out.nobel ? 1 : 0, ageSum: out.age };
      } else {
        stats.count += 1;
        stats.nobels += out.nobel ? 1 : 0;
        stats.ageSum += out.age;
      }
      return acc;
    },
    merge(a: Acc, b: Acc): Acc {
      const out = table<FieldStats>();
      for (const side of [a, b]) {
        for (const [field, s] of Object.entries(side)) {
          const t = out[field];
          out[field] =
            t === undefined
              ? { count: s.count, nobels: s.nobels, ageSum: s.ageSum }
              : {
                  count: t.count + s.count,
                  nobels: t.nobels + s.nobels,
                  ageSum: t.ageSum + s.ageSum,
                };
        }
      }
      return out;
    },
    finish: (acc: Acc) =>
      new OrderedEntries(
        Object.keys(acc)
          .sort()
          .map((field) => [field, acc[field] as FieldStats] as const),
      ),
  },
});
