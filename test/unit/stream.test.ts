/**
 * A map-only job's output while it runs (shared/core/run/stream.ts), over an in-memory store: in
 * input order with a split chunk's parts in its place, failed chunks skipped once the job has
 * ended, big parts handed over alone, and a failed job's error.
 */
import { describe, expect, it } from 'vitest';
import { JobFailedError, ValidationError } from '#core/base/errors.ts';
import type { ChunkOutcome, JobStatus, Manifest } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { writeJson } from '#core/model/status.ts';
import { finishedOutputs, resultsAfter } from '#core/run/stream.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'b';
const JOB = 'job-1';
const keys = jobKeys(JOB);

/** A job of chunks 0, 1, 2, where chunk 1 was split into 3 and 4. */
async function seeded(status: JobStatus['status'], failed: number[] = []) {
  const store = new MemoryStore();
  await writeJson(store, BUCKET, keys.status, {
    jobId: JOB,
    job: 'echo',
    status,
    input: 's3://b/i',
    createdAt: '2026-01-01T00:00:00.000Z',
    chunks: { total: 4, pending: 0, running: 0, succeeded: 0, failed: 0 },
    records: 0,
    bytes: 0,
    ...(status === 'FAILED' && {
      error: { code: 'CHUNK_FAILED', name: 'FanoutError', message: 'chunk 2 broke' },
    }),
  } satisfies JobStatus);
  const chunk = (index: number, more: object = {}) => ({
    index,
    object: 0,
    start: index * 10,
    end: index * 10 + 10,
    attempts: 1,
    ...(failed.includes(index) && { failed: true }),
    ...more,
  });
  await writeJson(store, BUCKET, keys.manifest, {
    jobId: JOB,
    job: 'echo',
    params: {},
    format: 'jsonl',
    onBadRecord: 'fail',
    mapOnly: true,
    concurrency: 2,
    recordSplit: false,
    objects: [],
    chunks: [
      chunk(0),
      chunk(1, { split: [3, 4] }),
      chunk(2),
      chunk(3, { from: 1 }),
      chunk(4, { from: 1 }),
    ],
  } as unknown as Manifest);
  const finish = async (index: number, output: ChunkOutcome['output']) =>
    writeJson(store, BUCKET, keys.outcome(index), { index, attempt: 1, output });
  return { store, finish };
}

describe('resultsAfter', () => {
  it('gives the finished chunks in input order, a split chunk’s parts in its place, up to the first not finished', async () => {
    const { store, finish } = await seeded('RUNNING');
    await finish(0, { kind: 'inline', text: 'a\n' });
    await finish(3, { kind: 'inline', text: 'b\n' });
    await finish(2, { kind: 'inline', text: 'd\n' }); // after part 4, which has not finished
    expect(await resultsAfter(store, BUCKET, JOB, 0)).toEqual({
      text: 'a\nb\n',
      next: 2,
      more: true,
    });
    await store.put(BUCKET, 'part-4', 'c\n');
    await finish(4, { kind: 'part', key: 'part-4', bytes: 2, etag: 'e' });
    expect(await resultsAfter(store, BUCKET, JOB, 2)).toEqual({
      text: 'c\nd\n',
      next: 4,
      more: true,
    });
  });

  it('ends once the job has SUCCEEDED and every chunk is out, skipping one that failed within its tolerance', async () => {
    const { store, finish } = await seeded('SUCCEEDED', [2]);
    await finish(0, { kind: 'inline', text: 'a\n' });
    await finish(3, { kind: 'inline', text: 'b\n' });
    await finish(4, { kind: 'inline', text: 'c\n' });
    expect(await resultsAfter(store, BUCKET, JOB, 0)).toEqual({
      text: 'a\nb\nc\n',
      next: 4,
      more: false,
    });
  });

  it('hands a part bigger than a page over alone, and stops a page before one that would not fit', async () => {
    const { store, finish } = await seeded('RUNNING');
    await finish(0, { kind: 'inline', text: 'a\n' });
    const big = { kind: 'part', key: 'big', bytes: 100, etag: 'e' } as const;
    await finish(3, big);
    expect(await resultsAfter(store, BUCKET, JOB, 0, 50)).toEqual({
      text: 'a\n',
      next: 1,
      more: true,
    });
    expect(await resultsAfter(store, BUCKET, JOB, 1, 50)).toEqual({
      text: '',
      part: big,
      next: 2,
      more: true,
    });
  });

  it('throws the job’s error once it ended FAILED, and refuses a job that is not map-only', async () => {
    const { store } = await seeded('FAILED');
    await expect(resultsAfter(store, BUCKET, JOB, 0)).rejects.toThrow(JobFailedError);
    await expect(resultsAfter(store, BUCKET, JOB, 0)).rejects.toThrow(/is FAILED: chunk 2 broke/);
    const other = await seeded('RUNNING');
    const manifest = JSON.parse(
      new TextDecoder().decode((await other.store.getBytes(BUCKET, keys.manifest)).body),
    );
    await writeJson(other.store, BUCKET, keys.manifest, { ...manifest, mapOnly: false });
    await expect(resultsAfter(other.store, BUCKET, JOB, 0)).rejects.toThrow(ValidationError);
  });
});

describe('finishedOutputs', () => {
  it('gives each finished chunk once, in any order, never a split chunk’s own outcome', async () => {
    const { store, finish } = await seeded('RUNNING');
    // A backup of the split chunk that finished after the split: its outcome does not count.
    await finish(1, { kind: 'inline', text: 'whole\n' });
    await finish(2, { kind: 'inline', text: 'd\n' });
    const seen = new Set<number>();
    expect(await finishedOutputs(store, BUCKET, JOB, seen)).toEqual({ text: 'd\n', more: true });
    await finish(0, { kind: 'inline', text: 'a\n' });
    await finish(3, { kind: 'inline', text: 'b\n' });
    await finish(4, { kind: 'inline', text: 'c\n' });
    expect(await finishedOutputs(store, BUCKET, JOB, seen)).toEqual({
      text: 'a\nb\nc\n',
      more: true,
    });
    expect(await finishedOutputs(store, BUCKET, JOB, seen)).toEqual({ text: '', more: true });
  });
});
