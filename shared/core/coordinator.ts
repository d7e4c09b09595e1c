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
  noUsage,
  type Usage,
} from './cost.ts';
import { countingStore } from './counting-store.ts';
import {
  DatasetChangedError,
  FanoutError,
  FunctionError,
  NotFoundError,
  ThrottledError,
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
  type ManifestChunk,
  type TaskSegment,
} from './model.ts';
import { orderedMap } from './ordered-map.ts';
import { chunkSegments, needsRecordStarts, planChunks } from './plan.ts';
import type { Clock, Invoker, ObjectInfo, ObjectStore } from './ports.ts';
import { csvHeader, formatOfKey, type RecordFormat, recordStarts } from './records.ts';
import { type SpeculationOptions, StragglerWatch } from './speculation.ts';
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

/** Errors that will fail the same way however often the chunk is retried. */
const DETERMINISTIC = new Set([
  'AccessDeniedError',
  'BadRecordError',
  'CorruptInputError',
  'DatasetChangedError',
  'ValidationError',
  'NotFoundError',
]);

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** A periodic timer in real time (CoordinatorDeps.every). */
const realEvery = (ms: number, callback: () => void) => {
  const timer = setInterval(callback, ms);
  return { stop: () => clearInterval(timer) };
};
const noop = () => undefined;
const SETTLED = Promise.resolve();
/**
 * Backups one chunk may get: a second when the first straggles too (with 1% of invocations
 * slow, one chunk in a hundred backed up would otherwise still end the job late).
 */
const MAX_BACKUPS_PER_CHUNK = 2;

