/**
 * Record codecs: how one line becomes one record, per format. Lines arrive as bytes from the
 * line scanner; decoding happens one line at a time, so a worker never holds more than a line.
 */
import { FanoutError, ValidationError } from '../base/errors.ts';
import { splitLines } from './lines.ts';

/**
 * The record formats: JSON Lines, CSV with a header line, plain lines of text, or Parquet (read
 * by row group, not by line: shared/adapters/parquet.ts).
 */
export type RecordFormat = 'jsonl' | 'csv' | 'lines' | 'parquet';

/** Every format, for validation messages. */
export const RECORD_FORMATS: readonly RecordFormat[] = ['jsonl', 'csv', 'lines', 'parquet'];

/**
 * The format an object's key says: `.jsonl`/`.ndjson`, `.csv`, `.txt`, each optionally `.gz`,
 * and `.parquet` (Parquet compresses its own pages: `.parquet.gz` is refused). Undefined for
 * other names (the job's format applies).
 */
export function formatOfKey(key: string): RecordFormat | undefined {
  const name = key.toLowerCase();
  if (name.endsWith('.parquet.gz')) {
    throw new ValidationError(
      `${key}: a gzip-compressed Parquet file cannot be read; Parquet compresses its own pages, so store it as .parquet`,
    );
  }
  if (name.endsWith('.parquet')) return 'parquet';
  const base = name.endsWith('.gz') ? name.slice(0, -3) : name;
  if (base.endsWith('.jsonl') || base.endsWith('.ndjson')) return 'jsonl';
  if (base.endsWith('.csv')) return 'csv';
  if (base.endsWith('.txt')) return 'lines';
  return undefined;
}

/** A line that does not parse as a record of its format (or that a job's map rejected). */
export class RecordSyntaxError extends FanoutError {
  constructor(message: string) {
    super('RECORD_SYNTAX', message);
  }
}

/** Returned by a decoder for a line that is not a record (a blank line in jsonl or csv). */
export const SKIP: unique symbol = Symbol('fanout.skip');

const decoder = new TextDecoder('utf-8', { fatal: false });

/** True when the line has only spaces, tabs or carriage returns (or nothing). */
function isBlank(line: Uint8Array | string): boolean {
  const text = typeof line === 'string';
  for (let i = 0; i < line.length; i++) {
    const c = text ? line.charCodeAt(i) : line[i];
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}

/** A line as text: a string as it is, bytes decoded as UTF-8. */
const textOf = (line: Uint8Array | string) =>
  typeof line === 'string' ? line : decoder.decode(line);

/**
 * Parses one CSV line (RFC 4180 quoting: `"a, b"`, `"say ""hi"""`). Quoted fields cannot span
 * lines, because line ownership splits the input on newlines.
 */
export function parseCsvLine(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line.charCodeAt(i) === 34 /* " */) {
      let value = '';
      let at = i + 1;
      for (;;) {
        const quote = line.indexOf('"', at);
        if (quote < 0) throw new RecordSyntaxError('unterminated quoted CSV field');
        value += line.slice(at, quote);
        if (line.charCodeAt(quote + 1) === 34) {
          value += '"';
          at = quote + 2;
          continue;
        }
        i = quote + 1;
        break;
      }
      fields.push(value);
      if (i === line.length) return fields;
      if (line.charCodeAt(i) !== 44 /* , */) {
        throw new RecordSyntaxError(
          `unexpected character after a closing quote at column ${i + 1}`,
        );
      }
      i += 1;
    } else {
      const comma = line.indexOf(',', i);
      if (comma < 0) {
        fields.push(line.slice(i));
        return fields;
      }
      fields.push(line.slice(i, comma));
      i = comma + 1;
    }
  }
}

/** Parses a CSV header line (its bytes, or its text) into column names. */
export function csvHeader(firstLine: Uint8Array | string): string[] {
  const text = textOf(firstLine).replace(/^\uFEFF/, '');
  return parseCsvLine(text.endsWith('\r') ? text.slice(0, -1) : text);
}

/**
 * A decoder for one format: a line (its bytes, or its text decoded as UTF-8) in, a record (or
 * {@link SKIP}) out. Throws RecordSyntaxError for a line that does not parse.
 *
 * - `jsonl`: `JSON.parse` of the line; blank lines are skipped.
 * - `csv`: an object keyed by `header`; blank lines are skipped; the column count must match.
 * - `lines`: the line as a string; every line is a record, empty ones included.
 */
export function createRecordDecoder(
  format: RecordFormat,
  header?: readonly string[],
): (line: Uint8Array | string) => unknown {
  switch (format) {
    case 'jsonl':
      return (line) => {
        if (isBlank(line)) return SKIP;
        try {
          return JSON.parse(textOf(line));
        } catch (error) {
          throw new RecordSyntaxError(`invalid JSON (${(error as Error).message})`);
        }
      };
    case 'csv': {
      if (header === undefined) throw new TypeError('a csv decoder needs the header line');
      const columns = [...header];
      return (line) => {
        if (isBlank(line)) return SKIP;
        const fields = parseCsvLine(textOf(line));
        if (fields.length !== columns.length) {
          throw new RecordSyntaxError(
            `expected ${columns.length} CSV fields (${columns.join(',')}), found ${fields.length}`,
          );
        }
        const record: Record<string, string> = {};
        for (let c = 0; c < columns.length; c++) record[columns[c] as string] = fields[c] as string;
        return record;
      };
    }
    case 'lines':
      return textOf;
    default:
      throw new TypeError(`unknown record format ${JSON.stringify(format)}`);
  }
}

/**
 * Byte offsets where the records of a whole object begin, for planning small inputs on record
 * boundaries. CSV skips its header (the object's first line) and blank lines; jsonl skips blank
 * lines; lines keeps every line.
 */
export function recordStarts(bytes: Uint8Array, format: RecordFormat): number[] {
  const starts: number[] = [];
  for (const { line, offset } of splitLines(bytes)) {
    if (format === 'lines') starts.push(offset);
    else if (!(format === 'csv' && offset === 0) && !isBlank(line)) starts.push(offset);
  }
  return starts;
}
