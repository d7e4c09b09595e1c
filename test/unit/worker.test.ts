import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { systemClock } from '#core/base/ports.ts';
import type { ChunkTask } from '#core/model/documents.ts';
import { createRegistry, defineJob } from '#core/model/job.ts';
import { runChunk, type Spill } from '#core/run/worker.ts';
import { bucketOf } from '#core/shuffle/hash.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';
import { jobsWithWordTable as jobs } from '../fixtures/word-table.ts';

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
    segments: [{ object, start: 0, end: object.size, gzip: key.endsWith('.gz') }],
    ...over,
  });
  return { store, deps, task };
}

const lines = [
  '{"name":"Ada Lovelace","field":"math","born":1815,"nobel":false}',
  '{"name":"Marie Curie","field":"physics","born":1867,"nobel":true}',
];

/**
 * Local disk for a chunk's spills, in memory: each spill read back in pieces of `pieceSize`
 * bytes (so a line is split across them); counts the spills written and those not removed.
 */
function memorySpill(budgetBytes: number, pieceSize: number) {
  const files = { written: 0, left: 0 };
  const spill: Spill = {
    budgetBytes,
    async write(bytes) {
      files.written += 1;
      files.left += 1;
      return {
        read: async function* () {
          for (let at = 0; at < bytes.length; at += pieceSize) {
            yield bytes.subarray(at, at + pieceSize);
          }
        },
        remove: async () => {
          files.left -= 1;
        },
      };
    },
  };
  return { spill, files };
}

