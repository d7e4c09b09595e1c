/**
 * The job model: what a user writes. A job maps every record of a dataset to an output (or drops
 * it) and, optionally, folds the outputs into one value with an associative reduce.
 */
import * as z from 'zod/v4/core';
import en from 'zod/v4/locales/en.js';
import { FanoutError, JobCodeError, ValidationError } from '../base/errors.ts';
import type { RecordFormat } from '../data/records.ts';

/**
 * A reduce: `add` folds one map output into an accumulator; `merge` combines two accumulators
 * built from adjacent chunks. `merge` must be associative with `init()` as its identity, so the
 * reducer may merge parts in any grouping (a tree for large fan-in) and get the same answer.
 * Accumulators travel as JSON between workers and the reducer, so they must survive
 * `JSON.parse(JSON.stringify(acc))` unchanged (plain objects, arrays, strings, finite numbers).
 */
export interface Reducer<Out, Acc, Result = Acc, Params = unknown> {
  /** A fresh, empty accumulator: the identity of `merge`. */
  init(): Acc;
  /** Folds one map output in. May mutate and return `acc` (it is never shared). */
  add(acc: Acc, out: Out): Acc;
  /** Combines the accumulators of two adjacent chunk sequences (`a` before `b`). */
  merge(a: Acc, b: Acc): Acc;
  /**
   * Turns the final accumulator into the job's result. Default: the accumulator itself. A keyed
   * job's is called once per key, with the key, and gives that key's value in the result.
   */
  finish?(acc: Acc, params: Params, key?: string): Result;
}

/** What happens to a record that does not parse: fail the chunk, or skip and count it. */
export type BadRecordPolicy = 'fail' | 'skip';

/** A job definition, as passed to {@link defineJob}. */
export interface JobDefinition<Params, Rec, Out, Acc = unknown, Result = unknown> {
  /**
   * Parquet input: the columns the job reads (only these are fetched and decoded).
   * @default every column
   */
  columns?: readonly string[];
  /** The name users pass to `fanout run <job>`: lowercase letters, digits and dashes. */
  name: string;
  /** One line for `fanout run --help`. */
  description?: string;
  /** How records are decoded: `jsonl` objects, `csv` rows keyed by header, or `lines` strings. */
  format: RecordFormat;
  /**
   * Validates the job's parameters before any chunk runs; defaults are applied here. Any zod 4
   * schema: `zod/mini`'s (the built-in jobs': a function's cold start compiles a fifth of what
   * the classic API costs) or the classic `zod`'s. Without it the job takes no parameters: it
   * runs with `{}`, and any parameter given is refused by name.
   */
  params?: z.$ZodType<Params>;
  /** Maps one record to an output; `undefined` drops the record. May be async. */
  map(record: Rec, params: Params): Out | undefined | Promise<Out | undefined>;
  /** False or absent: `map` gives one output per record ({@link FlatJobDefinition} for several). */
  flat?: false;
  /** Optional reduce; without it the job is map-only and its result is JSONL in input order. */
  reduce?: Reducer<Out, Acc, Result, Params>;
  /**
   * Makes the job keyed (a group-by): `reduce` then applies per key, each chunk folds its
   * outputs per key before they leave the worker, and the keys are shuffled through S3 to
   * partition tasks, so no process holds every key (docs/SHUFFLE.md). The result is one JSON
   * object whose keys are in ascending order (JavaScript string order). A key is a string of
   * at most 65,536 characters.
   */
  key?(out: Out): string;
  /**
   * A keyed job's result in another order than its keys': by what `rank.by(value, key)` returns
   * (`value` is the key's final value, after `finish`), ascending, ties by key (JavaScript
   * string order). `rank.top(params)` keeps only the first N keys. Each partition task ranks
   * its own keys (holding their entries; with `top`, about twice the first N) and the result
   * merges the ranked parts by rank as they stream, so no process holds every key
   * (docs/SHUFFLE.md).
   */
  rank?: {
    by(value: Result, key: string): number;
    top?(params: Params): number | undefined;
  };
  /**
   * Makes a map-only job sorted: its output comes out ordered by what `orderBy(out)` returns,
   * numbers ascending or strings in JavaScript order (one kind per job), and outputs with equal
   * keys keep their input order (a stable sort). Each chunk sorts its outputs; range partitions,
   * cut from samples the map stage reports, merge them (docs/SHUFFLE.md). A string key is at
   * most 65,536 characters; a number must be finite.
   */
  orderBy?(out: Out): string | number;
  /**
   * A keyed or sorted job's partitions (reduce tasks), 1 to 10,000; a submission's `partitions`
   * overrides it. @default chosen from the sizes the map stage reports
   */
  partitions?: number;
  /**
   * Attempts of a task whose error came from this job's own code (`map`, `key`, `orderBy`,
   * `reduce`), 1 to 10, within the submission's `maxAttempts`. Such an error is the job's bug and
   * usually repeats, so a task is tried once more at most; a job whose code calls something
   * that fails now and then (a flaky service) may ask for more. @default 2
   */
  codeErrorAttempts?: number;
}

