/**
 * The coordinator: pins the inputs, plans the chunks, runs them through the worker function with
 * at most `concurrency` in flight (the "process pool"), keeps status.json current, and hands the
 * finished parts to the reducer. A job that fails ends FAILED with its reason and no result.
 */
import { readAll } from './bytes.ts';
import {
  addUsage,
  DEFAULT_PRICING,
  DEPLOYED_MEMORY_MB,
  estimateCost,
  invocationUsage,
  type Usage,
} from './cost.ts';
import { countingStore } from './counting-store.ts';
import {
  DatasetChangedError,
  FanoutError,
  FunctionError,
  NotFoundError,
  toErrorInfo,
  ValidationError,
} from './errors.ts';
import type { JobEvents } from './events.ts';
import type { AnyJob } from './job.ts';
import { findJob, parseParams } from './job.ts';
import { jobKeys, parseInputUri } from './keys.ts';
import { handOverMs, invocationMarginMs } from './limits.ts';
import { scanOwnedLines } from './lines.ts';
import {
  type ChunkOutcome,
  type ChunkSummary,
  type ChunkTask,
  chunkPlace,
  describePlace,
  type FunctionRun,
  type JobRequest,
  type JobStatus,
  type Manifest,
  type TaskSegment,
} from './model.ts';
import { orderedMap } from './ordered-map.ts';
import { chunkBytes, chunkSegments, needsRecordStarts, planChunks } from './plan.ts';
import type { Clock, Invoker, ObjectInfo, ObjectStore } from './ports.ts';
import { csvHeader, formatOfKey, type RecordFormat, recordStarts } from './records.ts';
import { Billing, ownership, runTasks, type TaskKind } from './run/engine/index.ts';
import type { SpeculationOptions } from './speculation.ts';
import { readJson, readStatus, TERMINAL_STATES, updateStatus, writeJson } from './status.ts';
import { SWEEP_DEFAULTS } from './sweep.ts';

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
  /** This coordinator's own function, invoked (Event) to continue a long job. */
  coordinatorFunction: string;
  /** The worker function's timeout: an invocation unanswered by then plus a margin is a timeout. */
  workerTimeoutMs: number;
  /**
   * The reducer function's timeout: the coordinator waits for the reducer that long plus a
   * margin, and hands over to a continuation first when it has less time left than that.
   * @default 15 minutes
   */
  reducerTimeoutMs?: number;
  /** Time this invocation has left (Lambda's context.getRemainingTimeInMillis). @default unbounded */
  remainingMs?: () => number;
  /**
   * The most worker invocations in flight, backups included, whatever the job's concurrency:
   * each holds a socket, and a Lambda execution environment has 1,024 file descriptors.
   * @default unbounded
   */
  maxInvocations?: number;
  /** Attempts per chunk while the worker function throttles (429). @default 50 */
  maxThrottledAttempts?: number;
  /** Milliseconds between status.json writes while the job runs. @default 500 */
  statusIntervalMs?: number;
  /**
   * Milliseconds between heartbeats (`heartbeatAt` in status.json), written from takeover to
   * the end of the run, planning and reducing included, so the sweeper can tell a live
   * coordinator from a lost one. @default 10_000
   */
  heartbeatMs?: number;
  /**
   * Lanes opened at first; the others open once a chunk has run `rampMs` while chunks wait.
   * The local runtime opens one per core, so that tiny chunks that compute do not start a
   * sandbox each. @default all of the job's concurrency at once
   */
  initialLanes?: number;
  /** See `initialLanes`. @default 250 */
  rampMs?: number;
  /**
   * Memory of the coordinator and worker functions in MB, for the cost estimate (a failed
   * worker attempt is billed for its measured duration). @default DEPLOYED_MEMORY_MB
   */
  memoryMb?: { coordinator: number; worker: number };
  /** Region and architecture whose prices the cost estimate uses. @default us-east-1, arm64 */
  pricing?: { region: string; architecture: 'arm64' | 'x86_64' };
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
  /**
   * Backup attempts for stragglers: a chunk running longer than `factor` × the median time of
   * finished chunks of its size (and at least `floorMs`) gets one more attempt in the next free
   * slot, at most `maxExtra` × chunks of them (a cap: what is spent is what straggles).
   * @default enabled, factor 3, floorMs 1000, maxExtra 0.05 (SPECULATION_DEFAULTS)
   */
  speculation?: SpeculationOptions;
  /**
   * Waits between looks for stragglers: real time by default, even where `sleep` is stubbed to
   * return at once (a zero wait would spin); the simulation passes its virtual clock's.
   */
  tick?: (ms: number) => Promise<void>;
  /** Told, when a run stops dispatching, what it dispatched, retried and was throttled on. */
  onRun?: (run: { dispatched: number; retries: number; throttles: number }) => void;
  /**
   * Where each row group of a whole Parquet file begins (shared/adapters/parquet.ts), to deal a
   * small Parquet input by row group. @default Parquet input is refused
   */
  parquetRowGroups?: (bytes: Uint8Array) => Promise<number[]>;
  /**
   * Runs `callback` every `ms` until stopped: the heartbeat and the progress writes. Real time by
   * default; the simulation passes its virtual clock's, so that its request counts do not depend
   * on how fast the machine runs it.
   */
  every?: (ms: number, callback: () => void) => { stop(): void };
  /** Waits between retries; injectable so tests do not sleep. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** A periodic timer in real time (CoordinatorDeps.every). */