/** A promise and what resolves it (Promise.withResolvers, which Node 20 lacks). */
function deferred<T = void>() {
  let resolve: (value: T) => void = noop;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Thrown by a chunk's retry loop when the job was cancelled or taken over meanwhile. */
const NOT_RETRIED = Symbol('not retried');

/** Why a coordinator run stopped dispatching. */
type Stop = 'done' | 'failed' | 'cancelled' | 'superseded' | 'continue';

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
  workers: Usage;
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
    workers: noUsage(),
    now: () =>
      addUsage(
        tally.workers,
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
      s.epoch === epoch && !TERMINAL_STATES.has(s.status)
        ? { ...s, heartbeatAt: deps.clock.iso() }
        : undefined,
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
    const end = await runChunks(manifest, request, epoch, fresh, deps, tally);
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
          s.epoch === epoch
            ? withUsage({ ...s, continuations: (s.continuations ?? 0) + 1 }, tally, deps, false)
            : undefined,
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
      TERMINAL_STATES.has(s.status) || s.epoch !== epoch
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

/** A chunk in flight: its attempts' state (kept in `live`, for backups, only with speculation on). */
interface LiveChunk {
  index: number;
  /** When its first attempt was dispatched (retries and backups run against this clock). */
  started: number;
  /** A new attempt's task (each call numbers the next attempt). */
  task: () => ChunkTask;
  bytes: number;
  /** A backup waits in the queue for a slot. */
  queued: boolean;
  /** Backups started, and when the latest started: it may straggle too. */
  backups: number;
  backupAt?: number;
  /** Backups running: each resolves true if the chunk then has an outcome. */
  running?: Set<Promise<boolean>>;
  /** An attempt's outcome counted. */
  done: boolean;
  /** Settles when an attempt's outcome counted, whichever attempt it was. */
  finished: Promise<void>;
  finish: () => void;
}

/** How a run of {@link runChunks} ended. */
type RunEnd = { dispatched: number } & (
  | { reason: Exclude<Stop, 'failed'> }
  | { reason: 'failed'; error: unknown }
);

/**
 * Dispatches the chunks without an outcome, at most `concurrency` at a time (the "process
 * pool"), retrying failures with backoff. It stops dispatching when the failures exceed the
 * job's tolerance, when the job is cancelled or taken over, or when this invocation's time runs
 * short; in-flight chunks always finish first. Progress goes to status.json (CAS) every interval.
 */
async function runChunks(
  manifest: Manifest,
  request: JobRequest,
  epoch: number,
  fresh: boolean,
  deps: CoordinatorDeps,
  tally: Tally,
): Promise<RunEnd> {
  const workerMemoryMb = (deps.memoryMb ?? DEPLOYED_MEMORY_MB).worker;
  const { bucket, clock } = deps;
  const maxAttempts = request.maxAttempts ?? 3;
  const maxThrottled = deps.maxThrottledAttempts ?? 50;
  const sleep = deps.sleep ?? defaultSleep;
  const random = deps.random ?? Math.random;
  const keys = jobKeys(manifest.jobId);
  const total = manifest.chunks.length;
  const tolerated = Math.max(
    request.toleratedFailureCount ?? 0,
    Math.floor(((request.toleratedFailurePercent ?? 0) * total) / 100),
  );

  // Durable progress: a chunk is done when its outcome object exists.
  const done = fresh
    ? []
    : [
        ...new Set(
          (await deps.store.list(bucket, `${keys.root}/chunks/`))
            .map((o) => Number(/\/(\d+)\.json$/.exec(o.key)?.[1]))
            .filter((i) => Number.isInteger(i) && i < total),
        ),
      ];
  const counts = { succeeded: done.length, failed: 0, running: 0, records: 0, bytes: 0 };
  for await (const outcome of orderedMap(done.length, 16, (k) =>
    readJson<ChunkOutcome>(deps.store, bucket, keys.outcome(done[k] as number)).then(
      (r) => r.value,
    ),
  )) {
    counts.records += outcome.recordsIn;
    counts.bytes += outcome.bytes;
  }
  const finished = new Set(done);
  const todo = manifest.chunks.filter((c) => !finished.has(c.index)).map((c) => c.index);
  for (const chunk of manifest.chunks) delete chunk.failed;

  let stop: Stop | undefined;
  let failure: { index: number; error: unknown } | undefined;
  // Each run dispatches at least one chunk, so a run that starts short of time still progresses.
  let dispatched = 0;
  let retries = 0;
  let throttles = 0;
  const timeShort = () =>
    dispatched > 0 &&
    deps.remainingMs !== undefined &&
    deps.remainingMs() < handOverMs(deps.workerTimeoutMs);

  const status = statusWriter(deps, manifest.jobId, epoch, total, counts, (observed) => {
    stop ??= observed;
  });
  // The first progress write (totals; a cancel or takeover already there) does not hold up
  // dispatch: lanes stop within one write's time if it reports one.
  status.touch();

  // Each object's pinned identity, built once and shared by every task that reads it.
  const pinned: ObjectInfo[] = manifest.objects.map(({ bucket: b, key, size, etag, versionId }) =>
    versionId === undefined
      ? { bucket: b, key, size, etag }
      : { bucket: b, key, size, etag, versionId },
  );
  // Speculation (stragglers): a chunk that has run far longer than finished chunks of its size
  // gets a backup attempt in the next free slot (a lane takes a due backup before a new chunk);
  // the first attempt to write its outcome wins (the worker writes it create-only), the other's
  // result is ignored and its part removed by its worker.
  const watch =
    request.speculation !== false && deps.speculation?.enabled !== false
      ? new StragglerWatch(total, deps.speculation)
      : undefined;
  /** Chunks in flight: when their first attempt started, and how to settle them. */
  const live = new Map<number, LiveChunk>();
  /** Chunks found straggling, oldest first, waiting for a free slot. */
  const due: number[] = [];
  // Lanes with nothing to dispatch wait here, while chunks still run, for a backup to fall due.
  let changed = deferred();
  const signal = () => {
    changed.resolve();
    changed = deferred();
  };
  // Worker invocations in flight may exceed the lanes by the backup budget: backups run beside
  // the lanes (a job whose every lane holds a straggler still gets them), and an attempt that
  // lost runs on (Lambda cannot stop it) while its lane moves on. A throttle while over the
  // lanes says the function is full: the ceiling drops to what it took, and dispatches wait for
  // one of the job's own invocations to end instead of backing off blindly.
  let invocations = 0;
  let ceiling = Number.POSITIVE_INFINITY; // set with the lanes, below
  const slotWaiters: (() => void)[] = [];
  /** Waits for a slot under the ceiling (first come, first served). */
  const acquire = async () => {
    while (invocations >= ceiling) {
      const { promise, resolve } = deferred();
      slotWaiters.push(resolve);
      await promise;
    }
  };
  /** Throttles that the job's own invocations over its lanes caused (see `ceiling`). */
  const ownThrottles = new WeakSet<object>();

  /** Records a chunk's first success (from its own attempts or a backup); false if it had one. */
  const complete = (index: number, summary: ChunkSummary, state: LiveChunk): boolean => {
    if (state.done) return false;
    state.done = true;
    state.finish();
    const chunk = manifest.chunks[index]!;
    chunk.durationMs = Math.round(clock.now() - state.started);
    watch?.finished(chunk.durationMs, state.bytes);
    counts.records += summary.recordsIn;
    counts.bytes += state.bytes;
    return true;
  };
  /** Notes a failed or throttled attempt in the manifest, for the report. */
  const failedAttempt = (
    chunk: ManifestChunk,
    task: ChunkTask,
    extra: { throttled?: boolean; error?: string },
  ) => {
    chunk.failures = [
      ...(chunk.failures ?? []),
      {
        attempt: task.attempt,
        dispatchedAt: task.dispatchedAt as number,
        endedAt: Date.parse(clock.iso()),
        ...extra,
      },
    ];
  };
  /** One worker invocation, counted for the free-slot check and billed for the cost. */
  const invokeWorker = async (task: ChunkTask, backup = false): Promise<ChunkSummary> => {
    const call = { started: clock.now(), billed: false, task, backup };
    invocations += 1;
    const load = invocations;
    if (watch !== undefined) calls.add(call); // only backup races leave attempts running
    try {
      const summary = await deps.invoker.invoke<ChunkSummary>(deps.workerFunction, task, {
        timeoutMs: deps.workerTimeoutMs + invocationMarginMs(deps.workerTimeoutMs),
      });
      if (!call.billed) {
        tally.workers = addUsage(
          tally.workers,
          summary.usage ?? invocationUsage(clock.now() - call.started, workerMemoryMb),
        );
        if (summary.duplicate === true) lostAttempt(call, Date.parse(clock.iso()));
      }
      return summary;
    } catch (error) {
      if (error instanceof ThrottledError && load > lanes) {
        ceiling = Math.max(lanes, Math.min(ceiling, load - 1));
        ownThrottles.add(error);
      }
      // A failed invocation is billed for as long as it ran; a throttled one is not.
      if (!call.billed && !(error instanceof ThrottledError)) {
        tally.workers = addUsage(
          tally.workers,
          invocationUsage(clock.now() - call.started, workerMemoryMb),
        );
      }
      throw error;
    } finally {
      invocations -= 1;
      calls.delete(call);
      slotWaiters.shift()?.();
    }
  };
  /** Worker invocations in flight, for billing the ones that lost and outlive the run. */
  const calls = new Set<{ started: number; billed: boolean; task: ChunkTask; backup: boolean }>();
  /** Notes, for the report, an attempt whose outcome did not count. */
  const lostAttempt = (call: { task: ChunkTask; backup: boolean }, endedAt?: number) => {
    const chunk = manifest.chunks[call.task.index]!;
    chunk.lost = [
      ...(chunk.lost ?? []),
      {
        attempt: call.task.attempt,
        dispatchedAt: call.task.dispatchedAt as number,
        ...(endedAt !== undefined && { endedAt }),
        ...(call.backup && { backup: true }),
      },
    ];
  };

  const runOne = async (index: number): Promise<void> => {
    const chunk = manifest.chunks[index]!;
    const segments: TaskSegment[] = chunkSegments(chunk, manifest.objects).map((s) => {
      const { gzip, header } = manifest.objects[s.object]!;
      const segment: TaskSegment = { object: pinned[s.object]!, start: s.start, end: s.end, gzip };
      if (header !== undefined && s.start > 0) segment.header = header;
      return segment;
    });
    const task = (): ChunkTask => {
      chunk.attempts += 1;
      return {
        jobId: manifest.jobId,
        job: manifest.job,
        params: manifest.params,
        format: manifest.format,
        ...(manifest.columns !== undefined && { columns: manifest.columns }),
        onBadRecord: manifest.onBadRecord,
        bucket,
        index,
        attempt: chunk.attempts,
        segments,
        dispatchedAt: Date.parse(clock.iso()),
      };
    };
    if (watch === undefined) {
      // No backups: the chunk's own attempts are all there is (and nothing is kept per chunk in
      // flight, which 100,000 chunks feel in the coordinator's memory).
      await attemptLoop(index, liveChunk(index, task, segments));
      return;
    }
    const state = liveChunk(index, task, segments);
    live.set(index, state);
    try {
      const attempts = attemptLoop(index, state);
      attempts.catch(noop); // a backup's outcome may count first, while these still run
      await Promise.race([attempts, state.finished]);
    } catch (error) {
      // The chunk's own attempts failed for good; a backup still running may yet succeed.
      if (!(await anyBackupSucceeds(state))) throw error;
    } finally {
      live.delete(index);
      signal(); // lanes waiting for a backup to fall due may now have nothing left to wait for
    }
  };
  const liveChunk = (
    index: number,
    task: () => ChunkTask,
    segments: readonly TaskSegment[],
  ): LiveChunk => {
    // Without backups nothing waits on `finished`: 100,000 chunks' worth of promises is garbage
    // the coordinator's peak memory feels (bench 4).
    const { promise: finished, resolve: finish } =
      watch === undefined ? { promise: SETTLED, resolve: noop } : deferred();
    return {
      index,
      started: clock.now(),
      task,
      bytes: segments.reduce((sum, s) => sum + s.end - s.start, 0),
      queued: false,
      backups: 0,
      done: false,
      finished,
      finish,
    };
  };

  /** True once a running backup gives the chunk an outcome; false when none is left running. */
  const anyBackupSucceeds = async (state: LiveChunk): Promise<boolean> => {
    while (!state.done && state.running !== undefined && state.running.size > 0) {
      if (await Promise.race(state.running)) return true;
    }
    return state.done;
  };

  /** A chunk's own attempts, with retries; they stop once a backup has won. */
  const attemptLoop = async (index: number, state: LiveChunk): Promise<void> => {
    const chunk = manifest.chunks[index]!;
    let throttled = 0;
    for (let attemptThisRun = 1; ; attemptThisRun++) {
      if (state.done) return;
      // A retry is a new dispatch: none starts once the job is cancelled or taken over.
      if (
        (attemptThisRun > 1 || throttled > 0) &&
        (stop === 'cancelled' || stop === 'superseded')
      ) {
        throw NOT_RETRIED;
      }
      if (watch !== undefined) await acquire();
      if (state.done) return;
      const task = state.task();
      try {
        const summary = await invokeWorker(task);
        // A duplicate: another attempt's outcome was written first; the chunk is done either way.
        complete(index, summary, state);
        return;
      } catch (error) {
        if (state.done) return; // a backup won meanwhile: this attempt's end does not matter
        if (ownThrottles.has(error as object)) {
          // The job's own invocations fill the function: the next slot is when one ends.
          failedAttempt(chunk, task, { throttled: true });
          throttles += 1;
          unnumber(chunk, task);
          attemptThisRun -= 1;
          continue;
        }
        if (error instanceof ThrottledError && throttled < maxThrottled) {
          // A throttle is not the chunk's fault: it does not use up an attempt.
          failedAttempt(chunk, task, { throttled: true });
          throttles += 1;
          throttled += 1;
          unnumber(chunk, task);
          attemptThisRun -= 1;
          await sleep(backoff(throttled, random, error.retryAfterSeconds));
          continue;
        }
        chunk.errors = [...(chunk.errors ?? []), toErrorInfo(error)];
        failedAttempt(chunk, task, {
          error: error instanceof Error ? error.message : String(error),
        });
        const deterministic = error instanceof FunctionError && DETERMINISTIC.has(error.errorType);
        if (deterministic || attemptThisRun >= maxAttempts || stop === 'failed') {
          throw chunkFailure(manifest, index, error);
        }
        retries += 1;
        await sleep(backoff(attemptThisRun, random));
      }
    }
  };

  /**
   * Gives back a throttled attempt's number, so attempts count invocations that ran, unless a
   * later attempt (a backup) took a number meanwhile: numbers name parts, and are never reused.
   */
  const unnumber = (chunk: ManifestChunk, task: ChunkTask) => {
    if (chunk.attempts === task.attempt) chunk.attempts -= 1;
  };

  /** Queues a backup for each chunk that now straggles, within the budget. */
  const speculate = () => {
    if (watch === undefined || stop !== undefined) return;
    const now = clock.now();
    let queued = false;
    for (const state of live.values()) {
      if (!watch.canBackUp) break;
      if (state.done || state.queued || state.backups >= MAX_BACKUPS_PER_CHUNK) continue;
      const limit = watch.limitMs(state.bytes);
      if (limit === undefined) return;
      // Past the limit since the chunk began, or since its latest backup began.
      if (now - (state.backupAt ?? state.started) <= limit) continue;
      state.queued = true;
      watch.backups += 1;
      due.push(state.index);
      queued = true;
    }
    if (queued) signal();
  };

  /**
   * A backup attempt of a straggling chunk: run by a lane in place of a new chunk, or beside the
   * lanes while the job is under its ceiling. Its caller moves on once the chunk has an outcome,
   * whichever attempt wrote it.
   */
  const runBackup = async (index: number): Promise<void> => {
    const state = live.get(index);
    if (state === undefined || state.done) {
      if (watch !== undefined) watch.backups -= 1; // not needed after all: back in the budget
      return;
    }
    const chunk = manifest.chunks[index]!;
    chunk.backups = (chunk.backups ?? 0) + 1;
    state.queued = false;
    state.backups += 1;
    state.backupAt = clock.now();
    const task = state.task();
    const { promise, resolve: settle } = deferred<boolean>();
    state.running ??= new Set();
    state.running.add(promise);
    const invocation = invokeWorker(task, true);
    // The outcome written first counts: the backup's, unless its worker found one already.
    invocation.then((summary) => {
      if (summary.duplicate !== true) chunk.backupWon = true;
    }, noop);
    try {
      const summary = await Promise.race([invocation, state.finished]);
      // Undefined: the chunk's own attempt counted first; this one runs on without its caller.
      if (summary !== undefined) complete(index, summary, state);
      state.running?.delete(promise);
      settle(true);
    } catch (error) {
      state.running?.delete(promise);
      settle(false);
      if (error instanceof ThrottledError) {
        // No slot after all: the backup waits for the next one, first in line.
        failedAttempt(chunk, task, { throttled: true });
        throttles += 1;
        unnumber(chunk, task);
        chunk.backups -= 1;
        state.backups -= 1;
        state.queued = true;
        due.unshift(index);
        if (!ownThrottles.has(error)) await sleep(backoff(1, random, error.retryAfterSeconds));
        return;
      }
      failedAttempt(chunk, task, {
        error: `backup: ${error instanceof Error ? error.message : String(error)}`,
      });
    }
  };

  // Before each dispatch the lane reads status.json, so a cancel (or a takeover) acknowledged
  // before the dispatch stops it: no chunk starts after a cancel was answered. Reads run one at
  // a time; lanes that ask while one is in flight share the next, which starts when it ends and
  // so after they asked. At 1,000 lanes that is a read per GET latency, not one per dispatch.
  let reading: Promise<void> | undefined;
  let nextRead: Promise<void> | undefined;
  const readStop = async () => {
    const s = await readStatus(deps.store, bucket, manifest.jobId).catch(() => undefined);
    if (s === undefined) return; // best effort: the status writer reports errors
    if (s.epoch !== epoch || TERMINAL_STATES.has(s.status)) stop ??= 'superseded';
    else if (s.cancelRequested === true) stop ??= 'cancelled';
  };
  const checkStatus = (): Promise<void> =>
    (nextRead ??= (async () => {
      await reading; // the read in flight may have begun before this lane asked
      nextRead = undefined; // from here on, a lane that asks needs a newer read
      const read = readStop();
      reading = read;
      await read;
    })());

  let next = 0;
  // When each in-flight chunk was dispatched, for widening (below).
  const inFlight = new Map<number, number>();
  const lane = async () => {
    while (stop === undefined) {
      if (timeShort()) {
        stop = 'continue';
        break;
      }
      if (due.length === 0 && next >= todo.length) {
        // Nothing new to dispatch: while chunks still run, one may yet need a backup.
        if (watch === undefined || live.size === 0 || !watch.canBackUp) break;
        await changed.promise;
        continue;
      }
      await checkStatus();
      if (stop !== undefined) break;
      // A straggler's backup goes first: it is what the job is waiting for.
      if (due.length > 0) {
        await acquire();
        const straggler = due.shift();
        if (straggler !== undefined) await runBackup(straggler);
        continue;
      }
      if (next >= todo.length) continue;
      const index = todo[next++] as number;
      dispatched += 1;
      counts.running += 1;
      inFlight.set(index, clock.now());
      status.touch();
      try {
        await runOne(index);
        counts.succeeded += 1;
      } catch (error) {
        if (error === NOT_RETRIED) continue; // left without an outcome, for a later run
        counts.failed += 1;
        manifest.chunks[index]!.failed = true;
        if (failure === undefined || index < failure.index) failure = { index, error };
        if (counts.failed > tolerated) stop = 'failed';
      } finally {
        counts.running -= 1;
        inFlight.delete(index);
      }
    }
  };
  const maxInvocations = deps.maxInvocations ?? Number.POSITIVE_INFINITY;
  const lanes = Math.max(1, Math.min(manifest.concurrency, todo.length, maxInvocations));
  ceiling = Math.min(lanes + (watch?.maxBackups ?? 0), maxInvocations);
  // Lanes open `initialLanes` at a time at first; the rest open once a chunk has been running
  // for `rampMs` while others wait: chunks that wait (on I/O, a sleep) gain from more lanes,
  // short ones that compute finish first and never open them.
  const first = Math.min(lanes, deps.initialLanes ?? lanes);
  const rampMs = deps.rampMs ?? 250;
  const running = Array.from({ length: first }, lane);
  let widened = first === lanes;
  const widen = async () => {
    while (!widened && stop === undefined && next < todo.length) {
      await sleep(rampMs);
      if (widened || stop !== undefined || next >= todo.length) return;
      if (clock.now() - Math.min(...inFlight.values()) >= rampMs) {
        widened = true;
        for (let i = first; i < lanes; i++) running.push(lane());
      }
    }
  };
  void widen();
  let dispatching = true;
  const ticker = async () => {
    if (watch === undefined) return;
    const tick = Math.max(25, Math.min(250, watch.floorMs / 4));
    const wait = deps.tick ?? defaultSleep;
    while (dispatching) {
      await wait(tick);
      speculate();
      // Backups start beside the lanes while the job is under its ceiling; lanes take the rest.
      while (due.length > 0 && invocations < ceiling && stop === undefined) {
        void runBackup(due.shift() as number);
      }
    }
  };
  void ticker();
  while (running.length > 0) await Promise.all(running.splice(0));
  widened = true;
  dispatching = false;
  // Attempts still running lost (every chunk has ended): they are not waited for, and they are
  // billed for their time so far.
  for (const call of calls) {
    call.billed = true;
    lostAttempt(call);
    tally.workers = addUsage(
      tally.workers,
      invocationUsage(clock.now() - call.started, workerMemoryMb),
    );
  }
  await status.close();
  deps.onRun?.({ dispatched, retries, throttles });

  if (stop === 'failed' && failure !== undefined) {
    return { reason: 'failed', error: failure.error, dispatched };
  }
  if (stop === 'cancelled' || stop === 'superseded' || stop === 'continue') {
    return { reason: stop, dispatched };
  }
  return { reason: 'done', dispatched };
}

/** Exponential backoff with full jitter (AWS Architecture Blog), honouring Retry-After. */
export function backoff(attempt: number, random: () => number, retryAfterSeconds?: number) {
  const cap = 10_000;
  const base = 100;
  const jittered = random() * Math.min(cap, base * 2 ** (attempt - 1));
  return Math.max(jittered, (retryAfterSeconds ?? 0) * 1000);
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

/**
 * Keeps status.json current: a CAS write every interval while chunks run (at most one in
 * flight) and a final one. Each write also reads what others wrote: a cancel request or a newer
 * epoch is reported through `onStop`, which is how a running coordinator hears of them.
 */
function statusWriter(
  deps: CoordinatorDeps,
  jobId: string,
  epoch: number,
  total: number,
  counts: { succeeded: number; failed: number; running: number; records: number; bytes: number },
  onStop: (reason: 'cancelled' | 'superseded') => void,
) {
  const interval = deps.statusIntervalMs ?? 500;
  let writing: Promise<void> | undefined;
  let timer: { stop(): void } | undefined;

  const write = async () => {
    const snapshot = { ...counts };
    await updateStatus(deps.store, deps.bucket, jobId, (s) => {
      if (s.epoch !== epoch || TERMINAL_STATES.has(s.status)) {
        onStop('superseded');
        return undefined;
      }
      if (s.cancelRequested === true) onStop('cancelled');
      return {
        ...s,
        chunks: {
          total,
          pending: total - snapshot.succeeded - snapshot.failed - snapshot.running,
          running: snapshot.running,
          succeeded: snapshot.succeeded,
          failed: snapshot.failed,
        },
        records: snapshot.records,
        bytes: snapshot.bytes,
      };
    });
  };
  const tick = () => {
    if (writing !== undefined) return;
    writing = write()
      .catch(() => undefined) // progress is best effort; the final write reports errors
      .finally(() => {
        writing = undefined;
      });
  };
  return {
    write,
    /** Starts the periodic writes; the first one begins at once. */
    touch() {
      if (timer !== undefined) return;
      timer = (deps.every ?? realEvery)(interval, tick);
      tick();
    },
    async close() {
      timer?.stop();
      while (writing !== undefined) await writing;
      await write();
    },
  };
}
