/**
 * A keyed or sorted job's reduce stage as a kind of task for the engine: once the map stage has
 * ended, the partitions are planned from what the map outputs report (a keyed job's hash
 * buckets grouped by size, shared/core/shuffle/partitions.ts; a sorted job's order cut into
 * ranges from its samples, shared/core/shuffle/order.ts), recorded in the manifest, and each
 * partition runs as a task of the worker function (shared/core/run/partition.ts), with the map
 * chunks' retries, backups, cancel, continuations and billing. A partition is done once its
 * outcome object `partitions/{r}.json` exists. A keyed job's small shuffle
 * (DIRECT_SHUFFLE_BYTES) gets no partitions: the reducer merges the map outputs itself.
 */
import { FanoutError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import {
  type ChunkOutcome,
  includedChunks,
  type JobRequest,
  type Manifest,
  type PartitionSummary,
  type PartitionTask,
  type RunSource,
  taskOrder,
} from '../model/documents.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';
import { cutPoints, mixedKinds, runSlice, type SortedOutput } from '../shuffle/order.ts';
import { DIRECT_SHUFFLE_BYTES, groupBuckets, partitionCount } from '../shuffle/partitions.ts';
import { type Billing, type RunEnd, runTasks, type TaskKind } from './engine/index.ts';
import { engineDeps, type MapStageDeps, manifestWriter, outOfTime } from './map-stage.ts';

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
  const fresh = manifest.partitions === undefined;
  const stage =
    manifest.sorted !== undefined
      ? await sortStage(manifest, deps)
      : hashStage(manifest, await mapOutputs(manifest, deps), deps);
  if (manifest.partitions === undefined) {
    manifest.partitions = stage.plan();
    // Recorded before any partition runs: a run that resumes the job after a crash finds the
    // same partitions, and runs only those without an outcome.
    await writeJson(deps.store, deps.bucket, jobKeys(manifest.jobId).manifest, manifest);
    if (manifest.partitions.length === 0) return { reason: 'done', dispatched: 0 };
  }
  return runTasks(partitionTasks(manifest, stage, deps), {
    ...engineDeps(manifest, request, { ...run, fresh }, deps),
    // A partition that fails for good fails the job: its keys would be missing from the result.
    tolerated: 0,
  });
}

/**
 * How a kind of shuffle plans its partitions, what each one reads, and how many bytes. A
 * partition's sources are made when it is dispatched and dropped when it ends: with 4,096 map
 * outputs and 1,000 partitions in flight they are the coordinator's largest objects (bench 4's
 * 1 TiB scenarios), so each is a plain literal of one shape, and sizes are summed without them.
 */
interface Stage {
  plan(): NonNullable<Manifest['partitions']>;
  sources(index: number): RunSource[];
  size(index: number): number;
  /**
   * The two parts of a partition that ran out of memory or time, in order (buckets, or ranges
   * of the order, whose `first` and `end` the caller numbers), ready for `sources`; undefined
   * when it cannot be cut.
   */
  cut(index: number): Promise<[Part, Part] | undefined>;
}

/** A partition's place, as a cut makes it. */
type Part = Pick<NonNullable<Manifest['partitions']>[number], 'first' | 'end' | 'range'>;

/**
 * A keyed job's: groups of hash buckets, each read from every map output's runs. A partition that
 * ran out of memory or time is cut between its buckets, where its bytes are halved.
 */
function hashStage(manifest: Manifest, outputs: RunsOutput[], deps: MapStageDeps): Stage {
  let bounds: BucketBounds | undefined;
  const boundsOf = () => {
    bounds ??= bucketBounds(outputs, manifest.partitions ?? []);
    return bounds;
  };
  const sliceOf = (index: number) => {
    const { first, end } = manifest.partitions![index]!;
    return { starts: boundsOf().at(first), ends: boundsOf().at(end) };
  };
  return {
    plan() {
      const sizes = bucketSizes(outputs, manifest.keyed?.buckets ?? 1);
      const total = sizes.reduce((a, b) => a + b, 0);
      return manifest.keyed?.partitions === undefined && total <= DIRECT_SHUFFLE_BYTES
        ? []
        : groupBuckets(sizes, {
            ...(manifest.keyed?.partitions !== undefined && {
              partitions: manifest.keyed.partitions,
            }),
            concurrency: manifest.concurrency,
          }).map(([first, end], index) => ({ index, attempts: 0, first, end }));
    },
    sources(index) {
      const { starts, ends } = sliceOf(index);
      const sources: RunSource[] = [];
      for (const [i, o] of outputs.entries()) {
        const start = starts[i]!;
        const end = ends[i]!;
        if (end <= start) continue;
        sources.push(
          o.inline === true
            ? { key: o.key, etag: o.etag, size: o.bytes, start, end, inline: true }
            : { key: o.key, etag: o.etag, size: o.bytes, start, end },
        );
      }
      return sources;
    },
    size(index) {
      const { starts, ends } = sliceOf(index);
      let bytes = 0;
      for (let i = 0; i < outputs.length; i++) bytes += ends[i]! - starts[i]!;
      return bytes;
    },
    async cut(index) {
      const { first, end } = manifest.partitions![index]!;
      if (end - first < 2) return;
      // The bucket offsets were dropped once the partitions were planned: read them again (a
      // split is rare, and reads each map outcome once).
      const fresh = await mapOutputs(manifest, deps);
      const sizes = bucketSizes(fresh, manifest.keyed?.buckets ?? 1).slice(first, end);
      const half = sizes.reduce((a, b) => a + b, 0) / 2;
      let at = first + 1;
      for (let sum = sizes[0]!; at < end - 1 && sum + sizes[at - first]! <= half; at++) {
        sum += sizes[at - first]!;
      }
      boundsOf().add(
        at,
        fresh.map((o) => o.offsets[at]!),
      );
      return [
        { first, end: at },
        { first: at, end },
      ];
    },
  };
}

