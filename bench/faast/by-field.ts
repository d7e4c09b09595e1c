/**
 * by-field for faast.js (benchmark 1's TypeScript peer): one call reads the records whose first
 * byte lies in [start, end) of a local JSONL file — fanout's line-ownership rule, as in pool.py —
 * and returns their per-field totals. Plain Node: Buffer pieces, indexOf, one JSON.parse a line.
 * It runs in faast.js's child processes and is imported by the driver, so it has no side effects.
 */
import { createReadStream } from 'node:fs';

/** faast.js locates an ESM function module by this export. */
export const FAAST_URL = import.meta.url;

/** Per-field totals, as the by-field job reports them. */
export type ByField = Record<string, { count: number; nobels: number; ageSum: number }>;

/** by-field over the records that start in [start, end) of `file`. */
export async function byFieldRange(
  file: string,
  start: number,
  end: number,
  year = 2017,
): Promise<{ stats: ByField; records: number }> {
  const stats: ByField = {};
  let records = 0;
  const take = (line: Buffer) => {
    const text = line.toString('utf8').trim();
    if (text === '') return;
    const r = JSON.parse(text) as { field: string; born: number; nobel: boolean };
    records += 1;
    const s = stats[r.field];
    const age = year - r.born;
    if (s === undefined) stats[r.field] = { count: 1, nobels: r.nobel ? 1 : 0, ageSum: age };
    else {
      s.count += 1;
      s.nobels += r.nobel ? 1 : 0;
      s.ageSum += age;
    }
  };
  // From start - 1: everything up to the first newline belongs to the previous range (an empty
  // piece when byte start - 1 is itself a newline).
  let skip = start > 0;
  let offset = start > 0 ? start - 1 : 0; // the file offset of buf[0]
  let carry: Buffer | undefined;
  for await (const piece of createReadStream(file, {
    start: offset,
    highWaterMark: 1 << 20,
  }) as AsyncIterable<Buffer>) {
    const buf = carry === undefined ? piece : Buffer.concat([carry, piece]);
    let from = 0;
    for (let nl = buf.indexOf(10, from); nl >= 0; nl = buf.indexOf(10, from)) {
      if (skip) skip = false;
      else if (offset + from >= end) return { stats, records };
      else take(buf.subarray(from, nl));
      from = nl + 1;
    }
    offset += from;
    carry = from < buf.length ? buf.subarray(from) : undefined;
  }
  if (carry !== undefined && !skip && offset < end) take(carry);
  return { stats, records };
}
