/**
 * The documents a job leaves in S3: job.json (the request), manifest.json (the plan with the
 * pinned inputs), status.json (progress), chunks/{i}.json (per-chunk outcomes). Plain data, so
 * the CLI, the handlers and (later) the HTTP API all read the same shapes.
 */

import type { ErrorInfo } from '../base/errors.ts';
import type { ObjectInfo } from '../base/ports.ts';
import type { Cost, Usage } from '../cost/cost.ts';
import type { ChunkRange } from '../data/plan.ts';
import type { RecordFormat } from '../data/records.ts';
import type { BadRecordPolicy } from './job.ts';

/** jobs/{id}/job.json: what was asked, written once by whoever submits the job. */
/**
 * Who submitted a job, as the HTTP API's caller was named (API Gateway's IAM authorizer on AWS,
 * `fanout dev --auth` locally): the job's owner, who alone (with an admin) may see and manage it.
 */
export interface JobOwner {
  /** The caller's ARN as the request named it (an assumed role's includes its session). */
  arn: string;
  /**
   * Who owns it, across sessions: the ARN, with an assumed role's session dropped
   * (`arn:aws:sts::111122223333:assumed-role/Analyst`); `local` for `fanout dev` without --auth.
   */
  principal: string;
  accountId?: string;
  principalOrgId?: string;
}

export interface JobRequest {
  jobId: string;
  /** Job name in the registry. */
  job: string;
  /** `s3://bucket/key` or `s3://bucket/prefix/`. */
  input: string;
  /** Who submitted it (absent for a job submitted before owners were recorded). */
  owner?: JobOwner;
  /** Raw params as submitted; validated by the coordinator before any chunk runs. */
  params: unknown;
  chunkSize?: number;
  chunks?: number;
  /** Maximum chunks in flight. */
  concurrency: number;
  onBadRecord: BadRecordPolicy;
  /** How the input is decoded. @default what its keys say (formatOfKey), else the job's format */
  format?: RecordFormat;
  /** Parquet: the columns to read. @default the job's `columns`, else all */
  columns?: string[];
  /** Backup attempts for stragglers (see CoordinatorDeps.speculation). @default true */
  speculation?: boolean;
  /** Shrink the last round of chunks (PlanOptions.guidedTail). @default false */
  guidedTail?: boolean;
  /** Attempts per chunk before it counts as failed. @default 3 */
  maxAttempts?: number;
  /** Failed chunks tolerated, as a percentage of all chunks. @default 0 */
  toleratedFailurePercent?: number;
  /** Failed chunks tolerated, as a count. @default 0 */
  toleratedFailureCount?: number;
  /** A keyed job's partitions, 1 to 10,000. @default the job's, else chosen after the map stage */
  partitions?: number;
  /**
   * A keyed job's result: one JSON object (`json`), or a `{"key","value"}` line per key in the
   * same order (`jsonl`), for results too large for one JSON value. @default 'json'
   */
  resultFormat?: 'json' | 'jsonl';
  /**
   * Reuse what earlier jobs made of the same bytes with the same code and params (docs/
   * ARCHITECTURE.md, "Reuse"), and keep what this one makes. @default true
   */
  reuse?: boolean;
  createdAt: string;
}

/** A chunk that failed for good, as listed in a partial result or a failed job. */
export interface FailedChunk {
  index: number;
  /** The chunk's first object, and the byte of it where the chunk begins. */
  key: string;
  start: number;
  /** The chunk's last object, when it reads more than one; the chunk ends at byte `end` of it. */
  lastKey?: string;
  end: number;
  error: ErrorInfo;
}

/** Tasks of one kind by state, as status.json shows them. */
export interface TaskCounts {
  total: number;
  pending: number;
  running: number;
  succeeded: number;
  failed: number;
}

