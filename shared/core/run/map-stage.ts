/**
 * The map stage as a kind of task for the engine: one task per chunk of the manifest, invoking
 * the worker with a ChunkTask (references to its byte ranges, never records), done once its
 * outcome object `chunks/{i}.json` exists (written create-only by the attempt that finishes
 * first). Its failure names the chunk's bytes and objects.
 */
import { concatBytes } from '../base/bytes.ts';
import {
  DatasetChangedError,
  FanoutError,
  FunctionError,
  InvocationTimeoutError,
} from '../base/errors.ts';
import { handOverMs } from '../base/limits.ts';
import { orderedMap } from '../base/parallel.ts';
import type { Clock, Invoker, ObjectInfo, ObjectStore } from '../base/ports.ts';
import { ownedLineStarts } from '../data/lines.ts';
import { chunkBytes, chunkSegments, cutAtRecord, segmentPieces, splitChunk } from '../data/plan.ts';
import {
  type ChunkOutcome,
  type ChunkSummary,
  type ChunkTask,
  chunkPlace,
  describePlace,
  type JobRequest,
  type Kept,
  type Manifest,
  type ManifestChunk,
  type Pack,
  type TaskSegment,
} from '../model/documents.ts';
import type { AnyJob } from '../model/job.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';
import { type Place, pieceId, pieceIdentity, readIndex, writeIndex } from './cache.ts';
import {
  type Billing,
  type EngineDeps,
  type RunEnd,
  runTasks,
  type TaskKind,
} from './engine/index.ts';
import type { SpeculationOptions } from './speculation.ts';
import { CacheMissError, runChunk } from './worker.ts';

/** What the map stage needs (CoordinatorDeps has it all). */
export interface MapStageDeps {
  store: ObjectStore;
  invoker: Invoker;
  clock: Clock;
  /** The bucket that holds jobs/. */
  bucket: string;
  workerFunction: string;
  /** The worker function's timeout: an invocation unanswered by then plus a margin is a timeout. */
  workerTimeoutMs: number;
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
   * Lanes opened at first; the others open once a chunk has run `rampMs` while chunks wait. The
   * local runtime opens one per core, so that tiny chunks that compute do not start a sandbox
   * each. A plan of one task per item of a small input (Manifest.taskPerItem) opens every lane
   * at once.
   * @default all of the job's concurrency at once
   */
  initialLanes?: number;
  /** See `initialLanes`. @default 250 */
  rampMs?: number;
  /**
   * Backup attempts for stragglers: a chunk running longer than `factor` × the median time of
   * finished chunks of its size (and at least `floorMs`) gets one more attempt in the next free
   * slot, at most `maxExtra` × chunks of them (a cap: what is spent is what straggles).
   * @default enabled, factor 3, floorMs 1000, maxExtra 0.05 (SPECULATION_DEFAULTS)
   */
  speculation?: SpeculationOptions;
  /**
   * Waits that must pass time, between looks for stragglers and while the lanes ramp up: real
   * time by default, even where `sleep` is stubbed to return at once (a zero wait would spin);
   * the simulation passes its virtual clock's.
   */
  tick?: (ms: number) => Promise<void>;
  /** Told, when a run stops dispatching, what it dispatched, retried and was throttled on. */
  onRun?: (run: { dispatched: number; retries: number; throttles: number }) => void;
  /**
   * Runs `callback` every `ms` until stopped: the heartbeat and the progress writes. Real time by
   * default; the simulation passes its virtual clock's, so that its request counts do not depend
   * on how fast the machine runs it.
   */
  every?: (ms: number, callback: () => void) => { stop(): void };
  /** Waits between retries (and throttled attempts); injectable so tests do not sleep. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /**
   * The job registry, to make here (with no worker) the outcome of a chunk whose every piece is
   * in the cache. @default such chunks run in a worker, which takes every piece from the cache
   */
  jobs?: ReadonlyMap<string, AnyJob>;
}

/**
 * Runs the chunks of the manifest that have no outcome yet through the engine (a plain
 * function: the engine's promise is returned as it is).
 */
