/**
 * Submitting a job: validate everything that can be validated up front, write job.json and a
 * QUEUED status.json (both create-only), and start the coordinator asynchronously. Used by the
 * CLI now and by the HTTP API's POST /jobs.
 */

import {
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
  ValidationError,
} from '../base/errors.ts';
import type { Clock, Invoker, ObjectStore } from '../base/ports.ts';
import { noUsage } from '../cost/cost.ts';
import { RECORD_FORMATS, type RecordFormat } from '../data/records.ts';
import type { JobOwner, JobRequest, JobStatus } from '../model/documents.ts';
import { type JobEvents, publishChange } from '../model/events.ts';
import type { AnyJob, BadRecordPolicy } from '../model/job.ts';
import { findJob, parseParams, partitionsProblem, shuffles } from '../model/job.ts';
import { activeKey, jobKeys, newJobId, parseInputUri } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';

/** What a caller asks for. */
export interface SubmitRequest {
  job: string;
  input: string;
  /** Who submits it (the HTTP API's caller); recorded in job.json and the status. */
  owner?: JobOwner;
  params?: unknown;
  chunkSize?: number;
  chunks?: number;
  concurrency: number;
  onBadRecord?: BadRecordPolicy;
  /** Attempts per chunk. @default 3 */
  maxAttempts?: number;
  /** Failed chunks tolerated, in percent of all chunks; within it the result is partial. */
  toleratedFailurePercent?: number;
  /** Failed chunks tolerated, as a count. */
  toleratedFailureCount?: number;
  /** How the input is decoded. @default what its keys say, else the job's format */
  format?: RecordFormat;
  /** Parquet: the columns to read. @default the job's `columns`, else all */
  columns?: string[];
  /** Backup attempts for straggling chunks. @default true */
  speculation?: boolean;
  /** Smaller chunks at the end of the dataset, so the job does not end on one big chunk. */
  guidedTail?: boolean;
  /** A keyed job's partitions, 1 to 10,000. @default the job's, else chosen after the map stage */
  partitions?: number;
  /** A keyed job's result as one JSON object, or a `{"key","value"}` line per key. @default 'json' */
  resultFormat?: 'json' | 'jsonl';
  /** Reuse work of earlier jobs, and keep this one's (docs/ARCHITECTURE.md, "Reuse"). @default true */
  reuse?: boolean;
  /**
   * Makes the submission idempotent: the same token within {@link CLIENT_TOKEN_TTL_MS} returns
   * the job it created first, so a retried request never starts a second job. 1 to 64 letters,
   * digits, `_` or `-`.
   */
  clientToken?: string;
}

/** How long a clientToken names its job: a day. */
export const CLIENT_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

/** Where a clientToken's job is recorded. */
/**
 * A client token's claim: per owner, so that a token another caller used names no job of theirs
 * to this one (and a retried submission finds only its own).
 */
export async function tokenKey(token: string, owner: JobOwner | undefined): Promise<string> {
  if (owner === undefined) return `tokens/${token}`;
  // Web Crypto's SHA-256 (a global in Node and on Lambda): the principal, whatever its length,
  // in 32 safe characters.
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(owner.principal));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `tokens/${hex.slice(0, 32)}/${token}`;
}

/**
 * Claims a clientToken for `jobId` (create-only). Returns the job it names when another
 * submission claimed it within the last day; undefined when this one may create its job.
 */
