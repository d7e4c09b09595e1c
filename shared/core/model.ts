/**
 * The documents a job leaves in S3: job.json (the request), manifest.json (the plan with the
 * pinned inputs), status.json (progress), chunks/{i}.json (per-chunk outcomes). Plain data, so
 * the CLI, the handlers and (later) the HTTP API all read the same shapes.
 */
import type { ErrorInfo } from './errors.ts';
import type { BadRecordPolicy } from './job.ts';
import type { ObjectInfo } from './ports.ts';
import type { RecordFormat } from './records.ts';

/** jobs/{id}/job.json: what was asked, written once by whoever submits the job. */
export interface JobRequest {
  jobId: string;
  /** Job name in the registry. */
  job: string;
  /** `s3://bucket/key` or `s3://bucket/prefix/`. */
  input: string;
  /** Raw params as submitted; validated by the coordinator before any chunk runs. */
  params: unknown;
  chunkSize?: number;
  chunks?: number;
  /** Maximum chunks in flight. */
  concurrency: number;
  onBadRecord: BadRecordPolicy;
  /** Attempts per chunk before it counts as failed. @default 3 */
  maxAttempts?: number;
  /** Failed chunks tolerated, as a percentage of all chunks. @default 0 */
  toleratedFailurePercent?: number;
  /** Failed chunks tolerated, as a count. @default 0 */
  toleratedFailureCount?: number;
  createdAt: string;
}

/** A chunk that failed for good, as listed in a partial result or a failed job. */
export interface FailedChunk {
  index: number;
  key: string;
  start: number;
  end: number;
  error: ErrorInfo;
}

/** The job's lifecycle states. */
export type JobState = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** jobs/{id}/status.json: what a client polls. */
export interface JobStatus {
  jobId: string;
  job: string;
  status: JobState;
  input: string;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  chunks: { total: number; pending: number; running: number; succeeded: number; failed: number };
  /** Records read so far (finished chunks). */
  records: number;
  /** Input bytes of finished chunks. */
  bytes: number;
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
  /** The input object, pinned (ETag / VersionId) at planning. */
  object: ObjectInfo;
  start: number;
  end: number;
  gzip: boolean;
  /** CSV only: the object's header, read once at planning. */
  header?: string[];
}

/** A malformed record that was skipped (`onBadRecord: 'skip'`). */
export interface BadRecordSample {
  /** Byte offset of the record in its object. */
  offset: number;
  snippet: string;
  reason: string;
}

/** jobs/{id}/chunks/{i}.json: written by the worker when its chunk succeeded. */
export interface ChunkOutcome {
  index: number;
  /** The attempt that produced this outcome (a rerun overwrites it). */
  attempt: number;
  key: string;
  start: number;
  end: number;
  /** Records seen (malformed ones included). */
  recordsIn: number;
  /** Map outputs kept (not `undefined`). */
  recordsOut: number;
  badRecords: { count: number; samples: BadRecordSample[] };
  /** Bytes fetched from S3, including the look-behind byte and the read-past-end tail. */
  bytesRead: number;
  durationMs: number;
  /**
   * The part as written. `etag` lets the reducer read (and pin) it without a HEAD request; it is
   * absent in outcomes written before it was recorded, and the reducer then asks S3.
   */
  part: { key: string; bytes: number; etag?: string };
}

/** What the worker returns to the coordinator (kept small: it travels in a Lambda payload). */
export type ChunkSummary = Pick<
  ChunkOutcome,
  'index' | 'recordsIn' | 'recordsOut' | 'bytesRead' | 'durationMs'
> & { badRecords: number };

/** One chunk in the manifest. */
export interface ManifestChunk {
  index: number;
  object: number;
  start: number;
  end: number;
  /** Attempts over the job's life (retries, continuations, redrives). */
  attempts: number;
  durationMs?: number;
  /** The error of each failed attempt, oldest first. */
  errors?: ErrorInfo[];
  /** Failed for good (attempts used up, or a deterministic error). */
  failed?: boolean;
}

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
  /** Split on record boundaries (small input) rather than byte ranges. */
  recordSplit: boolean;
  objects: (ObjectInfo & { gzip: boolean; header?: string[] })[];
  chunks: ManifestChunk[];
}