export async function runMapStage(
  manifest: Manifest,
  request: JobRequest,
  run: { epoch: number; fresh: boolean; billing: Billing },
  deps: MapStageDeps,
): Promise<RunEnd> {
  const reuse = manifest.cache === undefined ? undefined : await reuseOf(manifest, deps);
  const end = await runTasks(
    mapTasks(manifest, deps, reuse),
    engineDeps(manifest, request, run, deps),
  );
  // The index is written whenever this run ends the stage, a failed or cancelled one too: the
  // rerun after a bad object was fixed reads what the other chunks kept. A continuation (or a
  // run taken over) leaves it to the run that ends the stage. Best effort: a job whose index
  // could not be written only costs the next job its reuse.
  if (reuse !== undefined && end.reason !== 'continue' && end.reason !== 'superseded') {
    await reuse.writeIndex().catch(() => undefined);
  }
  return end;
}

/**
 * Reuse in the map stage: where each piece of each chunk has its entry (from the newest index
 * under the job's prefix), what the chunks of this job keep, and, once they are all done, this
 * job's own index: each piece of its input, where its entry lies now.
 */
export interface StageReuse {
  /** Chunk `index`'s packs and piece places, for its task. */
  placesOf(index: number): NonNullable<ChunkTask['cache']>;
  /** A chunk's winning attempt kept these pieces. */
  kept(kept: Kept | undefined): void;
  writeIndex(): Promise<void>;
}

async function reuseOf(manifest: Manifest, deps: MapStageDeps): Promise<StageReuse> {
  const prefix = (manifest.cache as NonNullable<Manifest['cache']>).prefix;
  const known = await readIndex(prefix, deps);
  // Each planned chunk's piece ids, in order (a split chunk's parts have pieces of their own,
  // found in no index: they are read, and kept).
  const ids = await Promise.all(
    manifest.chunks.map((chunk) =>
      Promise.all(
        chunkSegments(chunk, manifest.objects).flatMap((s) => {
          const object = manifest.objects[s.object]!;
          return segmentPieces(s, object).map((p) =>
            pieceId(pieceIdentity(object, object.lineage, p.end), p.start, p.end),
          );
        }),
      ),
    ),
  );
  const kept = new Map<string, Place>();
  return {
    placesOf(index) {
      const packs: Pack[] = [];
      const at = (ids[index] ?? []).map((id): [number, number, number] | 0 => {
        const place = known.get(id);
        if (place === undefined) return 0;
        let n = packs.findIndex((p) => p.key === place.pack.key);
        if (n < 0) n = packs.push(place.pack) - 1;
        return [n, place.offset, place.length];
      });
      return { prefix, packs, at };
    },
    kept(k) {
      for (const [id, offset, length] of k?.pieces ?? [])
        kept.set(id, { pack: k!.pack, offset, length });
    },
    writeIndex() {
      const places = new Map<string, Place>();
      for (const chunk of ids) {
        for (const id of chunk) {
          const place = kept.get(id) ?? known.get(id);
          if (place !== undefined) places.set(id, place);
        }
      }
      // A split chunk's parts' pieces too.
      for (const [id, place] of kept) places.set(id, place);
      return writeIndex(prefix, manifest.jobId, places, deps);
    },
  };
}

