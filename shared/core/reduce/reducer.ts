/**
 * The reducer: checks that every chunk has its outcome, merges the parts in chunk order (a
 * reduce) or concatenates them in chunk order (map-only, which keeps input order), writes the
 * result, and only then marks the job SUCCEEDED. A missing outcome fails the job: nothing that
 * looks like a finished result is written from partial data.
 */

import { FanoutError } from '../base/errors.ts';
import { invocationMarginMs } from '../base/limits.ts';
import { orderedMap } from '../base/parallel.ts';
import {
  type Clock,
  type Invoker,
  MIN_COMPOSE_PART,
  type ObjectInfo,
  type ObjectStore,
} from '../base/ports.ts';
import { addUsage, DEFAULT_PRICING, estimateCost, noUsage, type Usage } from '../cost/cost.ts';
import {
  type ChunkOutcome,
  type ChunkOutput,
  chunkPlace,
  type FailedChunk,
  type FunctionRun,
  includedChunks,
  type JobStatus,
  type Manifest,
} from '../model/documents.ts';
import type { JobEvents } from '../model/events.ts';
import type { AnyJob } from '../model/job.ts';
import { findJob, jobCode } from '../model/job.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, TERMINAL_STATES, updateStatus } from '../model/status.ts';
import { assembleKeyed, partitionParts } from './keyed.ts';
import { stringifyResult } from './result-json.ts';

/** What {@link reduceJob} needs from its surroundings. */
export interface ReducerDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** The bucket that holds jobs/. */
  bucket: string;
  /** Parts and outcomes fetched at once. @default 16 */
  parallelism?: number;
  /**
   * Tree reduce: above `fanIn` parts, groups of at most `fanIn` are merged in parallel by
   * invocations of `reducerFunction` (this function), and their results merged here.
   */
  invoker?: Invoker;
  reducerFunction?: string;
  /** @default 1000 */
  fanIn?: number;
  /** The reducer function's timeout: a group is waited for that long plus a margin. @default 15 minutes */
  reducerTimeoutMs?: number;
  /** Time this invocation has left (Lambda's context); no wait outlasts it. @default unbounded */
  remainingMs?: () => number;
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
  /** This invocation's usage so far (the Lambda handler measures it), for the job's cost. */
  meter?: () => { usage: Usage; durationMs: number; startedAt?: number; memoryMb?: number };
}

/**
 * What the coordinator hands the reducer so it can price the job as it ends it: the
 * coordinator run's usage (its workers' included), the coordinator's memory (billed while it
 * waits for the reducer) and where to price it.
 */
export interface ReduceBilling {
  usage?: Usage;
  /** The coordinator run so far: it ends when the reducer returns to it. */
  coordinatorRun?: FunctionRun;
  waitingMemoryMb?: number;
  pricing?: { region: string; architecture: 'arm64' | 'x86_64' };
}

/**
 * One group of a tree reduce: the chunks whose outcomes it merges (a contiguous run of the
 * included chunks, positions `from` to `to`), and the job, so it needs no manifest.
 */
export interface ReduceGroup {
  job: string;
  from: number;
  to: number;
  chunks: number[];
}

/** What a group reducer returns: where its accumulator is, and its counts. */
export interface GroupResult {
  key: string;
  records: number;
  badRecords: number;
}

/** The accumulator a reduce job's chunk left in its outcome. */
function accumulatorOf(outcome: ChunkOutcome, jobId: string): unknown {
  if (outcome.output.kind !== 'acc') {
    throw new FanoutError(
      'BAD_OUTCOME',
      `chunk ${outcome.index} of job ${jobId} holds a ${outcome.output.kind} output, not an accumulator`,
      { context: { jobId, chunk: outcome.index } },
    );
  }
  return outcome.output.value;
}

