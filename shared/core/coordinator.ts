/**
 * The coordinator: pins the inputs, plans the chunks, runs them through the worker function with
 * at most `concurrency` in flight (the "process pool"), keeps status.json current, and hands the
 * finished parts to the reducer. A job that fails ends FAILED with its reason and no result.
 */
import { readAll } from './bytes.ts';
import {
  DatasetChangedError,
  FanoutError,
  FunctionError,
  NotFoundError,
  ThrottledError,
  toErrorInfo,
  ValidationError,
} from './errors.ts';
import type { AnyJob } from './job.ts';
import { findJob, parseParams } from './job.ts';
import { jobKeys, parseS3Uri } from './keys.ts';
import { scanOwnedLines } from './lines.ts';
import type { ChunkSummary, ChunkTask, JobRequest, JobStatus, Manifest } from './model.ts';
import { planChunks, SMALL_INPUT_BYTES } from './plan.ts';
import type { Clock, Invoker, ObjectInfo, ObjectStore } from './ports.ts';
import { csvHeader, recordStarts } from './records.ts';
import { readJson, TERMINAL_STATES, updateStatus, writeJson } from './status.ts';

/** What {@link coordinateJob} needs from its surroundings. */
export interface CoordinatorDeps {
  store: ObjectStore;
  invoker: Invoker;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** The bucket that holds jobs/. */
  bucket: string;
  workerFunction: string;
  reducerFunction: string;
  /** Attempts per chunk (function errors, timeouts, transport errors). @default 3 */
  maxAttempts?: number;
  /** Attempts per chunk while the worker function throttles (429). @default 20 */
  maxThrottledAttempts?: number;
  /** Minimum milliseconds between status.json writes while chunks finish. @default 500 */
  statusIntervalMs?: number;
  /** Waits between retries; injectable so tests do not sleep. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** Errors that will fail the same way however often the chunk is retried. */
const DETERMINISTIC = new Set([
  'BadRecordError',
  'DatasetChangedError',
  'ValidationError',
  'NotFoundError',
]);

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs a submitted job to its end. Returns the final status; failures of the job itself end in a
 * FAILED status rather than an exception, so an asynchronous invocation is not retried into
 * running the job twice. Only a failure to record the outcome throws.
 */
export async function coordinateJob(jobId: string, deps: CoordinatorDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const { value: request } = await readJson<JobRequest>(deps.store, deps.bucket, keys.job);
  const started = await updateStatus(deps.store, deps.bucket, jobId, (s) =>
    s.status === 'QUEUED' ? { ...s, status: 'RUNNING', startedAt: deps.clock.iso() } : undefined,
  );
  if (started.status !== 'RUNNING') return started;

  try {
    const manifest = await planJob(request, deps);
    await writeJson(deps.store, deps.bucket, keys.manifest, manifest);
    await runChunks(manifest, deps);
    await writeJson(deps.store, deps.bucket, keys.manifest, manifest);
    await deps.invoker.invoke(deps.reducerFunction, { jobId });
    return await readJson<JobStatus>(deps.store, deps.bucket, keys.status).then((r) => r.value);
  } catch (error) {
    return updateStatus(deps.store, deps.bucket, jobId, (s) =>
      TERMINAL_STATES.has(s.status)
        ? undefined
        : { ...s, status: 'FAILED', finishedAt: deps.clock.iso(), error: toErrorInfo(error) },
    );
  }
}

/** Pins the inputs (ETag, VersionId), reads what small inputs and CSV need, and plans. */
export async function planJob(request: JobRequest, deps: CoordinatorDeps): Promise<Manifest> {
  const job = findJob(deps.jobs, request.job);
  const params = parseParams(job, request.params);
  const objects = await resolveInput(request.input, deps.store);
  const totalBytes = objects.reduce((sum, o) => sum + o.size, 0);
  const pinned = objects.map((o) => ({ ...o, gzip: o.key.endsWith('.gz') }));

  // Small inputs are split on record boundaries (one record per task, like executor.map), which
  // needs every record's offset; CSV needs each object's header. Both read pinned bytes.
  const recordSplit = totalBytes <= SMALL_INPUT_BYTES && request.chunkSize === undefined;
  const planObjects = await Promise.all(
    pinned.map(async (o) => {
      const planObject: { size: number; gzip: boolean; recordStarts?: number[] } = {
        size: o.size,
        gzip: o.gzip,
      };
      if (o.size === 0 || o.gzip) return { planObject, header: undefined };
      if (recordSplit) {
        const bytes = await readAll(deps.store.readRange(o, 0, o.size));
        planObject.recordStarts = recordStarts(bytes, job.format);
        const header = job.format === 'csv' ? csvHeader(firstLine(bytes)) : undefined;
        return { planObject, header };
      }
      const header = job.format === 'csv' ? await readHeader(deps.store, o) : undefined;
      return { planObject, header };
    }),
  );
  if (job.format === 'csv' && pinned.some((o) => o.gzip)) {
    throw new ValidationError('gzip input is not supported for csv jobs yet; decompress it first');
  }
  const chunks = planChunks(
    planObjects.map((p) => p.planObject),
    {
      concurrency: request.concurrency,
      ...(request.chunkSize !== undefined && { chunkSize: request.chunkSize }),
      ...(request.chunks !== undefined && { chunks: request.chunks }),
    },
  );
  return {
    jobId: request.jobId,
    job: job.name,
    params,
    format: job.format,
    onBadRecord: request.onBadRecord,
    mapOnly: job.reduce === undefined,
    concurrency: request.concurrency,
    ...(request.chunkSize !== undefined && { chunkSize: request.chunkSize }),
    recordSplit:
      recordSplit && planObjects.every((p) => p.planObject.gzip || p.planObject.recordStarts),
    objects: pinned.map((o, i) => {
      const header = planObjects[i]?.header;
      return header === undefined ? o : { ...o, header };
    }),
    chunks: chunks.map((c) => ({ ...c, attempts: 0 })),
  };
}

/** The objects an input URI names: one key, or every non-empty object under a prefix. */
export async function resolveInput(input: string, store: ObjectStore): Promise<ObjectInfo[]> {
  const uri = parseS3Uri(input);
  if (uri === undefined) {
    throw new ValidationError(
      `input ${JSON.stringify(input)} is not an S3 URI; expected s3://bucket/key or s3://bucket/prefix/`,
    );
  }
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
async function readHeader(store: ObjectStore, object: ObjectInfo): Promise<string[]> {
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

/**
 * Dispatches every chunk with at most `concurrency` in flight. After the first failure no new
 * chunk starts; once in-flight chunks finish it throws the failure of the lowest chunk index,
 * so the reported error is the earliest one in the dataset, whichever finished first.
 */
async function runChunks(manifest: Manifest, deps: CoordinatorDeps): Promise<void> {
  const { bucket, clock } = deps;
  const maxAttempts = deps.maxAttempts ?? 3;
  const maxThrottled = deps.maxThrottledAttempts ?? 20;
  const sleep = deps.sleep ?? defaultSleep;
  const random = deps.random ?? Math.random;
  const total = manifest.chunks.length;
  const counts = { pending: total, running: 0, succeeded: 0, failed: 0, records: 0, bytes: 0 };
  const status = statusWriter(deps, manifest.jobId, counts, total);
  await status.flush();

  let next = 0;
  const failures: { index: number; error: unknown }[] = [];

  const runOne = async (index: number) => {
    const chunk = manifest.chunks[index]!;
    const object = manifest.objects[chunk.object]!;
    const task: ChunkTask = {
      jobId: manifest.jobId,
      job: manifest.job,
      params: manifest.params,
      format: manifest.format,
      onBadRecord: manifest.onBadRecord,
      bucket,
      index,
      object: {
        bucket: object.bucket,
        key: object.key,
        size: object.size,
        etag: object.etag,
        ...(object.versionId !== undefined && { versionId: object.versionId }),
      },
      start: chunk.start,
      end: chunk.end,
      gzip: object.gzip,
      ...(object.header !== undefined && { header: object.header }),
    };
    let throttled = 0;
    for (;;) {
      chunk.attempts += 1;
      const attemptStarted = clock.now();
      try {
        const summary = await deps.invoker.invoke<ChunkSummary>(deps.workerFunction, task);
        chunk.durationMs = Math.round(clock.now() - attemptStarted);
        delete chunk.error;
        counts.records += summary.recordsIn;
        counts.bytes += chunk.end - chunk.start;
        return;
      } catch (error) {
        chunk.error = toErrorInfo(error);
        if (error instanceof ThrottledError && throttled < maxThrottled) {
          // A throttle is not the chunk's fault: it does not use up an attempt.
          throttled += 1;
          chunk.attempts -= 1;
          await sleep(backoff(throttled, random, error.retryAfterSeconds));
          continue;
        }
        const deterministic =
          error instanceof FunctionError ? DETERMINISTIC.has(error.errorType) : false;
        if (deterministic || chunk.attempts >= maxAttempts || failures.length > 0) {
          throw chunkFailure(manifest, index, error);
        }
        await sleep(backoff(chunk.attempts, random));
      }
    }
  };

  const lane = async () => {
    while (failures.length === 0 && next < total) {
      const index = next++;
      counts.pending -= 1;
      counts.running += 1;
      status.touch();
      try {
        await runOne(index);
        counts.succeeded += 1;
      } catch (error) {
        counts.failed += 1;
        failures.push({ index, error });
      } finally {
        counts.running -= 1;
        status.touch();
      }
    }
  };
  const lanes = Math.max(1, Math.min(manifest.concurrency, total));
  await Promise.all(Array.from({ length: lanes }, lane));
  await status.flush();
  if (failures.length > 0) {
    throw failures.reduce((a, b) => (b.index < a.index ? b : a)).error;
  }
}

/** Exponential backoff with full jitter (AWS Architecture Blog), honouring Retry-After. */
export function backoff(attempt: number, random: () => number, retryAfterSeconds?: number) {
  const cap = 10_000;
  const base = 100;
  const jittered = random() * Math.min(cap, base * 2 ** (attempt - 1));
  return Math.max(jittered, (retryAfterSeconds ?? 0) * 1000);
}

/** A chunk's final failure, named so the job's error says which range of which object. */
function chunkFailure(manifest: Manifest, index: number, error: unknown): FanoutError {
  const chunk = manifest.chunks[index]!;
  const object = manifest.objects[chunk.object]!;
  if (error instanceof FunctionError && error.errorType === 'DatasetChangedError') {
    return new DatasetChangedError(object.key, { cause: error, context: { chunk: index } });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new FanoutError(
    error instanceof FanoutError ? error.code : 'CHUNK_FAILED',
    `chunk ${index} (bytes ${chunk.start}-${chunk.end} of ${object.key}) failed after ${chunk.attempts} attempt(s): ${message}`,
    {
      cause: error,
      context: { chunk: index, key: object.key, start: chunk.start, end: chunk.end },
    },
  );
}

/**
 * Coalesces status.json writes: at most one in flight, at most one per interval, and a final
 * flush, so 100,000 finishing chunks do not mean 100,000 S3 writes.
 */
function statusWriter(
  deps: CoordinatorDeps,
  jobId: string,
  counts: {
    pending: number;
    running: number;
    succeeded: number;
    failed: number;
    records: number;
    bytes: number;
  },
  total: number,
) {
  const interval = deps.statusIntervalMs ?? 500;
  let writing: Promise<void> | undefined;
  let dirty = false;
  let last = Number.NEGATIVE_INFINITY;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const write = async () => {
    dirty = false;
    last = deps.clock.now();
    const snapshot = { ...counts };
    await updateStatus(deps.store, deps.bucket, jobId, (s) =>
      TERMINAL_STATES.has(s.status)
        ? undefined
        : {
            ...s,
            chunks: {
              total,
              pending: snapshot.pending,
              running: snapshot.running,
              succeeded: snapshot.succeeded,
              failed: snapshot.failed,
            },
            records: snapshot.records,
            bytes: snapshot.bytes,
          },
    );
  };
  const schedule = () => {
    if (writing !== undefined || timer !== undefined || !dirty) return;
    const wait = Math.max(0, last + interval - deps.clock.now());
    timer = setTimeout(() => {
      timer = undefined;
      writing = write()
        .catch(() => undefined) // progress is best effort; the final flush reports errors
        .finally(() => {
          writing = undefined;
          schedule();
        });
    }, wait);
  };
  return {
    touch() {
      dirty = true;
      schedule();
    },
    async flush() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      while (writing !== undefined) await writing;
      await write();
    },
  };
}
