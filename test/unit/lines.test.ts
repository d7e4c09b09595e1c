import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ReadRange, scanOwnedLines, scanOwnedText, splitLines } from '#core/data/lines.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A ReadRange over bytes that serves pieces of the given sizes (cycled), logging each read. */
function reader(bytes: Uint8Array, pieceSizes: number[] = [7]) {
  const reads: [number, number][] = [];
  const read: ReadRange = async function* (start, end) {
    reads.push([start, end]);
    let at = start;
    let p = 0;
    const stop = Math.min(end, bytes.length);
    while (at < stop) {
      const n = Math.max(1, pieceSizes[p++ % pieceSizes.length] as number);
      yield bytes.slice(at, Math.min(stop, at + n));
      at += n;
    }
  };
  return { read, reads };
}

async function owned(
  bytes: Uint8Array,
  start: number,
  end: number,
  pieces?: number[],
  readAhead?: number,
) {
  const out: { text: string; offset: number }[] = [];
  const { read, reads } = reader(bytes, pieces);
  await scanOwnedLines(
    read,
    { start, end, size: bytes.length },
    (line, offset) => {
      out.push({ text: dec.decode(line), offset });
    },
    readAhead === undefined ? {} : { readAhead },
  );
  return { out, reads };
}

async function allChunks(
  bytes: Uint8Array,
  chunkSize: number,
  pieces?: number[],
  readAhead?: number,
) {
  const out: { text: string; offset: number }[] = [];
  for (let start = 0; start < bytes.length; start += chunkSize) {
    out.push(
      ...(await owned(bytes, start, Math.min(bytes.length, start + chunkSize), pieces, readAhead))
        .out,
    );
  }
  return out;
}

const reference = (bytes: Uint8Array) =>
  splitLines(bytes).map(({ line, offset }) => ({ text: dec.decode(line), offset }));

describe('splitLines', () => {
  it('follows the line rules', () => {
    expect(reference(enc.encode('a\r\n\nb'))).toEqual([
      { text: 'a', offset: 0 },
      { text: '', offset: 3 },
      { text: 'b', offset: 4 },
    ]);
    expect(reference(enc.encode('a\n'))).toEqual([{ text: 'a', offset: 0 }]);
    expect(reference(enc.encode(''))).toEqual([]);
  });
});

describe('scanOwnedLines', () => {
  const file = enc.encode('alpha\nbeta\r\n\ngamma-is-long\ndelta');

  it('owns the lines that start in its range', async () => {
    expect((await owned(file, 0, 6)).out).toEqual([{ text: 'alpha', offset: 0 }]);
    // Starts right after a newline: line 'beta' starts at 6.
    expect((await owned(file, 6, 7)).out).toEqual([{ text: 'beta', offset: 6 }]);
    expect((await owned(file, 7, 13)).out).toEqual([{ text: '', offset: 12 }]);
    // A missing final newline still ends the last line.
    expect((await owned(file, 27, file.length)).out).toEqual([{ text: 'delta', offset: 27 }]);
  });

  it('reads past its end until its last line ends, without a cap', async () => {
    const long = enc.encode(`${'x'.repeat(10_000)}\nnext\n`);
    const { out, reads } = await owned(long, 0, 10, [3], 1);
    expect(out).toEqual([{ text: 'x'.repeat(10_000), offset: 0 }]);
    expect(reads.length).toBeGreaterThan(5); // growing read-ahead ranges
  });

  it('owns nothing inside a long line, and stops reading at the first newline past its end', async () => {
    const long = enc.encode(`${'x'.repeat(100)}\n${'y'.repeat(500)}\n`);
    const { out, reads } = await owned(long, 10, 20, [7], 16);
    expect(out).toEqual([]);
    // One request, from start - 1 through `readAhead` bytes past the end.
    expect(reads).toEqual([[9, 36]]);
  });

  it('reads the last line in the same request when it ends within the read-ahead', async () => {
    const file = enc.encode('aaaa\nbbbbbbbbbb\ncc\n');
    const { out, reads } = await owned(file, 0, 6, [64], 32);
    expect(out.map((l) => l.text)).toEqual(['aaaa', 'bbbbbbbbbb']);
    expect(reads).toHaveLength(1);
  });

  it('keeps multibyte characters whole when a boundary splits them', async () => {
    const text = 'é中😀\n😀中é\n';
    const bytes = enc.encode(text);
    for (let cut = 1; cut < bytes.length; cut++) {
      const out = [
        ...(await owned(bytes, 0, cut, [1])).out,
        ...(await owned(bytes, cut, bytes.length, [1])).out,
      ];
      expect(out.map((l) => l.text)).toEqual(['é中😀', '😀中é']);
    }
  });

  it('awaits async callbacks in order', async () => {
    const seen: string[] = [];
    const { read } = reader(enc.encode('a\nb\nc\n'));
    await scanOwnedLines(read, { start: 0, end: 6, size: 6 }, async (line) => {
      await new Promise((r) => setTimeout(r, 1));
      seen.push(dec.decode(line));
    });
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('property: all chunks together yield every line exactly once', async () => {
    const line = fc.string({
      unit: fc.constantFrom('a', 'b', ' ', '{', 'é', '中', '😀', '\r'),
      maxLength: 12,
    });
    const file = fc.record({
      lines: fc.array(line, { maxLength: 25 }),
      crlf: fc.boolean(),
      finalNewline: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        file,
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 16 }),
        async ({ lines, crlf, finalNewline }, chunkSize, pieces, readAhead) => {
          const eol = crlf ? '\r\n' : '\n';
          const text = lines.join(eol) + (finalNewline && lines.length > 0 ? eol : '');
          const bytes = enc.encode(text);
          const size = Math.min(chunkSize, bytes.length + 3);
          expect(await allChunks(bytes, size, pieces, readAhead)).toEqual(reference(bytes));
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 300) },
    );
  });
});

