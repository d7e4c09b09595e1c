import { describe, expect, it } from 'vitest';
import { createBytePipe } from '#core/base/pipe.ts';

const bytes = (n: number) => new Uint8Array(n);

describe('createBytePipe', () => {
  it('delivers every write in order and ends on close', async () => {
    const pipe = createBytePipe(10);
    const seen: number[] = [];
    const consumer = (async () => {
      for await (const piece of pipe.readable) seen.push(piece.length);
    })();
    for (const n of [3, 4, 5, 6]) await pipe.write(bytes(n));
    pipe.close();
    await consumer;
    expect(seen).toEqual([3, 4, 5, 6]);
  });

  it('makes the producer wait once more than the high-water mark is buffered', async () => {
    const pipe = createBytePipe(8);
    expect(pipe.write(bytes(8))).toBeUndefined();
    const blocked = pipe.write(bytes(1));
    expect(blocked).toBeInstanceOf(Promise);
    let released = false;
    void blocked?.then(() => {
      released = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(released).toBe(false);
    const iterator = pipe.readable[Symbol.asyncIterator]();
    await iterator.next();
    await blocked;
    expect(released).toBe(true);
  });

  it('fails both sides with the same error', async () => {
    const pipe = createBytePipe(1);
    const blocked = pipe.write(bytes(4));
    const boom = new Error('upload failed');
    pipe.fail(boom);
    await expect(blocked).rejects.toBe(boom);
    await expect(pipe.write(bytes(1))).rejects.toBe(boom);
    await expect(pipe.readable[Symbol.asyncIterator]().next()).rejects.toBe(boom);
  });
});
