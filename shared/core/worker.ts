/**
 * One chunk, start to finish: read the owned records of a byte range, map them, and write the
 * chunk's part and outcome. Memory stays flat whatever the chunk size: bytes stream in, map-only
 * outputs stream out through a bounded pipe, and a reduce keeps only its accumulator.
 */
import { BadRecordError, FanoutError } from './errors.ts';
import type { AnyJob } from './job.ts';
import { findJob, parseParams } from './job.ts';
import { jobKeys } from './keys.ts';
import { type ReadRange, scanOwnedLines } from './lines.ts';
import type { BadRecordSample, ChunkOutcome, ChunkSummary, ChunkTask } from './model.ts';
import { createBytePipe } from './pipe.ts';
import type { Clock, ObjectStore } from './ports.ts';
import { createRecordDecoder, RecordSyntaxError, SKIP } from './records.ts';
import { writeJson } from './status.ts';

/** How many skipped bad records a chunk outcome keeps as samples. */
export const BAD_RECORD_SAMPLES = 10;
const SNIPPET_CHARS = 120;
/** Map outputs are encoded in batches of about this many characters before entering the pipe. */
const OUTPUT_BATCH_CHARS = 256 * 1024;

/** What {@link runChunk} needs from its surroundings. */
export interface WorkerDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** Decompresses a gzip stream (the handler supplies node:zlib; the core stays pure). */
  gunzip: (compressed: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>;
}

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

function snippetOf(line: Uint8Array): string {
  const text = textDecoder.decode(line.subarray(0, SNIPPET_CHARS * 4));
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}…` : text;
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null &&
  typeof value === 'object' &&
  typeof (value as { then?: unknown }).then === 'function';

/**
 * Processes one chunk and writes `parts/{i}` and `chunks/{i}.json`. Returns a small summary.
 * A retried or duplicated invocation overwrites the same keys, so reruns are idempotent.
 */
export async function runChunk(task: ChunkTask, deps: WorkerDeps): Promise<ChunkSummary> {
  const started = deps.clock.now();
  const job = findJob(deps.jobs, task.job);
  const params = parseParams(job, task.params);
  const reduce = job.reduce;
  const keys = jobKeys(task.jobId);
  const partKey = keys.part(task.index, reduce === undefined);
  const decode = createRecordDecoder(task.format, task.header);
  const context = { jobId: task.jobId, chunk: task.index, key: task.object.key };

  let recordsIn = 0;
  let recordsOut = 0;
  const bad = { count: 0, samples: [] as BadRecordSample[] };
  let acc: unknown = reduce?.init();
  const pipe = reduce === undefined ? createBytePipe() : undefined;
  const upload =
    pipe &&
    deps.store.upload(task.bucket, partKey, pipe.readable, {
      contentType: 'application/x-ndjson',
    });
  // Keep the upload's rejection observed even while we are still scanning.
  upload?.catch(() => undefined);
  let batch = '';

  const flush = (): undefined | Promise<void> => {
    if (batch === '' || pipe === undefined) return undefined;
    const bytes = textEncoder.encode(batch);
    batch = '';
    return pipe.write(bytes);
  };

  const badRecord = (line: Uint8Array, offset: number, error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    const snippet = snippetOf(line);
    if (task.onBadRecord === 'fail') {
      throw new BadRecordError(
        `malformed record at byte ${offset} of ${task.object.key} (chunk ${task.index}): ${reason}; record starts: ${snippet}`,
        { cause: error, context: { ...context, offset, snippet } },
      );
    }
    bad.count += 1;
    if (bad.samples.length < BAD_RECORD_SAMPLES) bad.samples.push({ offset, snippet, reason });
  };

  const emit = (out: unknown): undefined | Promise<void> => {
    if (out === undefined) return undefined;
    recordsOut += 1;
    if (reduce !== undefined) {
      acc = reduce.add(acc, out);
      return undefined;
    }
    batch += `${JSON.stringify(out)}\n`;
    return batch.length >= OUTPUT_BATCH_CHARS ? flush() : undefined;
  };

  const onLine = (line: Uint8Array, offset: number): undefined | Promise<void> => {
    // A CSV object's first line is its header (handed to every chunk), not a record.
    if (offset === 0 && task.format === 'csv') return undefined;
    let record: unknown;
    try {
      record = decode(line);
    } catch (error) {
      if (!(error instanceof RecordSyntaxError)) throw error;
      recordsIn += 1;
      badRecord(line, offset, error);
      return undefined;
    }
    if (record === SKIP) return undefined;
    recordsIn += 1;
    let out: unknown;
    try {
      out = job.map(record, params);
    } catch (error) {
      // A job signals "this record is malformed" by throwing RecordSyntaxError from map.
      if (!(error instanceof RecordSyntaxError)) throw withContext(error, context, offset);
      badRecord(line, offset, error);
      return undefined;
    }
    if (!isThenable(out)) return emit(out);
    // The line's bytes are only valid during this call: keep a copy for a late bad-record report.
    const copy = line.slice();
    return Promise.resolve(out).then(emit, (error) => {
      if (!(error instanceof RecordSyntaxError)) throw withContext(error, context, offset);
      badRecord(copy, offset, error);
    });
  };

  const read: ReadRange = task.gzip
    ? () => deps.gunzip(deps.store.readRange(task.object, 0, task.object.size))
    : (start, end) => deps.store.readRange(task.object, start, end);
  // A gzip object is one chunk whose decompressed length is unknown until the stream ends.
  const range = task.gzip
    ? { start: 0, end: Number.MAX_SAFE_INTEGER, size: Number.MAX_SAFE_INTEGER }
    : { start: task.start, end: task.end, size: task.object.size };

  let bytesRead: number;
  let partBytes: number;
  let partEtag: string;
  try {
    ({ bytesRead } = await scanOwnedLines(read, range, onLine));
    if (pipe !== undefined && upload !== undefined) {
      await flush();
      pipe.close();
      ({ size: partBytes, etag: partEtag } = await upload);
    } else {
      const body = JSON.stringify(acc);
      const bytes = textEncoder.encode(body);
      ({ etag: partEtag } = await deps.store.put(task.bucket, partKey, bytes, {
        contentType: 'application/json',
      }));
      partBytes = bytes.length;
    }
  } catch (error) {
    pipe?.fail(error);
    throw error;
  }

  const outcome: ChunkOutcome = {
    index: task.index,
    attempt: task.attempt,
    key: task.object.key,
    start: task.start,
    end: task.end,
    recordsIn,
    recordsOut,
    badRecords: bad,
    bytesRead,
    durationMs: Math.round(deps.clock.now() - started),
    part: { key: partKey, bytes: partBytes, etag: partEtag },
  };
  await writeJson(deps.store, task.bucket, keys.outcome(task.index), outcome);
  return {
    index: task.index,
    recordsIn,
    recordsOut,
    badRecords: bad.count,
    bytesRead,
    durationMs: outcome.durationMs,
  };
}

/** Adds where it happened to an error thrown by a job's map, keeping the original as cause. */
function withContext(
  error: unknown,
  context: { jobId: string; chunk: number; key: string },
  offset: number,
): unknown {
  if (error instanceof FanoutError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new FanoutError(
    'MAP_FAILED',
    `job map threw on the record at byte ${offset} of ${context.key} (chunk ${context.chunk}): ${message}`,
    { cause: error, context: { ...context, offset } },
  );
}