/** The merge of the given chunks' accumulators, in order, and the counts from their outcomes. */
async function mergeChunks(
  jobId: string,
  chunks: readonly number[],
  reduce: NonNullable<AnyJob['reduce']>,
  deps: ReducerDeps,
) {
  const keys = jobKeys(jobId);
  let acc: unknown = reduce.init();
  let records = 0;
  let badRecords = 0;
  for await (const outcome of orderedMap(chunks.length, deps.parallelism ?? 16, async (k) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(chunks[k] as number)).then(
      (r) => r.value,
    ),
  )) {
    records += outcome.recordsOut;
    badRecords += outcome.badRecords.count;
    const next = accumulatorOf(outcome, jobId);
    acc = jobCode('reduce.merge', () => reduce.merge(acc, next));
  }
  return { acc, records, badRecords };
}

/** Tree reduce, one group: merges its chunks and writes the accumulator under jobs/{id}/merged/. */
export async function reduceGroup(
  jobId: string,
  group: ReduceGroup,
  deps: ReducerDeps,
): Promise<GroupResult> {
  const reduce = findJob(deps.jobs, group.job).reduce;
  if (reduce === undefined)
    throw new FanoutError('NOT_A_REDUCE', `job ${group.job} has no reduce to merge`);
  const { acc, records, badRecords } = await mergeChunks(jobId, group.chunks, reduce, deps);
  const key = `${jobKeys(jobId).root}/merged/${group.from}-${group.to}.json`;
  await deps.store.put(deps.bucket, key, JSON.stringify(acc), { contentType: 'application/json' });
  return { key, records, badRecords };
}

const textEncoder = new TextEncoder();

/** What a job's result is, and what went into it. */
interface Reduced {
  result: { key: string; bytes: number };
  records: number;
  badRecords: number;
}

/**
 * Reduces a job whose chunks all succeeded, or failed within its tolerance (the result is then
 * marked partial and lists them); returns the final status.
 */
export async function reduceJob(
  jobId: string,
  deps: ReducerDeps,
  billing: ReduceBilling = {},
): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const [{ value: manifest }, { value: before }] = await Promise.all([
    readJson<Manifest>(deps.store, deps.bucket, keys.manifest),
    readJson<JobStatus>(deps.store, deps.bucket, keys.status),
  ]);
  const job = findJob(deps.jobs, manifest.job);
  // A job cancelled (or ended) meanwhile gets no result object.
  if (TERMINAL_STATES.has(before.status) || before.cancelRequested === true) {
    throw new FanoutError(
      'JOB_NOT_RUNNING',
      `job ${jobId} is ${before.cancelRequested === true ? 'being cancelled' : before.status}; the reducer writes no result`,
      { context: { jobId } },
    );
  }
  // Chunks that failed within the job's tolerance have no output: the result is partial.
  const failedChunks: FailedChunk[] = manifest.chunks
    .filter((c) => c.failed === true)
    .map((c) => ({
      index: c.index,
      ...chunkPlace(c, manifest.objects),
      error: c.errors?.at(-1) ?? { code: 'UNKNOWN', name: 'Error', message: 'no error recorded' },
    }));
  const included = includedChunks(manifest);
  const reduced =
    job.reduce === undefined
      ? await concatenateJob(manifest, included, deps)
      : manifest.keyed !== undefined
        ? await assembleKeyed(manifest, included, deps)
        : await reduceChunks(jobId, job, manifest.params, included, deps);
  return updateStatus(
    deps.store,
    deps.bucket,
    jobId,
    (s) => {
      if (TERMINAL_STATES.has(s.status)) {
        throw new FanoutError(
          'JOB_NOT_RUNNING',
          `job ${jobId} is already ${s.status}; the reducer will not overwrite it`,
          { context: { jobId } },
        );
      }
      return succeeded(s, reduced, failedChunks, billing, deps);
    },
    { events: deps.events },
  );
}

/**
 * Map-only: every included chunk's output, in chunk order, as the JSONL result; a sorted job's
 * partitions' parts in range order.
 */
