import * as z from 'zod';
import { defineJob } from '#core/job.ts';
import { RecordSyntaxError } from '#core/records.ts';

/** A record of the lesson's dataset. */
export interface Scientist {
  name: string;
  field: string;
  born: number;
  nobel: boolean;
}

/** Checks a parsed JSONL record's shape; a wrong shape is a bad record, not a crash. */
export function asScientist(record: unknown): Scientist {
  const r = record as Partial<Scientist> | null;
  if (
    r === null ||
    typeof r !== 'object' ||
    typeof r.name !== 'string' ||
    typeof r.field !== 'string' ||
    typeof r.born !== 'number' ||
    !Number.isFinite(r.born)
  ) {
    throw new RecordSyntaxError(
      'expected an object {name: string, field: string, born: number, nobel: boolean}',
    );
  }
  return r as Scientist;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The lesson's transform: each scientist becomes `{ name, age }` with age = year - born.
 * `sleepMs` waits per record (asynchronously) to reproduce the lesson's `time.sleep(1)` demo:
 * seven such records finish in about one second because the pool is as wide as the data.
 */
export const scientists = defineJob({
  name: 'scientists',
  description: 'map {name, field, born, nobel} to {name, age}; map-only, results in input order',
  format: 'jsonl',
  params: z
    .object({
      year: z.number().int().default(2017),
      sleepMs: z.number().int().min(0).max(900_000).default(0),
    })
    .strict(),
  map(record: unknown, params) {
    const s = asScientist(record);
    const out = { name: s.name, age: params.year - s.born };
    return params.sleepMs > 0 ? sleep(params.sleepMs).then(() => out) : out;
  },
});