/** The job's lifecycle states. */
export type JobState = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** jobs/{id}/status.json: what a client polls. */
export interface JobStatus {
  jobId: string;
  job: string;
  status: JobState;
  input: string;
  /** Who submitted it (see JobRequest.owner). */
  owner?: JobOwner;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  chunks: TaskCounts;
  /** A keyed job's partition tasks, once its map stage has ended. */
  partitions?: TaskCounts;
  /** Records read so far (finished chunks). */
  records: number;
  /** Input bytes of finished chunks. */
  bytes: number;
  /**
   * Input bytes that finished chunks read and mapped in this job: `bytes` less what was reused.
   * Absent for a job submitted before reuse was recorded.
   */
  bytesProcessed?: number;
  /** Work taken from the cache: chunks that needed no worker at all, and pieces. */
  reused?: { chunks: number; segments: number };
  error?: ErrorInfo;
  /** Set by a cancel request; the coordinator stops dispatching and ends the job CANCELLED. */
  cancelRequested?: boolean;
  /**
   * Which coordinator run owns the job. Each run (first start, continuation, resume after a crash,
   * redrive) takes the job over by raising it with compare-and-swap; a run that sees a higher
   * epoch than its own stops dispatching, so two coordinators never drive one job.
   */
  epoch?: number;
  /** Coordinator runs that continued the job before their time ran out. */
  continuations?: number;
  /**
   * When the coordinator that owns the job last showed it is alive (ISO time). It writes this
   * every few seconds while it runs; a RUNNING job whose heartbeat is older than the sweeper's
   * limit has lost its coordinator and is resumed (see shared/core/run/sweep.ts).
   */
  heartbeatAt?: string;
  /** How often the sweeper resumed the job after its coordinator was lost; bounded. */
  resumes?: number;
  /** Usage of the coordinator runs that handed over (continuations), and their workers'. */
  usage?: Usage;
  /** What the job cost on AWS (or would cost, run locally): set when it ends. */
  cost?: Cost;
  /** Every coordinator run that reported (the first, continuations, resumes) and the reducer. */
  runs?: FunctionRun[];
  /** How often the job was redriven. */
  redrives?: number;
  /**
   * The result object: its key, size, and the map outputs it was built from. `badRecords`
   * counts malformed records skipped under `onBadRecord: 'skip'` (their first samples are in
   * each chunk's outcome).
   */
  result?: {
    key: string;
    bytes: number;
    records: number;
    badRecords: number;
    /** True when failed chunks were tolerated: the result lacks their records. */
    partial?: boolean;
    failedChunks?: FailedChunk[];
  };
}

/**
 * An older version of an object that the one a job reads extends by appending: its ETag,
 * VersionId and size. A piece that ends within it is that version's piece (reuse:
 * shared/core/run/cache.ts, pieceIdentity).
 */
export interface Version {
  etag: string;
  versionId?: string;
  size: number;
}

/** Reuse: a pack, one chunk attempt's cache entries one after another (shared/core/run/cache.ts). */
export interface Pack {
  key: string;
  etag: string;
  size: number;
}

/** What a chunk attempt kept for reuse: its pack, and each piece's id, offset and length in it. */
export interface Kept {
  pack: Pack;
  pieces: [id: string, offset: number, length: number][];
}

/** One byte range `[start, end)` of one pinned input object, as a worker reads it. */
export interface TaskSegment {
  /** The input object, pinned (ETag / VersionId) at planning. */
  object: ObjectInfo;
  start: number;
  end: number;
  /** A gzip object: always a whole-object segment, decompressed as it streams. */
  gzip: boolean;
  /**
   * CSV only, for a segment that begins inside its object: the object's header, read once at
   * planning. A segment that begins at byte 0 reads the header line itself.
   */
  header?: string[];
  /** Reuse: older versions the object extends by appending (shared/core/run/cache.ts). */
  lineage?: Version[];
}

/** What a worker needs to process one chunk: references, never records. */
export interface ChunkTask {
  jobId: string;
  job: string;
  /** Params as validated (defaults applied) by the coordinator. */
  params: unknown;
  format: RecordFormat;
  onBadRecord: BadRecordPolicy;
  /** The bucket that holds jobs/. */
  bucket: string;
  index: number;
  /** 1 for the first attempt at this chunk; retries, continuations and redrives count on. */
  attempt: number;
  /** What the chunk reads, in dataset order: one segment per object. */
  segments: TaskSegment[];
  /** When the coordinator sent this attempt (ms since the epoch), for the queue wait. */
  dispatchedAt?: number;
  /** Parquet: the columns to read (all when absent). */
  columns?: string[];
  /** A keyed job: the hash buckets its runs are cut into (docs/SHUFFLE.md). */
  buckets?: number;
  /**
   * Reuse (shared/core/run/cache.ts): the job's cache prefix, the packs this chunk's kept pieces
   * lie in, and for each piece of the chunk (its segments cut on the grid, in order) where its
   * entry lies ([pack, offset, length]), or 0 when the newest index has none.
   */
  cache?: { prefix: string; packs: Pack[]; at: ([number, number, number] | 0)[] };
  /**
   * Run by the coordinator itself, because every piece had an entry: a piece whose entry turns
   * out unusable ends the run with CacheMissError, and a worker runs the chunk instead.
   */
  onlyCached?: boolean;
}

