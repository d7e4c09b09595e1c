import { describe, expect, it } from 'vitest';
import { DatasetChangedError, FanoutError, toErrorInfo } from '#core/base/errors.ts';

describe('errors', () => {
  it('keeps a stable code, the context and the class name', () => {
    const error = new DatasetChangedError('datasets/a.jsonl', { context: { chunk: 3 } });
    expect(error).toBeInstanceOf(FanoutError);
    expect(error.name).toBe('DatasetChangedError');
    expect(toErrorInfo(error)).toMatchObject({
      code: 'DATASET_CHANGED',
      context: { key: 'datasets/a.jsonl', chunk: 3 },
    });
    expect(toErrorInfo(new TypeError('x'))).toEqual({
      code: 'INTERNAL',
      name: 'TypeError',
      message: 'x',
    });
  });
});