/**
 * A job whose `map` is a flatMap (`flat: true`): it returns an array, and each element is an
 * output of its own (a line of a map-only job, a value folded by `reduce`, keyed by `key` or
 * ordered by `orderBy`), in array order; an empty array or `undefined` gives none. For records
 * that give several outputs, such as a line's words.
 */
export interface FlatJobDefinition<Params, Rec, Out, Acc = unknown, Result = unknown>
  extends Omit<JobDefinition<Params, Rec, Out, Acc, Result>, 'map' | 'flat'> {
  flat: true;
  /** Maps one record to its outputs, in order; `undefined` or `[]` for none. May be async. */
  map(
    record: Rec,
    params: Params,
  ): readonly Out[] | undefined | Promise<readonly Out[] | undefined>;
}

/** A job with its types erased, as the registry and the handlers hold it. */
export type AnyJob =
  // biome-ignore lint/suspicious/noExplicitAny: the registry holds jobs of every type
  JobDefinition<any, any, any, any, any> | FlatJobDefinition<any, any, any, any, any>;

const JOB_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * Declares a job. Returns the definition unchanged (typed), after checking its shape, so a
 * mistake in a job module fails when the module loads rather than in the middle of a run.
 *
 * @example
 * ```ts
 * import * as z from 'zod/mini';
 * import { defineJob } from '#core/model/job.ts';
 *
 * export const lengths = defineJob({
 *   name: 'lengths',
 *   format: 'lines',
 *   params: z.strictObject({}),
 *   map: (line: string) => line.length,
 *   reduce: {
 *     init: () => 0,
 *     add: (sum: number, n: number) => sum + n,
 *     merge: (a: number, b: number) => a + b,
 *   },
 * });
 * ```
 */
export function defineJob<Params, Rec, Out, Acc = unknown, Result = Acc>(
  definition: FlatJobDefinition<Params, Rec, Out, Acc, Result>,
): FlatJobDefinition<Params, Rec, Out, Acc, Result>;
export function defineJob<Params, Rec, Out, Acc = unknown, Result = Acc>(
  definition: JobDefinition<Params, Rec, Out, Acc, Result>,
): JobDefinition<Params, Rec, Out, Acc, Result>;
export function defineJob(definition: AnyJob): AnyJob {
  if (!JOB_NAME.test(definition.name)) {
    throw new TypeError(
      `job name ${JSON.stringify(definition.name)} is invalid; expected lowercase letters, digits and dashes, starting with a letter`,
    );
  }
  if (!['jsonl', 'csv', 'lines'].includes(definition.format)) {
    throw new TypeError(
      `job ${definition.name}: format ${JSON.stringify(definition.format)} is invalid; expected jsonl, csv or lines`,
    );
  }
  if (definition.key !== undefined && typeof definition.key !== 'function') {
    throw new TypeError(`job ${definition.name}: key must be a function (out) => string`);
  }
  if (definition.key !== undefined && definition.reduce === undefined) {
    throw new TypeError(
      `job ${definition.name}: key needs a reduce (init, add, merge) to apply per key`,
    );
  }
  checkRank(definition);
  if (definition.flat !== undefined && typeof definition.flat !== 'boolean') {
    throw new TypeError(
      `job ${definition.name}: flat must be true or false (true: map returns an array of outputs)`,
    );
  }
  if (definition.orderBy !== undefined) {
    if (typeof definition.orderBy !== 'function') {
      throw new TypeError(
        `job ${definition.name}: orderBy must be a function (out) => string | number`,
      );
    }
    if (definition.key !== undefined) {
      throw new TypeError(
        `job ${definition.name}: key and orderBy cannot go together; expected key (a group-by, with a reduce) or orderBy (a sort, map-only)`,
      );
    }
    if (definition.reduce !== undefined) {
      throw new TypeError(
        `job ${definition.name}: orderBy applies to a map-only job; expected no reduce (a keyed job's result is in key order already)`,
      );
    }
  }
  const attempts = definition.codeErrorAttempts;
  if (attempts !== undefined && !(Number.isInteger(attempts) && attempts >= 1 && attempts <= 10)) {
    throw new TypeError(
      `job ${definition.name}: codeErrorAttempts ${JSON.stringify(attempts)} is invalid; expected an integer from 1 to 10`,
    );
  }
  if (definition.partitions !== undefined) {
    const problem = partitionsProblem(definition.partitions);
    if (problem !== undefined) throw new TypeError(`job ${definition.name}: ${problem}`);
    if (!shuffles(definition)) {
      throw new TypeError(
        `job ${definition.name}: partitions applies only to a keyed (key) or sorted (orderBy) job`,
      );
    }
  }
  return definition;
}