describe('runChunk', () => {
  it('keeps a small map-only output inline in the outcome, in input order', async () => {
    const { store, deps, task } = await setup(`${lines.join('\n')}\n`);
    const summary = await runChunk(task({}), deps);
    expect(summary).toMatchObject({ index: 0, recordsIn: 2, recordsOut: 2, badRecords: 0 });
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(outcome).toMatchObject({
      recordsIn: 2,
      recordsOut: 2,
      objects: 1,
      bytes: lines.join('\n').length + 1,
      output: {
        kind: 'inline',
        text: '{"name":"Ada Lovelace","age":202}\n{"name":"Marie Curie","age":150}\n',
      },
    });
    expect([...store.objects.keys()].some((k) => k.includes('/parts/'))).toBe(false);
  });

  it('lets exactly one attempt of a chunk count: the second removes its part and says it lost', async () => {
    const many = Array.from({ length: 8000 }, (_, i) =>
      JSON.stringify({ name: `n${i}`.padEnd(40, '.'), field: 'f', born: 1900, nobel: false }),
    );
    const { store, deps, task } = await setup(`${many.join('\n')}\n`);
    const first = await runChunk(task({}), deps);
    const second = await runChunk({ ...task({}), attempt: 2 }, deps);
    expect(first.duplicate).toBeUndefined();
    expect(second).toMatchObject({ duplicate: true, recordsIn: 8000 });
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(outcome).toMatchObject({
      attempt: 1,
      output: { key: `jobs/${JOB_ID}/parts/0.1.jsonl` },
    });
    const parts = [...store.objects.keys()].filter((k) => k.includes('/parts/'));
    expect(parts).toEqual([`${BUCKET}/jobs/${JOB_ID}/parts/0.1.jsonl`]);
  });

  it('keeps its win when a retried outcome PUT finds the outcome its first try wrote', async () => {
    const many = Array.from({ length: 8000 }, (_, i) =>
      JSON.stringify({ name: `n${i}`.padEnd(40, '.'), field: 'f', born: 1900, nobel: false }),
    );
    const { store, deps, task } = await setup(`${many.join('\n')}\n`);
    // The first PUT lands but its answer is lost; the store's retry then finds the object.
    const put = store.put.bind(store);
    store.put = async (bucket, key, body, options) => {
      const written = await put(bucket, key, body, options);
      if (key.endsWith('/chunks/0.json')) return put(bucket, key, body, options);
      return written;
    };
    const summary = await runChunk(task({}), deps);
    expect(summary.duplicate).toBeUndefined();
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(outcome.output).toMatchObject({ key: `jobs/${JOB_ID}/parts/0.1.jsonl` });
    await expect(store.head(BUCKET, `jobs/${JOB_ID}/parts/0.1.jsonl`)).resolves.toBeDefined();
  });

  it('streams a large map-only output to its part and records its size and ETag', async () => {
    const many = Array.from({ length: 8000 }, (_, i) =>
      JSON.stringify({ name: `n${i}`.padEnd(40, '.'), field: 'f', born: 1900, nobel: false }),
    );
    const { store, deps, task } = await setup(`${many.join('\n')}\n`);
    await runChunk(task({}), deps);
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    // The part is the attempt's own (parts/{chunk}.{attempt}.jsonl): a backup never shares it.
    const part = await store.head(BUCKET, `jobs/${JOB_ID}/parts/0.1.jsonl`);
    expect(outcome.output).toEqual({
      kind: 'part',
      key: part.key,
      bytes: part.size,
      etag: part.etag,
    });
    const out = store.text(BUCKET, part.key).trim().split('\n');
    expect(out).toHaveLength(8000);
    expect(JSON.parse(out[7999]!).name).toBe('n7999'.padEnd(40, '.'));
  });

  it('keeps a reduce accumulator in the outcome', async () => {
    const { store, deps, task } = await setup(`${lines.join('\n')}\n`);
    await runChunk(task({ job: 'word-table', format: 'lines' }), deps);
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(outcome.output.kind).toBe('acc');
    expect(outcome.output.value).toMatchObject({ name: 2, math: 1, physics: 1, curie: 1 });
  });

  it("folds each of a flat job's outputs on its own, and counts its records once", async () => {
    const { store, deps, task } = await setup('a b a\n, ;\nb c\n');
    const summary = await runChunk(task({ job: 'wordcount', format: 'lines', buckets: 1 }), deps);
    // Three lines, two with words: the line without any gives no output.
    expect(summary).toMatchObject({ recordsIn: 3, recordsOut: 2 });
    const { output } = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(output).toMatchObject({ kind: 'runs-inline', keys: 3 });
    expect(output.text).toBe('"a"\t2\n"b"\t2\n"c"\t1\n');
  });

  it("writes a flat map-only job's outputs as lines of their own, in order", async () => {
    const pairs = defineJob({
      name: 'pairs',
      format: 'lines',
      flat: true,
      map: (line: string) => line.split(' ').map((w, i) => ({ w, i })),
    });
    const { store, deps, task } = await setup('x y\nz\n');
    await runChunk(task({ job: 'pairs', format: 'lines' }), {
      ...deps,
      jobs: createRegistry([pairs]),
    });
    const { output } = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(output.text).toBe('{"w":"x","i":0}\n{"w":"y","i":1}\n{"w":"z","i":0}\n');
  });

  it('fails a flat job whose map returns something other than an array, naming what it got', async () => {
    const oops = defineJob({
      name: 'oops',
      format: 'lines',
      flat: true,
      map: (line: string) => line as unknown as string[],
    });
    const { deps, task } = await setup('x\n');
    await expect(
      runChunk(task({ job: 'oops', format: 'lines' }), { ...deps, jobs: createRegistry([oops]) }),
    ).rejects.toThrow(
      /^job map returned string for a record of datasets\/in.jsonl \(chunk 0\); expected an array of outputs \(oops is flat\) or undefined$/,
    );
  });

  /** A keyed chunk's runs, from its outcome: inline text, or its runs object. */
  async function keyedRuns(fields: string[], buckets: number) {
    const text = fields
      .map((field, i) =>
        JSON.stringify({ name: `s${i}`, field, born: 1900 + (i % 100), nobel: i % 2 === 0 }),
      )
      .join('\n');
    const { store, deps, task } = await setup(`${text}\n`);
    await runChunk(task({ job: 'by-field', buckets }), deps);
    const { output } = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    const bytes = Buffer.from(
      output.kind === 'runs-inline' ? output.text : store.text(BUCKET, output.key),
    );
    expect(output.offsets).toHaveLength(buckets + 1);
    expect(output.offsets[buckets]).toBe(bytes.length);
    expect(output.bytes).toBe(bytes.length);
    const seen = new Map<string, unknown>();
    for (let b = 0; b < buckets; b++) {
      const run = bytes
        .subarray(output.offsets[b], output.offsets[b + 1])
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split('\t') as [string, string]);
      const keys = run.map(([k]) => JSON.parse(k) as string);
      expect(keys).toEqual([...keys].sort()); // each run in key order
      for (const [k, v] of run) {
        expect(bucketOf(JSON.parse(k), buckets)).toBe(b); // in its key's bucket
        seen.set(JSON.parse(k), JSON.parse(v));
      }
    }
    return { output, seen };
  }

  it("folds a keyed job's outputs per key into sorted runs, a run per bucket, inline when small", async () => {
    const fields = ['math', 'physics', 'chemistry', 'math', 'biology', '__proto__', 'physics'];
    const { output, seen } = await keyedRuns(fields, 4);
    expect(output).toMatchObject({ kind: 'runs-inline', keys: 5 });
    expect(Object.fromEntries([...seen].sort(([a], [b]) => (a < b ? -1 : 1)))).toEqual(
      Object.fromEntries([
        ['__proto__', { count: 1, nobels: 0, ageSum: 112 }],
        ['biology', { count: 1, nobels: 1, ageSum: 113 }],
        ['chemistry', { count: 1, nobels: 1, ageSum: 115 }],
        ['math', { count: 2, nobels: 1, ageSum: 231 }],
        ['physics', { count: 2, nobels: 1, ageSum: 227 }],
      ]),
    );
  });

  it('spills a sorted chunk past its budget and merges it back: the same run, nothing left on disk', async () => {
    const byBorn = defineJob({
      name: 'by-born',
      format: 'jsonl',
      map: (r: { born: number }) => r,
      orderBy: (o: { born: number }) => o.born,
    });
    const text = Array.from({ length: 3000 }, (_, i) =>
      JSON.stringify({ name: `s${i}`, born: 1900 + ((i * 7919) % 50), note: 'é' }),
    ).join('\n');
    const run = async (spill?: Spill) => {
      const { store, deps, task } = await setup(`${text}\n`);
      await runChunk(task({ job: 'by-born' }), {
        ...deps,
        jobs: createRegistry([byBorn]),
        ...(spill && { spill }),
      });
      const { output } = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
      return { output, text: store.text(BUCKET, output.key) };
    };
    const { spill, files } = memorySpill(20_000, 777);
    const spilled = await run(spill);
    const inMemory = await run();
    expect(files.written).toBeGreaterThan(5);
    expect(files.left).toBe(0);
    expect(spilled.text).toBe(inMemory.text);
    expect(spilled.output).toMatchObject({ kind: 'sorted', lines: 3000, keys: 'number' });
    expect(spilled.output.bytes).toBe(inMemory.output.bytes);
    // The samples point at the lines they name, in the merged run as in the sorted one.
    const bytes = Buffer.from(spilled.text);
    for (const s of spilled.output.samples as { key: number; pos: number; offset: number }[]) {
      const line = bytes.subarray(s.offset).toString().split('\n')[0]!;
      expect(JSON.parse(line.split('\t')[0]!)).toBe(s.key);
      expect(spilled.text.split('\n')[s.pos]).toBe(line);
    }
  });

  it("spills a keyed chunk's combiner past its budget and merges it back: the same runs, nothing left on disk", async () => {
    // Fields that repeat across spills (a key's accumulators then merge in input order) and
    // fields met once, in 16 buckets; non-ASCII keys so that offsets count UTF-8 bytes.
    const text = Array.from({ length: 4000 }, (_, i) =>
      JSON.stringify({
        name: `s${i}`,
        field: i % 3 === 0 ? `común-${i % 97}` : `f${(i * 7919) % 2500}`,
        born: 1900 + (i % 80),
        nobel: i % 5 === 0,
      }),
    ).join('\n');
    const run = async (spill?: Spill) => {
      const { store, deps, task } = await setup(`${text}\n`);
      await runChunk(task({ job: 'by-field', buckets: 16 }), { ...deps, ...(spill && { spill }) });
      const { output } = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
      const runs = output.kind === 'runs-inline' ? output.text : store.text(BUCKET, output.key);
      return { output, runs };
    };
    const { spill, files } = memorySpill(30_000, 333);
    const spilled = await run(spill);
    const inMemory = await run();
    expect(files.written).toBeGreaterThan(3);
    expect(files.left).toBe(0);
    expect(spilled.output.kind).toBe('runs');
    expect(spilled.runs).toBe(inMemory.runs);
    expect(spilled.output.offsets).toEqual(inMemory.output.offsets);
    expect(spilled.output.keys).toBe(inMemory.output.keys);
    expect(spilled.output.bytes).toBe(inMemory.output.bytes);
  });

  it('writes large runs as one object of the attempt', async () => {
    const fields = Array.from({ length: 9000 }, (_, i) => `field-${i}`);
    const { output, seen } = await keyedRuns(fields, 16);
    expect(output).toMatchObject({
      kind: 'runs',
      key: `jobs/${JOB_ID}/shuffle/0/0.1.jsonl`,
      keys: 9000,
    });
    expect(seen.size).toBe(9000);
  });

  it("fails with the error the job's own code threw, its name kept, saying which part threw", async () => {
    const { deps, task } = await setup(`${lines.join('\n')}\n`);
    const bug = (name: string, part: 'key' | 'add') =>
      defineJob({
        name,
        format: 'jsonl',
        map: (r: { field: string }) => r,
        key: (o: { field: string }) => {
          if (part === 'key') throw new TypeError('no key here');
          return o.field;
        },
        reduce: {
          init: () => 0,
          add: (n: number) => {
            if (part === 'add') throw new RangeError('too many');
            return n + 1;
          },
          merge: (a: number, b: number) => a + b,
        },
      });
    const jobs = createRegistry([bug('bad-key', 'key'), bug('bad-add', 'add')]);
    await expect(runChunk(task({ job: 'bad-key' }), { ...deps, jobs })).rejects.toMatchObject({
      name: 'TypeError',
      code: 'JOB_CODE',
      message: 'job key threw: no key here',
    });
    await expect(runChunk(task({ job: 'bad-add' }), { ...deps, jobs })).rejects.toMatchObject({
      name: 'RangeError',
      message: 'job reduce.add threw: too many',
    });
    const map = defineJob({
      name: 'bad-map',
      format: 'jsonl',
      map: (r: { x: { y: number } }) => r.x.y,
    });
    await expect(
      runChunk(task({ job: 'bad-map' }), { ...deps, jobs: createRegistry([map]) }),
    ).rejects.toMatchObject({
      name: 'TypeError',
      message: expect.stringMatching(
        /^job map threw on the record at byte 0 of datasets\/in\.jsonl \(chunk 0\): /,
      ),
    });
  });

  it('reads several objects in order: ranges, whole objects, gzip, CSV headers per object', async () => {
    const store = new MemoryStore();
    const put = async (key: string, body: string | Uint8Array) => {
      await store.put(BUCKET, key, body);
      return store.head(BUCKET, key);
    };
    const a = await put('d/a.csv', 'id,v\n1,x\n2,y\n3,z\n');
    const b = await put('d/b.csv', 'v,id\nw,4\n');
    const c = await put('d/c.csv.gz', gzipSync('id,v\n5,u\n6,t'));
    const d = await put('d/d.csv', 'id,v\n7,s\n8,r\n');
    const lineAt = (text: string, n: number) => text.split('\n').slice(0, n).join('\n').length + 1;
    const aText = 'id,v\n1,x\n2,y\n3,z\n';
    const task: ChunkTask = {
      jobId: JOB_ID,
      job: 'rows',
      params: {},
      format: 'csv',
      onBadRecord: 'fail',
      bucket: BUCKET,
      index: 3,
      attempt: 1,
      segments: [
        // From a.csv's last line (its header handed over), b whole, c gzip, d's header and 7,s.
        { object: a, start: lineAt(aText, 3), end: a.size, gzip: false, header: ['id', 'v'] },
        { object: b, start: 0, end: b.size, gzip: false },
        { object: c, start: 0, end: c.size, gzip: true },
        { object: d, start: 0, end: 6, gzip: false },
      ],
    };
    const rows = defineJob({
      name: 'rows',
      format: 'csv',
      params: z.object({}).strict(),
      map: (r: Record<string, string>) => `${r.id}${r.v}`,
    });
    const deps = {
      store,
      jobs: createRegistry([rows]),
      clock: systemClock,
      gunzip: async function* (src: AsyncIterable<Uint8Array>) {
        const pieces: Uint8Array[] = [];
        for await (const p of src) pieces.push(p);
        yield gunzipSync(Buffer.concat(pieces));
      },
      parallelism: 2,
    };
    const summary = await runChunk(task, deps);
    expect(summary).toMatchObject({ recordsIn: 5, recordsOut: 5 });
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/3.json`));
    expect(outcome.output.text).toBe('"3z"\n"4w"\n"5u"\n"6t"\n"7s"\n');
    expect(outcome).toMatchObject({ objects: 4 });
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
    expect(outcome.badRecords.samples[0].key).toBe('datasets/in.jsonl');
  });

  it('reads a gzip object whole', async () => {
    const { store, deps, task } = await setup(
      gzipSync(`${lines.join('\n')}`),
      'datasets/in.jsonl.gz',
    );
    const summary = await runChunk(task({}), deps);
    expect(summary.recordsOut).toBe(2);
    const outcome = JSON.parse(store.text(BUCKET, `jobs/${JOB_ID}/chunks/0.json`));
    expect(outcome.output.text.split('\n')).toHaveLength(3);
  });

  it('fails with DatasetChangedError when the pinned object changed', async () => {
    const { store, deps, task } = await setup(`${lines.join('\n')}\n`);
    const pinned = task({});
    await store.put(BUCKET, 'datasets/in.jsonl', 'changed\n');
    await expect(runChunk(pinned, deps)).rejects.toMatchObject({ code: 'DATASET_CHANGED' });
  });
});
