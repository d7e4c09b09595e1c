/**
 * Chunk planning: which bytes of which objects each worker gets. Pure arithmetic over object
 * sizes (and, for small inputs, record offsets), so it is property-tested directly.
 *
 * A dataset is its objects laid end to end, in order. The planner cuts that sequence at a few
 * positions; each run between two cuts is a chunk. A chunk is therefore a contiguous stretch of
 * the dataset: a byte range of one big object, or several small objects packed together (as Step
 * Functions' ItemBatcher packs items), or the tail of one object and the head of the next. Its
 * {@link chunkSegments} are the byte ranges of the objects it touches, one per object.
 */
import { ValidationError } from '../base/errors.ts';

export const MiB = 1024 * 1024;
/** Inputs up to this size are split on record (or object) boundaries instead of byte ranges. */
export const SMALL_INPUT_BYTES = MiB;
/** The default chunk size never goes below this: per-invocation overhead would dominate. */
export const MIN_DEFAULT_CHUNK = MiB;
/** …nor above this: a chunk must finish well inside Lambda's 15-minute limit. */
export const MAX_DEFAULT_CHUNK = 256 * MiB;
/** Chunks per unit of concurrency: enough that a slow chunk does not leave the pool idle. */
export const CHUNKS_PER_SLOT = 4;
/**
 * The most objects one chunk reads: each is a GET of its own, and a worker's time (and its
 * task's payload, which names every object) must stay bounded however small the objects are.
 */
export const MAX_OBJECTS_PER_CHUNK = 1000;

/** One input object as the planner sees it. */
export interface PlanObject {
  size: number;
  /** gzip objects cannot be cut: a chunk holds all of one or none of it. */
  gzip?: boolean;
  /** Sorted offsets where each record begins; given for small inputs that must be cut inside. */
  recordStarts?: readonly number[];
}

/**
 * One chunk: from byte `start` of object `object` to byte `end` of object `lastObject` (or of
 * `object` itself when `lastObject` is absent); every object in between is read whole. Both
 * ends are non-empty: `start` is below the first object's size and `end` is above 0.
 */
export interface ChunkRange {
  index: number;
  object: number;
  start: number;
  /** The chunk's last object, when it is not `object`. */
  lastObject?: number;
  end: number;
}

/** The byte range `[start, end)` of one object that a chunk reads. */
export interface Segment {
  object: number;
  start: number;
  end: number;
}

/** How to split. `chunkSize` and `chunks` exclude each other. */
export interface PlanOptions {
  /** Chunks in flight; the default chunk size and small-input splits aim at it. */
  concurrency: number;
  chunkSize?: number;
  chunks?: number;
  /** @default MAX_OBJECTS_PER_CHUNK */
  maxObjectsPerChunk?: number;
  /**
   * Shrink the last chunks ({@link guidedSizes}) so the job does not end on a few big chunks
   * running alone. Byte-cut inputs only (a small input is dealt by record). @default false
   */
  guidedTail?: boolean;
  /**
   * End the chunks that cut an object where its reuse grid's cells end ({@link cellBytes}),
   * when the chunks are at least a cell: each cell is then read whole by one chunk, in any plan,
   * so that work kept from an earlier run is found again. @default false
   */
  grid?: boolean;
}

/** A guided tail shrinks chunks down to this fraction of the nominal size, and no further. */
export const GUIDED_TAIL_MIN_FRACTION = 1 / 4;
/**
 * Rounds of the pool a guided tail spans. One (textbook guided scheduling) left the straggler
 * simulation's makespan 1.4 s above two, and four only 0.4 s below two for twice the extra
 * chunks (docs/PERFORMANCE.md, bench 4).
 */
export const GUIDED_TAIL_ROUNDS = 2;

