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
  createdAt: string;
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
  /**
   * The result object: its key, size, and the map outputs it was built from. `badRecords`
   * counts malformed records skipped under `onBadRecord: 'skip'` (their first samples are in
   * each chunk's outcome).
   */
  result?: { key: string; bytes: number; records: number; badRecords: number };
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
  part: { key: string; bytes: number };
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
  attempts: number;
  durationMs?: number;
  error?: ErrorInfo;
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