const realEvery = (ms: number, callback: () => void) => {
  const timer = setInterval(callback, ms);
  return { stop: () => clearInterval(timer) };
};

/**
 * Runs a job, or the rest of it. Every run takes the job over by raising its epoch (CAS on
 * status.json); chunks whose outcome object exists are done and never run again, so a run that
 * follows a crash, a continuation or a redrive picks up exactly what is left. Failures of the
 * job itself end in a FAILED status rather than an exception, so an asynchronous invocation is
 * not retried into running the job twice; only a failure to record the outcome throws.
 */
export async function coordinateJob(jobId: string, deps: CoordinatorDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const counted = countingStore(deps.store);
  const tally = tallyOf(deps, counted.requests);
  deps = { ...deps, store: counted.store };
  let epoch = 0;
  // The request and the takeover are independent: one round trip instead of two.
  const [{ value: request }, taken] = await Promise.all([
    readJson<JobRequest>(deps.store, deps.bucket, keys.job),
    updateStatus(
      deps.store,
      deps.bucket,
      jobId,
      (s) => {
        if (TERMINAL_STATES.has(s.status)) return undefined;
        if (s.cancelRequested === true) {
          return { ...s, status: 'CANCELLED', finishedAt: deps.clock.iso() };
        }
        epoch = (s.epoch ?? 0) + 1;
        const now = deps.clock.iso();
        return { ...s, status: 'RUNNING', startedAt: s.startedAt ?? now, epoch, heartbeatAt: now };
      },
      { events: deps.events },
    ),
  ]);
  if (taken.status !== 'RUNNING' || taken.epoch !== epoch) return taken;
  const heart = heartbeat(jobId, epoch, deps);
  try {
    return await driveJob(jobId, request, epoch, deps, tally);
  } finally {
    heart.stop();
  }
}

/**
 * What this coordinator run has used so far, for the job's cost: its own duration and S3
 * requests, and its workers' invocations (their own reports, or for a failed attempt its
 * measured duration).
 */
interface Tally {
  /** The workers' invocations (the engine charges them). */
  billing: Billing;
  /** This run's usage until now, its workers' included. */
  now(): Usage;
  /** This run as a record, ending now. */
  run(epoch: number): FunctionRun;
}

