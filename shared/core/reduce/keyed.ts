/**
 * A keyed job's result: its partitions' parts, each in key order, merged by key as they stream
 * into one JSON object (`{"key":value,...}`, keys ascending), so that no process holds every
 * key: the same document a single pass would write. Or a `{"key","value"}` line per key
 * (resultFormat jsonl). A small shuffle with no partitions is merged here from the map runs.
 * A job with a `rank` gets the same entries in rank order instead (./rank.ts).
 */
import { FanoutError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type { ObjectStore } from '../base/ports.ts';
import { type TextUpload, textUpload } from '../base/text-upload.ts';
import {
  type ChunkOutcome,
  type Manifest,
  type PartitionOutcome,
  type RunSource,
  taskOrder,
} from '../model/documents.ts';
import { type AnyJob, findJob, jobCode, parseParams } from '../model/job.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson } from '../model/status.ts';
import { type Entry, finalValues, mergeRuns } from '../run/partition.ts';
import { byKey, mergeSorted } from '../shuffle/merge.ts';
import { compareRanked, type Ranked, Ranking } from '../shuffle/rank.ts';
import { decodeKey, type RunLine, runBatches } from '../shuffle/runs.ts';

/** What the assembly needs. */
export interface KeyedDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  bucket: string;
  /** Outcomes read at once. @default 16 */
  parallelism?: number;
}

const encoder = new TextEncoder();

/**
 * Writes a keyed job's result from its partitions' parts; counts records and bad records from
 * the included chunks' outcomes.
 */
export async function assembleKeyed(
  manifest: Manifest,
  included: readonly number[],
  deps: KeyedDeps,
): Promise<{ result: { key: string; bytes: number }; records: number; badRecords: number }> {
  const keys = jobKeys(manifest.jobId);
  const parallelism = deps.parallelism ?? 16;
  let records = 0;
  let badRecords = 0;
  const outputs: (RunSource & { text?: string })[] = [];
  for await (const outcome of orderedMap(included.length, parallelism, (k) =>
    readJson<ChunkOutcome>(deps.store, deps.bucket, keys.outcome(included[k]!)).then(
      (r) => r.value,
    ),
  )) {
    records += outcome.recordsOut;
    badRecords += outcome.badRecords.count;
    const { output } = outcome;
    if (output.kind === 'runs' && output.bytes > 0) {
      outputs.push({
        key: output.key,
        etag: output.etag,
        size: output.bytes,
        start: 0,
        end: output.bytes,
      });
    } else if (output.kind === 'runs-inline' && output.bytes > 0) {
      const at = keys.outcome(outcome.index);
      outputs.push({
        key: at,
        etag: '',
        size: output.bytes,
        start: 0,
        end: output.bytes,
        inline: true,
        text: output.text,
      });
    }
  }
  const partitions = manifest.partitions ?? [];
  const jsonl = manifest.keyed?.resultFormat === 'jsonl';
  const shape = shapeOf(jsonl);
  const key = keys.result(jsonl);
  const job = findJob(deps.jobs, manifest.job);
  const params = parseParams(job, manifest.params);
  const ranking = Ranking.of(job, params);
  if (partitions.length === 0) {
    // A small shuffle (shared/core/shuffle/partitions.ts): the map outputs merged here.
    const reduce = job.reduce as NonNullable<typeof job.reduce>;
    // One group: a small shuffle's keys are few.
    const { merged: groups } = await mergeRuns(outputs, deps.bucket, deps, (a, b) =>
      jobCode('reduce.merge', () => reduce.merge(a, b)),
    );
    let entries = finalValues(groups[0] as Map<string, Entry>, reduce, params);
    if (ranking !== undefined) {
      for (const [keyJson, valueJson] of entries) {
        ranking.add(decodeKey(keyJson), keyJson, valueJson);
      }
      entries = ranking.ranked();
    }
    let text = shape.open;
    let first = true;
    for (const [keyJson, valueJson] of entries) {
      text += shape.entry(keyJson, valueJson, first);
      first = false;
    }
    const body = encoder.encode(`${text}${shape.close}`);
    await deps.store.put(deps.bucket, key, body, { contentType: shape.contentType });
    return { result: { key, bytes: body.length }, records, badRecords };
  }
  const parts = await partitionParts(manifest, parallelism, deps);
  const result = textUpload(deps.store, deps.bucket, key, shape.contentType);
  try {
    await writeResult(parts, deps, result, shape, ranking);
    const { size } = await result.finish();
    return { result: { key, bytes: size }, records, badRecords };
  } catch (error) {
    result.fail(error);
    throw error;
  }
}