/** A rank needs a keyed job and a `by` function; `top`, when given, is a function. */
function checkRank(definition: AnyJob): void {
  const { rank } = definition;
  if (rank === undefined) return;
  if (definition.key === undefined) {
    throw new TypeError(
      `job ${definition.name}: rank orders a keyed job's result; expected key(out) beside it`,
    );
  }
  if (typeof rank !== 'object' || rank === null || typeof rank.by !== 'function') {
    throw new TypeError(
      `job ${definition.name}: rank must be { by(value, key): number, top?(params): number | undefined }`,
    );
  }
  if (rank.top !== undefined && typeof rank.top !== 'function') {
    throw new TypeError(
      `job ${definition.name}: rank.top must be a function (params) => number | undefined`,
    );
  }
}

/** True when the job's outputs go through the shuffle: a keyed job's, or a sorted job's. */
export function shuffles(job: Pick<AnyJob, 'key' | 'orderBy'>): boolean {
  return job.key !== undefined || job.orderBy !== undefined;
}

/** The most partitions a keyed or sorted job may ask for. */
export const MAX_PARTITIONS = 10_000;

/** What is wrong with a partition count, or undefined when it is 1 to 10,000. */
export function partitionsProblem(partitions: unknown): string | undefined {
  return Number.isInteger(partitions) &&
    (partitions as number) >= 1 &&
    (partitions as number) <= MAX_PARTITIONS
    ? undefined
    : `partitions ${JSON.stringify(partitions)} is invalid; expected an integer from 1 to ${MAX_PARTITIONS}`;
}

/**
 * Gives zod's errors English messages unless the process chose a locale: `zod/mini` leaves them
 * to one ("Invalid input" without), and the classic API sets English the same way.
 */
export function englishZodMessages(): void {
  if (z.config().localeError === undefined) z.config(en());
}

/**
 * Validates raw parameters against the job's schema, applying its defaults.
 * Throws ValidationError with zod's message when they do not fit.
 */
export function parseParams<P>(
  job: { name: string; params?: z.$ZodType<P> | undefined },
  raw: unknown,
): P {
  if (job.params === undefined) return noParams(job.name, raw) as P;
  englishZodMessages();
  const result = z.safeParse(job.params, raw ?? {});
  if (!result.success) {
    const detail = result.error.issues
      .map(
        (issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(params)'}: ${issue.message}`,
      )
      .join('; ');
    throw new ValidationError(`invalid params for job ${job.name}: ${detail}`, {
      cause: result.error,
      context: { job: job.name },
    });
  }
  return result.data;
}

/** A job that declares no `params`: `{}` (or nothing) is fine, anything else is named. */
function noParams(name: string, raw: unknown): Record<string, never> {
  const given =
    raw === undefined || raw === null
      ? []
      : typeof raw === 'object' && !Array.isArray(raw)
        ? Object.keys(raw)
        : undefined;
  if (given === undefined || given.length > 0) {
    throw new ValidationError(
      `invalid params for job ${name}: it declares no params (no \`params\` schema), so it takes none; got ${JSON.stringify(raw)}`,
      { context: { job: name } },
    );
  }
  return {};
}

/** Looks a job up by name; the error lists the valid names. */
export function findJob(registry: ReadonlyMap<string, AnyJob>, name: string): AnyJob {
  const job = registry.get(name);
  if (job === undefined) {
    throw new ValidationError(
      `unknown job ${JSON.stringify(name)}; expected one of: ${[...registry.keys()].sort().join(', ')}`,
      { context: { job: name } },
    );
  }
  return job;
}

/** Builds the registry from job definitions, refusing duplicate names. */
export function createRegistry(jobs: readonly AnyJob[]): ReadonlyMap<string, AnyJob> {
  const registry = new Map<string, AnyJob>();
  for (const job of jobs) {
    if (registry.has(job.name)) throw new TypeError(`job ${job.name} is registered twice`);
    registry.set(job.name, job);
  }
  return registry;
}

/** The parts of a job's code that a JobCodeError names. */
export type JobCodePart =
  | 'key'
  | 'orderBy'
  | 'reduce.add'
  | 'reduce.merge'
  | 'reduce.finish'
  | 'rank.by'
  | 'rank.top';

/**
 * What an error thrown by a part of the job's own code becomes: a JobCodeError that keeps the
 * original's name, or the error itself when fanout made it (a RecordSyntaxError, a bad key).
 */
export function jobCodeError(part: JobCodePart, error: unknown): unknown {
  if (error instanceof FanoutError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new JobCodeError(error, `job ${part} threw: ${message}`);
}

/** Runs a part of the job's own code (once per key or per task, not per record). */
export function jobCode<T>(part: JobCodePart, run: () => T): T {
  try {
    return run();
  } catch (error) {
    throw jobCodeError(part, error);
  }
}
