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
import type { ChunkOutcome, JobStatus, Manifest } from './model.ts';
import { stringifyResult } from './ordered.ts';
import type { Clock, ObjectStore } from './ports.ts';
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
 * Maps `fn` over `0..count-1` with at most `parallelism` calls in flight and yields the results
 * in index order: ordered output with parallel fetching.
 */
export async function* orderedMap<T>(
  count: number,
  parallelism: number,
  fn: (index: number) => Promise<T>,
): AsyncGenerator<T> {
  const window: Promise<T>[] = [];
  let next = 0;
  const fill = () => {
    while (next < count && window.length < parallelism) {
      const p = fn(next++);
      p.catch(() => undefined); // observed when its turn comes
      window.push(p);
    }
  };
  fill();
  while (window.length > 0) {
    const value = await window.shift()!;
    fill();
    yield value;
  }
}

/** Reduces a job whose chunks all succeeded; returns the final status. */
export async function reduceJob(jobId: string, deps: ReducerDeps): Promise<JobStatus> {
  const keys = jobKeys(jobId);
  const parallelism = deps.parallelism ?? 16;
  const { value: manifest } = await readJson<Manifest>(deps.store, deps.bucket, keys.manifest);
  const job = findJob(deps.jobs, manifest.job);
  const n = manifest.chunks.length;

  const outcomes: ChunkOutcome[] = [];
  for await (const outcome of orderedMap(n, parallelism, (i) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(i)).then((r) => r.value),
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
      result: { key: result.key, bytes: result.bytes, records, badRecords },
    };
  });
}

/** Map-only: the parts, streamed in chunk order into one JSONL object. */
async function concatenateParts(
  outcomes: ChunkOutcome[],
  key: string,
  parallelism: number,
  deps: ReducerDeps,
): Promise<{ key: string; bytes: number }> {
  const { store, bucket } = deps;
  async function* body() {
    // HEADs run ahead in parallel; bodies stream one after another so memory stays flat.
    for await (const part of orderedMap(outcomes.length, parallelism, (i) =>
      store.head(bucket, outcomes[i]!.part.key),
    )) {
      yield* store.readRange(part, 0, part.size);
    }
  }
  const { size } = await store.upload(bucket, key, body(), { contentType: 'application/x-ndjson' });
  return { key, bytes: size };
}