/**
 * Chunk sizes for a guided tail, in the manner of guided self-scheduling (OpenMP's
 * `schedule(guided)`): the nominal `size` while more than {@link GUIDED_TAIL_ROUNDS} rounds of
 * the pool are left (a round is concurrency × size bytes), then each chunk that many
 * concurrency-ths of what remains, down to {@link GUIDED_TAIL_MIN_FRACTION} of `size`. The
 * chunks dispatched last are the shortest, so the lanes run out of work at nearly the same
 * time, and a straggler among them is found (and backed up) sooner. With concurrency P, the
 * last two rounds' 2 P chunks become about 4.8 P smaller ones.
 *
 * @returns the size of the chunk that begins at byte `from` of the dataset
 */
export function guidedSizes(
  total: number,
  size: number,
  concurrency: number,
): (from: number) => number {
  const slots = GUIDED_TAIL_ROUNDS * concurrency;
  const least = Math.max(1, Math.ceil(size * GUIDED_TAIL_MIN_FRACTION));
  return (from) => {
    const left = total - from;
    return left > slots * size ? size : Math.max(least, Math.ceil(left / slots));
  };
}

const positiveInt = (name: string, value: number | undefined) => {
  if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
    throw new ValidationError(`${name} must be a positive integer; got ${JSON.stringify(value)}`);
  }
};

/** About {@link CHUNKS_PER_SLOT} chunks per unit of concurrency, within [1 MiB, 256 MiB]. */
export function defaultChunkSize(totalBytes: number, concurrency: number): number {
  const aim = Math.ceil(totalBytes / (CHUNKS_PER_SLOT * concurrency));
  return Math.min(MAX_DEFAULT_CHUNK, Math.max(MIN_DEFAULT_CHUNK, aim));
}

/**
 * True when a small input needs its records' offsets to be split the way {@link planChunks}
 * splits it: fewer splittable objects than tasks, so some object must be cut between records.
 * With at least as many objects as tasks, whole objects are dealt out and nothing need be read.
 */
export function needsRecordStarts(
  objects: readonly Pick<PlanObject, 'size' | 'gzip'>[],
  options: PlanOptions,
): boolean {
  const total = objects.reduce((sum, o) => sum + o.size, 0);
  if (total > SMALL_INPUT_BYTES || options.chunkSize !== undefined) return false;
  const units = objects.filter((o) => o.size > 0).length;
  return units < (options.chunks ?? options.concurrency);
}

/**
 * Plans the chunks of a dataset (objects in dataset order). The chunks, in order, read every
 * byte of every object exactly once; empty objects are read by none; no chunk cuts a gzip object.
 *
 * - Small inputs (≤ 1 MiB, no `chunkSize`) are split like `ProcessPoolExecutor.map`: their tasks
 *   (each record of an object whose `recordStarts` are given, else each whole object) are dealt
 *   into `chunks ?? concurrency` groups of near-equal counts, at most one per task.
 * - Larger inputs are packed into chunks of at most `chunkSize` bytes (default:
 *   {@link defaultChunkSize}): small objects together, each read whole by one chunk, and objects
 *   bigger than a chunk cut into ranges. With `chunks`, the dataset is cut into that many
 *   near-equal runs instead, wherever the cuts fall.
 * - With `guidedTail`, the chunks of the last {@link GUIDED_TAIL_ROUNDS} rounds of the pool
 *   shrink ({@link guidedSizes}); with `chunks`, the rest are total / chunks bytes each.
 *
 * No chunk holds more than `maxObjectsPerChunk` objects; a chunk that would is cut between two.
 *
 * @example
 * ```ts
 * planChunks([{ size: 10 * MiB }], { concurrency: 2, chunkSize: 4 * MiB });
 * // → [{ index: 0, object: 0, start: 0, end: 4 MiB }, { index: 1, object: 0, start: 4 MiB,
 * //      end: 8 MiB }, { index: 2, object: 0, start: 8 MiB, end: 10 MiB }]
 * planChunks([{ size: 300 }, { size: 200 }, { size: 2500 }], { concurrency: 1, chunkSize: 1000 });
 * // → [{ index: 0, object: 0, start: 0, lastObject: 2, end: 500 },
 * //    { index: 1, object: 2, start: 500, end: 1500 }, { index: 2, object: 2, start: 1500, end: 2500 }]
 * ```
 */
