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
import { chunkSegments, needsRecordStarts, planChunks } from './plan.ts';
import type { Clock, Invoker, ObjectInfo, ObjectStore } from './ports.ts';
import { csvHeader, formatOfKey, type RecordFormat, recordStarts } from './records.ts';
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
  /** Time this invocation has left (Lambda's context.getRemainingTimeInMillis). @default unbounded */
  remainingMs?: () => number;
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
   * Backup attempts for stragglers: a chunk running longer than `factor` × the median of finished
   * chunks (and at least `floorMs`) gets one more attempt while a slot is free, at most `maxExtra`
   * × chunks of them (a cap: what is spent is what straggles). @default enabled, factor 3,
   * floorMs 1000, maxExtra 0.1
   */
  speculation?: { enabled?: boolean; factor?: number; floorMs?: number; maxExtra?: number };
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
  /** Waits between retries; injectable so tests do not sleep. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/**
 * Extra time past the worker's timeout before an unanswered invocation counts as timed out:
 * half the timeout, between 1 s and 30 s (network and queueing, not work).
 */
export function invocationMarginMs(workerTimeoutMs: number): number {
  return Math.min(30_000, Math.max(1_000, workerTimeoutMs / 2));
}

/**
 * A coordinator stops dispatching when its remaining time drops below this: one worker timeout
 * plus its margin (an in-flight chunk may take that long) plus time to write the manifest and
 * invoke its continuation.
 */
export function handOverMs(workerTimeoutMs: number): number {
  return workerTimeoutMs + invocationMarginMs(workerTimeoutMs) + Math.min(5_000, workerTimeoutMs);
}

