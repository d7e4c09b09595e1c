/**
 * The flags that shape a job, shared by `fanout run` (local) and `fanout submit` (an API): one
 * definition for parseArgs and one parser, so both commands accept and check them the same way.
 */
import { ValidationError } from '#core/base/errors.ts';
import { RECORD_FORMATS, type RecordFormat } from '#core/data/records.ts';
import { type BadRecordPolicy, MAX_PARTITIONS, partitionsProblem } from '#core/model/job.ts';
import { parseCount, parseJsonObject, parsePercent, parsePositiveInt, parseSize } from './args.ts';

/** parseArgs option definitions of the job flags. */
export const JOB_FLAGS = {
  'chunk-size': { type: 'string' },
  chunks: { type: 'string' },
  concurrency: { type: 'string' },
  params: { type: 'string' },
  'on-bad-record': { type: 'string' },
  'max-attempts': { type: 'string' },
  'tolerated-failure-percent': { type: 'string' },
  'tolerated-failure-count': { type: 'string' },
  format: { type: 'string' },
  columns: { type: 'string' },
  'no-speculation': { type: 'boolean' },
  'guided-tail': { type: 'boolean' },
  partitions: { type: 'string' },
  'result-format': { type: 'string' },
  'no-reuse': { type: 'boolean' },
} as const;

/** The job options the flags give (absent flags are absent keys). */
export interface JobFlagValues {
  /** The job's parameters, validated by its schema before any chunk runs. */
  params?: Record<string, unknown>;
  /** Bytes per chunk (not with `chunks`). */
  chunkSize?: number;
  /** Number of chunks (not with `chunkSize`). */
  chunks?: number;
  /** Chunks in flight. Default: the runtime's worker sandboxes for small inputs, else cores. */
  concurrency?: number;
  /** Malformed records fail the chunk, or are skipped and counted. @default 'fail' */
  onBadRecord?: BadRecordPolicy;
  /** Attempts per chunk. @default 3 */
  maxAttempts?: number;
  /** Failed chunks tolerated (percent of all chunks); within it the result is partial. */
  toleratedFailurePercent?: number;
  /** Failed chunks tolerated (count). */
  toleratedFailureCount?: number;
  /** How the input is decoded. Default: what its file names say, else the job's format. */
  format?: RecordFormat;
  /** Parquet: the columns to read. Default: the job's, else all. */
  columns?: string[];
  /** Backup attempts for straggling chunks. Default: on. */
  speculation?: boolean;
  /** Smaller chunks at the end of the dataset. Default: off. */
  guidedTail?: boolean;
  /** A keyed or sorted job's partitions (1 to 10,000). Default: the job's, else from the map stage. */
  partitions?: number;
  /** A keyed job's result: one JSON object (json) or a line per key (jsonl). Default: json. */
  resultFormat?: 'json' | 'jsonl';
  /** Reuse the work of earlier jobs on the same bytes, code and params. Default: on. */
  reuse?: boolean;
}

/** Parses and checks the job flags; throws ValidationError naming the flag at fault. */
export function parseJobFlags(
  values: Partial<
    Record<Exclude<keyof typeof JOB_FLAGS, 'no-speculation' | 'guided-tail' | 'no-reuse'>, string>
  > & {
    'no-speculation'?: boolean;
    'guided-tail'?: boolean;
    'no-reuse'?: boolean;
  },
): JobFlagValues {
  if (values['chunk-size'] !== undefined && values.chunks !== undefined) {
    throw new ValidationError('give --chunk-size or --chunks, not both');
  }
  const policy = values['on-bad-record'];
  if (policy !== undefined && policy !== 'fail' && policy !== 'skip') {
    throw new ValidationError(
      `--on-bad-record must be fail or skip; got ${JSON.stringify(policy)}`,
    );
  }
  const parsed: JobFlagValues = {};
  const set = <K extends keyof JobFlagValues>(
    key: K,
    raw: string | undefined,
    parse: (s: string) => JobFlagValues[K],
  ) => {
    if (raw !== undefined) parsed[key] = parse(raw);
  };
  set('params', values.params, (s) => parseJsonObject('--params', s));
  set('chunkSize', values['chunk-size'], (s) => parseSize('--chunk-size', s));
  set('chunks', values.chunks, (s) => parsePositiveInt('--chunks', s));
  set('concurrency', values.concurrency, (s) => parsePositiveInt('--concurrency', s));
  set('onBadRecord', policy, (s) => s as BadRecordPolicy);
  set('maxAttempts', values['max-attempts'], (s) => parsePositiveInt('--max-attempts', s));
  set('resultFormat', values['result-format'], (s) => {
    if (s !== 'json' && s !== 'jsonl') {
      throw new ValidationError(`--result-format must be json or jsonl; got ${JSON.stringify(s)}`);
    }
    return s;
  });
  set('partitions', values.partitions, (s) => {
    const n = Number(s);
    const problem = partitionsProblem(n);
    if (!/^\d+$/.test(s) || problem !== undefined) {
      throw new ValidationError(
        `--partitions must be an integer from 1 to ${MAX_PARTITIONS}; got ${JSON.stringify(s)}`,
      );
    }
    return n;
  });
  set('toleratedFailurePercent', values['tolerated-failure-percent'], (s) =>
    parsePercent('--tolerated-failure-percent', s),
  );
  set('toleratedFailureCount', values['tolerated-failure-count'], (s) =>
    parseCount('--tolerated-failure-count', s),
  );
  set('format', values.format, (s) => {
    if (!(RECORD_FORMATS as readonly string[]).includes(s)) {
      throw new ValidationError(
        `--format must be one of ${RECORD_FORMATS.join(', ')}; got ${JSON.stringify(s)}`,
      );
    }
    return s as RecordFormat;
  });
  set('columns', values.columns, (s) => {
    const columns = s.split(',').map((c) => c.trim());
    if (columns.some((c) => c === '')) {
      throw new ValidationError(
        `--columns must be a comma-separated list of names; got ${JSON.stringify(s)}`,
      );
    }
    return columns;
  });
  if (values['no-speculation'] === true) parsed.speculation = false;
  if (values['guided-tail'] === true) parsed.guidedTail = true;
  if (values['no-reuse'] === true) parsed.reuse = false;
  return parsed;
}
