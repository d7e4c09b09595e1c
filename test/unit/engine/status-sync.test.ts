/**
 * The status sync: progress writes under the ownership rule, the final write, and the reads
 * before dispatch that hear of a cancel or a takeover.
 */
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { readStatus, writeJson } from '#core/model/status.ts';
import type { Counts } from '#core/run/engine/progress.ts';
import { StatusSync } from '#core/run/engine/status-sync.ts';
import { Stop } from '#core/run/engine/stop.ts';
import { MemoryStore } from '../../fixtures/memory-store.ts';

const BUCKET = 'b';
const JOB = 'job-1';

async function setup(status: Partial<JobStatus> = {}) {
  const store = new MemoryStore();
  await writeJson(store, BUCKET, jobKeys(JOB).status, {
    jobId: JOB,
    job: 'x',
    status: 'RUNNING',
    input: 's3://b/i',
    createdAt: '2026-01-01T00:00:00.000Z',
    chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
    records: 0,
    bytes: 0,
    epoch: 3,
    ...status,
  } satisfies JobStatus);
  const counts: Counts = { succeeded: 2, failed: 1, running: 3, records: 40, bytes: 4000 };
  const stop = new Stop();
  const timers: (() => void)[] = [];
  const every = (_ms: number, callback: () => void) => {
    timers.push(callback);
    return { stop: () => timers.splice(0) };
  };
  const sync = new StatusSync(
    { store, bucket: BUCKET, jobId: JOB, intervalMs: 500, every },
    3,
    10,
    counts,
    stop,
  );
  return { store, counts, stop, sync, timers, read: () => readStatus(store, BUCKET, JOB) };
}

describe('StatusSync', () => {
  it('writes the counts while the run owns the job', async () => {
    const { sync, read, stop } = await setup();
    await sync.write();
    expect(await read()).toMatchObject({
      chunks: { total: 10, pending: 4, running: 3, succeeded: 2, failed: 1 },
      records: 40,
      bytes: 4000,
    });
    expect(stop.stopped).toBe(false);
  });

  it('writes nothing once superseded, and stops the run', async () => {
    const { sync, read, stop } = await setup({ epoch: 4 });
    await sync.write();
    expect((await read()).records).toBe(0);
    expect(stop.reason).toBe('superseded');
  });

  it('hears a cancel request on a write, and keeps writing progress', async () => {
    const { sync, read, stop } = await setup({ cancelRequested: true });
    await sync.write();
    expect(stop.reason).toBe('cancelled');
    expect((await read()).records).toBe(40);
  });

  it('hears a cancel request on the read before a dispatch', async () => {
    const { sync, store, stop } = await setup();
    await sync.check();
    expect(stop.stopped).toBe(false);
    const value = await readStatus(store, BUCKET, JOB);
    await writeJson(store, BUCKET, jobKeys(JOB).status, { ...value, cancelRequested: true });
    await sync.check();
    expect(stop.reason).toBe('cancelled');
  });

  it('shares one read among callers that ask while it is pending', async () => {
    const { sync, store } = await setup();
    let gets = 0;
    const getBytes = store.getBytes.bind(store);
    store.getBytes = (bucket, key) => {
      gets += 1;
      return getBytes(bucket, key);
    };
    await Promise.all([sync.check(), sync.check(), sync.check()]);
    expect(gets).toBe(1);
    await sync.check();
    expect(gets).toBe(2);
  });

  it('a caller that asks while a read is in flight gets a later read', async () => {
    const { sync, store, stop } = await setup();
    const first = sync.check(); // in flight: it read the status before the cancel below
    const value = await readStatus(store, BUCKET, JOB);
    await writeJson(store, BUCKET, jobKeys(JOB).status, { ...value, cancelRequested: true });
    const second = sync.check();
    await first;
    await second;
    expect(stop.reason).toBe('cancelled');
  });

  it('writes every interval from the first dispatch, one write at a time, then a final one', async () => {
    const { sync, store, timers, counts, read } = await setup();
    let puts = 0;
    const put = store.put.bind(store);
    store.put = (...args) => {
      puts += 1;
      return put(...args);
    };
    sync.touch();
    sync.touch(); // a second dispatch starts no second timer
    expect(timers).toHaveLength(1);
    timers[0]?.(); // the interval comes while the first write is in flight: skipped
    counts.succeeded = 9;
    counts.running = 0;
    await sync.close();
    expect(timers).toHaveLength(0);
    expect(puts).toBe(2);
    expect((await read()).chunks).toMatchObject({ succeeded: 9, running: 0, pending: 0 });
  });
});