/**
 * A place in a sorted job's global order: an output's `orderBy` key, its chunk, and its position
 * among that chunk's sorted outputs (where equal keys keep their input order). No two outputs
 * share one, so a range of one key (however many records hold it) can be split between
 * partitions: ties are broken by input position.
 */
export interface SortPoint {
  key: string | number;
  chunk: number;
  pos: number;
}

/** A sample of a chunk's sorted run: the line at byte `offset` is its `pos`-th, with key `key`. */
export interface SortSample {
  key: string | number;
  pos: number;
  offset: number;
}

/**
 * One map output's runs that a partition task reads: bytes `[start, end)` of its object, or,
 * `inline`, of the runs text in the chunk outcome at `key`.
 */
export interface RunSource {
  key: string;
  etag: string;
  size: number;
  start: number;
  end: number;
  inline?: boolean;
  /** A sorted job's run: its chunk, and the position in the run of the line at `start`. */
  chunk?: number;
  pos?: number;
}

/**
 * What a worker needs to reduce one partition of a keyed job (buckets `[first, end)`), or, with
 * `range`, to merge one range of a sorted job's order.
 */
export interface PartitionTask {
  kind: 'partition';
  jobId: string;
  job: string;
  params: unknown;
  bucket: string;
  index: number;
  attempt: number;
  dispatchedAt?: number;
  /** The buckets of this partition. */
  first: number;
  end: number;
  /** A keyed job's buckets in all (the partition merges bucket by bucket). */
  buckets?: number;
  /** The partition's runs in every map output, in chunk order (empty ones left out). */
  sources: RunSource[];
  /** A sorted job's range: the outputs from `from` (inclusive) to `to` (exclusive; open ends). */
  range?: SortRange;
}

/** A range of a sorted job's order; an absent end is open. */
export interface SortRange {
  from?: SortPoint;
  to?: SortPoint;
}

/** jobs/{id}/partitions/{r}.json: written create-only by the partition task that finished first. */
export interface PartitionOutcome {
  index: number;
  attempt: number;
  /** The part holding the partition's final values: `[bucket, key, value]` lines in key order. */
  part: { key: string; bytes: number; etag: string };
  first: number;
  end: number;
  keys: number;
  /** Bytes of runs read from the map outputs. */
  bytesRead: number;
  durationMs: number;
  run?: AttemptRun;
}

/** What a partition task returns to the coordinator. */
export interface PartitionSummary {
  index: number;
  keys: number;
  bytesRead: number;
  durationMs: number;
  duplicate?: boolean;
  usage?: Usage;
}

/**
 * Where and when one attempt ran, as the worker saw it: what a timeline and a cost need.
 * Times are ms since the epoch.
 */
export interface AttemptRun {
  dispatchedAt?: number;
  startedAt: number;
  endedAt: number;
  /** The first invocation of its sandbox (its init is billed with it). */
  coldStart: boolean;
  /** The sandbox (execution environment) it ran in: a random id drawn at init. */
  sandbox: string;
  /** Billed duration (ms, init included on a cold start) and configured memory (MB). */
  billedMs: number;
  memoryMb: number;
}

/** What the handler tells the worker core about the invocation it runs in. */
export type InvocationInfo = Omit<AttemptRun, 'dispatchedAt' | 'endedAt' | 'billedMs'> & {
  /** Init time billed with this invocation (a cold start's), ms. */
  initMs: number;
};

/** One coordinator or reducer invocation, for the report's timeline (ms since the epoch). */
export interface FunctionRun {
  role: 'coordinator' | 'reducer';
  epoch?: number;
  /** When the run started and ended (ISO times). */
  startedAt: string;
  endedAt: string;
  /** Its billed duration (ms) and memory (MB), for the cost. */
  billedMs: number;
  memoryMb: number;
}

/** A chunk attempt that failed or was throttled, as the coordinator saw it (ms since epoch). */
export interface FailedAttempt {
  attempt: number;
  dispatchedAt: number;
  endedAt: number;
  /** Answered 429: not the chunk's fault, not billed, no attempt used. */
  throttled?: boolean;
  /** The error's message (the full error is in `errors`). */
  error?: string;
}

/**
 * An attempt that ran while another attempt of its chunk wrote the outcome that counts: the
 * loser of a backup race (its part is removed by its own worker).
 */