/**
 * Each map output's byte offsets at the buckets where partitions begin and end only (R + 1 of
 * them, not one per bucket: 8,192 at 1 TiB), kept once the partitions are planned; the bucket
 * offsets are dropped. A split adds the bucket it cuts at.
 */
interface BucketBounds {
  /** Every map output's offset at `bucket`'s start. */
  at(bucket: number): Float64Array;
  add(bucket: number, offsets: readonly number[]): void;
}

function bucketBounds(
  outputs: RunsOutput[],
  partitions: NonNullable<Manifest['partitions']>,
): BucketBounds {
  const columns = new Map<number, Float64Array>();
  for (const p of partitions) {
    for (const bucket of [p.first, p.end]) {
      if (!columns.has(bucket)) columns.set(bucket, new Float64Array(outputs.length));
    }
  }
  for (const [i, o] of outputs.entries()) {
    for (const [bucket, column] of columns) column[i] = o.offsets[bucket] ?? 0;
    o.offsets = [];
  }
  return {
    at: (bucket) => columns.get(bucket)!,
    add: (bucket, offsets) => {
      columns.set(bucket, Float64Array.from(offsets));
    },
  };
}

/**
 * A sorted job's: ranges of the order of about equal bytes, cut from the samples the map
 * outputs report (shared/core/shuffle/order.ts); each reads a slice of every run.
 */
async function sortStage(manifest: Manifest, deps: MapStageDeps): Promise<Stage> {
  const outputs = await sortedOutputs(manifest, deps);
  return {
    plan() {
      const total = outputs.reduce((sum, o) => sum + o.bytes, 0);
      if (total === 0) return [];
      const count = manifest.sorted?.partitions ?? partitionCount(total, manifest.concurrency);
      const cuts = cutPoints(outputs, count);
      return Array.from({ length: cuts.length + 1 }, (_, r) => ({
        index: r,
        attempts: 0,
        first: r,
        end: r + 1,
        range: {
          ...(r > 0 && { from: cuts[r - 1]! }),
          ...(r < cuts.length && { to: cuts[r]! }),
        },
      }));
    },
    sources(index) {
      const range = manifest.partitions![index]!.range ?? {};
      const sources: RunSource[] = [];
      for (const o of outputs) {
        const { start, end, pos } = runSlice(o, range);
        if (end <= start) continue;
        sources.push({ key: o.key, etag: o.etag, size: o.bytes, chunk: o.chunk, start, end, pos });
      }
      return sources;
    },
    size(index) {
      const range = manifest.partitions![index]!.range ?? {};
      let bytes = 0;
      for (const o of outputs) {
        const { start, end } = runSlice(o, range);
        bytes += end - start;
      }
      return bytes;
    },
    async cut(index) {
      // The sample that halves the range's bytes: a point of the order strictly inside it.
      const { first, end, range = {} } = manifest.partitions![index]!;
      const [at] = cutPoints(outputs, 2, range);
      if (at === undefined) return;
      return [
        { first, end, range: { ...(range.from && { from: range.from }), to: at } },
        { first, end, range: { from: at, ...(range.to && { to: range.to }) } },
      ];
    },
  };
}

/**
 * Every included chunk's sorted run with its samples, in chunk order; fails the job when its
 * orderBy returned numbers in one chunk and strings in another.
 */
async function sortedOutputs(
  manifest: Manifest,
  deps: MapStageDeps,
): Promise<(SortedOutput & { key: string; etag: string })[]> {
  const outputs: (SortedOutput & { key: string; etag: string })[] = [];
  let kind: { keys: string; chunk: number } | undefined;
  for await (const outcome of includedOutcomes(manifest, deps)) {
    const output = outcome.output;
    if (output.kind !== 'sorted') throw notOf(manifest, outcome, 'a sorted run');
    if (output.keys !== undefined) {
      if (kind !== undefined && kind.keys !== output.keys) {
        throw mixedKinds(
          manifest.job,
          kind.keys,
          output.keys,
          ` (${kind.keys}s in chunk ${kind.chunk}, ${output.keys}s in chunk ${outcome.index})`,
        );
      }
      kind ??= { keys: output.keys, chunk: outcome.index };
    }
    if (output.bytes === 0) continue;
    const { key, etag, bytes, samples } = output;
    outputs.push({ chunk: outcome.index, key, etag, bytes, samples });
  }
  return outputs;
}

