/**
 * One chunk, start to finish: read the owned records of each of the chunk's segments (a byte
 * range of one object each), map them in dataset order, and write the chunk's outcome (and, for
 * a large map-only output, its part; for a keyed job, its runs; for a sorted one, its sorted
 * run: sort-chunk.ts). Memory stays flat whatever the chunk size: bytes stream in, a large
 * map-only output streams out through a bounded pipe, a reduce keeps only its accumulator, and
 * a sorted chunk spills to local disk past its budget. Small objects are fetched ahead, several at a time, so a chunk of many objects
 * does not pay one request latency after another.
 */
import { readAll } from '../base/bytes.ts';
import {
  BadRecordError,
  CorruptInputError,
  FanoutError,
  JobCodeError,
  PreconditionFailedError,
} from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import { type BytePipe, createBytePipe } from '../base/pipe.ts';
import type { Clock, ObjectInfo, ObjectStore } from '../base/ports.ts';
import { type ReadRange, scanOwnedText } from '../data/lines.ts';
import { segmentBytes, segmentPieces } from '../data/plan.ts';
import { createRecordDecoder, csvHeader, RecordSyntaxError, SKIP } from '../data/records.ts';
import {
  type BadRecordSample,
  type ChunkOutcome,
  type ChunkOutput,
  type ChunkSummary,
  type ChunkTask,
  INLINE_OUTPUT_CHARS,
  type InvocationInfo,
  type Kept,
  type Pack,
  type TaskSegment,
} from '../model/documents.ts';
import type { AnyJob } from '../model/job.ts';
import { findJob, type JobCodePart, jobCode, jobCodeError, parseParams } from '../model/job.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson, writeJson } from '../model/status.ts';
import { checkKey } from '../shuffle/hash.ts';
import { checkOrderKey, encodeSorted, type OrderKey, type OrderKind } from '../shuffle/order.ts';
import { DEFAULT_BUCKETS } from '../shuffle/partitions.ts';
import { BucketTable, encodeRuns } from '../shuffle/runs.ts';
import {
  decodeEntry,
  encodeEntry,
  type PieceResult,
  packKey,
  pieceId,
  pieceIdentity,
} from './cache.ts';
import { KeyedSpills, writeSpilledRuns } from './keyed-chunk.ts';
import { readHeader } from './plan-job.ts';
import { putRunObject, type SortBuffer, type Spill, writeSorted } from './sort-chunk.ts';

export type { Spill } from './sort-chunk.ts';

/** How many skipped bad records a chunk outcome keeps as samples. */
export const BAD_RECORD_SAMPLES = 10;
const SNIPPET_CHARS = 120;
/** Whole objects up to this size are fetched ahead of their turn (at most this × the window). */
export const PREFETCH_OBJECT_BYTES = 1024 * 1024;
/** GETs a worker keeps in flight for a chunk's small objects. */
export const SEGMENT_PARALLELISM = 8;