function tallyOf(deps: CoordinatorDeps, requests: Usage['s3Requests']): Tally {
  const started = deps.clock.now();
  const startedAt = Date.parse(deps.clock.iso());
  const memory = deps.memoryMb ?? DEPLOYED_MEMORY_MB;
  const tally: Tally = {
    billing: new Billing(deps.clock, memory.worker),
    now: () =>
      addUsage(
        tally.billing.usage,
        invocationUsage(deps.clock.now() - started, memory.coordinator, requests),
      ),
    run: (epoch) => ({
      role: 'coordinator',
      epoch,
      startedAt,
      endedAt: Date.parse(deps.clock.iso()),
      billedMs: Math.ceil(deps.clock.now() - started),
      memoryMb: memory.coordinator,
    }),
  };
  return tally;
}

/** The status with this run's usage added, and (for a job that ends) its cost. */
function withUsage(s: JobStatus, tally: Tally, deps: CoordinatorDeps, ending: boolean): JobStatus {
  const usage = addUsage(s.usage, tally.now());
  const runs = [...(s.runs ?? []), tally.run(s.epoch ?? 0)];
  return ending
    ? { ...s, usage, runs, cost: estimateCost(usage, deps.pricing ?? DEFAULT_PRICING) }
    : { ...s, usage, runs };
}

/**
 * Keeps `heartbeatAt` current while this run owns the job (best effort: a missed beat only
 * brings the sweeper closer; twelve in a row let it take the job over).
 */
function heartbeat(jobId: string, epoch: number, deps: CoordinatorDeps) {
  const beat = () =>
    updateStatus(deps.store, deps.bucket, jobId, (s) =>
      ownership(s, epoch) === 'superseded' ? undefined : { ...s, heartbeatAt: deps.clock.iso() },
    ).catch(() => undefined);
  return (deps.every ?? realEvery)(deps.heartbeatMs ?? SWEEP_DEFAULTS.heartbeatMs, () => {
    void beat();
  });
}

