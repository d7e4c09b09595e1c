/**
 * The reducer: checks that every chunk has its outcome, merges the parts in chunk order (a
 * reduce) or concatenates them in chunk order (map-only, which keeps input order), writes the
 * result, and only then marks the job SUCCEEDED. A missing outcome fails the job: nothing that
 * looks like a finished result is written from partial data.
 */
import { FanoutError } from './errors.ts';
import type { AnyJob } from './job.ts';
import { findJob } from './job.ts';
import { jobKeys } from './keys.ts';
import type { ChunkOutcome, FailedChunk, JobStatus, Manifest } from './model.ts';
import { stringifyResult } from './ordered.ts';
import { orderedMap } from './ordered-map.ts';
import { type Clock, MIN_COMPOSE_PART, type ObjectInfo, type ObjectStore } from './ports.ts';
import { readJson, TERMINAL_STATES, updateStatus } from './status.ts';

/** What {@link reduceJob} needs from its surroundings. */
export interface ReducerDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** The bucket that holds jobs/. */
  bucket: string;
  /** Parts and outcomes fetched at once. @default 16 */
  parallelism?: number;
}

const textEncoder = new TextEncoder();

/**
 * Reduces a job whose chunks all succeeded, or failed within its tolerance (the result is then
 * marked partial and lists them); returns the final status.
 */
export async function reduceJob(jobId: string, deps: ReducerDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const parallelism = deps.parallelism ?? 16;
  const { value: manifest } = await readJson<Manifest>(deps.store, deps.bucket, keys.manifest);
  const job = findJob(deps.jobs, manifest.job);
  // Chunks that failed within the job's tolerance have no part: the result is partial.
  const failedChunks: FailedChunk[] = manifest.chunks
    .filter((c) => c.failed === true)
    .map((c) => ({
      index: c.index,
      key: manifest.objects[c.object]?.key ?? '',
      start: c.start,
      end: c.end,
      error: c.errors?.at(-1) ?? { code: 'UNKNOWN', name: 'Error', message: 'no error recorded' },
    }));
  const included = manifest.chunks.filter((c) => c.failed !== true).map((c) => c.index);
  const n = included.length;

  const outcomes: ChunkOutcome[] = [];
  for await (const outcome of orderedMap(n, parallelism, (k) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(included[k] as number)).then(
      (r) => r.value,
    ),
  )) {
    outcomes.push(outcome);
  }
  const records = outcomes.reduce((sum, o) => sum + o.recordsOut, 0);
  const badRecords = outcomes.reduce((sum, o) => sum + o.badRecords.count, 0);

  let result: { key: string; bytes: number };
  if (job.reduce === undefined) {
    result = await concatenateParts(outcomes, keys.result(true), parallelism, deps);
  } else {
    const reduce = job.reduce;
    let acc: unknown = reduce.init();
    for await (const part of orderedMap(n, parallelism, (i) =>
      readJson<unknown>(deps.store, deps.bucket, outcomes[i]!.part.key).then((r) => r.value),
    )) {
      acc = reduce.merge(acc, part);
    }
    const value = reduce.finish ? reduce.finish(acc, manifest.params) : acc;
    const body = textEncoder.encode(stringifyResult(value));
    const key = keys.result(false);
    await deps.store.put(deps.bucket, key, body, { contentType: 'application/json' });
    result = { key, bytes: body.length };
  }

  return updateStatus(deps.store, deps.bucket, jobId, (s) => {
    if (TERMINAL_STATES.has(s.status)) {
      throw new FanoutError(
        'JOB_NOT_RUNNING',
        `job ${jobId} is already ${s.status}; the reducer will not overwrite it`,
        { context: { jobId } },
      );
    }
    return {
      ...s,
      status: 'SUCCEEDED',
      finishedAt: deps.clock.iso(),
      result: {
        key: result.key,
        bytes: result.bytes,
        records,
        badRecords,
        ...(failedChunks.length > 0 && { partial: true, failedChunks }),
      },
    };
  });
}

/**
 * Map-only: the parts in chunk order, as one JSONL object. When every part but the last is at
 * least 5 MiB, S3 assembles them itself (multipart UploadPartCopy): no byte passes through the
 * reducer. Otherwise the parts stream through it, one after another, so memory stays flat.
 */
async function concatenateParts(
  outcomes: ChunkOutcome[],
  key: string,
  parallelism: number,
  deps: ReducerDeps,
): Promise<{ key: string; bytes: number }> {
  const { store, bucket } = deps;
  const parts: ObjectInfo[] = [];
  for await (const part of orderedMap(outcomes.length, parallelism, (i) =>
    store.head(bucket, outcomes[i]!.part.key),
  )) {
    parts.push(part);
  }
  const nonEmpty = parts.filter((p) => p.size > 0);
  const composable =
    nonEmpty.length > 1 &&
    nonEmpty.length <= 10_000 &&
    nonEmpty.slice(0, -1).every((p) => p.size >= MIN_COMPOSE_PART);
  if (composable) {
    const { size } = await store.compose(bucket, key, nonEmpty, {
      contentType: 'application/x-ndjson',
    });
    return { key, bytes: size };
  }
  async function* body() {
    for (const part of nonEmpty) yield* store.readRange(part, 0, part.size);
  }
  const { size } = await store.upload(bucket, key, body(), { contentType: 'application/x-ndjson' });
  return { key, bytes: size };
}