export interface LostAttempt {
  attempt: number;
  dispatchedAt: number;
  /** Absent when it still ran as the coordinator's run ended (Lambda cannot stop it). */
  endedAt?: number;
  /** It was a backup (else the chunk's own attempt). */
  backup?: boolean;
}

/** A malformed record that was skipped (`onBadRecord: 'skip'`). */
export interface BadRecordSample {
  /** The object that holds the record. */
  key: string;
  /** Byte offset of the record in its object (in the decompressed bytes of a gzip object). */
  offset: number;
  snippet: string;
  reason: string;
}

/**
 * What a chunk produced. A reduce's accumulator and a small map-only output travel inside the
 * outcome itself (one PUT per chunk, one GET for the reducer); a map-only output larger than
 * {@link INLINE_OUTPUT_CHARS} streams to its own part object.
 */
export type ChunkOutput =
  | { kind: 'acc'; value: unknown }
  /** A keyed job's runs, one per bucket, in one object (see RunSource). */
  | { kind: 'runs'; key: string; bytes: number; etag: string; offsets: number[]; keys: number }
  /** The same runs, when they are small (≤ INLINE_OUTPUT_CHARS bytes), as text in the outcome. */
  | { kind: 'runs-inline'; text: string; bytes: number; offsets: number[]; keys: number }
  /**
   * A sorted job's outputs, sorted by their orderBy key (`key<tab>output` lines) in one object
   * (none when `lines` is 0), with a sample every few KiB to cut ranges by, the first line's
   * included. `keys` is the kind of key the chunk's outputs had.
   */
  | {
      kind: 'sorted';
      key: string;
      bytes: number;
      etag: string;
      lines: number;
      keys?: 'number' | 'string';
      samples: SortSample[];
    }
  | { kind: 'inline'; text: string }
  | { kind: 'part'; key: string; bytes: number; etag: string };

/** Map-only output up to this many characters of JSONL is kept inline in the chunk's outcome. */
export const INLINE_OUTPUT_CHARS = 256 * 1024;

/** jobs/{id}/chunks/{i}.json: written by the worker when its chunk succeeded. */
export interface ChunkOutcome {
  index: number;
  /** The attempt that produced this outcome: the first to finish (outcomes are create-only). */
  attempt: number;
  /** Input bytes the chunk owns: the sum of its segments' lengths. */
  bytes: number;
  /** Objects the chunk read (its segments). */
  objects: number;
  /** Records seen (malformed ones included). */
  recordsIn: number;
  /** Map outputs kept (not `undefined`). */
  recordsOut: number;
  badRecords: { count: number; samples: BadRecordSample[] };
  /** Bytes fetched from S3, including look-behind bytes and read-past-end tails. */
  bytesRead: number;
  /** Input bytes read and mapped in this attempt: `bytes` less the pieces taken from the cache. */
  bytesProcessed?: number;
  /**
   * Pieces taken from the cache; for a chunk the coordinator made from the cache with no worker,
   * `chunk`, and when it did (ms since the epoch: the report draws it).
   */
  reused?: { segments: number; chunk?: boolean; startedAt?: number; endedAt?: number };
  /** The pieces this attempt read and kept, and the pack they lie in. */
  kept?: Kept;
  durationMs: number;
  output: ChunkOutput;
  /** When and where the attempt ran (absent when the worker was run outside a handler). */
  run?: AttemptRun;
}

/** What the worker returns to the coordinator (kept small: it travels in a Lambda payload). */
export type ChunkSummary = Pick<
  ChunkOutcome,
  | 'index'
  | 'recordsIn'
  | 'recordsOut'
  | 'bytesRead'
  | 'durationMs'
  | 'bytesProcessed'
  | 'reused'
  | 'kept'
> & {
  badRecords: number;
  /** Another attempt's outcome was written first: this one's result does not count. */
  duplicate?: boolean;
  /** The worker invocation's own usage (billed duration, memory, S3 requests), for the cost. */
  usage?: Usage;
};

/**
 * A task's history (a map chunk's; any task the engine runs): written by the engine's attempt
 * ledger alone (shared/core/run/engine/ledger.ts).
 */
