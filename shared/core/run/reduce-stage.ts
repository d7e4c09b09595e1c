/**
 * A keyed job's reduce stage as a kind of task for the engine: once the map stage has ended, the
 * hash buckets are grouped into partitions from the sizes the map outputs report
 * (shared/core/shuffle/partitions.ts), recorded in the manifest, and each partition runs as a
 * task of the worker function (shared/core/run/partition.ts), with the map chunks' retries,
 * backups, cancel, continuations and billing. A partition is done once its outcome object
 * `partitions/{r}.json` exists. A small shuffle (DIRECT_SHUFFLE_BYTES) gets no partitions: the
 * reducer merges the map outputs itself.
 */
import { FanoutError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type {
  ChunkOutcome,
  JobRequest,
  Manifest,
  PartitionSummary,
  PartitionTask,
  RunSource,
} from '../model/documents.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';
import { DIRECT_SHUFFLE_BYTES, groupBuckets } from '../shuffle/partitions.ts';
import { type Billing, type RunEnd, runTasks, type TaskKind } from './engine/index.ts';
import { engineDeps, type MapStageDeps } from './map-stage.ts';

/** A map output's runs, as its outcome recorded them (`inline`: in the outcome at `key`). */
interface RunsOutput {
  key: string;
  etag: string;
  bytes: number;
  offsets: number[];
  inline?: boolean;
}

/**
 * Runs the partitions that have no outcome yet, planning them first when the manifest has none
 * (the manifest is changed in place; the caller writes it).
 */
export async function runReduceStage(
  manifest: Manifest,
  request: JobRequest,
  run: { epoch: number; billing: Billing },
  deps: MapStageDeps,
): Promise<RunEnd> {
  // Planned already, with no partition tasks: the reducer merges the map outputs itself.
  if (manifest.partitions?.length === 0) return { reason: 'done', dispatched: 0 };
  const outputs = await mapOutputs(manifest, deps);
  const fresh = manifest.partitions === undefined;
  if (manifest.partitions === undefined) {
    const sizes = bucketSizes(outputs, manifest.keyed?.buckets ?? 1);
    const total = sizes.reduce((a, b) => a + b, 0);
    manifest.partitions =
      manifest.keyed?.partitions === undefined && total <= DIRECT_SHUFFLE_BYTES
        ? []
        : groupBuckets(sizes, {
            ...(manifest.keyed?.partitions !== undefined && {
              partitions: manifest.keyed.partitions,
            }),
            concurrency: manifest.concurrency,
          }).map(([first, end], index) => ({ index, attempts: 0, first, end }));
    // Recorded before any partition runs: a run that resumes the job after a crash finds the
    // same partitions, and runs only those without an outcome.
    await writeJson(deps.store, deps.bucket, jobKeys(manifest.jobId).manifest, manifest);
    if (manifest.partitions.length === 0) return { reason: 'done', dispatched: 0 };
  }
  return runTasks(partitionTasks(manifest, outputs, deps), {
    ...engineDeps(manifest, request, { ...run, fresh }, deps),
    // A partition that fails for good fails the job: its keys would be missing from the result.
    tolerated: 0,
  });
}

/** Every included chunk's runs, in chunk order (a chunk failed within tolerance has none). */
async function mapOutputs(manifest: Manifest, deps: MapStageDeps): Promise<RunsOutput[]> {
  const keys = jobKeys(manifest.jobId);
  const included = manifest.chunks.filter((c) => c.failed !== true).map((c) => c.index);
  const outputs: RunsOutput[] = [];
  for await (const outcome of orderedMap(included.length, 16, (k) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(included[k]!)).then(
      (r) => r.value,
    ),
  )) {
    const output = outcome.output;
    if (output.kind === 'runs-inline') {
      const key = keys.outcome(outcome.index);
      outputs.push({ key, etag: '', bytes: output.bytes, offsets: output.offsets, inline: true });
      continue;
    }
    if (output.kind !== 'runs') {
      throw new FanoutError(
        'BAD_OUTCOME',
        `chunk ${outcome.index} of job ${manifest.jobId} holds a ${output.kind} output, not runs`,
        { context: { jobId: manifest.jobId, chunk: outcome.index } },
      );
    }
    outputs.push(output);
  }
  return outputs;
}

/** Bytes per bucket over every map output. */
function bucketSizes(outputs: readonly RunsOutput[], buckets: number): number[] {
  const sizes = new Array<number>(buckets).fill(0);
  for (const { offsets } of outputs) {
    for (let b = 0; b < buckets; b++) sizes[b]! += offsets[b + 1]! - offsets[b]!;
  }
  return sizes;
}

/** The partitions as a kind of task. */
export function partitionTasks(
  manifest: Manifest,
  outputs: readonly RunsOutput[],
  deps: MapStageDeps,
): TaskKind<PartitionTask, PartitionSummary> {
  const keys = jobKeys(manifest.jobId);
  const partitions = manifest.partitions ?? [];
  const sources = (index: number): RunSource[] => {
    const { first, end } = partitions[index]!;
    return outputs
      .map(
        (o): RunSource => ({
          key: o.key,
          etag: o.etag,
          size: o.bytes,
          start: o.offsets[first]!,
          end: o.offsets[end]!,
          ...(o.inline === true && { inline: true }),
        }),
      )
      .filter((s) => s.end > s.start);
  };
  return {
    functionName: deps.workerFunction,
    timeoutMs: deps.workerTimeoutMs,
    records: partitions,
    progress: 'partitions',
    size: (index) => sources(index).reduce((sum, s) => sum + s.end - s.start, 0),
    prepare(index) {
      const { first, end } = partitions[index]!;
      const from = sources(index);
      return (attempt, dispatchedAt) => ({
        kind: 'partition',
        jobId: manifest.jobId,
        job: manifest.job,
        params: manifest.params,
        bucket: deps.bucket,
        index,
        attempt,
        dispatchedAt,
        first,
        end,
        sources: from,
      });
    },
    recordsOf: () => 0,
    async finished() {
      const indexes = (await deps.store.list(deps.bucket, `${keys.root}/partitions/`))
        .map((o) => Number(/\/(\d+)\.json$/.exec(o.key)?.[1]))
        .filter((i) => Number.isInteger(i) && i < partitions.length);
      return { indexes: [...new Set(indexes)], records: 0, bytes: 0 };
    },
    failure(index, error) {
      const { first, end, attempts } = partitions[index]!;
      const message = error instanceof Error ? error.message : String(error);
      return new FanoutError(
        error instanceof FanoutError ? error.code : 'PARTITION_FAILED',
        `partition ${index} (buckets ${first}-${end - 1}) failed after ${attempts} attempt(s): ${message}`,
        { cause: error, context: { partition: index } },
      );
    },
  };
}