/** What {@link runChunk} needs from its surroundings. */
export interface WorkerDeps {
  store: ObjectStore;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  /** Decompresses a gzip stream (the handler supplies node:zlib; the core stays pure). */
  gunzip: (compressed: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>;
  /** GETs in flight for small objects. @default SEGMENT_PARALLELISM */
  parallelism?: number;
  /** The invocation this chunk runs in (the handler knows), recorded in the outcome. */
  invocation?: InvocationInfo;
  /**
   * Parquet: the rows of the row groups that begin in a segment, with their group's offset
   * (shared/adapters/parquet.ts); `onRead` counts the bytes fetched. @default Parquet is refused
   */
  readParquet?: (
    segment: { object: ObjectInfo; start: number; end: number },
    columns: readonly string[] | undefined,
    onRead: (bytes: number) => void,
  ) => AsyncIterable<{ row: unknown; offset: number }>;
  /**
   * Local disk for a sorted chunk's outputs past a budget (Lambda's ephemeral storage): each
   * spill is a sorted run, merged with the rest at the end. @default no spill: the outputs stay
   * in memory until they are sorted
   */
  spill?: Spill;
}

const textEncoder = new TextEncoder();

/** A record's source line: its text, or (a Parquet row's) a function that makes it when needed. */
type SourceLine = string | (() => string);

function snippetOf(line: SourceLine): string {
  const text = typeof line === 'string' ? line : line();
  return escapeControl(text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}…` : text);
}

/** Control characters and undecodable bytes escaped: never written raw to a terminal or log. */
function escapeControl(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we escape
  return text.replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, (c) =>
    c === '\ufffd' ? '\\ufffd' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null &&
  typeof value === 'object' &&
  typeof (value as { then?: unknown }).then === 'function';

/**
 * Decompressed bytes of a gzip object; a stream that cannot be decompressed (zlib's Z_* errors)
 * is a CorruptInputError naming gzip and the key, which is not retried.
 */
async function* gunzipped(
  bytes: AsyncIterable<Uint8Array>,
  key: string,
): AsyncIterable<Uint8Array> {
  try {
    yield* bytes;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new CorruptInputError(
        `${key} is not valid gzip (${(error as Error).message}); a .gz object is decompressed whole, and this one cannot be`,
        { cause: error, context: { key } },
      );
    }
    throw error;
  }
}

/** A whole object small enough to fetch ahead: its bytes are read before its turn comes. */
const fetchedAhead = (s: TaskSegment) =>
  s.start === 0 && s.end === s.object.size && s.object.size <= PREFETCH_OBJECT_BYTES;

/**
 * Processes one chunk and writes `chunks/{i}.json` (and its part for a large map-only output).
 * Returns a small summary. The outcome is written create-only: the first attempt to finish (a
 * chunk's own, or a backup) wins; a later one removes its own part and reports a duplicate.
 */
export async function runChunk(task: ChunkTask, deps: WorkerDeps): Promise<ChunkSummary> {
  const started = deps.clock.now();
  const startedAt = Date.parse(deps.clock.iso());
  const job = findJob(deps.jobs, task.job);
  const reader = new ChunkReader(task, deps, job, parseParams(job, task.params));
  try {
    await reader.readSegments();
  } catch (error) {
    reader.output?.fail(error);
    reader.pieces?.abandon(error);
    // A failed attempt leaves nothing on the sandbox's disk for the next one.
    await Promise.all(reader.sorted?.spilled.map((f) => f.file.remove()) ?? []);
    await reader.keyedSpills?.remove();
    throw error;
  }
  const result: ChunkOutput =
    reader.keyed !== undefined
      ? await writeRuns(task, deps, reader)
      : reader.sorted !== undefined
        ? await writeSorted(task, deps, reader.sorted)
        : reader.output === undefined
          ? { kind: 'acc', value: reader.acc }
          : await reader.output.finish();
  // The pack is stored before the outcome is written: the index that names it is made from
  // outcomes.
  const kept = await reader.pieces?.written();
  const outcome = outcomeOf(task, deps, reader, result, Math.round(deps.clock.now() - started));
  if (kept !== undefined) outcome.kept = kept;
  if (outcome.reused?.chunk === true) {
    outcome.reused = { ...outcome.reused, startedAt, endedAt: Date.parse(deps.clock.iso()) };
  }
  const summary: ChunkSummary = {
    index: task.index,
    recordsIn: reader.recordsIn,
    recordsOut: reader.recordsOut,
    badRecords: reader.bad.count,
    bytesRead: reader.bytesRead,
    durationMs: outcome.durationMs,
    ...(outcome.bytesProcessed !== undefined && { bytesProcessed: outcome.bytesProcessed }),
    ...(outcome.reused !== undefined && { reused: outcome.reused }),
    ...(kept !== undefined && { kept }),
  };
  // Create-only: when a backup and its original both finish, exactly one outcome (and so one
  // part) counts; the other attempt removes its own part and says it lost.
  try {
    await writeJson(deps.store, task.bucket, jobKeys(task.jobId).outcome(task.index), outcome, {
      ifNoneMatch: '*',
    });
  } catch (error) {
    if (!(error instanceof PreconditionFailedError)) throw error;
    // A PUT retried after its first try landed (an answer lost on the way) finds its own
    // outcome: this attempt won, and its part is the one the outcome names.
    if (await wroteOutcome(task, deps)) return summary;
    if (
      (result.kind === 'part' || result.kind === 'runs' || result.kind === 'sorted') &&
      result.key !== ''
    ) {
      await deps.store.delete(task.bucket, result.key);
    }
    return { ...summary, duplicate: true };
  }
  return summary;
}

/**
 * A keyed chunk's accumulators as one object of sorted runs, one per bucket (shared/core/shuffle):
 * an object per map attempt, whatever the partitions, so a retry or a backup never mixes its
 * runs with another attempt's.
 */
async function writeRuns(
  task: ChunkTask,
  deps: WorkerDeps,
  reader: ChunkReader,
): Promise<ChunkOutput> {
  const accs = reader.keyed as BucketTable;
  const spills = reader.keyedSpills;
  if (spills !== undefined) {
    try {
      await spills.settled();
      if (spills.files.length > 0) {
        const reduce = reader.job.reduce as NonNullable<AnyJob['reduce']>;
        return await writeSpilledRuns(task, deps, spills, accs, (a, b) =>
          jobCode('reduce.merge', () => reduce.merge(a, b)),
        );
      }
    } finally {
      await spills.remove();
    }
  }
  const runs = encodeRuns(accs, bucketsOf(task));
  // Small runs travel in the outcome, as a small map-only output does: no object to write and
  // none to read (a few groups, as by-field's eight, give a few hundred bytes).
  if (runs.bytes.length <= INLINE_OUTPUT_CHARS) {
    return {
      kind: 'runs-inline',
      text: new TextDecoder().decode(runs.bytes),
      bytes: runs.bytes.length,
      offsets: runs.offsets,
      keys: runs.keys,
    };
  }
  return {
    kind: 'runs',
    ...(await putRunObject(task, deps.store, runs.bytes)),
    offsets: runs.offsets,
    keys: runs.keys,
  };
}

/** A keyed chunk's hash buckets: the coordinator's choice, else the default. */
function bucketsOf(task: ChunkTask): number {
  return task.buckets ?? DEFAULT_BUCKETS;
}

/** True when the chunk's outcome is this attempt's (attempt numbers are never reused). */
async function wroteOutcome(task: ChunkTask, deps: WorkerDeps): Promise<boolean> {
  const { value } = await readJson<ChunkOutcome>(
    deps.store,
    task.bucket,
    jobKeys(task.jobId).outcome(task.index),
  );
  return value.attempt === task.attempt;
}

/** The outcome document of a chunk that was read to its end. */
function outcomeOf(
  task: ChunkTask,
  deps: WorkerDeps,
  reader: ChunkReader,
  output: ChunkOutput,
  durationMs: number,
): ChunkOutcome {
  const outcome: ChunkOutcome = {
    index: task.index,
    attempt: task.attempt,
    bytes: segmentBytes(task.segments),
    objects: task.segments.length,
    recordsIn: reader.recordsIn,
    recordsOut: reader.recordsOut,
    badRecords: reader.bad,
    bytesRead: reader.bytesRead,
    bytesProcessed: reader.bytesProcessed,
    durationMs,
    output,
  };
  if (reader.pieces !== undefined) {
    outcome.reused = {
      segments: reader.pieces.reused,
      ...(task.onlyCached === true && { chunk: true }),
    };
  }
  if (deps.invocation !== undefined) {
    const { initMs, ...where } = deps.invocation;
    const endedAt = Date.parse(deps.clock.iso());
    outcome.run = {
      ...(task.dispatchedAt !== undefined && { dispatchedAt: task.dispatchedAt }),
      ...where,
      endedAt,
      billedMs: Math.ceil(endedAt - where.startedAt + initMs),
    };
  }
  return outcome;
}

/**
 * Reads a chunk's segments in dataset order and maps every owned record: a reduce folds it into
 * the accumulator, a map-only job writes it to the output. Counts what it saw.
 */
class ChunkReader {
  recordsIn = 0;
  recordsOut = 0;
  bytesRead = 0;
  /** Input bytes read and mapped (not taken from the cache). */
  bytesProcessed = 0;
  readonly bad = { count: 0, samples: [] as BadRecordSample[] };
  /** A reduce's accumulator: the chunk's, or with reuse, the piece's being read. */
  acc: unknown;
  /**
   * A keyed job's accumulators by key (the combiner: outputs are folded before they leave): the
   * chunk's, or with reuse, the piece's being read.
   */
  keyed: BucketTable | undefined;
  /**
   * A keyed job's combiner past the worker's spill budget: its tables written to local disk,
   * merged back into the runs object at the end (./keyed-chunk.ts).
   */
  readonly keyedSpills: KeyedSpills | undefined;
  /** Reuse: the chunk's pieces, their entries, and the piece being read. */
  readonly pieces: PieceBook | undefined;
  /** A sorted job's outputs with their keys, sorted once the chunk is read, and their kind. */
  readonly sorted: SortBuffer | undefined;
  readonly output: ReturnType<typeof mapOutput> | undefined;
  /** The segment being read, and its records' decoder (a CSV object's is made from its header). */
  private segment: TaskSegment;
  private decode: ((line: string) => unknown) | undefined;

  constructor(
    private readonly task: ChunkTask,
    readonly deps: WorkerDeps,
    readonly job: AnyJob,
    private readonly params: unknown,
  ) {
    this.keyed =
      job.key !== undefined && job.reduce !== undefined
        ? new BucketTable(bucketsOf(task))
        : undefined;
    this.acc = this.keyed === undefined ? job.reduce?.init() : undefined;
    this.keyedSpills =
      this.keyed !== undefined && deps.spill !== undefined
        ? new KeyedSpills(deps.spill)
        : undefined;
    this.sorted =
      job.orderBy !== undefined
        ? { outputs: [], kind: undefined, bytes: 0, spilled: [] }
        : undefined;
    this.output =
      job.reduce === undefined && this.sorted === undefined ? mapOutput(task, deps) : undefined;
    this.segment = task.segments[0] as TaskSegment;
    this.pieces =
      task.cache !== undefined && this.sorted === undefined
        ? new PieceBook(task, task.cache)
        : undefined;
  }

  private where() {
    return { jobId: this.task.jobId, chunk: this.task.index, key: this.segment.object.key };
  }

  /** A malformed record: the chunk fails (onBadRecord 'fail') or it is counted and sampled. */
  private badRecord(line: SourceLine, offset: number, error: unknown): void {
    const reason = escapeControl(error instanceof Error ? error.message : String(error));
    const snippet = snippetOf(line);
    const { key } = this.segment.object;
    if (this.task.onBadRecord === 'fail') {
      throw new BadRecordError(
        `malformed record at byte ${offset} of ${key} (chunk ${this.task.index}): ${reason}; record starts: ${snippet}`,
        { cause: error, context: { ...this.where(), offset, snippet } },
      );
    }
    this.bad.count += 1;
    if (this.bad.samples.length < BAD_RECORD_SAMPLES) {
      this.bad.samples.push({ key, offset, snippet, reason });
    }
  }

  /** What `map` returned: one output, or (a flat job's) an array of them. */
  private readonly emit = (out: unknown): undefined | Promise<void> => {
    if (out === undefined) return undefined;
    if (this.job.flat !== true) {
      this.recordsOut += 1;
      return this.emitOne(out);
    }
    // A flat job's record counts once among the records out when it gives any output.
    if (Array.isArray(out) && out.length > 0) this.recordsOut += 1;
    return this.emitEach(out, 0);
  };

  /** A flat job's outputs from `from` on, in order; waits where one waits (backpressure). */
  private emitEach(outs: unknown, from: number): undefined | Promise<void> {
    if (outs === undefined) return undefined;
    if (!Array.isArray(outs)) {
      const got = outs === null ? 'null' : typeof outs;
      throw new JobCodeError(
        new TypeError(`map returned ${got}`),
        `job map returned ${got} for a record of ${this.segment.object.key} (chunk ${this.task.index}); expected an array of outputs (${this.job.name} is flat) or undefined`,
        this.where(),
      );
    }
    for (let i = from; i < outs.length; i += 1) {
      const waiting = this.emitOne(outs[i]);
      if (waiting !== undefined) return waiting.then(() => this.emitEach(outs, i + 1));
    }
    return undefined;
  }

  /** One output: folded, kept for the sort, or written as a line. */
  private readonly emitOne = (out: unknown): undefined | Promise<void> => {
    if (out === undefined) return undefined;
    const reduce = this.job.reduce;
    if (this.sorted !== undefined) return this.sort(out, this.sorted);
    if (reduce === undefined) {
      const line = `${JSON.stringify(out)}\n`;
      if (this.pieces?.open !== undefined) this.pieces.open.text += line;
      return this.output?.write(line);
    }
    // Which part of the job's code runs, for the error if it throws (a try costs nothing until
    // something throws; a closure per record would).
    let part: JobCodePart = 'key';
    try {
      if (this.keyed === undefined) {
        part = 'reduce.add';
        this.acc = reduce.add(this.acc, out);
        return undefined;
      }
      const key = checkKey(this.job.name, this.job.key?.(out));
      part = 'reduce.add';
      const accs = this.keyed.mapOf(key);
      const acc = accs.get(key);
      if (acc === undefined) {
        accs.set(key, reduce.add(reduce.init(), out));
        // Past the budget, the table goes to disk; with reuse, when its piece is folded in.
        if (this.keyedSpills?.grew(key) === true && this.pieces === undefined) {
          const full = this.keyed;
          this.keyed = new BucketTable(full.buckets);
          return this.keyedSpills.add(full);
        }
      } else {
        // An add that mutates returns the same accumulator: no second write to the Map.
        const next = reduce.add(acc, out);
        if (next !== acc) accs.set(key, next);
      }
      return undefined;
    } catch (error) {
      throw jobCodeError(part, error);
    }
  };

  /** Keeps a sorted job's output with its key, to be sorted when the chunk has been read. */
  private sort(out: unknown, sorted: SortBuffer): undefined | Promise<void> {
    let key: OrderKey;
    try {
      key = checkOrderKey(this.job.name, this.job.orderBy?.(out), sorted.kind);
    } catch (error) {
      throw jobCodeError('orderBy', error);
    }
    sorted.kind ??= typeof key as OrderKind;
    const json = JSON.stringify(out);
    sorted.outputs.push({ key, json });
    sorted.bytes += json.length + 16;
    const spill = this.deps.spill;
    if (spill === undefined || sorted.bytes < spill.budgetBytes) return undefined;
    // Past the budget: these outputs, sorted, go to disk as one run (Lambda's /tmp).
    const run = encodeSorted(sorted.outputs);
    sorted.outputs = [];
    sorted.bytes = 0;
    return spill.write(run.bytes).then((file) => {
      sorted.spilled.push({ file, bytes: run.bytes.length });
    });
  }

  /** One owned line of a text format. */
  private readonly onLine = (line: string, offset: number): undefined | Promise<void> => {
    const waiting = this.route(offset);
    return waiting === undefined
      ? this.onOwnedLine(line, offset)
      : waiting.then(() => this.onOwnedLine(line, offset));
  };

  /** One owned line, once its piece is open. */
  private readonly onOwnedLine = (line: string, offset: number): undefined | Promise<void> => {
    if (this.decode === undefined) {
      // A CSV object's first line is its header, not a record.
      this.decode = createRecordDecoder('csv', csvHeader(line));
      return undefined;
    }
    let record: unknown;
    try {
      record = this.decode(line);
    } catch (error) {
      if (!(error instanceof RecordSyntaxError)) throw error;
      this.recordsIn += 1;
      this.badRecord(line, offset, error);
      return undefined;
    }
    if (record === SKIP) return undefined;
    return this.mapRecord(record, line, offset);
  };

  /** Maps one decoded record; `line` is its source, for a bad-record report. */
  private mapRecord(record: unknown, line: SourceLine, offset: number): undefined | Promise<void> {
    this.recordsIn += 1;
    let out: unknown;
    try {
      out = this.job.map(record, this.params);
    } catch (error) {
      // A job signals "this record is malformed" by throwing RecordSyntaxError from map.
      if (!(error instanceof RecordSyntaxError)) throw withContext(error, this.where(), offset);
      this.badRecord(line, offset, error);
      return undefined;
    }
    if (!isThenable(out)) return this.emit(out);
    const context = this.where();
    return Promise.resolve(out).then(this.emit, (error) => {
      if (!(error instanceof RecordSyntaxError)) throw withContext(error, context, offset);
      this.badRecord(line, offset, error);
    });
  }

  /**
   * Every segment, in order; small whole objects fetched up to `parallelism` ahead (with reuse,
   * an object's entry instead, when it has one).
   */
  async readSegments(): Promise<void> {
    const { task, deps, pieces } = this;
    const ahead = orderedMap(task.segments.length, deps.parallelism ?? SEGMENT_PARALLELISM, (i) => {
      const s = task.segments[i] as TaskSegment;
      // A piece placed in a pack is taken from there (and a whole object is one piece).
      const placed = pieces?.bySegment[i]?.[0]?.place !== undefined;
      // Parquet is read by row group, through its own reader.
      return fetchedAhead(s) && task.format !== 'parquet' && !placed
        ? readAll(deps.store.readRange(s.object, 0, s.end))
        : Promise.resolve(undefined);
    });
    let i = 0;
    for await (const bytes of ahead) {
      this.segment = task.segments[i] as TaskSegment;
      if (pieces === undefined) {
        this.bytesProcessed += this.segment.end - this.segment.start;
        await this.readRange(this.segment, bytes);
      } else await this.readPieces(pieces, i, bytes);
      i += 1;
    }
    pieces?.restore(this);
  }

  /** Bytes `[start, end)` of the segment, by its format's reader. */
  private readRange(range: { start: number; end: number }, bytes: Uint8Array | undefined) {
    return this.task.format === 'parquet' ? this.readParquet(range) : this.readLines(bytes, range);
  }

  /**
   * Reuse: segment `i` piece by piece. A piece with a sound entry is taken from it; each run of
   * the others is read in one scan, its records routed to their piece by offset, and each piece
   * read is kept as an entry of its own.
   */
  private async readPieces(
    book: PieceBook,
    i: number,
    fetched: Uint8Array | undefined,
  ): Promise<void> {
    const all = book.bySegment[i] as Piece[];
    let run: Piece[] = [];
    const scan = async () => {
      if (run.length === 0) return;
      if (this.task.onlyCached === true) throw new CacheMissError(this.task.index);
      const first = run[0] as Piece;
      const last = run[run.length - 1] as Piece;
      book.begin(this, run);
      this.bytesProcessed += last.end - first.start;
      const whole = fetched !== undefined && run.length === all.length;
      await this.readRange({ start: first.start, end: last.end }, whole ? fetched : undefined);
      book.end(this);
      run = [];
    };
    for (const piece of all) {
      const entry = await book.fetch(this.deps.store, piece);
      if (entry === undefined) {
        run.push(piece);
        continue;
      }
      await scan();
      await this.takeEntry(book, entry);
    }
    await scan();
  }

  /** A piece's result, taken from its entry as if it had been read now. */
  private takeEntry(book: PieceBook, entry: PieceResult): void | Promise<void> {
    this.recordsIn += entry.recordsIn;
    this.recordsOut += entry.recordsOut;
    this.bad.count += entry.bad.count;
    for (const sample of entry.bad.samples) {
      if (this.bad.samples.length < BAD_RECORD_SAMPLES) this.bad.samples.push(sample);
    }
    book.reused += 1;
    book.fold(this, entry.entries ?? [], entry.value);
    if (entry.text !== undefined && entry.text !== '') return this.output?.write(entry.text);
  }

  /**
   * Reuse: moves to the piece that holds `offset` (records arrive in offset order); a promise
   * when the record must wait for the pack's upload.
   */
  private route(offset: number): undefined | Promise<void> {
    return this.pieces?.route(this, offset);
  }

  /** The row groups that begin in `range` of the segment, through the Parquet reader. */
  private async readParquet(range: { start: number; end: number }): Promise<void> {
    if (this.deps.readParquet === undefined) {
      throw new FanoutError('UNSUPPORTED', 'Parquet input is not supported by this worker');
    }
    const segment = { ...this.segment, ...range };
    const rows = this.deps.readParquet(segment, this.task.columns, (n) => {
      this.bytesRead += n;
    });
    for await (const { row, offset } of rows) {
      await this.route(offset);
      // The row as JSON text only for a bad-record report: most rows never need it.
      const pending = this.mapRecord(row, () => JSON.stringify(row), offset);
      if (pending !== undefined) await pending;
    }
  }

  /** The lines `range` of the segment owns (its bytes already fetched, or streamed now). */
  private async readLines(
    bytes: Uint8Array | undefined,
    owned: { start: number; end: number },
  ): Promise<void> {
    const { task, deps, segment } = this;
    // A piece read on its own, past byte 0 of a CSV segment that begins there, reads the
    // header itself (once per segment).
    if (task.format === 'csv' && owned.start > 0 && segment.header === undefined) {
      segment.header = await readHeader(deps.store, segment.object);
    }
    this.decode =
      task.format === 'csv' && owned.start === 0
        ? undefined
        : createRecordDecoder(task.format, segment.header);
    if (bytes !== undefined) this.bytesRead += bytes.length;
    const fetch: ReadRange =
      bytes === undefined
        ? (start, end) => deps.store.readRange(segment.object, start, end)
        : async function* (start, end) {
            yield bytes.subarray(start, end);
          };
    const object = segment.object;
    const read: ReadRange = segment.gzip
      ? () => gunzipped(deps.gunzip(fetch(0, object.size)), object.key)
      : fetch;
    // A gzip object is one segment whose decompressed length is unknown until it ends.
    const range = segment.gzip
      ? { start: 0, end: Number.MAX_SAFE_INTEGER, size: Number.MAX_SAFE_INTEGER }
      : { start: owned.start, end: owned.end, size: segment.object.size };
    const scanned = await scanOwnedText(read, range, this.onLine);
    if (bytes === undefined) this.bytesRead += scanned.bytesRead;
  }
}

/**
 * A map-only chunk's output: JSONL kept in memory while it is small (it then travels inside the
 * outcome), and streamed to `parts/{i}.jsonl` through a bounded pipe once it outgrows
 * {@link INLINE_OUTPUT_CHARS}.
 */
function mapOutput(task: ChunkTask, deps: WorkerDeps) {
  const key = jobKeys(task.jobId).part(task.index, true, task.attempt);
  let batch = '';
  let part:
    | { pipe: ReturnType<typeof createBytePipe>; upload: Promise<{ etag: string; size: number }> }
    | undefined;
  const flush = () => {
    if (part === undefined) {
      const pipe = createBytePipe();
      const upload = deps.store.upload(task.bucket, key, pipe.readable, {
        contentType: 'application/x-ndjson',
      });
      // Keep the upload's rejection observed while the scan goes on.
      upload.catch(() => undefined);
      part = { pipe, upload };
    }
    const bytes = textEncoder.encode(batch);
    batch = '';
    return part.pipe.write(bytes);
  };
  return {
    /** Appends output lines; returns a promise when the pipe is full (backpressure). */
    write(lines: string): undefined | Promise<void> {
      batch += lines;
      return batch.length >= INLINE_OUTPUT_CHARS ? flush() : undefined;
    },
    async finish(): Promise<ChunkOutput> {
      if (part === undefined) return { kind: 'inline', text: batch };
      if (batch !== '') await flush();
      part.pipe.close();
      const { etag, size } = await part.upload;
      return { kind: 'part', key, bytes: size, etag };
    },
    fail(error: unknown) {
      part?.pipe.fail(error);
    },
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
  return new JobCodeError(
    error,
    `job map threw on the record at byte ${offset} of ${context.key} (chunk ${context.chunk}): ${message}`,
    { ...context, offset },
  );
}

/** A chunk run by the coordinator from the cache met a piece whose entry is missing or unsound. */
export class CacheMissError extends FanoutError {
  constructor(chunk: number) {
    super('CACHE_MISS', `chunk ${chunk} has a piece without a sound cache entry`, {
      context: { chunk },
    });
  }
}

/** One piece of a chunk (its segment cut on the grid), its id, and where its entry lies. */
interface Piece {
  start: number;
  end: number;
  id: Promise<string>;
  /** Where the newest index places its entry: absent when it has none. */
  place?: { pack: Pack; offset: number; length: number };
  /** Its entry once fetched: undefined when missing or unsound. */
  entry?: Promise<PieceResult | undefined>;
}

/** What the counts were when a piece began to be read: its own are the difference. */
interface Mark {
  recordsIn: number;
  recordsOut: number;
  bad: number;
  samples: number;
}

/** Closed pieces whose entries may wait for the pack's upload before a record waits too. */
const ENTRIES_IN_FLIGHT = 4;

/**
 * Reuse in a worker: the chunk's pieces, their entries fetched (a run of pieces that lie one
 * after another in one pack, in one ranged GET) and kept (every piece read, in one pack object,
 * streamed), and the piece being read (its own accumulator, keyed accumulators or output text,
 * folded into the chunk's when it ends).
 */
class PieceBook {
  /** Pieces by segment, in order. */
  readonly bySegment: Piece[][];
  /** Pieces taken from their entries. */
  reused = 0;
  /** The piece being read: the rest of its run, and its output text (map-only). */
  open: { run: Piece[]; at: number; mark: Mark; text: string } | undefined;
  /** The chunk's reduce so far (the reader's `acc` and `keyed` are the open piece's). */
  private readonly total: { acc?: unknown; keyed?: BucketTable; any: boolean } = {
    any: false,
  };
  private readonly all: Piece[];
  /** The pack this attempt writes, once a piece was read; its entries' places. */
  private pack: { key: string; pipe: BytePipe; upload: Promise<{ etag: string }> } | undefined;
  private packed = 0;
  private readonly kept: Kept['pieces'] = [];
  private writing: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private failed = false;

  constructor(
    private readonly task: ChunkTask,
    private readonly cache: NonNullable<ChunkTask['cache']>,
  ) {
    let n = 0;
    this.bySegment = task.segments.map((segment) =>
      segmentPieces(segment, { size: segment.object.size, gzip: segment.gzip }).map((p) => {
        const at = cache.at[n++];
        const pack = at === 0 || at === undefined ? undefined : cache.packs[at[0]];
        return {
          ...p,
          id: pieceId(pieceIdentity(segment.object, segment.lineage, p.end), p.start, p.end),
          ...(at !== 0 &&
            at !== undefined &&
            pack !== undefined && {
              place: { pack, offset: at[1], length: at[2] },
            }),
        };
      }),
    );
    this.all = this.bySegment.flat();
  }

  /**
   * A piece's entry, when the index placed it and it is there and sound (a missing or altered
   * one is a miss). Fetched with the pieces after it that lie right after it in the same pack.
   */
  fetch(store: ObjectStore, piece: Piece): Promise<PieceResult | undefined> {
    if (piece.entry !== undefined) return piece.entry;
    const place = piece.place;
    if (place === undefined) return Promise.resolve(undefined);
    const run = [piece];
    for (let k = this.all.indexOf(piece) + 1; k < this.all.length; k++) {
      const next = this.all[k] as Piece;
      const last = (run[run.length - 1] as Piece).place as NonNullable<Piece['place']>;
      if (
        next.place === undefined ||
        next.place.pack.key !== place.pack.key ||
        next.place.offset !== last.offset + last.length
      ) {
        break;
      }
      run.push(next);
    }
    const end = (run[run.length - 1] as Piece).place as NonNullable<Piece['place']>;
    const pack = { bucket: this.task.bucket, ...place.pack };
    // A pack gone (expired), replaced or unreadable costs its pieces a read, never the chunk:
    // what is kept is only ever a shortcut.
    const bytes = readAll(store.readRange(pack, place.offset, end.offset + end.length)).catch(
      () => undefined,
    );
    let mine: Promise<PieceResult | undefined> = Promise.resolve(undefined);
    for (const p of run) {
      const at = (p.place?.offset ?? 0) - place.offset;
      p.entry = bytes.then((b) =>
        b === undefined ? undefined : decodeEntry(b.subarray(at, at + (p.place?.length ?? 0))),
      );
      if (p === piece) mine = p.entry;
    }
    return mine;
  }

  /** A run of pieces is about to be read: the first is open. */
  begin(reader: ChunkReader, run: Piece[]): void {
    this.open = { run, at: 0, mark: markOf(reader), text: '' };
    this.fresh(reader);
  }

  /**
   * Records arrive in offset order: closes pieces until the one that holds `offset`. Returns a
   * promise when the pack's upload has fallen behind: the next record waits for it.
   */
  route(reader: ChunkReader, offset: number): undefined | Promise<void> {
    const open = this.open;
    if (open === undefined) return undefined;
    while (open.at < open.run.length - 1 && offset >= (open.run[open.at] as Piece).end) {
      this.close(reader);
      open.at += 1;
      open.mark = markOf(reader);
      open.text = '';
      this.fresh(reader);
    }
    return this.inFlight > ENTRIES_IN_FLIGHT ? this.writing : undefined;
  }

  /** The run was read to its end: its remaining pieces (some perhaps empty) are closed. */
  end(reader: ChunkReader): void {
    const open = this.open as NonNullable<PieceBook['open']>;
    for (;;) {
      this.close(reader);
      if (open.at === open.run.length - 1) break;
      open.at += 1;
      open.mark = markOf(reader);
      open.text = '';
      this.fresh(reader);
    }
    this.open = undefined;
  }

  /**
   * Adds a piece's reduce to the chunk's: a keyed job's accumulators by key (a piece just read
   * gives its own Map, which the chunk's then may be), else its accumulator. Map-only output
   * was written as it came.
   */
  fold(reader: ChunkReader, keyed: Iterable<[string, unknown]>, value: unknown): void {
    const { job, keyedSpills } = reader;
    const reduce = job.reduce;
    if (reduce === undefined) return;
    const total = this.total;
    if (job.key !== undefined) {
      if (total.keyed === undefined && keyed instanceof BucketTable) total.keyed = keyed;
      else {
        total.keyed ??= new BucketTable(bucketsOf(this.task));
        for (const [key, acc] of keyed) {
          const accs = total.keyed.mapOf(key);
          const before = accs.get(key);
          // A piece read now counted its keys as they came; one taken from the cache, here.
          if (before === undefined && !(keyed instanceof BucketTable)) keyedSpills?.grew(key);
          accs.set(key, before === undefined ? acc : reduce.merge(before, acc));
        }
      }
      // Past the spill budget, the chunk's table so far goes to disk, in input order.
      if (keyedSpills?.due() === true && total.keyed !== undefined) {
        void keyedSpills.add(total.keyed);
        total.keyed = undefined;
      }
    } else total.acc = total.any ? reduce.merge(total.acc, value) : value;
    total.any = true;
  }

  /** The chunk's reduce, back in the reader once every piece is in. */
  restore(reader: ChunkReader): void {
    if (reader.keyed !== undefined) {
      reader.keyed = this.total.keyed ?? new BucketTable(bucketsOf(this.task));
    } else if (this.total.any) reader.acc = this.total.acc;
  }

  /**
   * The pack, stored, and where each piece read lies in it; undefined when none was read or the
   * pack could not be stored (a later job then reads those pieces again: keeping is best effort).
   */
  async written(): Promise<Kept | undefined> {
    await this.writing;
    const pack = this.pack;
    if (pack === undefined) return undefined;
    pack.pipe.close();
    const stored = await pack.upload.catch(() => undefined);
    if (stored === undefined || this.failed) return undefined;
    return { pack: { key: pack.key, etag: stored.etag, size: this.packed }, pieces: this.kept };
  }

  /** The attempt failed: its pack's upload is abandoned. */
  abandon(error: unknown): void {
    this.pack?.pipe.fail(error);
  }

  /** A new piece's empty reduce in the reader. */
  private fresh(reader: ChunkReader): void {
    if (reader.keyed !== undefined) reader.keyed = new BucketTable(bucketsOf(this.task));
    else if (reader.job.reduce !== undefined) reader.acc = reader.job.reduce.init();
  }

  /** The open piece is read: its entry goes to the pack, and its reduce into the chunk's. */
  private close(reader: ChunkReader): void {
    const open = this.open as NonNullable<PieceBook['open']>;
    const piece = open.run[open.at] as Piece;
    const result: PieceResult = {
      recordsIn: reader.recordsIn - open.mark.recordsIn,
      recordsOut: reader.recordsOut - open.mark.recordsOut,
      bad: {
        count: reader.bad.count - open.mark.bad,
        samples: reader.bad.samples.slice(open.mark.samples),
      },
    };
    const keyed = reader.keyed;
    if (keyed !== undefined) result.entries = [...keyed];
    else if (reader.job.reduce !== undefined) result.value = reader.acc;
    else result.text = open.text;
    // Encoded now (its JSON is made before encodeEntry first waits): a merge may change an
    // accumulator once it is folded.
    const bytes = encodeEntry(result);
    this.inFlight += 1;
    this.writing = this.writing
      .then(async () => {
        const [entry, id] = await Promise.all([bytes, piece.id]);
        if (this.failed) return;
        const pack = this.packOf(reader.deps.store);
        this.kept.push([id, this.packed, entry.length]);
        this.packed += entry.length;
        await pack.pipe.write(entry);
      })
      .catch(() => {
        this.failed = true;
      })
      .finally(() => {
        this.inFlight -= 1;
      });
    this.fold(reader, keyed ?? [], result.value);
  }

  /** The pack's streamed upload, begun with its first entry. */
  private packOf(store: ObjectStore): NonNullable<PieceBook['pack']> {
    if (this.pack === undefined) {
      const key = packKey(this.cache.prefix, this.task.jobId, this.task.index, this.task.attempt);
      const pipe = createBytePipe();
      const upload = store.upload(this.task.bucket, key, pipe.readable);
      upload.catch(() => undefined);
      this.pack = { key, pipe, upload };
    }
    return this.pack;
  }
}

function markOf(reader: ChunkReader): Mark {
  return {
    recordsIn: reader.recordsIn,
    recordsOut: reader.recordsOut,
    bad: reader.bad.count,
    samples: reader.bad.samples.length,
  };
}
