/**
 * The sort's order (a job's `orderBy`): keys are finite numbers, ascending, or strings in
 * JavaScript order (UTF-16 code units), one kind per job. A map attempt sorts its outputs
 * stably and writes them as one run of `key<tab>output` lines, with a sample every few KiB;
 * the coordinator cuts the whole order into ranges of about equal bytes from those samples, and
 * a range's partition task reads from each run only the bytes between two samples around it.
 * Ties are broken by (chunk, position), so no key, however common, has to stay on one range.
 */
import { concatBytes } from '../base/bytes.ts';
import { ValidationError } from '../base/errors.ts';
import type { SortPoint, SortRange, SortSample } from '../model/documents.ts';
import { MAX_KEY_LENGTH } from './hash.ts';

/** What `orderBy` may return. */
export type OrderKey = string | number;

/** The kind of a job's order keys: every key of one job is of one kind. */
export type OrderKind = 'number' | 'string';

/**
 * Checks what a job's `orderBy` returned: a finite number, or a string of at most
 * {@link MAX_KEY_LENGTH} code units, of the same kind as the keys before it (`kind`). Throws a
 * ValidationError naming the job, the value and what was expected: a bug in the job, which a
 * retry would only repeat.
 */
export function checkOrderKey(job: string, key: unknown, kind: OrderKind | undefined): OrderKey {
  if (typeof key === 'number') {
    if (!Number.isFinite(key)) {
      throw new ValidationError(
        `job ${job}: orderBy(out) returned ${key}; expected a finite number or a string`,
      );
    }
  } else if (typeof key === 'string') {
    if (key.length > MAX_KEY_LENGTH) {
      throw new ValidationError(
        `job ${job}: orderBy(out) returned a key of ${key.length} characters; expected at most ${MAX_KEY_LENGTH}`,
      );
    }
  } else {
    const shown = key === null ? 'null' : typeof key === 'boolean' ? String(key) : typeof key;
    throw new ValidationError(
      `job ${job}: orderBy(out) returned ${shown}; expected a finite number or a string`,
    );
  }
  if (kind !== undefined && typeof key !== kind) throw mixedKinds(job, kind, typeof key);
  return key;
}

/** The error for a job whose orderBy returned numbers and strings. */
export function mixedKinds(job: string, first: string, then: string, where = ''): ValidationError {
  return new ValidationError(
    `job ${job}: orderBy(out) returned a ${then} after a ${first}${where}; expected one kind of key per job (all numbers or all strings)`,
  );
}

/** Compares two keys of one kind: numbers by value, strings by UTF-16 code units. */
export function compareKeys(a: OrderKey, b: OrderKey): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The total order of a sorted job's outputs: key, then chunk, then position in the chunk. */
export function comparePoints(a: SortPoint, b: SortPoint): number {
  return compareKeys(a.key, b.key) || a.chunk - b.chunk || a.pos - b.pos;
}

/** True when a point falls in a range (from inclusive, to exclusive). */
export function inRange(point: SortPoint, range: SortRange): boolean {
  return (
    (range.from === undefined || comparePoints(point, range.from) >= 0) &&
    (range.to === undefined || comparePoints(point, range.to) < 0)
  );
}

/** Bytes of run between two samples, at least: small runs are sampled every line or so. */
export const MIN_SAMPLE_STEP = 4 * 1024;

/**
 * Samples per run, about. A range's estimated size is off by less than a step per run, and
 * those errors mostly cancel (about a step times the square root of the runs): 256 keep a
 * range of 4,096 runs within about a quarter of its share, and the coordinator's samples of a
 * 1 TiB sort (4,096 runs) at a million.
 */
export const SAMPLES_PER_RUN = 256;

/** The bytes between a run's samples. */
export const sampleStep = (bytes: number) =>
  Math.max(MIN_SAMPLE_STEP, Math.ceil(bytes / SAMPLES_PER_RUN));

/** An encoded sorted run. */
export interface SortedRun {
  bytes: Uint8Array;
  lines: number;
  samples: SortSample[];
}

const encoder = new TextEncoder();

/**
 * A map attempt's outputs, sorted stably by key (Array.prototype.sort is stable), as one run
 * with a sample every `step` bytes. `outputs` is consumed (sorted in place).
 */
