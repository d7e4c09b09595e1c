/**
 * Content-addressed work (docs/ARCHITECTURE.md, "Reuse"): what a piece of the input (a cell of
 * its object's grid, shared/core/data/plan.ts) made, kept under `cache/` in the job bucket and
 * found again by a job that would make it the same way. A piece's address is a hash of
 * everything its result depends on: the code (the worker bundle's identity), the job, its
 * params, how the input is decoded (the job's prefix), and the exact bytes (bucket, key, pinned
 * ETag and VersionId, byte range: the piece's id). A chunk attempt keeps the entries of the
 * pieces it read in one pack object; each job writes an index of where every piece of its input
 * lies, and the next job reads the newest index. Entries are checked (size and SHA-256) before
 * use: a truncated or edited entry is a miss, and the piece is computed again.
 */

import { readAll } from '../base/bytes.ts';
import { crc64nvme } from '../base/crc64.ts';
import { NotFoundError } from '../base/errors.ts';
import { orderedMap } from '../base/parallel.ts';
import type { ObjectInfo, ObjectStore } from '../base/ports.ts';
import { cellBytes } from '../data/plan.ts';
import type { BadRecordSample, Pack, Version } from '../model/documents.ts';
import { readJson, writeJson } from '../model/status.ts';

/** Where entries live in the job bucket (a lifecycle rule expires them: CDK prop `cacheExpiration`). */
export const CACHE_PREFIX = 'cache/';
/** Changes when an entry's format does, so that no entry of another format is ever read. */
const FORMAT = 'fanout-cache/1';

/** What a job's pieces are addressed by, besides their bytes. */
export interface JobIdentity {
  /** The worker code's identity (its bundle's content hash). */
  codeId: string;
  job: string;
  params: unknown;
  format: string;
  columns?: readonly string[];
  onBadRecord: string;
  /** What a piece keeps: an accumulator, a keyed job's accumulators, or output lines. */
  shape: 'acc' | 'keyed' | 'lines';
}

