import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitLines } from '#core/data/lines.ts';
import {
  createRecordDecoder,
  csvHeader,
  parseCsvLine,
  RecordSyntaxError,
  recordStarts,
  SKIP,
} from '#core/data/records.ts';

const enc = new TextEncoder();

describe('parseCsvLine', () => {
  it('handles quoting', () => {
    expect(parseCsvLine('a,"b, c","say ""hi""",')).toEqual(['a', 'b, c', 'say "hi"', '']);
    expect(parseCsvLine('')).toEqual(['']);
    expect(() => parseCsvLine('"open')).toThrow(RecordSyntaxError);
    expect(() => parseCsvLine('"a"b')).toThrow(/after a closing quote/);
  });
});

describe('createRecordDecoder', () => {
  it('decodes jsonl, skipping blank lines', () => {
    const decode = createRecordDecoder('jsonl');
    expect(decode(enc.encode('{"a":1}'))).toEqual({ a: 1 });
    expect(decode(enc.encode('  '))).toBe(SKIP);
    expect(() => decode(enc.encode('{a'))).toThrow(/invalid JSON/);
  });

  it('decodes csv rows by header, checking the column count', () => {
    const decode = createRecordDecoder('csv', csvHeader(enc.encode('\uFEFFid,name\r')));
    expect(decode(enc.encode('1,"x, y"'))).toEqual({ id: '1', name: 'x, y' });
    expect(decode(enc.encode(''))).toBe(SKIP);
    expect(() => decode(enc.encode('1,2,3'))).toThrow(/expected 2 CSV fields \(id,name\), found 3/);
  });

  it('keeps every line in lines format', () => {
    const decode = createRecordDecoder('lines');
    expect(decode(enc.encode(''))).toBe('');
    expect(decode(enc.encode('é'))).toBe('é');
  });
});

describe('recordStarts', () => {
  it('skips the csv header and blank lines', () => {
    expect(recordStarts(enc.encode('h\n1\n\n2'), 'csv')).toEqual([2, 5]);
    expect(recordStarts(enc.encode('{}\n\n{}\n'), 'jsonl')).toEqual([0, 4]);
    expect(recordStarts(enc.encode('a\n\nb'), 'lines')).toEqual([0, 2, 3]);
  });

  it('property: the lines at recordStarts are exactly the decoded records', () => {
    const line = fc.oneof(fc.constant(''), fc.constant(' '), fc.json());
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        const bytes = enc.encode(lines.join('\n'));
        const decode = createRecordDecoder('jsonl');
        const all = splitLines(bytes);
        const records = all.filter(({ line }) => decode(line) !== SKIP).map((l) => l.offset);
        expect(recordStarts(bytes, 'jsonl')).toEqual(records);
      }),
      { numRuns: 100 },
    );
  });
});