/** The engine's settings for a stage of the job: the map chunks', and a keyed job's partitions'. */
export function engineDeps(
  manifest: Manifest,
  request: JobRequest,
  run: { epoch: number; fresh: boolean; billing: Billing },
  deps: MapStageDeps,
): EngineDeps {
  return {
    store: deps.store,
    invoker: deps.invoker,
    clock: deps.clock,
    bucket: deps.bucket,
    jobId: manifest.jobId,
    epoch: run.epoch,
    fresh: run.fresh,
    concurrency: manifest.concurrency,
    maxAttempts: request.maxAttempts ?? 3,
    ...(manifest.codeErrorAttempts !== undefined && {
      jobCodeAttempts: manifest.codeErrorAttempts,
    }),
    tolerated: tolerance(request, manifest.chunks.length),
    billing: run.billing,
    // A run dispatches until one worker timeout and its margins are left (shared/core/base/limits.ts).
    shortOfTime: () =>
      deps.remainingMs !== undefined && deps.remainingMs() < handOverMs(deps.workerTimeoutMs),
    ...(request.speculation !== false &&
      deps.speculation?.enabled !== false && { speculation: deps.speculation ?? {} }),
    // One task per item of a small input (executor.map's one call per item) opens every lane at
    // once: its few tasks are what the job is, and they tend to wait (I/O, a sleep). Any other
    // plan ramps up from `initialLanes`: tasks that compute finish before more lanes would help.
    ...(manifest.taskPerItem !== true && pick(deps, ['initialLanes'])),
    ...pick(deps, [
      'maxInvocations',
      'rampMs',
      'statusIntervalMs',
      'every',
      'sleep',
      'tick',
      'random',
      'onRun',
    ]),
    ...(deps.maxThrottledAttempts !== undefined && { maxThrottled: deps.maxThrottledAttempts }),
  };
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
export function mapTasks(
  manifest: Manifest,
  deps: MapStageDeps,
  reuse?: StageReuse,
): TaskKind<ChunkTask, ChunkSummary> {
  const keys = jobKeys(manifest.jobId);
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
          const { gzip, header, lineage } = manifest.objects[s.object]!;
          const segment: TaskSegment = {
            object: pinned[s.object]!,
            start: s.start,
            end: s.end,
            gzip,
          };
          if (header !== undefined && s.start > 0) segment.header = header;
          if (lineage !== undefined && manifest.cache !== undefined) segment.lineage = lineage;
          return segment;
        },
      );
      return (attempt, dispatchedAt) => ({
        jobId: manifest.jobId,
        job: manifest.job,
        params: manifest.params,
        format: manifest.format,
        ...(manifest.columns !== undefined && { columns: manifest.columns }),
        ...(manifest.keyed !== undefined && { buckets: manifest.keyed.buckets }),
        ...(reuse !== undefined && { cache: reuse.placesOf(index) }),
        onBadRecord: manifest.onBadRecord,
        bucket: deps.bucket,
        index,
        attempt,
        segments,
        dispatchedAt,
      });
    },
    recordsOf: (summary) => summary.recordsIn,
    won: (_, summary) => reuse?.kept(summary.kept),
    reuseOf: (summary) => ({
      tasks: summary.reused?.chunk === true ? 1 : 0,
      pieces: summary.reused?.segments ?? 0,
      processed: summary.bytesProcessed ?? 0,
    }),
    ...(deps.jobs !== undefined &&
      manifest.cache !== undefined && { reuse: (task) => reuseChunk(task, deps) }),
    async finished() {
      const total = manifest.chunks.length;
      // A split chunk's outcome (a backup's, written after the split) does not count: its
      // parts' do.
      const indexes = [
        ...new Set(
          (await deps.store.list(deps.bucket, `${keys.root}/chunks/`))
            .map((o) => Number(/\/(\d+)\.json$/.exec(o.key)?.[1]))
            .filter((i) => Number.isInteger(i) && i < total && !manifest.chunks[i]?.split),
        ),
      ];
      let records = 0;
      let bytes = 0;
      const tally = { tasks: 0, pieces: 0, processed: 0 };
      for await (const outcome of orderedMap(indexes.length, 16, (k) =>
        readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(indexes[k] as number)).then(
          (r) => r.value,
        ),
      )) {
        records += outcome.recordsIn;
        bytes += outcome.bytes;
        tally.tasks += outcome.reused?.chunk === true ? 1 : 0;
        tally.pieces += outcome.reused?.segments ?? 0;
        tally.processed += outcome.bytesProcessed ?? outcome.bytes;
        // An earlier run's chunks kept pieces too: this job's index names them.
        reuse?.kept(outcome.kept);
      }
      return { indexes, records, bytes, reuse: tally };
    },
    failure: (index, error) => chunkFailure(manifest, index, error),
    split: splitter(manifest, pinned, deps),
  };
}

/**
 * A chunk whose every piece the newest index places, made here from the entries with no
 * worker: the worker's own code, told to read nothing but entries. Undefined when some piece
 * must be read after all (an entry gone or unsound since): a worker runs the chunk.
 */
async function reuseChunk(task: ChunkTask, deps: MapStageDeps): Promise<ChunkSummary | undefined> {
  const at = task.cache?.at;
  const pieces = task.segments.reduce(
    (n, s) => n + segmentPieces(s, { size: s.object.size, gzip: s.gzip }).length,
    0,
  );
  if (at === undefined || at.length !== pieces || at.includes(0)) return undefined;
  try {
    return await runChunk(
      { ...task, onlyCached: true },
      {
        store: deps.store,
        jobs: deps.jobs as ReadonlyMap<string, AnyJob>,
        clock: deps.clock,
        gunzip: () => {
          throw new CacheMissError(task.index);
        },
      },
    );
  } catch (error) {
    if (error instanceof CacheMissError) return undefined;
    throw error;
  }
}