export function planChunks(objects: readonly PlanObject[], options: PlanOptions): ChunkRange[] {
  const { concurrency, chunkSize, chunks } = options;
  const maxObjects = options.maxObjectsPerChunk ?? MAX_OBJECTS_PER_CHUNK;
  if (concurrency === undefined) throw new ValidationError('concurrency is required');
  positiveInt('concurrency', concurrency);
  positiveInt('chunkSize', chunkSize);
  positiveInt('chunks', chunks);
  positiveInt('maxObjectsPerChunk', maxObjects);
  if (chunkSize !== undefined && chunks !== undefined) {
    throw new ValidationError('give chunkSize or chunks, not both');
  }
  // Where each object begins in the dataset laid end to end.
  const offsets: number[] = [];
  let total = 0;
  for (const [i, o] of objects.entries()) {
    if (!(Number.isSafeInteger(o.size) && o.size >= 0)) {
      throw new ValidationError(`object ${i} has an invalid size ${JSON.stringify(o.size)}`);
    }
    offsets.push(total);
    total += o.size;
  }
  if (total === 0) return [];
  const guided = options.guidedTail === true;
  const sized = (size: number) => (guided ? guidedSizes(total, size, concurrency) : () => size);
  const cuts =
    total <= SMALL_INPUT_BYTES && chunkSize === undefined
      ? dealTasks(objects, offsets, chunks ?? concurrency)
      : chunks !== undefined
        ? guided
          ? sizedCuts(total, sized(Math.max(1, Math.ceil(total / chunks))))
          : Array.from({ length: chunks - 1 }, (_, k) => Math.floor(((k + 1) * total) / chunks))
        : packCuts(
            objects,
            offsets,
            total,
            sized(chunkSize ?? defaultChunkSize(total, concurrency)),
            options.grid === true,
          );
  return materialize(objects, offsets, total, cuts, maxObjects);
}

/** Cuts wherever the sizes fall: each chunk `sizeAt(its start)` bytes, the last what is left. */
function sizedCuts(total: number, sizeAt: (from: number) => number): number[] {
  const cuts: number[] = [];
  for (let from = sizeAt(0); from < total; from += sizeAt(from)) cuts.push(from);
  return cuts;
}

/**
 * Cuts for chunks of at most `size` bytes (`sizeAt(start)` for the chunk beginning at `start`),
 * filled in order: a chunk ends where the next `size` bytes end, unless that falls inside an
 * object that fits in a chunk of its own (and does not begin the chunk), which then starts the
 * next chunk instead: an object is read by one chunk (one GET) whenever it can be, and only
 * objects bigger than a chunk are cut into ranges (with `grid`, where a cell ends: {@link onGrid}).
 */
function packCuts(
  objects: readonly PlanObject[],
  offsets: readonly number[],
  total: number,
  sizeAt: (from: number) => number,
  grid: boolean,
): number[] {
  const cuts: number[] = [];
  let object = 0;
  for (let from = 0; from + sizeAt(from) < total; ) {
    const size = sizeAt(from);
    const target = from + size;
    while (offsets[object]! + objects[object]!.size <= target) object++;
    const begin = offsets[object] as number;
    const whole = objects[object]!.size <= size || objects[object]!.gzip === true;
    const cut =
      whole && begin > from
        ? begin
        : grid
          ? onGrid(target, begin, objects[object]!, from, size)
          : target;
    cuts.push(cut);
    from = cut;
  }
  return cuts;
}

/**
 * A cut inside an object, moved back to its object's grid ({@link cellBytes}) when that leaves
 * the chunk non-empty: a chunk then ends where a cell ends, whatever the chunk size, so that a
 * cell is read whole by one chunk and keeps its address from run to run (reuse). Chunks smaller
 * than a cell (`size`) are cut where their bytes end.
 */
