import { describe, expect, it } from 'vitest';
import { JOB_ID, jobKeys, newJobId, parseS3Uri } from '#core/keys.ts';
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
    for (const bad of [
      '',
      'http://x/y',
      's3://',
      's3://A_B/key',
      's3://b/\u0000',
      'my-bucket/key',
    ]) {
      expect(parseS3Uri(bad)).toBeUndefined();
    }
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
