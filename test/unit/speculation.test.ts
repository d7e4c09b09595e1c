/**
 * Stragglers in the pure core: when a chunk counts as straggling (StragglerWatch), and what the
 * coordinator does about it, in-process with an in-memory store and a worker whose attempts a
 * test can stall, fail or throttle one by one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ThrottledError } from '#core/base/errors.ts';
import type { Invoker } from '#core/base/ports.ts';
import { systemClock } from '#core/base/ports.ts';
import type { ChunkTask, JobStatus, Manifest } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { reduceJob } from '#core/reduce/reducer.ts';
import { coordinateJob } from '#core/run/coordinator.ts';
import { MIN_BACKUPS, medianOf, StragglerWatch } from '#core/run/speculation.ts';
import { submitJob } from '#core/run/submit.ts';
import type { FieldStats } from '#jobs/by-field.ts';
import { jobs } from '#jobs/index.ts';
import { prng, scientistLine } from '../../bench/gen.ts';
import { DirectInvoker } from '../fixtures/direct-invoker.ts';
import { IN_PROCESS, runWorkerTask } from '../fixtures/in-process.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'fanout-test';
const INPUT = `s3://${BUCKET}/datasets/people.jsonl`;
/** The input is not compressed: a worker that met gzip here would be a bug. */
const noGzip = (): AsyncIterable<Uint8Array> => {
  throw new Error('no gzip input in these tests');
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('StragglerWatch', () => {
  it('says nothing until three chunks have finished', () => {
    const watch = new StragglerWatch(100, { floorMs: 10 });
    watch.finished(100, 1000);
    watch.finished(100, 1000);
    expect(watch.limitMs(1000)).toBeUndefined();
    watch.finished(100, 1000);
    expect(watch.limitMs(1000)).toBeCloseTo(300, 9); // 3 × 0.1 ms per byte × 1,000 bytes
  });

  it('scales the limit with the chunk’s bytes, never below the floor', () => {
    const watch = new StragglerWatch(100, { factor: 2, floorMs: 50 });
    for (const ms of [90, 100, 110]) watch.finished(ms, 1000);
    expect(watch.limitMs(4000)).toBe(800);
    expect(watch.limitMs(100)).toBe(50);
  });

  it('budgets 5% of the chunks, and never fewer than MIN_BACKUPS', () => {
    expect(new StragglerWatch(40).maxBackups).toBe(MIN_BACKUPS);
    expect(new StragglerWatch(20_000).maxBackups).toBe(1000);
    expect(new StragglerWatch(1000, { maxExtra: 0.01 }).maxBackups).toBe(10);
    expect(() => new StragglerWatch(10, { factor: 0 })).toThrow(/factor must be a number ≥ 1/);
    expect(() => new StragglerWatch(10, { maxExtra: -1 })).toThrow(/maxExtra must be a number ≥ 0/);
  });

  it('is monotone in bytes, at least the floor, and follows the median as it moves', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 1e6 })), {
          minLength: 3,
          maxLength: 200,
        }),
        fc.integer({ min: 0, max: 1e7 }),
        fc.integer({ min: 0, max: 1e7 }),
        (finished, a, b) => {
          const watch = new StragglerWatch(1000, { floorMs: 25 });
          for (const [ms, bytes] of finished) watch.finished(ms, bytes);
          const [small, big] = a <= b ? [a, b] : [b, a];
          const low = watch.limitMs(small) as number;
          expect(low).toBeGreaterThanOrEqual(25);
          expect(watch.limitMs(big)).toBeGreaterThanOrEqual(low);
          // Right after the sample grew, the median is the sample's own.
          const median = medianOf(finished.map(([ms, bytes]) => ms / bytes));
          expect(watch.limitMs(1e6)).toBeCloseTo(Math.max(25, 3 * median * 1e6), 6);
        },
      ),
    );
  });
});

/** What a test does to one worker invocation, given the chunk and its invocation count. */
type Fault = (task: ChunkTask, nth: number) => Promise<void> | void;

/**
 * A job on an in-memory store, run by the real coordinator, worker and reducer. `capacity` is
 * the worker function's concurrency (past it an invocation is throttled, as Lambda's 429).
 */
async function runWith(options: {
  fault?: Fault;
  concurrency?: number;
  capacity?: number;
  speculation?: boolean;
}) {
  const store = new MemoryStore({ pieceBytes: 64 * 1024 });
  const random = prng(3);
  const lines = Array.from({ length: 4000 }, () => scientistLine(random));
  await store.put(BUCKET, 'datasets/people.jsonl', `${lines.join('\n')}\n`);
  const deps = { store, jobs, clock: systemClock, bucket: BUCKET };
  const seen = new Map<number, number>();
  const load = { now: 0, max: 0, throttled: 0, backoffs: 0 };
  const direct: DirectInvoker = new DirectInvoker({
    worker: async (task: ChunkTask) => {
      const nth = (seen.get(task.index) ?? 0) + 1;
      seen.set(task.index, nth);
      await options.fault?.(task, nth);
      return runWorkerTask(task, { ...deps, gunzip: noGzip });
    },
    reducer: ({ jobId }: { jobId: string }) =>
      reduceJob(jobId, { ...deps, invoker: direct, reducerFunction: 'reducer' }),
  });
  // Lambda's concurrency limit in front of the worker.
  const invoker: Invoker = {
    async invoke<T>(name: string, payload: unknown): Promise<T> {
      if (name !== 'worker') return direct.invoke<T>(name, payload);
      if (load.now >= (options.capacity ?? Number.POSITIVE_INFINITY)) {
        load.throttled += 1;
        throw new ThrottledError(name);
      }
      load.max = Math.max(load.max, ++load.now);
      try {
        return await direct.invoke<T>(name, payload);
      } finally {
        load.now -= 1;
      }
    },
    invokeEvent: async () => undefined,
  };
  const job = await submitJob(
    {
      job: 'by-field',
      input: INPUT,
      chunks: 12,
      concurrency: options.concurrency ?? 3,
      ...(options.speculation === false && { speculation: false }),
    },
    { ...deps, invoker, coordinatorFunction: 'coordinator' },
  );
  await coordinateJob(job.jobId, {
    ...deps,
    invoker,
    ...IN_PROCESS,
    // Retries and throttles need not wait here; their backoffs are counted.
    sleep: async () => {
      load.backoffs += 1;
    },
    speculation: { floorMs: 100 },
  });
  const read = (key: string) => JSON.parse(store.text(BUCKET, key));
  const keys = jobKeys(job.jobId);
  const status: JobStatus = read(keys.status);
  return {
    status,
    result: status.status === 'SUCCEEDED' ? store.text(BUCKET, keys.result(false)) : undefined,
    manifest: read(keys.manifest) as Manifest,
    load,
  };
}