function onGrid(
  target: number,
  begin: number,
  object: PlanObject,
  from: number,
  size: number,
): number {
  const cell = cellBytes(object.size);
  if (size < cell) return target;
  const snapped = begin + Math.floor((target - begin) / cell) * cell;
  return snapped > from ? snapped : target;
}

/** The smallest cell of the reuse grid (and that of every object under 256 MiB). */
export const MIN_CELL_BYTES = MiB;
/** The largest cell: a chunk of the largest default size holds four. */
export const MAX_CELL_BYTES = 64 * MiB;
/** Cells grow (in powers of two) so that an object has at most about this many. */
export const CELLS_PER_OBJECT = 128;

/**
 * The cell size of an object's reuse grid: the unit that work is kept and reused by
 * (docs/ARCHITECTURE.md, "Stable planning"). Cells begin at multiples of it from the object's
 * start, so appending to an object moves no cell before its last; the size depends on the
 * object's size only by its power of two: 1 MiB up to 256 MiB, then doubling with it, up to
 * 64 MiB.
 */
export function cellBytes(size: number): number {
  let cell = MIN_CELL_BYTES;
  while (cell < MAX_CELL_BYTES && cell * 2 * CELLS_PER_OBJECT <= size) cell *= 2;
  return cell;
}

/**
 * The pieces of a segment: its bytes cut where its object's grid cells end ({@link cellBytes}).
 * A gzip object is one piece (it cannot be cut). A piece is what reuse keeps and addresses: the
 * same bytes of the same pinned object make the same piece in any plan whose chunks end on the
 * grid.
 *
 * @example
 * ```ts
 * segmentPieces({ start: 0, end: 3 * MiB }, { size: 3 * MiB });
 * // → [{ start: 0, end: 1 MiB }, { start: 1 MiB, end: 2 MiB }, { start: 2 MiB, end: 3 MiB }]
 * ```
 */
export function segmentPieces(
  segment: { start: number; end: number },
  object: { size: number; gzip?: boolean },
): { start: number; end: number }[] {
  if (object.gzip === true) return [{ start: segment.start, end: segment.end }];
  const cell = cellBytes(object.size);
  const pieces: { start: number; end: number }[] = [];
  for (let at = segment.start; at < segment.end; ) {
    const next = Math.min(segment.end, (Math.floor(at / cell) + 1) * cell);
    pieces.push({ start: at, end: next });
    at = next;
  }
  return pieces;
}

/**
 * Small inputs: the positions where each task begins, dealt into `groups` groups of near-equal
 * counts; returns where groups 1.. begin. An object's first task begins at the object's start
 * (bytes before its first record hold no record, so no chunk need read them separately).
 */
function dealTasks(
  objects: readonly PlanObject[],
  offsets: readonly number[],
  groups: number,
): number[] {
  const tasks = itemStarts(objects, offsets);
  const n = tasks.length;
  const k = Math.min(groups, n);
  // Group g holds tasks [floor(g n / k), floor((g+1) n / k)): counts differ by at most one.
  return Array.from({ length: k - 1 }, (_, g) => tasks[Math.floor(((g + 1) * n) / k)] as number);
}

/**
 * Where each item of a small input begins in the dataset: each record of an object whose
 * `recordStarts` are given, else each whole (non-empty) object.
 */
function itemStarts(objects: readonly PlanObject[], offsets: readonly number[]): number[] {
  const starts: number[] = [];
  for (const [i, o] of objects.entries()) {
    if (o.size === 0) continue;
    const base = offsets[i] as number;
    const records = o.gzip ? undefined : o.recordStarts;
    starts.push(base);
    for (const s of records?.slice(1) ?? []) if (s > 0 && s < o.size) starts.push(base + s);
  }
  return starts;
}

/**
 * The items a small input is dealt as (see {@link planChunks}): its records, or whole objects.
 * A plan with as many chunks as items runs one item per task, as executor.map calls once per
 * item.
 */