/**
 * Every partition's part, in partition order (a split partition's parts in its place); a
 * partition without an outcome fails the job.
 */
export async function partitionParts(
  manifest: Manifest,
  parallelism: number,
  deps: Pick<KeyedDeps, 'store' | 'bucket'>,
): Promise<PartitionOutcome['part'][]> {
  const keys = jobKeys(manifest.jobId);
  const parts: PartitionOutcome['part'][] = [];
  const order = taskOrder(manifest.partitions ?? []);
  for await (const outcome of orderedMap(order.length, parallelism, (k) =>
    readJson<PartitionOutcome>(deps.store, deps.bucket, keys.partitionOutcome(order[k]!)).then(
      (o) => o.value,
      (error: unknown) => {
        throw new FanoutError(
          'MISSING_OUTCOME',
          `partition ${order[k]} of job ${manifest.jobId} has no outcome: ${(error as Error).message}`,
          { cause: error, context: { jobId: manifest.jobId, partition: order[k] } },
        );
      },
    ),
  )) {
    parts.push(outcome.part);
  }
  return parts;
}

/**
 * How a keyed result is written: one JSON object (`{"key":value,...}`), or a JSONL line per key
 * (`{"key":…,"value":…}`), for results too large for one JSON value. Either way the keys come
 * in ascending order.
 */
interface ResultShape {
  open: string;
  entry(keyJson: string, valueJson: string, first: boolean): string;
  close: string;
  contentType: string;
}

function shapeOf(jsonl: boolean): ResultShape {
  return jsonl
    ? {
        open: '',
        entry: (k, v) => `{"key":${k},"value":${v}}\n`,
        close: '',
        contentType: 'application/x-ndjson',
      }
    : {
        open: '{',
        entry: (k, v, first) => `${first ? '' : ','}${k}:${v}`,
        close: '}',
        contentType: 'application/json',
      };
}

/**
 * The result's entries from the parts, merged by key, into `out`; a ranked job's parts are each
 * in rank order, and are merged by rank (the first `top` of them).
 */
async function writeResult(
  parts: readonly PartitionOutcome['part'][],
  deps: KeyedDeps,
  out: TextUpload,
  shape: ResultShape,
  ranking: Ranking | undefined,
): Promise<void> {
  let written = 0;
  const sources = parts
    .filter((p) => p.bytes > 0)
    .map((p) =>
      runBatches(
        deps.store.readRange(
          { bucket: deps.bucket, key: p.key, size: p.bytes, etag: p.etag },
          0,
          p.bytes,
        ),
      ),
    );
  const entry = ({ keyJson, valueJson }: RunLine) => {
    const pending = out.write(shape.entry(keyJson, valueJson, written === 0));
    written += 1;
    return pending;
  };
  await out.write(shape.open);
  if (ranking === undefined) await mergeSorted(sources, byKey, entry);
  else {
    const top = ranking.top ?? Number.POSITIVE_INFINITY;
    await mergeSorted(
      sources.map((batches) => rankedBatches(batches, ranking)),
      compareRanked,
      (line) => (written < top ? entry(line) : undefined),
    );
  }
  await out.write(shape.close);
}

/** A ranked part's lines with their ranks. */
async function* rankedBatches(
  batches: AsyncIterable<RunLine[]>,
  ranking: Ranking,
): AsyncGenerator<Ranked[]> {
  for await (const lines of batches) {
    yield lines.map(({ key, keyJson, valueJson }) => ({
      rank: ranking.rankOf(key, keyJson, valueJson),
      key,
      keyJson,
      valueJson,
    }));
  }
}