/** What one piece made, as its entry keeps it. */
export interface PieceResult {
  recordsIn: number;
  recordsOut: number;
  bad: { count: number; samples: BadRecordSample[] };
  /** A reduce: the piece's accumulator. */
  value?: unknown;
  /** A keyed reduce: the piece's accumulators by key. */
  entries?: [string, unknown][];
  /** A map-only job: the piece's output, JSONL. */
  text?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function sha256(bytes: Uint8Array): Promise<string> {
  // Never a SharedArrayBuffer's view here (Web Crypto's BufferSource type excludes them).
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The key prefix of a job's entries: `cache/{hash of the job's identity}/`. */
export async function cachePrefix(identity: JobIdentity): Promise<string> {
  const parts = [
    FORMAT,
    identity.codeId,
    identity.job,
    identity.shape,
    identity.params ?? null,
    identity.format,
    identity.columns ?? null,
    identity.onBadRecord,
  ];
  const hash = await sha256(encoder.encode(JSON.stringify(parts)));
  return `${CACHE_PREFIX}${hash.slice(0, 32)}/`;
}

/** A piece's id: a hash of the exact bytes it covers (bucket, key, ETag, VersionId, range). */
export async function pieceId(object: ObjectInfo, start: number, end: number): Promise<string> {
  const bytes = [object.bucket, object.key, object.etag, object.versionId ?? null, start, end];
  return (await sha256(encoder.encode(JSON.stringify(bytes)))).slice(0, 40);
}

/** Where a piece's entry lies: its pack, and its offset and length in it. */
export type Place = { pack: Pack; offset: number; length: number };

/** A pack's key: the job's prefix, then the job, chunk and attempt that wrote it. */
export const packKey = (prefix: string, jobId: string, chunk: number, attempt: number) =>
  `${prefix}packs/${jobId}.${chunk}.${attempt}`;

/** jobs' indexes: where every piece of a job's input lay when it ended. */
interface IndexDocument {
  packs: Pack[];
  /** Piece id → [pack (in `packs`), offset, length]. */
  pieces: Record<string, [number, number, number]>;
}

/**
 * The newest index under the job's prefix (job ids count down, so the first listed is the
 * newest): each piece id and where its entry lies. Empty when there is none.
 */
export async function readIndex(
  prefix: string,
  deps: { store: ObjectStore; bucket: string },
): Promise<Map<string, Place>> {
  const [newest] = await deps.store.list(deps.bucket, `${prefix}index/`);
  const places = new Map<string, Place>();
  if (newest === undefined) return places;
  const { value } = await readJson<IndexDocument>(deps.store, deps.bucket, newest.key);
  for (const [id, [pack, offset, length]] of Object.entries(value.pieces)) {
    const p = value.packs[pack];
    if (p !== undefined) places.set(id, { pack: p, offset, length });
  }
  return places;
}

/** Writes a job's index: where each piece of its input lies (`places`, by piece id). */
export async function writeIndex(
  prefix: string,
  jobId: string,
  places: ReadonlyMap<string, Place>,
  deps: { store: ObjectStore; bucket: string },
): Promise<void> {
  const packs: Pack[] = [];
  const numbers = new Map<string, number>();
  const pieces: IndexDocument['pieces'] = {};
  for (const [id, { pack, offset, length }] of places) {
    let n = numbers.get(pack.key);
    if (n === undefined) {
      n = packs.push(pack) - 1;
      numbers.set(pack.key, n);
    }
    pieces[id] = [n, offset, length];
  }
  await writeJson(deps.store, deps.bucket, `${prefix}index/${jobId}.json`, { packs, pieces });
}

/**
 * An entry's bytes: a header line (format, the body's size and SHA-256), then the body: the
 * counts and the value as one JSON line, then a map-only piece's output as it is.
 */
export async function encodeEntry(result: PieceResult): Promise<Uint8Array> {
  const { text, ...rest } = result;
  const body = encoder.encode(`${JSON.stringify(rest)}\n${text ?? ''}`);
  const header = encoder.encode(
    `${JSON.stringify({ format: FORMAT, bytes: body.length, sha256: await sha256(body) })}\n`,
  );
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return out;
}

/**
 * An entry's result, or undefined when it is not a whole, unaltered entry of this format: a
 * wrong size or checksum, or anything that does not parse. Such an entry is never used.
 */
export async function decodeEntry(bytes: Uint8Array): Promise<PieceResult | undefined> {
  const headerEnd = bytes.indexOf(10);
  if (headerEnd < 0) return undefined;
  let header: { format?: unknown; bytes?: unknown; sha256?: unknown };
  try {
    header = JSON.parse(decoder.decode(bytes.subarray(0, headerEnd)));
  } catch {
    return undefined;
  }
  const body = bytes.subarray(headerEnd + 1);
  if (header.format !== FORMAT || header.bytes !== body.length) return undefined;
  if ((await sha256(body)) !== header.sha256) return undefined;
  const metaEnd = body.indexOf(10);
  if (metaEnd < 0) return undefined;
  try {
    const result = JSON.parse(decoder.decode(body.subarray(0, metaEnd))) as PieceResult;
    const text = decoder.decode(body.subarray(metaEnd + 1));
    return text === '' ? result : { ...result, text };
  } catch {
    return undefined;
  }
}

/** The most older versions an object's lineage keeps: the oldest are let go. */
export const MAX_LINEAGE = 32;

/**
 * Whose piece `[start, end)` of `object` is: the oldest version in `lineage` (oldest first) that
 * holds all of it, else the object itself. Appending moves no cell before the last, so a piece
 * that ends within an older version is the very piece that version had.
 */
export function pieceIdentity(
  object: ObjectInfo,
  lineage: readonly Version[] | undefined,
  end: number,
): ObjectInfo {
  const older = lineage?.find((v) => end <= v.size);
  if (older === undefined) return object;
  const { versionId: _, ...rest } = object;
  return older.versionId === undefined
    ? { ...rest, etag: older.etag, size: older.size }
    : { ...rest, etag: older.etag, versionId: older.versionId, size: older.size };
}

/** What cache/objects/ keeps of an object: the version last seen, its CRC and its lineage. */
interface ObjectRecord extends Version {
  crc64: string;
  lineage: Version[];
}

/** Where an object's record lives: a hash of its bucket and key. */
async function recordKey(object: { bucket: string; key: string }): Promise<string> {
  const hash = await sha256(encoder.encode(JSON.stringify([object.bucket, object.key])));
  return `${CACHE_PREFIX}objects/${hash.slice(0, 40)}.json`;
}

/**
 * The lineage of each object that has more than one cell (undefined for the others): the older
 * versions that it extends by appending, proven by its full-object CRC-64/NVME, which must be
 * the CRC of the version seen last (cache/objects/) carried on over the appended bytes alone.
 * The appended bytes are read; nothing else is. The older version must end with a newline (so
 * that no record of it changes) and have cells of the same size. Each object's record is
 * updated for the next job. An object without a full-object checksum has no lineage.
 */
export async function lineages(
  objects: readonly ObjectInfo[],
  deps: { store: ObjectStore; bucket: string },
): Promise<(Version[] | undefined)[]> {
  const out: (Version[] | undefined)[] = [];
  for await (const lineage of orderedMap(objects.length, 16, async (i) => {
    const object = objects[i] as ObjectInfo;
    if (object.size <= cellBytes(object.size)) return undefined;
    const now = await deps.store.head(object.bucket, object.key, { checksum: true });
    if (now.etag !== object.etag || now.crc64 === undefined) return undefined;
    const key = await recordKey(object);
    const seen = await readJson<ObjectRecord>(deps.store, deps.bucket, key)
      .then((r) => r.value)
      .catch((error: unknown) => {
        if (error instanceof NotFoundError) return undefined;
        throw error;
      });
    if (seen?.etag === object.etag) return seen.lineage.length > 0 ? seen.lineage : undefined;
    const lineage =
      seen !== undefined && (await appended(object, now.crc64, seen, deps.store))
        ? [...seen.lineage, versionOf(seen)].slice(-MAX_LINEAGE)
        : [];
    const record: ObjectRecord = { ...versionOf(object), crc64: now.crc64, lineage };
    await writeJson(deps.store, deps.bucket, key, record);
    return lineage.length > 0 ? lineage : undefined;
  })) {
    out.push(lineage);
  }
  return out;
}

function versionOf(v: Version): Version {
  return v.versionId === undefined
    ? { etag: v.etag, size: v.size }
    : { etag: v.etag, versionId: v.versionId, size: v.size };
}

/** True when `object` (whose CRC is `crc64`) is `seen` with bytes appended, and `seen` ends a line. */
async function appended(
  object: ObjectInfo,
  crc64: string,
  seen: ObjectRecord,
  store: ObjectStore,
): Promise<boolean> {
  if (
    seen.size === 0 ||
    object.size < seen.size ||
    cellBytes(object.size) !== cellBytes(seen.size)
  ) {
    return false;
  }
  const tail = await readAll(store.readRange(object, seen.size - 1, object.size));
  return tail[0] === 10 && crc64nvme(tail.subarray(1), seen.crc64) === crc64;
}