export function itemCount(objects: readonly PlanObject[]): number {
  let at = 0;
  const offsets = objects.map((o) => {
    const offset = at;
    at += o.size;
    return offset;
  });
  return itemStarts(objects, offsets).length;
}

/**
 * Turns cut positions into chunks: moves a cut that falls inside a gzip object to its end, drops
 * duplicates, and adds cuts between objects where a chunk would hold more than `maxObjects`.
 */
function materialize(
  objects: readonly PlanObject[],
  offsets: readonly number[],
  total: number,
  cuts: readonly number[],
  maxObjects: number,
): ChunkRange[] {
  const out: ChunkRange[] = [];
  let object = 0; // the object holding the current position
  let from = 0; // where the current chunk begins
  let objectsInChunk = 0;
  const emit = (to: number) => {
    if (to <= from) return;
    while (offsets[object]! + objects[object]!.size <= from) object++;
    const first = object;
    let last = first;
    while (offsets[last]! + objects[last]!.size < to) last++;
    const range: ChunkRange = {
      index: out.length,
      object: first,
      start: from - offsets[first]!,
      end: to - offsets[last]!,
    };
    if (last !== first) range.lastObject = last;
    out.push(range);
    from = to;
    object = last;
  };
  let next = 0; // the next cut to apply
  for (const [i, o] of objects.entries()) {
    if (o.size === 0) continue;
    const begin = offsets[i] as number;
    const end = begin + o.size;
    if (objectsInChunk === maxObjects) {
      emit(begin);
      objectsInChunk = 0;
    }
    // Cuts at or before this object's start end the chunk before it.
    while (next < cuts.length && (cuts[next] as number) <= begin) {
      emit(cuts[next] as number);
      next++;
    }
    if (from === begin) objectsInChunk = 0;
    objectsInChunk += 1;
    let cutInside = false;
    while (next < cuts.length && (cuts[next] as number) < end) {
      cutInside = true;
      if (!o.gzip) {
        emit(cuts[next] as number);
        objectsInChunk = 1;
      }
      next++;
    }
    // A gzip object is read whole by one chunk: a cut inside it moves to its end.
    if (o.gzip && cutInside) emit(end);
  }
  emit(total);
  return out;
}

/**
 * The segments of a chunk: one byte range per object it reads, in order (empty objects in
 * between are left out).
 */
export function chunkSegments(
  chunk: Pick<ChunkRange, 'object' | 'start' | 'lastObject' | 'end'>,
  objects: readonly { size: number }[],
): Segment[] {
  const last = chunk.lastObject ?? chunk.object;
  const out: Segment[] = [];
  for (let object = chunk.object; object <= last; object++) {
    const start = object === chunk.object ? chunk.start : 0;
    const end = object === last ? chunk.end : (objects[object] as { size: number }).size;
    if (end > start) out.push({ object, start, end });
  }
  return out;
}

/** The bytes a chunk reads (the sum of its segments). */
export function chunkBytes(
  chunk: Pick<ChunkRange, 'object' | 'start' | 'lastObject' | 'end'>,
  objects: readonly { size: number }[],
): number {
  return segmentBytes(chunkSegments(chunk, objects));
}

/** The bytes segments own: the sum of their lengths (a chunk's size, a task's). */
export function segmentBytes(segments: readonly { start: number; end: number }[]): number {
  return segments.reduce((sum, s) => sum + s.end - s.start, 0);
}

/**
 * The bytes under which a chunk is no longer cut by bytes when it runs out of memory or time:
 * below it, a chunk of one line object is cut between its records instead ({@link cutAtRecord}),
 * so that a record too big for the worker is named, and a chunk of anything else fails.
 */
export const SPLIT_FLOOR_BYTES = 64 * 1024;

/** A chunk's place, without its index: what a split makes. */
export type ChunkPlaceRange = Omit<ChunkRange, 'index'>;