describe('backups of straggling chunks', () => {
  it('backs up a stalled chunk in a free slot: the clean result, the backup recorded', async () => {
    const clean = await runWith({ speculation: false });
    expect(clean.status.status).toBe('SUCCEEDED');
    // by-field counts the 4,000 people per field.
    const fields = Object.values(JSON.parse(clean.result as string) as Record<string, FieldStats>);
    expect(fields.reduce((sum, f) => sum + f.count, 0)).toBe(4000);
    // Chunk 5's first invocation stalls until the job has ended: a coordinator that waited for
    // it would never end, and the test would time out. Its backup does not stall.
    let release: () => void = () => undefined;
    const stall = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const stalled = await runWith({
        fault: (task, nth) => (task.index === 5 && nth === 1 ? stall : undefined),
      });
      expect(stalled.result).toBe(clean.result);
      const chunk = stalled.manifest.chunks[5]!;
      expect(chunk).toMatchObject({ backups: 1, backupWon: true, attempts: 2 });
      expect(stalled.manifest.chunks.filter((c) => c.backups !== undefined)).toHaveLength(1);
    } finally {
      release();
    }
  });

  it('gets backups beside the lanes when every lane holds a straggler', async () => {
    const clean = await runWith({ speculation: false, concurrency: 2 });
    const stalled = await runWith({
      concurrency: 2,
      fault: (task, nth) => ([3, 4].includes(task.index) && nth === 1 ? sleep(1500) : undefined),
    });
    expect(stalled.result).toBe(clean.result);
    expect(stalled.manifest.chunks.filter((c) => c.backupWon === true).map((c) => c.index)).toEqual(
      [3, 4],
    );
    // Lanes plus the backup budget, at most.
    expect(stalled.load.max).toBeLessThanOrEqual(2 + MIN_BACKUPS);
  });

  it('lets a backup still running save a chunk whose own attempts failed for good', async () => {
    const clean = await runWith({ speculation: false });
    const saved = await runWith({
      fault: async (task, nth) => {
        if (task.index !== 7) return;
        if (nth === 1) {
          await sleep(400); // straggles, then fails; its retries fail at once
          throw new Error('sandbox lost');
        }
        if (nth === 2)
          await sleep(800); // the backup: slow, but it succeeds
        else throw new Error('sandbox lost');
      },
    });
    expect(saved.status.status).toBe('SUCCEEDED');
    expect(saved.result).toBe(clean.result);
    // The first backup straggles past the limit too and gets a second, which fails: the first
    // one's outcome is still the one that counts.
    expect(saved.manifest.chunks[7]).toMatchObject({ backups: 2, backupWon: true });
  });

  it('queues a throttled backup again, and learns the function’s limit from its own load', async () => {
    const clean = await runWith({ speculation: false });
    // The function takes as many invocations as the job has lanes: every backup beside them is
    // throttled, and so is the first dispatch after a backup wins while its original runs on.
    // Every chunk takes 150 ms, so the lanes are still busy when the backups fall due.
    const squeezed = await runWith({
      capacity: 3,
      fault: (task, nth) => sleep([2, 6].includes(task.index) && nth === 1 ? 1500 : 150),
    });
    expect(squeezed.result).toBe(clean.result);
    expect(squeezed.load.max).toBe(3);
    for (const index of [2, 6]) {
      expect(squeezed.manifest.chunks[index]).toMatchObject({ backups: 1, backupWon: true });
    }
    // A throttle caused by the job's own backups and losers lowers its ceiling: dispatches then
    // wait for one of its invocations to end, instead of retrying into 429s (sleep is instant
    // here, so blind retries would run up dozens).
    expect(squeezed.load.throttled).toBeGreaterThan(0);
    expect(squeezed.load.throttled).toBeLessThanOrEqual(4);
    expect(squeezed.load.backoffs).toBe(0);
  });

  it('starts no backup with speculation off', async () => {
    const started = Date.now();
    const off = await runWith({
      speculation: false,
      fault: (task, nth) => (task.index === 5 && nth === 1 ? sleep(800) : undefined),
    });
    expect(off.status.status).toBe('SUCCEEDED');
    expect(off.manifest.chunks.filter((c) => c.backups !== undefined)).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  });
});
