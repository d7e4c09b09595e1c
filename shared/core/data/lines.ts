/**
 * Line ownership (ARCHITECTURE.md): a chunk `[start, end)` owns every line whose first byte lies
 * in `[start, end)`. A line starts at offset 0 or right after a `\n`. The scanner reads from
 * `start - 1` to learn whether `start` begins a line, and reads past `end` — in growing ranges,
 * with no cap — until its last owned line ends. Together the chunks of an object yield each of
 * its lines exactly once.
 */

/** Reads the bytes `[start, end)` of one object, in pieces of any size. */
export type ReadRange = (start: number, end: number) => AsyncIterable<Uint8Array>;

/** A chunk's byte range within an object of `size` bytes. */
export interface OwnedRange {
  start: number;
  end: number;
  size: number;
}

import { concatBytes } from '../base/bytes.ts';

const NL = 10;
const CR = 13;
const INITIAL_READ_AHEAD = 64 * 1024;
const MAX_READ_AHEAD = 8 * 1024 * 1024;
/** scanOwnedText's largest decoded string, in bytes (see there). */
const DECODE_BYTES = 32 * 1024;

const stripCr = (line: Uint8Array) => (line[line.length - 1] === CR ? line.subarray(0, -1) : line);

const isThenable = (value: unknown): value is PromiseLike<void> =>
  value !== undefined && typeof (value as { then?: unknown }).then === 'function';

/**
 * Calls `onLine` for every line the chunk owns, in order, with the line's bytes (no `\n`, no
 * trailing `\r`) and its start offset. The bytes may be a view into a read buffer: they are valid
 * only during the call, so copy them to keep them. Async callbacks are awaited; sync ones cost no
 * await.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * await scanOwnedLines(
 *   (start, end) => store.readRange(object, start, end),
 *   { start: 1024, end: 2048, size: object.size },
 *   (line) => { lines.push(new TextDecoder().decode(line)); },
 * );
 * ```
 */
export async function scanOwnedLines(
  read: ReadRange,
  range: OwnedRange,
  onLine: (line: Uint8Array, offset: number) => void | Promise<void>,
  options: { readAhead?: number } = {},
): Promise<{ bytesRead: number }> {
  return scan(read, range, { one: onLine }, options);
}

/**
 * {@link scanOwnedLines} with each line as text: the same lines, offsets and order, each decoded
 * as UTF-8 exactly as `new TextDecoder().decode(line)` would (malformed bytes become U+FFFD, a
 * leading byte order mark is dropped). Faster than decoding line by line: the lines a read piece
 * holds whole are decoded in one call, and no per-line view of the bytes is made.
 */
export async function scanOwnedText(
  read: ReadRange,
  range: OwnedRange,
  onLine: (line: string, offset: number) => void | Promise<void>,
  options: { readAhead?: number; decodeBytes?: number } = {},
): Promise<{ bytesRead: number }> {
  const one = (line: Uint8Array, offset: number) => onLine(withoutBom(utf8.decode(line)), offset);
  // At most this many bytes of whole lines become one string: a string of 128 KiB or more is
  // allocated in V8's large-object space, freed only by a full collection, and a 256 MiB chunk
  // read in 1 MiB pieces then held ~40 MiB more garbage at its peak.
  const most = options.decodeBytes ?? DECODE_BYTES;
  // Every line of piece[from, endNl), in spans of whole lines; byte offsets from the piece's
  // newlines (a \n byte is never inside a multi-byte character: text and bytes share lines).
  const run = async (piece: Uint8Array, from: number, endNl: number, pieceOffset: number) => {
    for (let start = from; start <= endNl; ) {
      let stop = endNl;
      if (stop - start > most) {
        const last = piece.lastIndexOf(NL, start + most);
        stop = last >= start ? last : piece.indexOf(NL, start + most); // a line longer than `most`
      }
      await lines(piece, start, stop, pieceOffset);
      start = stop + 1;
    }
  };
  const lines = async (piece: Uint8Array, from: number, endNl: number, pieceOffset: number) => {
    const text = utf8.decode(piece.subarray(from, endNl));
    let at = 0;
    let byte = from;
    for (;;) {
      const nl = text.indexOf('\n', at);
      const result = onLine(
        cleanText(nl < 0 ? text.slice(at) : text.slice(at, nl)),
        pieceOffset + byte,
      );
      if (isThenable(result)) await result;
      if (nl < 0) return;
      at = nl + 1;
      byte = piece.indexOf(NL, byte) + 1;
    }
  };
  return scan(read, range, { one, run }, options);
}

/**
 * Where a scan's lines go: `one` takes a line from its bytes; `run`, when given, takes every
 * line of `piece[from, endNl)` at once, the first starting at `pieceOffset + from`.
 */
interface LineSink {
  one(line: Uint8Array, offset: number): void | Promise<void>;
  run?(piece: Uint8Array, from: number, endNl: number, pieceOffset: number): Promise<void>;
}

// ignoreBOM: a byte order mark is dropped line by line in cleanText, as a decode of the line
// alone would, not only at the start of a decoded run of lines.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

const withoutBom = (text: string) => (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);

/** A decoded line without its trailing \r and a leading byte order mark. */
const cleanText = (line: string) =>
  withoutBom(line.charCodeAt(line.length - 1) === CR ? line.slice(0, -1) : line);