/** The outcomes of the chunks that count (a chunk failed within tolerance has none). */
function includedOutcomes(manifest: Manifest, deps: MapStageDeps): AsyncIterable<ChunkOutcome> {
  const keys = jobKeys(manifest.jobId);
  const included = includedChunks(manifest);
  return orderedMap(included.length, 16, (k) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(included[k]!)).then(
      (r) => r.value,
    ),
  );
}

/** A chunk outcome whose output is not what the job's shuffle writes. */
function notOf(manifest: Manifest, outcome: ChunkOutcome, expected: string): FanoutError {
  return new FanoutError(
    'BAD_OUTCOME',
    `chunk ${outcome.index} of job ${manifest.jobId} holds a ${outcome.output.kind} output, not ${expected}`,
    { context: { jobId: manifest.jobId, chunk: outcome.index } },
  );
}

/** Every included chunk's runs, in chunk order (a chunk failed within tolerance has none). */
async function mapOutputs(manifest: Manifest, deps: MapStageDeps): Promise<RunsOutput[]> {
  const keys = jobKeys(manifest.jobId);
  const outputs: RunsOutput[] = [];
  for await (const outcome of includedOutcomes(manifest, deps)) {
    const output = outcome.output;
    if (output.kind === 'runs-inline') {
      const key = keys.outcome(outcome.index);
      outputs.push({ key, etag: '', bytes: output.bytes, offsets: output.offsets, inline: true });
      continue;
    }
    if (output.kind !== 'runs') throw notOf(manifest, outcome, 'runs');
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

/** The partitions as a kind of task; `sources` says what each one reads. */
export function partitionTasks(
  manifest: Manifest,
  stage: Pick<Stage, 'sources' | 'size' | 'cut'>,
  deps: MapStageDeps,
): TaskKind<PartitionTask, PartitionSummary> {
  const keys = jobKeys(manifest.jobId);
  const partitions = manifest.partitions ?? [];
  const persist = manifestWriter(manifest, deps);
  return {
    functionName: deps.workerFunction,
    timeoutMs: deps.workerTimeoutMs,
    records: partitions,
    progress: 'partitions',
    size: (index) => stage.size(index),
    prepare(index) {
      const { first, end, range } = partitions[index]!;
      const from = stage.sources(index);
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
        ...(manifest.keyed !== undefined && { buckets: manifest.keyed.buckets }),
        sources: from,
        ...(range !== undefined && { range }),
      });
    },
    recordsOf: () => 0,
    async finished() {
      // A split partition's outcome (written by an attempt that ended after the split) does not
      // count: its parts' do.
      const indexes = (await deps.store.list(deps.bucket, `${keys.root}/partitions/`))
        .map((o) => Number(/\/(\d+)\.json$/.exec(o.key)?.[1]))
        .filter((i) => Number.isInteger(i) && i < partitions.length && !partitions[i]?.split);
      return { indexes: [...new Set(indexes)], records: 0, bytes: 0 };
    },
    failure(index, error) {
      const { attempts } = partitions[index]!;
      const message = error instanceof Error ? error.message : String(error);
      return new FanoutError(
        error instanceof FanoutError ? error.code : 'PARTITION_FAILED',
        `partition ${index} (${describePartition(partitions, index)}) failed after ${attempts} attempt(s): ${message}`,
        { cause: error, context: { partition: index } },
      );
    },
    async split(index, error) {
      const cut = await stage.cut(index);
      if (cut === undefined) {
        const message = error instanceof Error ? error.message : String(error);
        const what =
          partitions[index]!.range === undefined
            ? 'the keys of one hash bucket need'
            : 'the range holds one sample of the order, and it needs';
        throw new FanoutError(
          'PARTITION_TOO_BIG',
          `partition ${index} (${describePartition(partitions, index)}) ran out of ${outOfTime(error) ? 'time' : 'memory'} and cannot be split further: ${what} more than the worker has (raise the worker's memory or timeout): ${message}`,
          { cause: error, context: { partition: index } },
        );
      }
      const parts = cut.map((shape) => {
        const part = partitions.length;
        // A range's first and end are its own index and the next (see Manifest.partitions).
        const place = shape.range === undefined ? shape : { ...shape, first: part, end: part + 1 };
        partitions.push({ index: part, attempts: 0, ...place, from: index });
        return part;
      });
      partitions[index]!.split = parts;
      await persist();
      return parts;
    },
  };
}

/** `buckets 0-127`, or a sorted job's `range 3 of 8`. */
function describePartition(partitions: NonNullable<Manifest['partitions']>, index: number): string {
  const { first, end, range } = partitions[index]!;
  return range === undefined ? `buckets ${first}-${end - 1}` : rangeOfOrder(partitions, index);
}

/** A sorted job's range by its place in the order: `range 3 of 8` (its parts, when split). */
function rangeOfOrder(partitions: NonNullable<Manifest['partitions']>, index: number): string {
  const order = taskOrder(partitions);
  const at = order.indexOf(index);
  return at < 0 ? `range ${index} (split)` : `range ${at + 1} of ${order.length}`;
}