/**
 * Cuts a chunk that ran out of memory or time into two halves of near-equal bytes, which
 * together read exactly its bytes (line ownership then keeps each record in one half). The cut
 * falls at the byte midpoint; inside a gzip object, which cannot be cut, at whichever of its
 * edges is nearer and leaves both halves non-empty. Undefined when the chunk is `floor` bytes
 * or fewer and reads one object, or is one gzip object: it cannot be halved.
 *
 * @example
 * ```ts
 * splitChunk({ object: 0, start: 0, end: 1000 }, [{ size: 1000 }], 100);
 * // → [{ object: 0, start: 0, end: 500 }, { object: 0, start: 500, end: 1000 }]
 * ```
 */
export function splitChunk(
  chunk: ChunkPlaceRange,
  objects: readonly PlanObject[],
  floor = SPLIT_FLOOR_BYTES,
): [ChunkPlaceRange, ChunkPlaceRange] | undefined {
  const segments = chunkSegments(chunk, objects);
  const total = segmentBytes(segments);
  if (total < 2) return undefined;
  if (total <= floor) {
    // Small, but of several objects: cut between them (no object need be read to do so).
    return segments.length > 1 ? cutBetween(segments, Math.floor(segments.length / 2)) : undefined;
  }
  const target = Math.floor(total / 2);
  let before = 0; // the chunk's bytes before segment k
  for (const [k, s] of segments.entries()) {
    const length = s.end - s.start;
    if (before + length > target) {
      if (objects[s.object]?.gzip !== true) {
        // The midpoint at a segment's start is a cut between segments (k > 0: total ≥ 2).
        return target === before
          ? cutBetween(segments, k)
          : cutInside(segments, k, s.start + (target - before));
      }
      // A gzip object: cut at its start or its end, whichever is nearer and leaves two halves.
      const atStart = k > 0 ? target - before : Number.POSITIVE_INFINITY;
      const atEnd = k < segments.length - 1 ? before + length - target : Number.POSITIVE_INFINITY;
      if (atStart === Number.POSITIVE_INFINITY && atEnd === Number.POSITIVE_INFINITY) return;
      return cutBetween(segments, atStart <= atEnd ? k : k + 1);
    }
    before += length;
  }
  return undefined;
}

/**
 * Cuts a chunk of one segment of a line object at a record: at the median of the record starts
 * `starts` (offsets in the object) that it owns, so that each half owns some. Undefined when the
 * chunk owns fewer than two records: it cannot be made smaller.
 */
export function cutAtRecord(
  chunk: ChunkPlaceRange,
  starts: readonly number[],
): [ChunkPlaceRange, ChunkPlaceRange] | undefined {
  const owned = starts.filter((p) => p >= chunk.start && p < chunk.end);
  if (owned.length < 2) return undefined;
  const at = owned[Math.floor(owned.length / 2)] as number;
  return [
    { object: chunk.object, start: chunk.start, end: at },
    { object: chunk.object, start: at, end: chunk.end },
  ];
}

/** The chunk that reads exactly `segments` (contiguous, in order, non-empty). */
function rangeOf(segments: readonly Segment[]): ChunkPlaceRange {
  const first = segments[0] as Segment;
  const last = segments[segments.length - 1] as Segment;
  return last.object === first.object
    ? { object: first.object, start: first.start, end: last.end }
    : { object: first.object, start: first.start, lastObject: last.object, end: last.end };
}

/** Halves: segments `[0, k)` and `[k, n)`. */
function cutBetween(segments: readonly Segment[], k: number): [ChunkPlaceRange, ChunkPlaceRange] {
  return [rangeOf(segments.slice(0, k)), rangeOf(segments.slice(k))];
}

/** Halves cut inside segment `k`, at byte `at` of its object. */
function cutInside(
  segments: readonly Segment[],
  k: number,
  at: number,
): [ChunkPlaceRange, ChunkPlaceRange] {
  const s = segments[k] as Segment;
  return [
    rangeOf([...segments.slice(0, k), { object: s.object, start: s.start, end: at }]),
    rangeOf([{ object: s.object, start: at, end: s.end }, ...segments.slice(k + 1)]),
  ];
}