async function claimToken(
  token: string,
  jobId: string,
  owner: JobOwner | undefined,
  deps: SubmitDeps,
): Promise<JobRequest | undefined> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(token)) {
    throw new ValidationError(
      `clientToken ${JSON.stringify(token)} is invalid; expected 1 to 64 letters, digits, "_" or "-"`,
    );
  }
  const claim = { jobId, claimedAt: deps.clock.iso() };
  const key = await tokenKey(token, owner);
  for (let tries = 0; tries < 3; tries++) {
    try {
      await writeJson(deps.store, deps.bucket, key, claim, { ifNoneMatch: '*' });
      return undefined;
    } catch (error) {
      if (!(error instanceof PreconditionFailedError)) throw error;
    }
    const held = await readJson<{ jobId: string; claimedAt: string }>(deps.store, deps.bucket, key);
    const age = Date.parse(deps.clock.iso()) - Date.parse(held.value.claimedAt);
    if (age < CLIENT_TOKEN_TTL_MS) {
      const earlier = await jobOf(held.value.jobId, deps);
      if (earlier !== undefined) return earlier;
      // Claimed a while ago by a submission that never wrote its job (it failed): the token is
      // free again. A younger claim is a submission still under way.
      if (age < ABANDONED_CLAIM_MS) {
        throw new ConflictError(
          `clientToken ${token} names a job that is still being created; retry in a few seconds`,
        );
      }
    }
    // An expired or abandoned claim: this submission takes the token over, unless another did.
    try {
      await writeJson(deps.store, deps.bucket, key, claim, { ifMatch: held.etag });
      return undefined;
    } catch (error) {
      if (!(error instanceof PreconditionFailedError)) throw error;
    }
  }
  throw new ConflictError(`clientToken ${token} is being claimed by other submissions`);
}

/** A claim older than this whose job does not exist was abandoned by a failed submission. */
const ABANDONED_CLAIM_MS = 30_000;

/**
 * The request of the job a token names, waiting a second for a creator still writing it;
 * undefined when it does not exist.
 */
