/**
 * Runs: the lines a map attempt or a partition task writes, sorted, in one object. A line is
 * `"key"<tab>value`: the key as JSON, a tab, the value as JSON. A run is one bucket's lines in
 * ascending key order (JavaScript string order: UTF-16 code units); a map output holds its runs
 * bucket after bucket, and `offsets[b]..offsets[b + 1]` are the bytes of bucket b's run.
 */
import { concatBytes } from '../base/bytes.ts';
import { bucketOf } from './hash.ts';

/**
 * A run line's two halves: its key as JSON (a JSON string never holds a raw tab, so the first
 * tab ends it) and its value as JSON text. Kept as text until something needs the value: a key
 * found in one map output only passes through a partition without being parsed.
 */
export interface RunLine {
  /** The key, decoded. */
  key: string;
  /** The key as JSON (`"…"`): what the result writes. */
  keyJson: string;
  /** The value as JSON text. */
  valueJson: string;
}

/** An encoded object of runs: its bytes, and where each bucket's run starts and ends. */
export interface EncodedRuns {
  bytes: Uint8Array;
  /** `buckets + 1` byte offsets: bucket b's run is `[offsets[b], offsets[b + 1])`. */
  offsets: number[];
  /** Keys written. */
  keys: number;
}

const encoder = new TextEncoder();

/** One run line: `"key"<tab>value` and a newline. */
export const runLine = (keyJson: string, valueJson: string) => `${keyJson}\t${valueJson}\n`;

/**
 * A keyed map attempt's accumulators (its combiner), a Map per hash bucket: a Map of a few
 * thousand keys answers in about a quarter of the time one of a million takes (V8's hash tables
 * outgrow the caches), and the runs are then encoded bucket by bucket with no second lookup.
 */
export class BucketTable implements Iterable<[string, unknown]> {
  /** Bucket b's accumulators by key. */
  readonly maps: Map<string, unknown>[];

  constructor(readonly buckets: number) {
    this.maps = Array.from({ length: buckets }, () => new Map());
  }

  /** The Map that holds `key` (its bucket's). */
  mapOf(key: string): Map<string, unknown> {
    return this.maps[bucketOf(key, this.buckets)] as Map<string, unknown>;
  }

  get(key: string): unknown {
    return this.mapOf(key).get(key);
  }

  get size(): number {
    let size = 0;
    for (const map of this.maps) size += map.size;
    return size;
  }

  *[Symbol.iterator](): Iterator<[string, unknown]> {
    for (const map of this.maps) yield* map;
  }
}

/** A map attempt's accumulators, by key, as runs of `buckets` buckets (a combiner's output). */
export function encodeRuns(
  accs: ReadonlyMap<string, unknown> | BucketTable,
  buckets: number,
): EncodedRuns {
  const table = accs instanceof BucketTable && accs.buckets === buckets ? accs : undefined;
  const byBucket: string[][] = [];
  if (table === undefined) {
    for (let b = 0; b < buckets; b++) byBucket.push([]);
    for (const [key] of accs) byBucket[bucketOf(key, buckets)]!.push(key);
  }
  const pieces: Uint8Array[] = [];
  const offsets = [0];
  let at = 0;
  for (let b = 0; b < buckets; b++) {
    const map = table?.maps[b];
    const keys = map === undefined ? byBucket[b]!.sort() : [...map.keys()].sort();
    const values: { get(key: string): unknown } = map ?? accs;
    let text = '';
    for (const key of keys) text += runLine(JSON.stringify(key), JSON.stringify(values.get(key)));
    const bytes = encoder.encode(text);
    pieces.push(bytes);
    at += bytes.length;
    offsets.push(at);
  }
  return { bytes: concatBytes(pieces), offsets, keys: accs.size };
}

/** A key from its JSON: the characters between the quotes when nothing in them is escaped. */
export function decodeKey(keyJson: string): string {
  return keyJson.includes('\\') ? (JSON.parse(keyJson) as string) : keyJson.slice(1, -1);
}

/**
 * The lines of runs as they arrive, split into key and value: in batches, one per network
 * piece, so that a k-way merge pays an await per piece rather than per line.
 */
export async function* runBatches(pieces: AsyncIterable<Uint8Array>): AsyncGenerator<RunLine[]> {
  for await (const text of wholeLines(pieces)) yield splitLines(text, text.length - 1);
}

/**
 * The text of byte pieces, as whole lines: each yield is every line that a piece completes
 * (each ending with a newline; a last line without one gets it), UTF-8 split anywhere.
 */
export async function* wholeLines(pieces: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let carry = '';
  for await (const piece of pieces) {
    const text = carry + decoder.decode(piece, { stream: true });
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      carry = text;
      continue;
    }
    carry = text.slice(end + 1);
    yield text.slice(0, end + 1);
  }
  const rest = carry + decoder.decode();
  if (rest !== '') yield `${rest}\n`;
}

function splitLines(text: string, end: number): RunLine[] {
  const lines: RunLine[] = [];
  forEachRunLine(text.slice(0, end + 1), (key, keyJson, valueJson) => {
    lines.push({ key, keyJson, valueJson });
  });
  return lines;
}

/**
 * Calls `line` with the key, the key's JSON and the value's JSON of every line of `text` (whole
 * lines, each ending with a newline), without making an object per line.
 */
export function forEachRunLine(
  text: string,
  line: (key: string, keyJson: string, valueJson: string) => void,
): void {
  let at = 0;
  for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', at)) {
    const tab = text.indexOf('\t', at);
    if (tab < 0 || tab > nl) {
      throw new SyntaxError(`a run line without a tab: ${text.slice(at, Math.min(nl, at + 80))}`);
    }
    const keyJson = text.slice(at, tab);
    line(decodeKey(keyJson), keyJson, text.slice(tab + 1, nl));
    at = nl + 1;
  }
}
