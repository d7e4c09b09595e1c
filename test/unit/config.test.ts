/** The handlers' environment helpers: priming the SDK clients at init. */
import { describe, expect, it } from 'vitest';
import type { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { NotFoundError } from '#core/base/errors.ts';
import { PRIME_KEYS, primeClients, speculationFromEnv } from '../../functions/config.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

describe('primeClients', () => {
  it('reads a missing key and dry-runs the function, writing nothing', async () => {
    const store = new MemoryStore();
    const reads: string[] = [];
    const getBytes = store.getBytes.bind(store);
    store.getBytes = (bucket, key) => {
      reads.push(`${bucket}/${key}`);
      return getBytes(bucket, key);
    };
    const dryRuns: string[] = [];
    const invoker = {
      dryRun: async (name: string) => {
        dryRuns.push(name);
      },
    } as unknown as LambdaInvoker;
    await primeClients(
      { FANOUT_BUCKET: 'b' },
      {
        store,
        keys: { read: PRIME_KEYS.status, write: PRIME_KEYS.status },
        invoker,
        dryRunFunction: 'worker',
      },
    );
    expect(reads).toEqual(['b/jobs/.prime/status.json']);
    // The write was conditional on an ETag no object has: refused, so nothing was written.
    expect(dryRuns).toEqual(['worker']);
    expect(await store.list('b', '')).toEqual([]);
  });

  it('never fails: priming only saves time', async () => {
    const store = new MemoryStore();
    store.getBytes = async () => {
      throw new NotFoundError('no such key');
    };
    store.put = async () => {
      throw new Error('AccessDenied');
    };
    const invoker = {
      dryRun: async () => {
        throw new Error('AccessDenied');
      },
    } as unknown as LambdaInvoker;
    await expect(
      primeClients(
        { FANOUT_BUCKET: 'b' },
        { store, keys: { read: PRIME_KEYS.status }, invoker, dryRunFunction: 'worker' },
      ),
    ).resolves.toBeUndefined();
    // Without a bucket there is nothing to read.
    await expect(
      primeClients({}, { store, keys: { read: PRIME_KEYS.status } }),
    ).resolves.toBeUndefined();
  });
});

describe('speculationFromEnv', () => {
  it('reads only what is set, so the core defaults apply to the rest', () => {
    expect(speculationFromEnv({})).toEqual({});
    expect(
      speculationFromEnv({
        FANOUT_SPECULATION: 'off',
        FANOUT_SPECULATION_FACTOR: '2.5',
        FANOUT_SPECULATION_FLOOR_MS: '500',
        FANOUT_SPECULATION_MAX_EXTRA: '0',
      }),
    ).toEqual({ enabled: false, factor: 2.5, floorMs: 500, maxExtra: 0 });
  });

  it('names the variable and what it expected when a value is wrong', () => {
    expect(() => speculationFromEnv({ FANOUT_SPECULATION: 'no' })).toThrow(
      /FANOUT_SPECULATION must be on or off; got "no"/,
    );
    expect(() => speculationFromEnv({ FANOUT_SPECULATION_FACTOR: '0.5' })).toThrow(
      /FANOUT_SPECULATION_FACTOR must be a number ≥ 1; got 0.5/,
    );
    expect(() => speculationFromEnv({ FANOUT_SPECULATION_MAX_EXTRA: '-1' })).toThrow(
      /FANOUT_SPECULATION_MAX_EXTRA must be a number ≥ 0; got -1/,
    );
    expect(() => speculationFromEnv({ FANOUT_SPECULATION_FLOOR_MS: 'soon' })).toThrow(
      /FANOUT_SPECULATION_FLOOR_MS/,
    );
  });
});
