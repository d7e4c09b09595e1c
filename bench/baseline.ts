/**
 * The single-thread baseline: one Node loop over a local JSONL file computing `by-field`, with no
 * fanout code at all (so a bug in fanout's core cannot hide in both sides of a comparison). It
 * is written to be fast, not a strawman: Buffer pieces, indexOf for newlines, one JSON.parse a
 * line.
 */
import { createReadStream } from 'node:fs';

/** Per-field totals, keys sorted, exactly as the by-field job reports them. */
export type ByField = Record<string, { count: number; nobels: number; ageSum: number }>;

/**
 * by-field over a local JSONL file (or several, one after another) in one pass; returns the
 * result and the records seen.
 */
export async function byFieldSinglePass(
  files: string | readonly string[],
  year = 2017,
): Promise<{ result: ByField; records: number }> {
  const stats = new Map<string, { count: number; nobels: number; ageSum: number }>();
  let records = 0;
  let carry: Buffer | undefined;
  const take = (line: Buffer) => {
    const text = line.toString('utf8').trim();
    if (text === '') return;
    const r = JSON.parse(text) as { field: string; born: number; nobel: boolean };
    records += 1;
    const s = stats.get(r.field);
    const age = year - r.born;
    if (s === undefined) stats.set(r.field, { count: 1, nobels: r.nobel ? 1 : 0, ageSum: age });
    else {
      s.count += 1;
      s.nobels += r.nobel ? 1 : 0;
      s.ageSum += age;
    }
  };
  for (const file of typeof files === 'string' ? [files] : files) {
    for await (const piece of createReadStream(file, {
      highWaterMark: 1 << 20,
    }) as AsyncIterable<Buffer>) {
      const buf = carry === undefined ? piece : Buffer.concat([carry, piece]);
      let from = 0;
      for (let nl = buf.indexOf(10, from); nl >= 0; nl = buf.indexOf(10, from)) {
        take(buf.subarray(from, nl));
        from = nl + 1;
      }
      carry = from < buf.length ? buf.subarray(from) : undefined;
    }
    if (carry !== undefined) take(carry);
    carry = undefined;
  }
  const result: ByField = {};
  for (const field of [...stats.keys()].sort()) result[field] = stats.get(field)!;
  return { result, records };
}

/** wordcount over a local text file in one pass, ordered like the job's result. */
export async function wordcountSinglePass(file: string): Promise<Record<string, number>> {
  const counts = new Map<string, number>();
  let carry = '';
  const take = (line: string) => {
    for (const word of line.toLowerCase().split(/[^\p{L}\p{N}]+/u)) {
      if (word !== '') counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  };
  for await (const piece of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const lines = (carry + piece).split('\n');
    carry = lines.pop() ?? '';
    for (const line of lines) take(line);
  }
  if (carry !== '') take(carry);
  const ranked = [...counts].sort(([wa, a], [wb, b]) =>
    b !== a ? b - a : wa < wb ? -1 : wa > wb ? 1 : 0,
  );
  return Object.fromEntries(ranked);
}