async function jobOf(jobId: string, deps: SubmitDeps): Promise<JobRequest | undefined> {
  for (let tries = 0; ; tries++) {
    try {
      return (await readJson<JobRequest>(deps.store, deps.bucket, jobKeys(jobId).job)).value;
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      if (tries >= 20) return undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** What {@link submitJob} needs. */
export interface SubmitDeps {
  store: ObjectStore;
  invoker: Invoker;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  bucket: string;
  coordinatorFunction: string;
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
  /** The job arrives through the HTTP API: its request counts in the job's cost. */
  viaApi?: boolean;
}

const positiveInt = (name: string, value: number | undefined) => {
  if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
    throw new ValidationError(`${name} must be a positive integer; got ${JSON.stringify(value)}`);
  }
};

/** Validates, records and starts a job. Nothing is written when validation fails. */
export async function submitJob(request: SubmitRequest, deps: SubmitDeps): Promise<JobRequest> {
  const job = findJob(deps.jobs, request.job);
  parseParams(job, request.params);
  parseInputUri(request.input);
  checkPlan(request);
  checkShape(request, job);
  const onBadRecord = request.onBadRecord ?? 'fail';
  if (onBadRecord !== 'fail' && onBadRecord !== 'skip') {
    throw new ValidationError(
      `onBadRecord must be "fail" or "skip"; got ${JSON.stringify(onBadRecord)}`,
    );
  }
  const percent = request.toleratedFailurePercent;
  const count = request.toleratedFailureCount;
  const resultFormat = request.resultFormat;

  const jobId = newJobId();
  if (request.clientToken !== undefined) {
    const earlier = await claimToken(request.clientToken, jobId, request.owner, deps);
    if (earlier !== undefined) return earlier;
  }
  const createdAt = deps.clock.iso();
  const stored: JobRequest = {
    jobId,
    job: job.name,
    input: request.input,
    ...(request.owner !== undefined && { owner: request.owner }),
    params: request.params ?? {},
    ...(request.chunkSize !== undefined && { chunkSize: request.chunkSize }),
    ...(request.chunks !== undefined && { chunks: request.chunks }),
    concurrency: request.concurrency,
    onBadRecord,
    ...(request.maxAttempts !== undefined && { maxAttempts: request.maxAttempts }),
    ...(percent !== undefined && { toleratedFailurePercent: percent }),
    ...(count !== undefined && { toleratedFailureCount: count }),
    ...(request.format !== undefined && { format: request.format }),
    ...(request.columns !== undefined && { columns: request.columns }),
    ...(request.speculation === false && { speculation: false }),
    ...(request.guidedTail === true && { guidedTail: true }),
    ...(request.partitions !== undefined && { partitions: request.partitions }),
    ...(resultFormat === 'jsonl' && { resultFormat }),
    ...(request.reuse === false && { reuse: false }),
    createdAt,
  };
  const status: JobStatus = {
    jobId,
    job: job.name,
    status: 'QUEUED',
    input: request.input,
    ...(request.owner !== undefined && { owner: request.owner }),
    createdAt,
    chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
    records: 0,
    bytes: 0,
    ...(deps.viaApi === true && { usage: { ...noUsage(), apiRequests: 1 } }),
  };
  const keys = jobKeys(jobId);
  await writeJson(deps.store, deps.bucket, keys.job, stored, { ifNoneMatch: '*' });
  await writeJson(deps.store, deps.bucket, keys.status, status, { ifNoneMatch: '*' });
  await publishChange(deps.events, status);
  // Marked active before the coordinator is started: if its event is lost, the sweeper finds
  // the job and starts one (shared/core/run/sweep.ts).
  await deps.store.put(deps.bucket, activeKey(jobId), jobId);
  await deps.invoker.invokeEvent(deps.coordinatorFunction, { jobId });
  return stored;
}

/**
 * Checks how the job is cut and run: chunk size or count, concurrency, attempts and the failures
 * tolerated. Throws ValidationError naming the field.
 */
function checkPlan(request: SubmitRequest): void {
  positiveInt('chunkSize', request.chunkSize);
  positiveInt('chunks', request.chunks);
  positiveInt('concurrency', request.concurrency);
  if (request.chunkSize !== undefined && request.chunks !== undefined) {
    throw new ValidationError('give chunkSize or chunks, not both');
  }
  positiveInt('maxAttempts', request.maxAttempts);
  const percent = request.toleratedFailurePercent;
  if (percent !== undefined && !(Number.isFinite(percent) && percent >= 0 && percent <= 100)) {
    throw new ValidationError(
      `toleratedFailurePercent must be from 0 to 100; got ${JSON.stringify(percent)}`,
    );
  }
  const count = request.toleratedFailureCount;
  if (count !== undefined && !(Number.isSafeInteger(count) && count >= 0)) {
    throw new ValidationError(
      `toleratedFailureCount must be a non-negative integer; got ${JSON.stringify(count)}`,
    );
  }
}

/**
 * Checks how the input is read and the result shaped, against the job: format, columns,
 * partitions, result format and reuse. Throws ValidationError naming the field.
 */
function checkShape(request: SubmitRequest, job: AnyJob): void {
  if (request.format !== undefined && !RECORD_FORMATS.includes(request.format)) {
    throw new ValidationError(
      `format must be one of ${RECORD_FORMATS.join(', ')}; got ${JSON.stringify(request.format)}`,
    );
  }
  if (
    request.columns !== undefined &&
    !(
      Array.isArray(request.columns) &&
      request.columns.length > 0 &&
      request.columns.every((c) => typeof c === 'string' && c !== '')
    )
  ) {
    throw new ValidationError(
      `columns must be a non-empty list of column names; got ${JSON.stringify(request.columns)}`,
    );
  }
  if (request.partitions !== undefined) {
    const problem = partitionsProblem(request.partitions);
    if (problem !== undefined) throw new ValidationError(problem);
    if (!shuffles(job)) {
      throw new ValidationError(
        `partitions applies only to a keyed (key) or sorted (orderBy) job; ${job.name} has neither`,
      );
    }
  }
  const resultFormat = request.resultFormat;
  if (resultFormat !== undefined && resultFormat !== 'json' && resultFormat !== 'jsonl') {
    throw new ValidationError(
      `resultFormat must be "json" or "jsonl"; got ${JSON.stringify(resultFormat)}`,
    );
  }
  if (resultFormat === 'jsonl' && job.key === undefined) {
    throw new ValidationError(
      `resultFormat "jsonl" applies only to a keyed job; ${job.name}'s result is ${job.reduce === undefined ? 'JSONL already' : 'one JSON value'}`,
    );
  }
  if (request.reuse !== undefined && typeof request.reuse !== 'boolean') {
    throw new ValidationError(`reuse must be true or false; got ${JSON.stringify(request.reuse)}`);
  }
}
