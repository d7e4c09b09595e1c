/**
 * Deterministic dataset generator: `npm run gen -- --records N --out FILE [--seed S] [--kind K]`.
 * The same arguments always produce the same bytes, so benchmark and test results compare.
 *
 * Kinds: `scientists` (JSONL records like examples/scientists.jsonl, ~79 bytes each) and `text`
 * (N lines of English-like words, for wordcount).
 */

import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { mulberry32 } from '#core/base/random.ts';

const FIRST = [
  'Ada',
  'Emmy',
  'Marie',
  'Tu',
  'Vera',
  'Sally',
  'Rosalind',
  'Lise',
  'Grace',
  'Katherine',
  'Barbara',
  'Dorothy',
  'Chien-Shiung',
  'Jocelyn',
  'Hedy',
  'Mary',
  'Gertrude',
  'Françoise',
  'Maryam',
  'Émilie',
];
const LAST = [
  'Lovelace',
  'Noether',
  'Curie',
  'Youyou',
  'Yonath',
  'Rubin',
  'Ride',
  'Franklin',
  'Meitner',
  'Hopper',
  'Johnson',
  'McClintock',
  'Hodgkin',
  'Wu',
  'Bell',
  'Lamarr',
  'Anning',
  'Elion',
  'Barré',
  'Mirzakhani',
  'du Châtelet',
];
export const FIELDS = [
  'astronomy',
  'biology',
  'chemistry',
  'computing',
  'geology',
  'math',
  'medicine',
  'physics',
];
const WORDS =
  'the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no will what up can more out said about other into than its time only could new them man some these then two first may any like now my such over our even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long here get both between life being under never day same another know while last might us great old year off come since against go came right used take three'.split(
    ' ',
  );

/** The seeded generator (mulberry32) every deterministic dataset comes from. */
export const prng = mulberry32;

const pick = <T>(random: () => number, list: readonly T[]): T =>
  list[Math.floor(random() * list.length)] as T;

/**
 * One scientist record as a JSONL line (with its newline). With `keys`, its field is drawn
 * uniformly from that many (`f0`…): 2,000,000 records over 1,000,000 keys have ~865,000 distinct.
 */
export function scientistLine(random: () => number, keys?: number): string {
  const name = `${pick(random, FIRST)} ${pick(random, LAST)}`;
  const field = keys === undefined ? pick(random, FIELDS) : `f${Math.floor(random() * keys)}`;
  const born = 1700 + Math.floor(random() * 300);
  const nobel = random() < 0.1;
  return `{"name": ${JSON.stringify(name)}, "field": "${field}", "born": ${born}, "nobel": ${nobel}}\n`;
}

/** One line of text for wordcount (with its newline); with `keys`, words from that many (`w0`…). */
export function textLine(random: () => number, keys?: number): string {
  const n = 6 + Math.floor(random() * 10);
  const words: string[] = [];
  for (let i = 0; i < n; i++) {
    words.push(keys === undefined ? pick(random, WORDS) : `w${Math.floor(random() * keys)}`);
  }
  const first = words[0] as string;
  words[0] = first.charAt(0).toUpperCase() + first.slice(1);
  return `${words.join(' ')}${random() < 0.5 ? ',' : '.'}\n`;
}

/** Writes `records` lines of `kind` to `out`; resolves with the bytes written. */
export async function generate(options: {
  records: number;
  out: string;
  seed?: number;
  kind?: 'scientists' | 'text';
  /** Key cardinality: fields (scientists) or words (text) drawn from this many. @default the built-in lists */
  keys?: number;
}): Promise<number> {
  const random = prng(options.seed ?? 42);
  const make = options.kind === 'text' ? textLine : scientistLine;
  const line = (r: () => number) => make(r, options.keys);
  const stream = createWriteStream(options.out);
  let bytes = 0;
  let batch = '';
  for (let i = 0; i < options.records; i++) {
    batch += line(random);
    if (batch.length > 1 << 16) {
      bytes += Buffer.byteLength(batch);
      if (!stream.write(batch)) await once(stream, 'drain');
      batch = '';
    }
  }
  bytes += Buffer.byteLength(batch);
  stream.end(batch);
  await once(stream, 'finish');
  return bytes;
}

const USAGE =
  'usage: npm run gen -- --records N --out FILE [--seed S] [--kind scientists|text] [--keys N]\n  --keys N  draw fields (scientists) or words (text) from N distinct values (key cardinality)';

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      records: { type: 'string' },
      out: { type: 'string' },
      seed: { type: 'string' },
      kind: { type: 'string' },
      keys: { type: 'string' },
    },
  });
  const keys = values.keys === undefined ? undefined : Number(values.keys);
  if (keys !== undefined && !(Number.isSafeInteger(keys) && keys > 0)) {
    process.stderr.write(`--keys must be a positive integer; got ${values.keys}\n${USAGE}\n`);
    process.exit(2);
  }
  const records = Number(values.records);
  const kind = values.kind ?? 'scientists';
  if (!Number.isSafeInteger(records) || records < 0 || values.out === undefined) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  if (kind !== 'scientists' && kind !== 'text') {
    process.stderr.write(`--kind must be scientists or text; got ${kind}\n${USAGE}\n`);
    process.exit(2);
  }
  const bytes = await generate({
    records,
    out: values.out,
    seed: values.seed === undefined ? 42 : Number(values.seed),
    kind,
    ...(keys !== undefined && { keys }),
  });
  process.stderr.write(`wrote ${records} ${kind} records (${bytes} bytes) to ${values.out}\n`);
}