export interface TaskRecord {
  index: number;
  /** Attempts over the job's life (retries, continuations, redrives): numbers are never reused. */
  attempts: number;
  durationMs?: number;
  /** The error of each failed attempt, oldest first. */
  errors?: ErrorInfo[];
  /** Failed for good (attempts used up, or a deterministic error). */
  failed?: boolean;
  /** Attempts that failed or were throttled, with their times (successful ones: the outcome). */
  failures?: FailedAttempt[];
  /** Backup attempts started because the task straggled, and whether one of them won. */
  backups?: number;
  backupWon?: boolean;
  /** Attempts whose outcome did not count because another's was written first. */
  lost?: LostAttempt[];
  /**
   * The smaller tasks that replaced this one, in input order, after it ran out of memory or
   * time (appended to the tasks; it has no outcome of its own that counts).
   */
  split?: number[];
  /** The task this one is a part of, when it came from a split. */
  from?: number;
}

/**
 * One chunk in the manifest: its place in the dataset (see {@link ChunkRange}: from byte
 * `start` of object `object` to byte `end` of object `lastObject ?? object`) and its history.
 */
export interface ManifestChunk extends ChunkRange, TaskRecord {}

/** jobs/{id}/manifest.json: the plan, the pinned inputs, and what happened to each chunk. */
export interface Manifest {
  jobId: string;
  job: string;
  params: unknown;
  format: RecordFormat;
  onBadRecord: BadRecordPolicy;
  mapOnly: boolean;
  concurrency: number;
  chunkSize?: number;
  /** Split into tasks (records or whole objects: a small input) rather than byte ranges. */
  recordSplit: boolean;
  /**
   * Each task is one item (a record, or a whole object) of a small input, as executor.map makes
   * one call per item: its tasks all start at once, whatever they do (a sleep, I/O).
   */
  taskPerItem?: boolean;
  /** Parquet: the columns to read (all when absent). */
  columns?: string[];
  /** The pinned inputs; with reuse, an appended object's older versions (`lineage`). */
  objects: (ObjectInfo & { gzip: boolean; header?: string[]; lineage?: Version[] })[];
  chunks: ManifestChunk[];
  /** A keyed job: the buckets its map outputs are cut into, and its partitions if set. */
  keyed?: { buckets: number; partitions?: number; resultFormat?: 'jsonl' };
  /** The job's `codeErrorAttempts`, when it sets them. */
  codeErrorAttempts?: number;
  /** A sorted job (orderBy): its partitions if set. */
  sorted?: { partitions?: number };
  /** Reuse is on: the prefix of the job's cache entries (shared/core/run/cache.ts). */
  cache?: { prefix: string };
  /**
   * A keyed or sorted job's partition tasks, once its map stage has ended: buckets
   * `[first, end)` each, or a sorted job's `range` (its first and end are then r and r + 1).
   */
  partitions?: (TaskRecord & { first: number; end: number; range?: SortRange })[];
}

/**
 * The tasks that hold a stage's output, in input order: the tasks in index order, each split one
 * replaced by its parts (recursively), which stand in its place, not at the end where they were
 * appended.
 */
export function taskOrder(records: readonly TaskRecord[]): number[] {
  const order: number[] = [];
  const visit = (index: number): void => {
    const split = records[index]?.split;
    if (split === undefined) order.push(index);
    else for (const part of split) visit(part);
  };
  for (const record of records) if (record.from === undefined) visit(record.index);
  return order;
}

/** The chunks whose outputs make the result, in input order: all but those failed (tolerated). */
export function includedChunks(manifest: Pick<Manifest, 'chunks'>): number[] {
  return taskOrder(manifest.chunks).filter((i) => manifest.chunks[i]?.failed !== true);
}

/** Where a chunk lies, by key: from byte `start` of `key` to byte `end` of `lastKey ?? key`. */
export type ChunkPlace = Pick<FailedChunk, 'key' | 'start' | 'lastKey' | 'end'>;

/** A chunk's place in the dataset, by key, for errors and reports. */
export function chunkPlace(chunk: ChunkRange, objects: readonly { key: string }[]): ChunkPlace {
  const key = objects[chunk.object]?.key ?? '';
  const lastKey = chunk.lastObject === undefined ? undefined : objects[chunk.lastObject]?.key;
  return {
    key,
    start: chunk.start,
    ...(lastKey !== undefined && { lastKey }),
    end: chunk.end,
  };
}

/** `bytes 0-1024 of a.jsonl`, or `a.jsonl byte 0 to c.jsonl byte 300` for several objects. */
export function describePlace(place: ChunkPlace): string {
  return place.lastKey === undefined
    ? `bytes ${place.start}-${place.end} of ${place.key}`
    : `${place.key} byte ${place.start} to ${place.lastKey} byte ${place.end}`;
}