/**
 * Splits a chunk that ran out of memory or time (TaskKind.split): in two by bytes while it is
 * above the floor or reads several objects, then, for a line format, between its records, which
 * takes one read of its (at most floor) bytes. The manifest, with the parts, is written before
 * they run, so that a coordinator that resumes the job runs the parts, not the chunk again.
 * Writes go one at a time.
 */
function splitter(
  manifest: Manifest,
  pinned: readonly ObjectInfo[],
  deps: MapStageDeps,
): (index: number, error: unknown) => Promise<number[]> {
  const persist = manifestWriter(manifest, deps);
  return async (index, error) => {
    const chunk = manifest.chunks[index]!;
    let starts: number[] | undefined;
    let halves = splitChunk(chunk, manifest.objects);
    if (halves === undefined && lineCuttable(manifest, chunk)) {
      starts = await recordStartsOf(manifest, chunk, pinned[chunk.object]!, deps);
      halves = cutAtRecord(chunk, starts);
    }
    if (halves === undefined) throw tooBig(manifest, index, error, starts);
    const parts = halves.map((half) => {
      const part = manifest.chunks.length;
      manifest.chunks.push({ ...half, index: part, attempts: 0, from: index });
      return part;
    });
    chunk.split = parts;
    await persist();
    return parts;
  };
}

/**
 * Writes the manifest as it is now, one write at a time (a split records its parts before they
 * run, so that a coordinator that resumes the job runs the parts, not the task again).
 */
export function manifestWriter(
  manifest: Manifest,
  deps: Pick<MapStageDeps, 'store' | 'bucket'>,
): () => Promise<void> {
  let written: Promise<unknown> = Promise.resolve();
  return () => {
    const write = written.then(() =>
      writeJson(deps.store, deps.bucket, jobKeys(manifest.jobId).manifest, manifest),
    );
    written = write.catch(() => undefined);
    return write.then(() => undefined);
  };
}

/** An error of a task that ran out of time (not memory). */
export function outOfTime(error: unknown): boolean {
  return (
    error instanceof InvocationTimeoutError ||
    (error instanceof FunctionError && error.errorType === 'Sandbox.Timedout')
  );
}

/** A chunk that can be cut between its records: one segment of a line object. */
function lineCuttable(manifest: Manifest, chunk: ManifestChunk): boolean {
  return (
    manifest.format !== 'parquet' &&
    chunk.lastObject === undefined &&
    manifest.objects[chunk.object]?.gzip !== true
  );
}

/** Where the records a one-segment chunk owns begin (offsets in its object). */
async function recordStartsOf(
  manifest: Manifest,
  chunk: ManifestChunk,
  object: ObjectInfo,
  deps: MapStageDeps,
): Promise<number[]> {
  const from = Math.max(0, chunk.start - 1);
  const pieces: Uint8Array[] = [];
  for await (const piece of deps.store.readRange(object, from, chunk.end)) pieces.push(piece);
  const starts = ownedLineStarts(concatBytes(pieces), from, chunk.start, chunk.end);
  // A CSV object's first line is its header, not a record.
  return manifest.format === 'csv' ? starts.filter((p) => p > 0) : starts;
}

/**
 * A chunk that ran out of memory or time and cannot be made smaller: its error names the record
 * it holds (when it is of a line format), what ran out, and what to change.
 */
function tooBig(
  manifest: Manifest,
  index: number,
  error: unknown,
  starts: number[] | undefined,
): FanoutError {
  const chunk = manifest.chunks[index]!;
  const place = chunkPlace(chunk, manifest.objects);
  const time = outOfTime(error);
  const what =
    starts?.length === 1
      ? `the record at byte ${starts[0]} of ${place.key}`
      : `the data in ${describePlace(place)}`;
  const message = error instanceof Error ? error.message : String(error);
  return new FanoutError(
    'CHUNK_TOO_BIG',
    `chunk ${index} (${describePlace(place)}) ran out of ${time ? 'time' : 'memory'} and cannot be split further: ${what} needs more ${time ? 'time' : 'memory'} than the worker has (raise the worker's ${time ? 'timeout' : 'memory'}, or make the job's work per record smaller): ${message}`,
    {
      cause: error,
      context: { chunk: index, ...place, ...(starts?.length === 1 && { record: starts[0] }) },
    },
  );
}
