/**
 * Chunk planning: which byte ranges of which objects each worker gets. Pure arithmetic over
 * object sizes (and, for small inputs, record offsets), so it is property-tested directly.
 */
import { ValidationError } from './errors.ts';

export const MiB = 1024 * 1024;
/** Inputs up to this size are split on record boundaries instead of byte ranges. */
export const SMALL_INPUT_BYTES = MiB;
/** The default chunk size never goes below this: per-invocation overhead would dominate. */
export const MIN_DEFAULT_CHUNK = MiB;
/** …nor above this: a chunk must finish well inside Lambda's 15-minute limit. */
export const MAX_DEFAULT_CHUNK = 256 * MiB;
/** Chunks per unit of concurrency: enough that a slow chunk does not leave the pool idle. */
export const CHUNKS_PER_SLOT = 4;

/** One input object as the planner sees it. */
export interface PlanObject {
  size: number;
  /** gzip objects are not splittable: one chunk each. */
  gzip?: boolean;
  /** Sorted offsets where each record begins; given for small inputs only. */
  recordStarts?: readonly number[];
}

/** One chunk: the byte range `[start, end)` of object number `object`. */
export interface ChunkRange {
  index: number;
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
 * Plans the chunks of a dataset (objects in dataset order). Every object's ranges cover
 * `[0, size)` exactly; empty objects get none; gzip objects get one.
 *
 * Small inputs (≤ 1 MiB, no `chunkSize`, record offsets given) are split like
 * `ProcessPoolExecutor.map`: the records are dealt into `chunks ?? concurrency` groups (at most
 * one per record) of near-equal counts; a group that spans two objects becomes one range in
 * each. Larger inputs are cut into byte ranges of `chunkSize`, or into `chunks` ranges.
 *
 * @example
 * ```ts
 * planChunks([{ size: 10 * MiB }], { concurrency: 2, chunkSize: 4 * MiB });
 * // → [{index 0, object 0, 0..4 MiB}, {index 1, 4..8 MiB}, {index 2, 8..10 MiB}]
 * ```
 */
export function planChunks(objects: readonly PlanObject[], options: PlanOptions): ChunkRange[] {
  const { concurrency, chunkSize, chunks } = options;
  positiveInt('concurrency', concurrency);
  if (concurrency === undefined) throw new ValidationError('concurrency is required');
  positiveInt('chunkSize', chunkSize);
  positiveInt('chunks', chunks);
  if (chunkSize !== undefined && chunks !== undefined) {
    throw new ValidationError('give chunkSize or chunks, not both');
  }
  for (const [i, o] of objects.entries()) {
    if (!(Number.isSafeInteger(o.size) && o.size >= 0)) {
      throw new ValidationError(`object ${i} has an invalid size ${JSON.stringify(o.size)}`);
    }
  }
  const total = objects.reduce((sum, o) => sum + o.size, 0);
  const splittable = objects.filter((o) => o.size > 0 && !o.gzip);
  const small =
    total <= SMALL_INPUT_BYTES &&
    chunkSize === undefined &&
    splittable.every((o) => o.recordStarts !== undefined);
  const ranges = small
    ? planByRecords(objects, chunks ?? concurrency)
    : planByBytes(objects, { concurrency, chunkSize, chunks, total });
  return ranges.map((r, index) => ({ index, ...r }));
}

type Range = Omit<ChunkRange, 'index'>;

function planByRecords(objects: readonly PlanObject[], groups: number): Range[] {
  // Every record in dataset order, as (object, position in that object's recordStarts).
  const owners: { object: number; k: number }[] = [];
  for (const [object, o] of objects.entries()) {
    if (o.size === 0 || o.gzip) continue;
    for (let k = 0; k < (o.recordStarts?.length ?? 0); k++) owners.push({ object, k });
  }
  const n = owners.length;
  const k = Math.min(groups, n);
  // Group g holds records [floor(g n / k), floor((g+1) n / k)): counts differ by at most one.
  const groupOf = (r: number) => Math.floor(((r + 1) * k - 1) / n);
  const out: Range[] = [];
  for (const [object, o] of objects.entries()) {
    if (o.size === 0) continue;
    const starts = o.recordStarts ?? [];
    if (o.gzip || starts.length === 0) {
      out.push({ object, start: 0, end: o.size });
      continue;
    }
    const first = owners.findIndex((r) => r.object === object);
    let rangeStart = 0;
    for (let k2 = 1; k2 < starts.length; k2++) {
      if (groupOf(first + k2) !== groupOf(first + k2 - 1)) {
        const boundary = starts[k2] as number;
        out.push({ object, start: rangeStart, end: boundary });
        rangeStart = boundary;
      }
    }
    out.push({ object, start: rangeStart, end: o.size });
  }
  return out;
}

function planByBytes(
  objects: readonly PlanObject[],
  options: { concurrency: number; chunkSize?: number; chunks?: number; total: number },
): Range[] {
  const counts: (number | undefined)[] = objects.map((o) =>
    o.size > 0 && !o.gzip ? 0 : undefined,
  );
  if (options.chunks !== undefined) {
    // Largest-remainder allocation of N over the splittable bytes, each object at least one.
    const splittable = objects.reduce((s, o) => s + (o.size > 0 && !o.gzip ? o.size : 0), 0);
    const shares = objects.map((o) =>
      o.size > 0 && !o.gzip ? ((options.chunks as number) * o.size) / splittable : 0,
    );
    const base = shares.map((s) => Math.floor(s));
    let left = (options.chunks as number) - base.reduce((a, b) => a + b, 0);
    const order = shares
      .map((s, i) => ({ i, frac: s - Math.floor(s) }))
      .sort((a, b) => b.frac - a.frac || a.i - b.i);
    for (const { i } of order) {
      if (left <= 0) break;
      if (counts[i] === undefined) continue;
      base[i] = (base[i] as number) + 1;
      left -= 1;
    }
    for (const [i, o] of objects.entries()) {
      if (counts[i] !== undefined) counts[i] = Math.min(o.size, Math.max(1, base[i] as number));
    }
  } else {
    const size = options.chunkSize ?? defaultChunkSize(options.total, options.concurrency);
    const out: Range[] = [];
    for (const [object, o] of objects.entries()) {
      if (o.size === 0) continue;
      if (o.gzip) out.push({ object, start: 0, end: o.size });
      else
        for (let at = 0; at < o.size; at += size)
          out.push({ object, start: at, end: Math.min(o.size, at + size) });
    }
    return out;
  }
  const out: Range[] = [];
  for (const [object, o] of objects.entries()) {
    if (o.size === 0) continue;
    if (o.gzip) {
      out.push({ object, start: 0, end: o.size });
      continue;
    }
    const n = counts[object] as number;
    for (let c = 0; c < n; c++) {
      out.push({
        object,
        start: Math.floor((c * o.size) / n),
        end: Math.floor(((c + 1) * o.size) / n),
      });
    }
  }
  return out;
}