/** The run after its takeover: plan or read the plan, run the chunks, reduce or end the job. */
async function driveJob(
  jobId: string,
  request: JobRequest,
  epoch: number,
  deps: CoordinatorDeps,
  tally: Tally,
): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  // Epoch 1: no run before this one got past its takeover, so there is no manifest and no
  // chunk outcome yet; a fresh job skips looking for them.
  const fresh = epoch === 1;

  try {
    const plan = async () => {
      const planned = await planJob(request, deps);
      await writeJson(deps.store, deps.bucket, keys.manifest, planned);
      return planned;
    };
    const manifest = fresh
      ? await plan()
      : await readJson<Manifest>(deps.store, deps.bucket, keys.manifest)
          .then((r) => r.value)
          .catch((error: unknown) => {
            if (!(error instanceof NotFoundError)) throw error;
            return plan();
          });
    const end = await runTasks(mapTasks(manifest, deps), {
      store: deps.store,
      invoker: deps.invoker,
      clock: deps.clock,
      bucket: deps.bucket,
      jobId: manifest.jobId,
      epoch,
      fresh,
      concurrency: manifest.concurrency,
      maxAttempts: request.maxAttempts ?? 3,
      tolerated: tolerance(request, manifest.chunks.length),
      billing: tally.billing,
      shortOfTime: () =>
        deps.remainingMs !== undefined && deps.remainingMs() < handOverMs(deps.workerTimeoutMs),
      ...(request.speculation !== false &&
        deps.speculation?.enabled !== false && { speculation: deps.speculation ?? {} }),
      ...pick(deps, [
        'maxInvocations',
        'initialLanes',
        'rampMs',
        'statusIntervalMs',
        'every',
        'sleep',
        'tick',
        'random',
        'onRun',
      ]),
      ...(deps.maxThrottledAttempts !== undefined && { maxThrottled: deps.maxThrottledAttempts }),
    });
    // A run that was taken over leaves the manifest to the run that owns the job now.
    if (end.reason === 'superseded') return readStatus(deps.store, deps.bucket, jobId);
    await writeJson(deps.store, deps.bucket, keys.manifest, manifest);
    if (end.reason === 'failed') throw end.error;
    const reducerMs = deps.reducerTimeoutMs ?? 900_000;
    // Waiting for the reducer takes its timeout and margins: a run that dispatched chunks and
    // has less time left than that hands the wait to a continuation, which has its whole
    // timeout (the stack checks that the reducer's fits in it). A run that dispatched nothing
    // waits with what it has, so that continuations cannot follow one another for ever.
    const reason =
      end.reason === 'done' &&
      end.dispatched > 0 &&
      deps.remainingMs !== undefined &&
      deps.remainingMs() < handOverMs(reducerMs)
        ? 'continue'
        : end.reason;
    switch (reason) {
      case 'continue':
        await updateStatus(deps.store, deps.bucket, jobId, (s) =>
          ownership(s, epoch) === 'superseded'
            ? undefined
            : withUsage({ ...s, continuations: (s.continuations ?? 0) + 1 }, tally, deps, false),
        );
        await deps.invoker.invokeEvent(deps.coordinatorFunction, { jobId });
        return readStatus(deps.store, deps.bucket, jobId);
      case 'cancelled':
        return finish(jobId, epoch, deps, (s) =>
          withUsage({ ...s, status: 'CANCELLED' }, tally, deps, true),
        );
      case 'done':
        // The reducer ends the job, so it prices it: it gets this run's usage, and the memory
        // of this coordinator, which is billed while it waits for the reducer.
        await deps.invoker.invoke(
          deps.reducerFunction,
          {
            jobId,
            usage: tally.now(),
            coordinatorRun: tally.run(epoch),
            waitingMemoryMb: (deps.memoryMb ?? DEPLOYED_MEMORY_MB).coordinator,
            pricing: deps.pricing ?? DEFAULT_PRICING,
          },
          {
            timeoutMs: Math.min(
              reducerMs + invocationMarginMs(reducerMs),
              // Never past this invocation's own end: a FAILED status is still written then.
              deps.remainingMs === undefined
                ? Number.POSITIVE_INFINITY
                : Math.max(1_000, deps.remainingMs() - 2_000),
            ),
          },
        );
        return readStatus(deps.store, deps.bucket, jobId);
    }
  } catch (error) {
    return finish(jobId, epoch, deps, (s) =>
      // A cancel that arrived while the reducer ran makes the reducer refuse: that is a cancel.
      withUsage(
        s.cancelRequested === true
          ? { ...s, status: 'CANCELLED' }
          : { ...s, status: 'FAILED', error: toErrorInfo(error) },
        tally,
        deps,
        true,
      ),
    );
  }
}

/** Ends the job, unless another run took it over or it has already ended. */
function finish(
  jobId: string,
  epoch: number,
  deps: CoordinatorDeps,
  change: (s: JobStatus) => JobStatus,
) {
  return updateStatus(
    deps.store,
    deps.bucket,
    jobId,
    (s) =>
      ownership(s, epoch) === 'superseded'
        ? undefined
        : { ...change(s), finishedAt: deps.clock.iso() },
    { events: deps.events },
  );
}

/**
 * Pins the inputs (ETag, VersionId), reads what the plan needs, and plans: the record offsets of
 * a small input that must be cut between records, and the header of every CSV object that some
 * chunk enters past its first line (a chunk that reads an object from byte 0 reads it itself).
 */