describe('scanOwnedText', () => {
  /** Every line that [start, end) owns, as text, by scanOwnedText. */
  async function ownedText(
    bytes: Uint8Array,
    start: number,
    end: number,
    pieces: number[],
    decodeBytes?: number,
  ) {
    const out: { text: string; offset: number }[] = [];
    await scanOwnedText(
      reader(bytes, pieces).read,
      { start, end, size: bytes.length },
      (text, offset) => {
        out.push({ text, offset });
      },
      decodeBytes === undefined ? {} : { decodeBytes },
    );
    return out;
  }

  it('gives the lines and offsets of scanOwnedLines, decoded', async () => {
    const file = enc.encode('\uFEFFalpha\nbé\r\n\n\uFEFF\uFEFFx\ntail');
    for (const pieces of [[1], [3], [64]]) {
      expect(await ownedText(file, 0, file.length, pieces)).toEqual(reference(file));
      expect(await ownedText(file, 7, 12, pieces)).toEqual((await owned(file, 7, 12, pieces)).out);
    }
  });

  it('awaits async callbacks in order', async () => {
    const seen: string[] = [];
    const { read } = reader(enc.encode('a\nb\nc\n'), [64]);
    await scanOwnedText(read, { start: 0, end: 6, size: 6 }, async (line) => {
      await new Promise((r) => setTimeout(r, 1));
      seen.push(line);
    });
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('property: any bytes, chunks and pieces give what decoding scanOwnedLines lines gives', async () => {
    // Newlines, carriage returns, byte order marks, multi-byte characters and malformed UTF-8.
    const unit = fc.constantFrom(
      [10],
      [13],
      [0x61],
      [0xef, 0xbb, 0xbf],
      [0xc3, 0xa9],
      [0xe4, 0xb8, 0xad],
      [0xf0, 0x9f, 0x98, 0x80],
      [0xff],
      [0xe4, 0xb8],
      [0x80],
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(unit, { maxLength: 60 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 4 }),
        // Small decoded spans, so that a piece's lines are cut into several (and some lines are
        // longer than a span).
        fc.integer({ min: 1, max: 24 }),
        async (units, chunkSize, pieces, decodeBytes) => {
          const bytes = Uint8Array.from(units.flat());
          for (let start = 0; start < bytes.length; start += chunkSize) {
            const end = Math.min(bytes.length, start + chunkSize);
            expect(await ownedText(bytes, start, end, pieces, decodeBytes)).toEqual(
              (await owned(bytes, start, end, pieces)).out,
            );
          }
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 300) },
    );
  });
});