async function scan(
  read: ReadRange,
  range: OwnedRange,
  sink: LineSink,
  options: { readAhead?: number },
): Promise<{ bytesRead: number }> {
  const { start, end, size } = range;
  let bytesRead = 0;
  if (start >= end || start >= size) return { bytesRead };
  const limit = Math.min(end, size);

  // State of the scan: `lineStart` is the offset where the current (unfinished) line began, or
  // -1 while we are still skipping the tail of a line owned by the previous chunk.
  let lineStart = start === 0 ? 0 : -1;
  // Bytes of the current line from earlier pieces, kept as a list so a very long line is copied
  // once when it ends rather than once per piece.
  let carry: Uint8Array[] = [];
  let done = false;

  // The lines a piece holds whole, handed over as one run: from `from` to the newline ending the
  // line that holds byte limit - 1 (the last owned line), or else to the piece's last newline.
  // The bytes after that newline start a line that continues in the next piece.
  const runOfLines = async (
    piece: Uint8Array,
    from: number,
    pieceOffset: number,
    run: NonNullable<LineSink['run']>,
  ) => {
    const lastOwned = piece.indexOf(NL, Math.max(from, limit - 1 - pieceOffset));
    const endNl = lastOwned >= 0 ? lastOwned : piece.lastIndexOf(NL);
    if (endNl >= from) {
      await run(piece, from, endNl, pieceOffset);
      if (lastOwned >= 0) {
        done = true;
        return;
      }
      lineStart = pieceOffset + endNl + 1;
      from = endNl + 1;
    }
    if (from < piece.length) carry.push(piece.slice(from));
  };

  // Returns a promise only when a callback is async, so the sync path has no await per line.
  const feed = async (piece: Uint8Array, pieceOffset: number): Promise<void> => {
    let from = 0;
    if (lineStart < 0) {
      const nl = piece.indexOf(NL);
      if (nl < 0) return;
      const next = pieceOffset + nl + 1;
      if (next >= limit) {
        done = true; // no line starts in [start, end)
        return;
      }
      lineStart = next;
      from = nl + 1;
    }
    for (;;) {
      if (sink.run !== undefined && carry.length === 0) {
        await runOfLines(piece, from, pieceOffset, sink.run);
        return;
      }
      const nl = piece.indexOf(NL, from);
      if (nl < 0) {
        if (from < piece.length) {
          carry.push(piece.slice(from));
        }
        return;
      }
      let line = piece.subarray(from, nl);
      if (carry.length > 0) {
        line = concatBytes([...carry, line]);
        carry = [];
      }
      const result = sink.one(stripCr(line), lineStart);
      if (isThenable(result)) await result;
      const next = pieceOffset + nl + 1;
      if (next >= limit) {
        done = true; // the next line starts at or past `end`: not ours
        return;
      }
      lineStart = next;
      from = nl + 1;
    }
  };

  const consume = async (from: number, to: number): Promise<boolean> => {
    let at = from;
    for await (const piece of read(from, to)) {
      bytesRead += piece.length;
      const pending = feed(piece, at);
      await pending;
      at += piece.length;
      if (done) return true;
    }
    return at < to; // the object ended before `to`
  };

  // The byte before `start` tells whether `start` begins a line: read from start - 1. The first
  // request also asks for `readAhead` bytes past `end`, where the last owned line almost always
  // ends: one request per chunk instead of two (each S3 request costs a first-byte latency). The
  // read stops as soon as the last owned line has ended.
  let readAhead = options.readAhead ?? INITIAL_READ_AHEAD;
  let at = Math.min(size, limit + readAhead);
  let eof = await consume(start === 0 ? 0 : start - 1, at);
  while (!done && !eof && at < size && lineStart >= 0) {
    const to = Math.min(size, at + readAhead);
    eof = await consume(at, to);
    at = to;
    readAhead = Math.min(readAhead * 2, MAX_READ_AHEAD);
  }
  // The object ended inside our last line (no final newline): it is still a line.
  if (!done && lineStart >= 0 && lineStart < limit && carry.length > 0) {
    const result = sink.one(stripCr(concatBytes(carry)), lineStart);
    carry = [];
    if (isThenable(result)) await result;
  }
  return { bytesRead };
}

/**
 * Every line of a whole object, by the same rules as {@link scanOwnedLines}: the reference the
 * property tests compare chunked reads against, and what small-input planning uses.
 */
export function splitLines(bytes: Uint8Array): { line: Uint8Array; offset: number }[] {
  const out: { line: Uint8Array; offset: number }[] = [];
  let from = 0;
  while (from < bytes.length) {
    let nl = bytes.indexOf(NL, from);
    if (nl < 0) nl = bytes.length;
    out.push({ line: stripCr(bytes.subarray(from, nl)), offset: from });
    from = nl + 1;
  }
  return out;
}

/**
 * Where the lines that a range `[start, end)` of an object owns begin (offsets in the object),
 * given the object's bytes from `from` (`start - 1`, or 0 for a range at the object's start) to
 * at least `end`: `start` itself when it begins a line, and every offset in the range that
 * follows a `\n`.
 */
export function ownedLineStarts(
  bytes: Uint8Array,
  from: number,
  start: number,
  end: number,
): number[] {
  const starts: number[] = [];
  for (let p = start; p < end; p++) {
    if (p === 0 || bytes[p - 1 - from] === NL) starts.push(p);
  }
  return starts;
}
