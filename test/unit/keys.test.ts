import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  JOB_ID,
  jobKeys,
  keyProblem,
  newJobId,
  parseInputUri,
  parseS3Uri,
} from '#core/model/keys.ts';
import { parseJsonObject, parsePositiveInt, parseSize } from '../../cli/args.ts';

describe('S3 URIs', () => {
  it('parses keys and prefixes', () => {
    expect(parseS3Uri('s3://my-bucket/datasets/a.jsonl')).toEqual({
      bucket: 'my-bucket',
      key: 'datasets/a.jsonl',
      isPrefix: false,
    });
    expect(parseS3Uri('s3://my-bucket/datasets/')).toMatchObject({ isPrefix: true });
    expect(parseS3Uri('s3://my-bucket')).toMatchObject({ key: '', isPrefix: true });
  });

  it('rejects what is not an S3 URI', () => {
    for (const bad of ['', 'http://x/y', 's3://', 's3://A_B/key', 'my-bucket/key']) {
      expect(parseS3Uri(bad)).toBeUndefined();
    }
  });
});

describe('canonical keys', () => {
  it('refuses each non-canonical form, naming the rule', () => {
    const cases: [string, RegExp][] = [
      ['datasets/../jobs/x/result.json', /"\." or "\.\." segments/],
      ['datasets/./x.jsonl', /"\." or "\.\." segments/],
      ['..', /"\." or "\.\." segments/],
      ['datasets//x.jsonl', /empty segments/],
      ['/datasets/x.jsonl', /empty segments/],
      ['datasets/x.jsonl/', /empty segments/],
      ['datasets\\x.jsonl', /backslashes/],
      ['datasets/%2e%2e/x', /percent-encoded dots/],
      ['datasets/%2E/x', /percent-encoded dots/],
      ['datasets/a\u0000b', /control characters/],
      ['datasets/a\nb', /control characters/],
      ['datasets/a\u007fb', /control characters/],
      ['datasets/a\u0085b', /control characters/],
    ];
    for (const [key, rule] of cases) expect(keyProblem(key), key).toMatch(rule);
    expect(keyProblem('')).toMatch(/empty segments/);
    // S3's limit is 1,024 bytes of UTF-8, not characters.
    expect(keyProblem('k'.repeat(1024))).toBeUndefined();
    expect(keyProblem('k'.repeat(1025))).toBe(
      'is 1025 bytes long (UTF-8); S3 keys are at most 1024 bytes',
    );
    expect(keyProblem('é'.repeat(513))).toMatch(/^is 1026 bytes long/);
  });

  it('accepts canonical keys and prefixes', () => {
    for (const key of ['a', 'datasets/x.jsonl', 'a/b.c/..d/e..', 'd/%20/x', 'ü/日本.jsonl']) {
      expect(keyProblem(key), key).toBeUndefined();
    }
    for (const prefix of ['', 'datasets/', 'a/b/', 'a/b']) {
      expect(keyProblem(prefix, true), prefix).toBeUndefined();
    }
    expect(keyProblem('a//', true)).toMatch(/empty segments/);
    expect(keyProblem('a/../', true)).toMatch(/segments/);
  });

  // Segments made of anything but the forbidden characters, and not `.`/`..`.
  const segment = fc
    .string({ minLength: 1, maxLength: 8, unit: 'grapheme' })
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are excluded
    .filter((s) => !/[/\\%\u0000-\u001f\u007f-\u009f]/.test(s) && s !== '.' && s !== '..');
  const key = fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => s.join('/'));

  it('property: keys joined from canonical segments are canonical', () => {
    fc.assert(fc.property(key, (k) => keyProblem(k) === undefined));
  });

  it('property: one forbidden feature anywhere makes a key non-canonical', () => {
    const bad = fc.constantFrom(
      '/../',
      '/./',
      '//',
      '\\',
      '%2e',
      '%2E',
      '\u0000',
      '\u001f',
      '\u007f',
    );
    fc.assert(
      fc.property(key, bad, fc.nat(), (k, b, at) => {
        const i = at % (k.length + 1);
        const mutated = `${k.slice(0, i)}${b}${k.slice(i)}`;
        return keyProblem(mutated) !== undefined && keyProblem(mutated, true) !== undefined;
      }),
    );
  });

  it('input URIs carry the rule in a ValidationError', () => {
    expect(() => parseInputUri('s3://my-bucket/datasets/../jobs/x')).toThrow(
      /input "s3:\/\/my-bucket\/datasets\/..\/jobs\/x": an input's key must not contain "\." or "\.\." segments/,
    );
    expect(() => parseInputUri('s3://my-bucket/datasets/./')).toThrow(/an input's prefix must not/);
    expect(() => parseInputUri('http://b/x')).toThrow(/not an S3 URI/);
    expect(parseInputUri('s3://my-bucket/datasets/')).toMatchObject({ isPrefix: true });
  });
});

describe('job ids and keys', () => {
  it('sort newest first and match the id pattern', () => {
    const older = newJobId(1_000_000_000_000);
    const newer = newJobId(1_000_000_000_001);
    expect(newer < older).toBe(true);
    const a = older;
    expect(JOB_ID.test(a)).toBe(true);
    expect(jobKeys(a).part(3, true)).toBe(`jobs/${a}/parts/3.jsonl`);
    expect(jobKeys(a).result(false)).toBe(`jobs/${a}/result.json`);
  });
});

describe('CLI values', () => {
  it('parses sizes with units', () => {
    expect(parseSize('--chunk-size', '8MiB')).toBe(8 * 1024 * 1024);
    expect(parseSize('--chunk-size', '1MB')).toBe(1_000_000);
    expect(parseSize('--chunk-size', '512')).toBe(512);
    expect(() => parseSize('--chunk-size', '8 parsecs')).toThrow(/expected a number of bytes/);
    expect(() => parseSize('--chunk-size', '0')).toThrow(/at least 1 byte/);
  });

  it('parses positive integers and JSON objects with clear errors', () => {
    expect(parsePositiveInt('--chunks', '37')).toBe(37);
    expect(() => parsePositiveInt('--chunks', '-1')).toThrow(/--chunks must be a positive integer/);
    expect(parseJsonObject('--params', '{"year":2020}')).toEqual({ year: 2020 });
    expect(() => parseJsonObject('--params', '[1]')).toThrow(/must be a JSON object/);
    expect(() => parseJsonObject('--params', '{year}')).toThrow(/not valid JSON/);
  });
});