export function encodeSorted(
  outputs: { key: OrderKey; json: string }[],
  // The step from the outputs' length (a key's JSON is rarely more than a few dozen bytes).
  step = sampleStep(outputs.reduce((sum, o) => sum + o.json.length + 16, 0)),
): SortedRun {
  outputs.sort((a, b) => compareKeys(a.key, b.key));
  const pieces: Uint8Array[] = [];
  const samples: SortSample[] = [];
  let text = '';
  let at = 0; // bytes of every line so far
  let next = 0; // the next sample is due at or after this byte
  for (let pos = 0; pos < outputs.length; pos++) {
    const { key, json } = outputs[pos]!;
    if (at >= next) {
      samples.push({ key, pos, offset: at });
      next = at + step;
    }
    const line = `${JSON.stringify(key)}\t${json}\n`;
    text += line;
    at += utf8Length(line);
    if (text.length >= 64 * 1024) {
      pieces.push(encoder.encode(text));
      text = '';
    }
  }
  if (text !== '') pieces.push(encoder.encode(text));
  return { bytes: concatBytes(pieces), lines: outputs.length, samples };
}

/** The UTF-8 length of a line (ASCII fast path: a sorted run is mostly ASCII JSON). */
export function utf8Length(text: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is what is tested
  return /^[\u0000-\u007f]*$/.test(text) ? text.length : encoder.encode(text).length;
}

/** A line of a sorted run, read back: its key, and its output as JSON text. */
export interface SortedLine {
  point: SortPoint;
  json: string;
}

/**
 * The lines of a piece of a sorted run (whole lines) whose first line is the run's `pos`-th.
 * Parsing a key costs a JSON.parse only when it holds an escape or is a number.
 */
export function sortedLines(text: string, chunk: number, pos: number): SortedLine[] {
  const lines: SortedLine[] = [];
  let at = 0;
  for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', at)) {
    const tab = text.indexOf('\t', at);
    if (tab < 0 || tab > nl) {
      throw new SyntaxError(
        `a sorted line without a tab: ${text.slice(at, Math.min(nl, at + 80))}`,
      );
    }
    const keyJson = text.slice(at, tab);
    const key: OrderKey =
      keyJson.charCodeAt(0) === 0x22 && !keyJson.includes('\\')
        ? keyJson.slice(1, -1)
        : (JSON.parse(keyJson) as OrderKey);
    lines.push({ point: { key, chunk, pos: pos++ }, json: text.slice(tab + 1, nl) });
    at = nl + 1;
  }
  return lines;
}

/** A map output of a sorted job, as the coordinator sees it. */
export interface SortedOutput {
  chunk: number;
  bytes: number;
  samples: readonly SortSample[];
}

/**
 * Cuts the order (or the range `within` of it) into `count` ranges of about equal bytes: every
 * sample stands for the bytes up to the next sample of its run; the samples, in order, are
 * walked and a cut is made where the running total passes each range's share. Returns
 * `count - 1` cut points, ascending (fewer when there are fewer samples than that), each a
 * range's first point and none at `within`'s first.
 */
export function cutPoints(
  outputs: readonly SortedOutput[],
  count: number,
  within: SortRange = {},
): SortPoint[] {
  const weighted: { point: SortPoint; bytes: number }[] = [];
  let total = 0;
  for (const o of outputs) {
    o.samples.forEach((s, i) => {
      const point = { key: s.key, chunk: o.chunk, pos: s.pos };
      if (!inRange(point, within)) return;
      const bytes = (o.samples[i + 1]?.offset ?? o.bytes) - s.offset;
      weighted.push({ point, bytes });
      total += bytes;
    });
  }
  weighted.sort((a, b) => comparePoints(a.point, b.point));
  const cuts: SortPoint[] = [];
  let sum = 0;
  for (const w of weighted) {
    if (cuts.length === count - 1) break;
    // A cut opens the range this sample starts once what came before fills the shares so far.
    if (sum > 0 && sum >= (total * (cuts.length + 1)) / count) cuts.push(w.point);
    sum += w.bytes;
  }
  return cuts;
}

/**
 * The bytes of one run a range needs: from the last sample before the range (whose position is
 * known) to the first sample at or past its end. The lines outside the range at either edge are
 * read and dropped (at most a sample step each).
 */
export function runSlice(
  output: SortedOutput,
  range: SortRange,
): { start: number; end: number; pos: number } {
  const { samples, chunk } = output;
  // The samples are in the run's order: binary searches, as a 1 TiB sort asks this of every
  // run (4,096) for every range (4,096).
  const point = (i: number): SortPoint => ({ key: samples[i]!.key, chunk, pos: samples[i]!.pos });
  /** The first sample at or past `p` (samples.length when none is). */
  const firstAtOrPast = (p: SortPoint) => {
    let lo = 0;
    let hi = samples.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (comparePoints(point(mid), p) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  let start = 0;
  let pos = 0;
  if (range.from !== undefined) {
    const before = firstAtOrPast(range.from) - 1; // the last sample before the range
    if (before >= 0) {
      start = samples[before]!.offset;
      pos = samples[before]!.pos;
    }
  }
  let end = output.bytes;
  if (range.to !== undefined) {
    const past = firstAtOrPast(range.to);
    if (past < samples.length) end = samples[past]!.offset;
  }
  return { start, end: Math.max(start, end), pos };
}
