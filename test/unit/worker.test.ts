import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { ChunkTask } from '#core/model.ts';
import { systemClock } from '#core/ports.ts';
import { runChunk } from '#core/worker.ts';
import { jobs } from '#jobs/index.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'fanout-test';
const JOB_ID = 'testjob00000001';

async function setup(text: string | Uint8Array, key = 'datasets/in.jsonl') {
  const store = new MemoryStore();
  await store.put(BUCKET, key, text);
  const object = await store.head(BUCKET, key);
  const deps = {
    store,
    jobs,
    clock: systemClock,
    gunzip: async function* (src: AsyncIterable<Uint8Array>) {
      const pieces: Uint8Array[] = [];
      for await (const p of src) pieces.push(p);
      yield gunzipSync(Buffer.concat(pieces));
    },
  };
  const task = (over: Partial<ChunkTask>): ChunkTask => ({
    jobId: JOB_ID,
    job: 'scientists',
    params: {},
    format: 'jsonl',
    onBadRecord: 'fail',
    bucket: BUCKET,
    index: 0,
    attempt: 1,
    object,
    start: 0,
    end: object.size,
    gzip: false,
    ...over,
  });
  return { store, deps, task };
}

const lines = [
  '{"name":"Ada Lovelace","field":"math","born":1815,"nobel":false}',
  '{"name":"Marie Curie","field":"physics","born":1867,"nobel":true}',
];

describe('runChunk', () => {
  it('writes a map-only part in input order and an outcome', async () => {
    const { store, deps, task } = await setup(`${lines.join('\n')}\n`);
    const summary = await runChunk(task({}), deps);
    expect(summary).toMatchObject({ index: 0, recordsIn: 2, recordsOut: 2, badRecords: 0 });
    expect(store.text(BUCKET, `jobs/${JOB_ID}/parts/0.jsonl`)).toBe(
      '{"name":"Ada Lovelace","age":202}\n{"name":"Marie Curie","age":150}\n',
    );
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    const part = await store.head(BUCKET, `jobs/${JOB_ID}/parts/0.jsonl`);
    expect(outcome).toMatchObject({
      recordsIn: 2,
      recordsOut: 2,
      part: { key: part.key, bytes: part.size, etag: part.etag },
    });
  });

  it('writes a reduce part holding the accumulator', async () => {
    const { store, deps, task } = await setup(`${lines.join('\n')}\n`);
    await runChunk(task({ job: 'by-field' }), deps);
    expect(JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/parts/0.json`))).toEqual({
      math: { count: 1, nobels: 0, ageSum: 202 },
      physics: { count: 1, nobels: 1, ageSum: 150 },
    });
  });

  it("fails the chunk at a malformed record with its offset under 'fail'", async () => {
    const text = `${lines[0]}\n{"name": oops}\n${lines[1]}\n`;
    const { store, deps, task } = await setup(text);
    const error = await runChunk(task({}), deps).catch((e) => e);
    expect(error).toMatchObject({ code: 'BAD_RECORD', context: { offset: lines[0]!.length + 1 } });
    expect(error.message).toMatch(/byte 65 of datasets\/in.jsonl \(chunk 0\).*\{"name": oops\}/);
    expect(store.objects.has(`${BUCKET}/jobs/${JOB_ID}/chunks/0.json`)).toBe(false);
  });

  it("counts and samples malformed records under 'skip', wrong shapes included", async () => {
    const text = `${lines[0]}\n{"name": oops}\n[1,2]\n${lines[1]}\n`;
    const { store, deps, task } = await setup(text);
    const summary = await runChunk(task({ onBadRecord: 'skip' }), deps);
    expect(summary).toMatchObject({ recordsIn: 4, recordsOut: 2, badRecords: 2 });
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(outcome.badRecords.samples.map((s: { offset: number }) => s.offset)).toEqual([65, 80]);
  });

  it('reads a gzip object whole', async () => {
    const { store, deps, task } = await setup(
      gzipSync(`${lines.join('\n')}`),
      'datasets/in.jsonl.gz',
    );
    const summary = await runChunk(task({ gzip: true }), deps);
    expect(summary.recordsOut).toBe(2);
    expect(store.text(BUCKET, `jobs/${JOB_ID}/parts/0.jsonl`).split('\n')).toHaveLength(3);
  });

  it('fails with DatasetChangedError when the pinned object changed', async () => {
    const { store, deps, task } = await setup(`${lines.join('\n')}\n`);
    const pinned = task({});
    await store.put(BUCKET, 'datasets/in.jsonl', 'changed\n');
    await expect(runChunk(pinned, deps)).rejects.toMatchObject({ code: 'DATASET_CHANGED' });
  });
});
