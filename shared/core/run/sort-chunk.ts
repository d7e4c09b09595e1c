/**
 * A sorted job's map chunk (orderBy): its outputs with their keys, kept in memory and spilled to
 * local disk as sorted runs past a budget, then written as one sorted run with its samples
 * (shared/core/shuffle/order.ts): encoded whole when nothing spilled, else merged from the
 * spills and the rest as it uploads.
 */
import type { ObjectStore } from '../base/ports.ts';
import { textUpload } from '../base/text-upload.ts';
import type { ChunkOutput, ChunkTask, SortSample } from '../model/documents.ts';
import { jobKeys } from '../model/keys.ts';
import { mergeSorted } from '../shuffle/merge.ts';
import {
  compareKeys,
  encodeSorted,
  type OrderKey,
  type OrderKind,
  type SortedLine,
  sampleStep,
  sortedLines,
  utf8Length,
} from '../shuffle/order.ts';
import { wholeLines } from '../shuffle/runs.ts';

/** Local disk, as a sorted chunk spills to it (the handler supplies node:fs; the core stays pure). */
export interface Spill {
  /** Past about this many bytes of outputs (their JSON), the chunk sorts them and writes them out. */
  budgetBytes: number;
  /** Writes one sorted run; returns how to read it back (its pieces, in order) and remove it. */
  write(bytes: Uint8Array): Promise<{ read(): AsyncIterable<Uint8Array>; remove(): Promise<void> }>;
}

/** A sorted chunk's outputs: those in memory (about `bytes` of them), and the runs spilled. */
export interface SortBuffer {
  outputs: { key: OrderKey; json: string }[];
  kind: OrderKind | undefined;
  bytes: number;
  spilled: { file: Awaited<ReturnType<Spill['write']>>; bytes: number }[];
}

/**
 * The spilled runs (oldest first) and the outputs still in memory, merged into one run as it is
 * uploaded: equal keys come from the earlier run first, so input order holds (a stable sort).
 * Samples are taken as the lines go, every `sampleStep` of the merged run's size.
 */
async function mergeSpilled(
  store: ObjectStore,
  bucket: string,
  key: string,
  sorted: SortBuffer,
): Promise<{ bytes: number; etag: string; lines: number; samples: SortSample[] }> {
  const rest = encodeSorted(sorted.outputs);
  sorted.outputs = [];
  const total = sorted.spilled.reduce((sum, f) => sum + f.bytes, rest.bytes.length);
  const step = sampleStep(total);
  const sources = [
    ...sorted.spilled.map((f) => sortedBatches(f.file.read())),
    sortedBatches(
      (async function* () {
        yield rest.bytes;
      })(),
    ),
  ];
  const upload = textUpload(store, bucket, key, 'application/x-ndjson');
  const samples: SortSample[] = [];
  let at = 0;
  let next = 0;
  let pos = 0;
  try {
    await mergeSorted(
      sources,
      (a, b) => compareKeys(a.point.key, b.point.key),
      (line) => {
        if (at >= next) {
          samples.push({ key: line.point.key, pos, offset: at });
          next = at + step;
        }
        pos += 1;
        const text = `${JSON.stringify(line.point.key)}\t${line.json}\n`;
        at += utf8Length(text);
        return upload.write(text);
      },
    );
    const { etag, size } = await upload.finish();
    return { bytes: size, etag, lines: pos, samples };
  } catch (error) {
    upload.fail(error);
    throw error;
  }
}

/** A sorted run's lines, in batches as its pieces arrive (positions are not needed here). */
async function* sortedBatches(pieces: AsyncIterable<Uint8Array>): AsyncGenerator<SortedLine[]> {
  for await (const text of wholeLines(pieces)) yield sortedLines(text, 0, 0);
}

/**
 * A map attempt's runs (a keyed job's, or a sorted job's run) as the attempt's own object:
 * a retry or a backup never mixes its runs with another attempt's.
 */
export async function putRunObject(
  task: ChunkTask,
  store: ObjectStore,
  bytes: Uint8Array,
): Promise<{ key: string; etag: string; bytes: number }> {
  const key = jobKeys(task.jobId).runs(task.index, task.attempt);
  const { etag } = await store.put(task.bucket, key, bytes, {
    contentType: 'application/x-ndjson',
  });
  return { key, etag, bytes: bytes.length };
}

/**
 * A sorted job's outputs, sorted by key, as one object with its samples
 * (shared/core/shuffle/order.ts); an attempt's own, as a keyed job's runs are.
 */
export async function writeSorted(
  task: ChunkTask,
  deps: { store: ObjectStore },
  sorted: SortBuffer,
): Promise<ChunkOutput> {
  const kind = sorted.kind === undefined ? {} : { keys: sorted.kind };
  const key = jobKeys(task.jobId).runs(task.index, task.attempt);
  if (sorted.spilled.length > 0) {
    // Some outputs are on disk: the spilled runs and the rest merge into the object as it goes up.
    try {
      const run = await mergeSpilled(deps.store, task.bucket, key, sorted);
      return { kind: 'sorted', key, ...run, ...kind };
    } finally {
      await Promise.all(sorted.spilled.map((f) => f.file.remove()));
    }
  }
  const run = encodeSorted(sorted.outputs);
  if (run.lines === 0) {
    return { kind: 'sorted', key: '', bytes: 0, etag: '', lines: 0, samples: [], ...kind };
  }
  const stored = await putRunObject(task, deps.store, run.bytes);
  return {
    kind: 'sorted',
    ...stored,
    lines: run.lines,
    samples: run.samples,
    ...kind,
  };
}