async function concatenateJob(
  manifest: Manifest,
  included: readonly number[],
  deps: ReducerDeps,
): Promise<Reduced> {
  const keys = jobKeys(manifest.jobId);
  const parallelism = deps.parallelism ?? 16;
  const outputs: ChunkOutput[] = [];
  let records = 0;
  let badRecords = 0;
  for await (const outcome of orderedMap(included.length, parallelism, (k) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(included[k] as number)).then(
      (r) => r.value,
    ),
  )) {
    outputs.push(outcome.output);
    records += outcome.recordsOut;
    badRecords += outcome.badRecords.count;
  }
  const parts =
    manifest.sorted === undefined
      ? outputs
      : (await partitionParts(manifest, parallelism, deps)).map(
          (part): ChunkOutput => ({ kind: 'part', ...part }),
        );
  const result = await concatenateOutputs(parts, keys.result(true), parallelism, deps);
  return { result, records, badRecords };
}

/** A reduce: the included chunks' accumulators merged in order, finished, written as JSON. */
async function reduceChunks(
  jobId: string,
  job: AnyJob,
  params: unknown,
  included: number[],
  deps: ReducerDeps,
): Promise<Reduced> {
  const reduce = job.reduce as NonNullable<AnyJob['reduce']>;
  const fanIn = deps.fanIn ?? 1000;
  const { acc, records, badRecords } =
    deps.invoker !== undefined && deps.reducerFunction !== undefined && included.length > fanIn
      ? await treeReduce(jobId, job, included, deps)
      : await mergeChunks(jobId, included, reduce, deps);
  const value = reduce.finish ? jobCode('reduce.finish', () => reduce.finish?.(acc, params)) : acc;
  const body = textEncoder.encode(stringifyResult(value));
  const key = jobKeys(jobId).result(false);
  await deps.store.put(deps.bucket, key, body, { contentType: 'application/json' });
  return { result: { key, bytes: body.length }, records, badRecords };
}

/** Tree reduce: groups merge in parallel in their own invocations; merged here in order. */
async function treeReduce(jobId: string, job: AnyJob, included: number[], deps: ReducerDeps) {
  const reduce = job.reduce as NonNullable<AnyJob['reduce']>;
  const invoker = deps.invoker as Invoker;
  const reducerFunction = deps.reducerFunction as string;
  const n = included.length;
  const count = Math.ceil(n / (deps.fanIn ?? 1000));
  let acc = reduce.init();
  let records = 0;
  let badRecords = 0;
  for await (const group of orderedMap(count, deps.parallelism ?? 16, (g) => {
    const from = Math.floor((g * n) / count);
    const to = Math.floor(((g + 1) * n) / count);
    const payload = {
      jobId,
      group: { job: job.name, from, to, chunks: included.slice(from, to) },
    };
    const own = deps.reducerTimeoutMs ?? 900_000;
    // A group takes at most the function's timeout; no wait outlasts this invocation, so that a
    // slow group fails the job with its reason instead of timing this one out.
    const left =
      deps.remainingMs === undefined
        ? Number.POSITIVE_INFINITY
        : Math.max(1_000, deps.remainingMs() - 2_000);
    return invoker.invoke<GroupResult>(reducerFunction, payload, {
      timeoutMs: Math.min(own + invocationMarginMs(own), left),
    });
  })) {
    const merged = (await readJson<unknown>(deps.store, deps.bucket, group.key)).value;
    acc = jobCode('reduce.merge', () => reduce.merge(acc, merged));
    records += group.records;
    badRecords += group.badRecords;
  }
  return { acc, records, badRecords };
}

/**
 * The status of a job that ends SUCCEEDED now: its usage (the coordinator run's, this
 * reducer's, and the coordinator's while it waited), its runs, its cost and its result.
 */