export async function planJob(request: JobRequest, deps: CoordinatorDeps): Promise<Manifest> {
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
  const options = {
    concurrency: request.concurrency,
    ...(request.chunkSize !== undefined && { chunkSize: request.chunkSize }),
    ...(request.chunks !== undefined && { chunks: request.chunks }),
    guidedTail: request.guidedTail === true,
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
  const chunks = planChunks(
    pinned.map((o, i) => {
      const recordStartsOf = starts[i];
      return recordStartsOf === undefined
        ? { size: o.size, gzip: o.gzip }
        : { size: o.size, gzip: o.gzip, recordStarts: recordStartsOf };
    }),
    options,
  );
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
    objects: pinned.map((o, i) => {
      const header = headers.get(i);
      return header === undefined ? o : { ...o, header };
    }),
    chunks: chunks.map((c) => ({ ...c, attempts: 0 })),
  };
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

/** A chunk's final failure, named so the job's error says which bytes of which objects. */
function chunkFailure(manifest: Manifest, index: number, error: unknown): FanoutError {
  const chunk = manifest.chunks[index]!;
  const place = chunkPlace(chunk, manifest.objects);
  if (error instanceof FunctionError && error.errorType === 'DatasetChangedError') {
    // The worker's message names the object that changed; the chunk may read several.
    const changed =
      /input object (.+) changed while the job ran/.exec(error.message)?.[1] ?? place.key;
    return new DatasetChangedError(changed, { cause: error, context: { chunk: index } });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new FanoutError(
    error instanceof FanoutError ? error.code : 'CHUNK_FAILED',
    `chunk ${index} (${describePlace(place)}) failed after ${chunk.attempts} attempt(s): ${message}`,
    { cause: error, context: { chunk: index, ...place } },
  );
}

/** Failed chunks a job tolerates: the larger of its count and its share of all chunks. */
function tolerance(request: JobRequest, total: number): number {
  return Math.max(
    request.toleratedFailureCount ?? 0,
    Math.floor(((request.toleratedFailurePercent ?? 0) * total) / 100),
  );
}

/** The keys of `source` among `keys` that are set. */
function pick<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}

/**
 * The map stage as a kind of task: one task per chunk of the manifest, invoking the worker with
 * a ChunkTask (references to its byte ranges, never records), done once its outcome object
 * `chunks/{i}.json` exists.
 */
function mapTasks(manifest: Manifest, deps: CoordinatorDeps): TaskKind<ChunkTask, ChunkSummary> {
  const keys = jobKeys(manifest.jobId);
  const total = manifest.chunks.length;
  // Each object's pinned identity, built once and shared by every task that reads it.
  const pinned: ObjectInfo[] = manifest.objects.map(({ bucket: b, key, size, etag, versionId }) =>
    versionId === undefined
      ? { bucket: b, key, size, etag }
      : { bucket: b, key, size, etag, versionId },
  );
  return {
    functionName: deps.workerFunction,
    timeoutMs: deps.workerTimeoutMs,
    records: manifest.chunks,
    size: (index) => chunkBytes(manifest.chunks[index]!, manifest.objects),
    prepare(index) {
      const segments: TaskSegment[] = chunkSegments(manifest.chunks[index]!, manifest.objects).map(
        (s) => {
          const { gzip, header } = manifest.objects[s.object]!;
          const segment: TaskSegment = {
            object: pinned[s.object]!,
            start: s.start,
            end: s.end,
            gzip,
          };
          if (header !== undefined && s.start > 0) segment.header = header;
          return segment;
        },
      );
      return (attempt, dispatchedAt) => ({
        jobId: manifest.jobId,
        job: manifest.job,
        params: manifest.params,
        format: manifest.format,
        ...(manifest.columns !== undefined && { columns: manifest.columns }),
        onBadRecord: manifest.onBadRecord,
        bucket: deps.bucket,
        index,
        attempt,
        segments,
        dispatchedAt,
      });
    },
    recordsOf: (summary) => summary.recordsIn,
    async finished() {
      const indexes = [
        ...new Set(
          (await deps.store.list(deps.bucket, `${keys.root}/chunks/`))
            .map((o) => Number(/\/(\d+)\.json$/.exec(o.key)?.[1]))
            .filter((i) => Number.isInteger(i) && i < total),
        ),
      ];
      let records = 0;
      let bytes = 0;
      for await (const outcome of orderedMap(indexes.length, 16, (k) =>
        readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(indexes[k] as number)).then(
          (r) => r.value,
        ),
      )) {
        records += outcome.recordsIn;
        bytes += outcome.bytes;
      }
      return { indexes, records, bytes };
    },
    failure: (index, error) => chunkFailure(manifest, index, error),
  };
}
