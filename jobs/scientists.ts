import * as z from 'zod/mini';
import { RecordSyntaxError } from '#core/data/records.ts';
import { defineJob } from '#core/model/job.ts';

/** A record of the lesson's dataset. */
export interface Scientist {
  name: string;
  field: string;
  born: number;
  nobel: boolean;
}

/**
 * Checks a record's shape; a wrong shape is a bad record, not a crash. JSONL and Parquet give
 * numbers and booleans; CSV gives text, so `born` may be a decimal string and `nobel` the string
 * "true" or "false" (anything else is false): the same data gives the same scientist in every
 * format.
 */
export function asScientist(record: unknown): Scientist {
  const r = record as { name?: unknown; field?: unknown; born?: unknown; nobel?: unknown } | null;
  const born =
    typeof r?.born === 'string' && /^-?\d+$/.test(r.born.trim()) ? Number(r.born) : r?.born;
  if (
    r === null ||
    typeof r !== 'object' ||
    typeof r.name !== 'string' ||
    typeof r.field !== 'string' ||
    typeof born !== 'number' ||
    !Number.isFinite(born)
  ) {
    throw new RecordSyntaxError(
      'expected an object {name: string, field: string, born: number, nobel: boolean}',
    );
  }
  const nobel = r.nobel === true || (typeof r.nobel === 'string' && r.nobel.trim() === 'true');
  return { name: r.name, field: r.field, born, nobel };
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
  params: z.strictObject({
    year: z._default(z.int(), 2017),
    sleepMs: z._default(z.int().check(z.minimum(0), z.maximum(900_000)), 0),
  }),
  map(record: unknown, params) {
    const s = asScientist(record);
    const out = { name: s.name, age: params.year - s.born };
    return params.sleepMs > 0 ? sleep(params.sleepMs).then(() => out) : out;
  },
});