function succeeded(
  s: JobStatus,
  reduced: Reduced,
  failedChunks: FailedChunk[],
  billing: ReduceBilling,
  deps: ReducerDeps,
): JobStatus {
  const own = deps.meter?.();
  const waiting =
    own === undefined || billing.waitingMemoryMb === undefined
      ? undefined
      : {
          ...noUsage(),
          lambdaGbSeconds: (own.durationMs / 1000) * (billing.waitingMemoryMb / 1024),
        };
  const usage = addUsage(s.usage, billing.usage, own?.usage, waiting);
  const now = deps.clock.iso();
  const runs: FunctionRun[] = [...(s.runs ?? [])];
  if (billing.coordinatorRun !== undefined) {
    const c = billing.coordinatorRun;
    runs.push({ ...c, endedAt: now, billedMs: Math.ceil(c.billedMs + (own?.durationMs ?? 0)) });
  }
  if (own?.startedAt !== undefined) {
    runs.push({
      role: 'reducer',
      startedAt: new Date(own.startedAt).toISOString(),
      endedAt: now,
      billedMs: Math.ceil(own.durationMs),
      memoryMb: own.memoryMb ?? 0,
    });
  }
  return {
    ...s,
    runs,
    status: 'SUCCEEDED',
    finishedAt: deps.clock.iso(),
    usage,
    cost: estimateCost(usage, billing.pricing ?? DEFAULT_PRICING),
    result: {
      key: reduced.result.key,
      bytes: reduced.result.bytes,
      records: reduced.records,
      badRecords: reduced.badRecords,
      ...(failedChunks.length > 0 && { partial: true, failedChunks }),
    },
  };
}

/** Parts up to this size are fetched ahead, `parallelism` at a time, when streamed. */
const PREFETCH_PART_BYTES = 1024 * 1024;

/**
 * Map-only: the chunks' outputs in chunk order, as one JSONL object. Small outputs are inline in
 * their outcomes; large ones are part objects. When every output is a part and all but the last
 * are at least 5 MiB, S3 assembles them itself (multipart UploadPartCopy): no byte passes through
 * the reducer. Otherwise the outputs stream through it in order; small parts are fetched ahead
 * in parallel (at most `parallelism` × 1 MiB held), large ones are streamed when their turn
 * comes, so memory stays flat. Every part read is pinned to its ETag.
 */
async function concatenateOutputs(
  all: readonly ChunkOutput[],
  key: string,
  parallelism: number,
  deps: ReducerDeps,
): Promise<{ key: string; bytes: number }> {
  const { store, bucket } = deps;
  const outputs = all.filter((o) =>
    o.kind === 'inline' ? o.text !== '' : o.kind === 'part' && o.bytes > 0,
  );
  const parts = outputs.flatMap((o): ObjectInfo[] =>
    o.kind === 'part' ? [{ bucket, key: o.key, size: o.bytes, etag: o.etag }] : [],
  );
  const composable =
    parts.length > 1 &&
    parts.length === outputs.length &&
    parts.length <= 10_000 &&
    parts.slice(0, -1).every((p) => p.size >= MIN_COMPOSE_PART);
  if (composable) {
    const { size } = await store.compose(bucket, key, parts, {
      contentType: 'application/x-ndjson',
    });
    return { key, bytes: size };
  }
  const readAll = async (part: ObjectInfo) => {
    const pieces: Uint8Array[] = [];
    for await (const piece of store.readRange(part, 0, part.size)) pieces.push(piece);
    return pieces;
  };
  async function* body() {
    for await (const fetched of orderedMap(outputs.length, parallelism, async (i) => {
      const output = outputs[i]!;
      if (output.kind === 'inline') return [textEncoder.encode(output.text)];
      if (output.kind !== 'part') throw new Error(`unexpected ${output.kind} output`);
      const part = { bucket, key: output.key, size: output.bytes, etag: output.etag };
      return part.size <= PREFETCH_PART_BYTES ? readAll(part) : part;
    })) {
      if (Array.isArray(fetched)) yield* fetched;
      else yield* store.readRange(fetched, 0, fetched.size);
    }
  }
  const { size } = await store.upload(bucket, key, body(), { contentType: 'application/x-ndjson' });
  return { key, bytes: size };
}
