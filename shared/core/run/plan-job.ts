/**
 * The coordinator's first step: pin the inputs (their ETag and VersionId, so a changed object
 * fails the job instead of mixing versions) and plan the chunks. Runs once per job, in the first
 * coordinator run (or again, when a job failed before its plan was written).
 */
import { readAll } from '../base/bytes.ts';
import { NotFoundError, ValidationError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type { ObjectInfo, ObjectStore } from '../base/ports.ts';
import { scanOwnedLines } from '../data/lines.ts';
import { itemCount, needsRecordStarts, planChunks } from '../data/plan.ts';
import { csvHeader, formatOfKey, type RecordFormat, recordStarts } from '../data/records.ts';
import type { JobRequest, Manifest } from '../model/documents.ts';
import { type AnyJob, findJob, parseParams } from '../model/job.ts';
import { parseInputUri } from '../model/keys.ts';
import { bucketCount } from '../shuffle/partitions.ts';
import { cachePrefix, lineages } from './cache.ts';

/** What planning needs. */
export interface PlanDeps {
  store: ObjectStore;
  /** The bucket that holds jobs/ and cache/. */
  bucket: string;
  jobs: ReadonlyMap<string, AnyJob>;
  /**
   * Where each row group of a whole Parquet file begins (shared/adapters/parquet.ts), to deal a
   * small Parquet input by row group. @default Parquet input is refused
   */
  parquetRowGroups?: (bytes: Uint8Array) => Promise<number[]>;
  /**
   * The worker code's identity (a hash of its bundle), which every cache entry's address
   * includes (shared/core/run/cache.ts). @default none: no job reuses work or keeps it
   */
  codeId?: string;
}

/**
 * Pins the inputs (ETag, VersionId), reads what the plan needs, and plans: the record offsets of
 * a small input that must be cut between records, and the header of every CSV object that some
 * chunk enters past its first line (a chunk that reads an object from byte 0 reads it itself).
 */
export async function planJob(request: JobRequest, deps: PlanDeps): Promise<Manifest> {
  const job = findJob(deps.jobs, request.job);
  const params = parseParams(job, request.params);
  const objects = await resolveInput(request.input, deps.store);
  const pinned = objects.map((o) => ({ ...o, gzip: o.key.endsWith('.gz') }));
  // How the input is decoded: as asked, else as its keys all say, else the job's own format.
  const format = request.format ?? commonFormat(pinned) ?? job.format;
  const columns = request.columns ?? (job.columns === undefined ? undefined : [...job.columns]);
  if (format === 'parquet' && deps.parquetRowGroups === undefined) {
    throw new ValidationError('Parquet input is not supported by this coordinator');
  }
  const cache = await cacheOf(request, job, { params, format, columns }, deps.codeId);
  const options = {
    concurrency: request.concurrency,
    ...(request.chunkSize !== undefined && { chunkSize: request.chunkSize }),
    ...(request.chunks !== undefined && { chunks: request.chunks }),
    guidedTail: request.guidedTail === true,
    grid: cache !== undefined,
  };

  // A small input split one record per task (like executor.map) needs its records' offsets;
  // the whole input is at most 1 MiB, read pinned.
  const recordSplit = needsRecordStarts(pinned, options);
  const bodies = recordSplit
    ? await collect(
        orderedMap(pinned.length, 16, async (i) => {
          const o = pinned[i]!;
          return o.gzip || o.size === 0 ? undefined : readAll(deps.store.readRange(o, 0, o.size));
        }),
      )
    : [];
  // A small Parquet input is dealt by row group, as a small text input is by record.
  const starts = await Promise.all(
    bodies.map((body) =>
      body === undefined
        ? undefined
        : format === 'parquet'
          ? (deps.parquetRowGroups as (b: Uint8Array) => Promise<number[]>)(body)
          : recordStarts(body, format),
    ),
  );
  const planObjects = pinned.map((o, i) => {
    const recordStartsOf = starts[i];
    return recordStartsOf === undefined
      ? { size: o.size, gzip: o.gzip }
      : { size: o.size, gzip: o.gzip, recordStarts: recordStartsOf };
  });
  const chunks = planChunks(planObjects, options);
  // Reuse: an object that grew by appending keeps the pieces of its older versions.
  const lineage = cache !== undefined && format !== 'parquet' ? await lineages(pinned, deps) : [];
  const headers = new Map<number, string[]>();
  if (format === 'csv') {
    const entered = [...new Set(chunks.filter((c) => c.start > 0).map((c) => c.object))];
    for await (const [i, header] of orderedMap(entered.length, 16, async (k) => {
      const i = entered[k] as number;
      const body = bodies[i];
      return [
        i,
        body === undefined ? await readHeader(deps.store, pinned[i]!) : csvHeader(firstLine(body)),
      ] as const;
    })) {
      headers.set(i, header);
    }
  }
  return {
    jobId: request.jobId,
    job: job.name,
    params,
    format,
    ...(columns !== undefined && { columns }),
    onBadRecord: request.onBadRecord,
    mapOnly: job.reduce === undefined,
    concurrency: request.concurrency,
    ...(request.chunkSize !== undefined && { chunkSize: request.chunkSize }),
    recordSplit,
    ...(recordSplit && chunks.length === itemCount(planObjects) && { taskPerItem: true }),
    objects: pinned.map((o, i) => {
      const header = headers.get(i);
      const older = lineage[i];
      return {
        ...o,
        ...(header !== undefined && { header }),
        ...(older !== undefined && { lineage: older }),
      };
    }),
    chunks: chunks.map((c) => ({ ...c, attempts: 0 })),
    ...(job.key !== undefined && {
      keyed: {
        ...keyedPlan(
          request.partitions ?? job.partitions,
          pinned.reduce((sum, o) => sum + o.size, 0),
        ),
        ...(request.resultFormat === 'jsonl' && { resultFormat: 'jsonl' as const }),
      },
    }),
    ...(job.codeErrorAttempts !== undefined && { codeErrorAttempts: job.codeErrorAttempts }),
    ...(cache !== undefined && { cache }),
    ...(job.orderBy !== undefined && {
      sorted: {
        ...((request.partitions ?? job.partitions) !== undefined && {
          partitions: request.partitions ?? job.partitions,
        }),
      },
    }),
  };
}

/**
 * Reuse (docs/ARCHITECTURE.md, "Reuse"): the job's cache prefix, unless the request turns reuse
 * off or the code has no identity; a sorted job's chunks keep no pieces.
 */
async function cacheOf(
  request: JobRequest,
  job: AnyJob,
  decoding: { params: unknown; format: RecordFormat; columns: string[] | undefined },
  codeId: string | undefined,
): Promise<Manifest['cache']> {
  if (request.reuse === false || codeId === undefined || job.orderBy !== undefined) return;
  const { params, format, columns } = decoding;
  const prefix = await cachePrefix({
    codeId,
    job: job.name,
    params,
    format,
    ...(columns !== undefined && { columns }),
    onBadRecord: request.onBadRecord,
    shape: job.reduce === undefined ? 'lines' : job.key === undefined ? 'acc' : 'keyed',
  });
  return { prefix };
}

/** A keyed job's buckets, from the input's size (and its partitions, when they are set). */
function keyedPlan(
  partitions: number | undefined,
  inputBytes: number,
): NonNullable<Manifest['keyed']> {
  const buckets = bucketCount(partitions, inputBytes);
  return partitions === undefined ? { buckets } : { buckets, partitions };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** The format every object's key says, when they agree (see formatOfKey). */
function commonFormat(objects: readonly { key: string }[]): RecordFormat | undefined {
  const formats = new Set(objects.map((o) => formatOfKey(o.key)));
  const [only] = formats;
  return formats.size === 1 ? only : undefined;
}

/** The objects an input URI names: one key, or every non-empty object under a prefix. */
export async function resolveInput(input: string, store: ObjectStore): Promise<ObjectInfo[]> {
  const uri = parseInputUri(input);
  if (!uri.isPrefix) return [await store.head(uri.bucket, uri.key)];
  const objects = (await store.list(uri.bucket, uri.key)).filter(
    (o) => !o.key.endsWith('/') && o.size > 0,
  );
  if (objects.length === 0) {
    throw new NotFoundError(`no objects under ${input}; upload the dataset first`);
  }
  return objects;
}

function firstLine(bytes: Uint8Array): Uint8Array {
  const nl = bytes.indexOf(10);
  const line = nl < 0 ? bytes : bytes.subarray(0, nl);
  return line.at(-1) === 13 ? line.subarray(0, -1) : line;
}

/** A CSV object's header: its first line, however long (line ownership of the range [0, 1)). */
export async function readHeader(store: ObjectStore, object: ObjectInfo): Promise<string[]> {
  let header: string[] = [];
  await scanOwnedLines(
    (start, end) => store.readRange(object, start, end),
    { start: 0, end: 1, size: object.size },
    (line) => {
      header = csvHeader(line);
    },
  );
  return header;
}