/** Errors that will fail the same way however often the chunk is retried. */
const DETERMINISTIC = new Set([
  'BadRecordError',
  'CorruptInputError',
  'DatasetChangedError',
  'ValidationError',
  'NotFoundError',
]);

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
    return await driveJob(jobId, request, epoch, { ...deps, store: counted.store }, tally);
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
  const timer = setInterval(beat, deps.heartbeatMs ?? SWEEP_DEFAULTS.heartbeatMs);
  return { stop: () => clearInterval(timer) };
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
    switch (end.reason) {
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
      case 'failed':
        throw end.error;
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
          { timeoutMs: 15 * 60_000 + 30_000 },
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

/** How a run of {@link runChunks} ended. */
type RunEnd = { reason: Exclude<Stop, 'failed'> } | { reason: 'failed'; error: unknown };

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
  // Speculation (stragglers): a chunk that has run far longer than finished ones gets a backup
  // attempt while a slot is free; the first attempt to write its outcome wins (the worker writes
  // it create-only), the other's result is ignored and its part removed by its worker.
  const speculation = {
    on: request.speculation !== false && (deps.speculation?.enabled ?? true),
    factor: deps.speculation?.factor ?? 3,
    floorMs: deps.speculation?.floorMs ?? 1000,
    maxBackups: Math.max(1, Math.ceil(total * (deps.speculation?.maxExtra ?? 0.1))),
    backups: 0,
  };
  /** Durations of finished chunks, for the running median. */
  const finishedMs: number[] = [];
  /** Chunks in flight: when their first attempt started, and how to settle them. */
  const live = new Map<
    number,
    {
      started: number;
      task: () => ChunkTask;
      bytes: number;
      backup: boolean;
      done: boolean;
      won: () => void;
    }
  >();
  let invocations = 0;

  /** Records a chunk's first success (from its own attempts or a backup); false if it had one. */
  const complete = (index: number, summary: ChunkSummary, started: number): boolean => {
    const state = live.get(index);
    if (state === undefined || state.done) return false;
    state.done = true;
    const chunk = manifest.chunks[index]!;
    chunk.durationMs = Math.round(clock.now() - started);
    finishedMs.push(chunk.durationMs);
    counts.records += summary.recordsIn;
    counts.bytes += state.bytes;
    return true;
  };
  /** One worker invocation, counted for the free-slot check and billed for the cost. */
  const invokeWorker = async (task: ChunkTask): Promise<ChunkSummary> => {
    const started = clock.now();
    invocations += 1;
    try {
      const summary = await deps.invoker.invoke<ChunkSummary>(deps.workerFunction, task, {
        timeoutMs: deps.workerTimeoutMs + invocationMarginMs(deps.workerTimeoutMs),
      });
      tally.workers = addUsage(
        tally.workers,
        summary.usage ?? invocationUsage(clock.now() - started, workerMemoryMb),
      );
      return summary;
    } finally {
      invocations -= 1;
    }
  };

  const runOne = async (index: number): Promise<void> => {
    const chunk = manifest.chunks[index]!;
    const segments: TaskSegment[] = chunkSegments(chunk, manifest.objects).map((s) => {
      const { gzip, header } = manifest.objects[s.object]!;
      const segment: TaskSegment = { object: pinned[s.object]!, start: s.start, end: s.end, gzip };
      if (header !== undefined && s.start > 0) segment.header = header;
      return segment;
    });
    const bytes = segments.reduce((sum, s) => sum + s.end - s.start, 0);
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
    const state = {
      started: clock.now(),
      task,
      bytes,
      backup: false,
      done: false,
      won: (): void => undefined,
    };
    live.set(index, state);
    try {
      if (!speculation.on) {
        // No backups: the chunk's own attempts are all there is (and nothing more is allocated
        // per chunk, which 100,000 chunks feel in the coordinator's memory).
        await attemptLoop(index, task, state);
        return;
      }
      const backupWon = new Promise<void>((resolve) => {
        state.won = resolve;
      });
      const attempts = attemptLoop(index, task, state);
      attempts.catch(() => undefined); // a backup may win while these still run
      await Promise.race([attempts, backupWon]);
    } finally {
      live.delete(index);
    }
  };

  /** A chunk's own attempts, with retries; they stop once a backup has won. */
  const attemptLoop = async (
    index: number,
    newTask: () => ChunkTask,
    state: { started: number; done: boolean },
  ): Promise<void> => {
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
      const task = newTask();
      const started = clock.now();
      const failed = (extra: { throttled?: boolean; error?: string }) => {
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
      try {
        const summary = await invokeWorker(task);
        // A duplicate: another attempt's outcome was written first; the chunk is done either way.
        complete(index, summary, state.started);
        return;
      } catch (error) {
        if (state.done) return; // a backup won meanwhile: this attempt's end does not matter
        if (error instanceof ThrottledError && throttled < maxThrottled) {
          // A throttle is not the chunk's fault: it does not use up an attempt.
          failed({ throttled: true });
          throttles += 1;
          throttled += 1;
          chunk.attempts -= 1;
          attemptThisRun -= 1;
          await sleep(backoff(throttled, random, error.retryAfterSeconds));
          continue;
        }
        chunk.errors = [...(chunk.errors ?? []), toErrorInfo(error)];
        failed({ error: error instanceof Error ? error.message : String(error) });
        // A failed invocation is billed for as long as it ran (a throttle, above, is not).
        tally.workers = addUsage(
          tally.workers,
          invocationUsage(clock.now() - started, workerMemoryMb),
        );
        const deterministic = error instanceof FunctionError && DETERMINISTIC.has(error.errorType);
        if (deterministic || attemptThisRun >= maxAttempts || stop === 'failed') {
          throw chunkFailure(manifest, index, error);
        }
        retries += 1;
        await sleep(backoff(attemptThisRun, random));
      }
    }
  };

  /** Starts a backup of the slowest chunks that are far past the running median, bounded. */
  const speculate = () => {
    if (!speculation.on || finishedMs.length < 3) return;
    const sorted = [...finishedMs].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] as number;
    const limit = Math.max(speculation.floorMs, speculation.factor * median);
    const now = clock.now();
    for (const [index, state] of live) {
      // Backups run beside the job's lanes, in a pool of their own as large as their budget: a
      // straggler holds its lane, so waiting for a lane to free up could wait for it.
      if (
        speculation.backups >= speculation.maxBackups ||
        invocations >= lanes + speculation.maxBackups
      ) {
        return;
      }
      if (state.done || state.backup || now - state.started <= limit) continue;
      if (stop !== undefined) return;
      state.backup = true;
      speculation.backups += 1;
      const chunk = manifest.chunks[index]!;
      chunk.backups = (chunk.backups ?? 0) + 1;
      const task = state.task();
      void invokeWorker(task).then(
        (summary) => {
          if (complete(index, summary, state.started)) {
            chunk.backupWon = true;
            state.won();
          }
        },
        (error: unknown) => {
          chunk.failures = [
            ...(chunk.failures ?? []),
            {
              attempt: task.attempt,
              dispatchedAt: task.dispatchedAt as number,
              endedAt: Date.parse(clock.iso()),
              error: `backup: ${error instanceof Error ? error.message : String(error)}`,
            },
          ];
        },
      );
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
    while (stop === undefined && next < todo.length) {
      if (timeShort()) {
        stop = 'continue';
        break;
      }
      await checkStatus();
      if (stop !== undefined || next >= todo.length) break;
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
  const lanes = Math.max(1, Math.min(manifest.concurrency, todo.length));
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
    const tick = Math.max(25, Math.min(250, speculation.floorMs / 4));
    const wait = deps.tick ?? defaultSleep;
    while (dispatching && speculation.on) {
      await wait(tick);
      speculate();
    }
  };
  void ticker();
  while (running.length > 0) await Promise.all(running.splice(0));
  widened = true;
  dispatching = false;
  await status.close();
  deps.onRun?.({ dispatched, retries, throttles });

  if (stop === 'failed' && failure !== undefined) return { reason: 'failed', error: failure.error };
  if (stop === 'cancelled' || stop === 'superseded' || stop === 'continue') return { reason: stop };
  return { reason: 'done' };
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
  let timer: ReturnType<typeof setInterval> | undefined;

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
      timer = setInterval(tick, interval);
      tick();
    },
    async close() {
      if (timer !== undefined) clearInterval(timer);
      while (writing !== undefined) await writing;
      await write();
    },
  };
}
