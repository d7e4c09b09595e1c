/**
 * A map-only job's lines as its chunks finish (issue 18): `fanout run --stream` (input order),
 * `--unordered` (as each chunk finishes), `GET /jobs/{id}/results?after=N` and `fanout result
 * --follow`. A job whose last (or first) chunk waits for a gate file shows the other chunks'
 * lines while it still runs, deterministically: nothing here depends on timing but the waits.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, fanout } from '../fixtures/cli.ts';
import { type DevProcess, putDataset, startDev, untilStatus } from '../fixtures/dev-process.ts';
import { until } from '../fixtures/until.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-stream-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A registry module of map-only jobs: `gated` holds a record marked `wait` until the file
 * `gate` exists; `broken` throws on a record marked `bad`.
 */
async function gatedJobs(gate: string): Promise<string> {
  const file = join(dir, `jobs-${Math.random().toString(36).slice(2)}.ts`);
  await writeFile(
    file,
    `import { existsSync } from 'node:fs';
import { createRegistry, defineJob } from 'fanout';

export const gated = defineJob({
  name: 'gated',
  format: 'jsonl',
  map: async (r: { i: number; wait?: boolean }) => {
    while (r.wait && !existsSync(${JSON.stringify(gate)})) await new Promise((s) => setTimeout(s, 50));
    return r.i;
  },
});
export const broken = defineJob({
  name: 'broken',
  format: 'jsonl',
  map: async (r: { i: number; wait?: boolean; bad?: boolean }) => {
    while (r.wait && !existsSync(${JSON.stringify(gate)})) await new Promise((s) => setTimeout(s, 50));
    if (r.bad) throw new RangeError('a bad record');
    return r.i;
  },
});
export default gated;
export const jobs = createRegistry([gated, broken]);
`,
  );
  return file;
}

/** 300 records, three chunks' worth; those `waits(i)` holds for wait for the gate. */
async function input(name: string, waits: (i: number) => boolean): Promise<string> {
  const file = join(dir, name);
  const lines = Array.from({ length: 300 }, (_, i) =>
    JSON.stringify({ i, ...(waits(i) && { wait: true }) }),
  );
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');
const range = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, k) => String(from + k));

describe('fanout run, streaming a map-only job', () => {
  it('--stream writes the first chunks’ lines in input order while the last one still runs, then the rest, each once', async () => {
    const gate = join(dir, 'gate-ordered');
    const jobs = await gatedJobs(gate);
    const data = await input('last-waits.jsonl', (i) => i >= 200);
    const run = collect(['run', jobs, data, '--stream', '--chunks', '3']);
    try {
      // Chunks 0 and 1 are out while chunk 2 waits: the job has not ended.
      await until(() => lines(run.out()).length >= 200, 90_000);
      expect(run.child.exitCode).toBeNull();
      expect(lines(run.out())).toEqual(range(0, 200));
    } finally {
      await writeFile(gate, '');
    }
    expect(await run.exit).toBe(0);
    expect(lines(run.out())).toEqual(range(0, 300));
  }, 120_000);

  it('--unordered writes each chunk’s lines as it finishes: the later chunks before a first one that waits', async () => {
    const gate = join(dir, 'gate-unordered');
    const jobs = await gatedJobs(gate);
    const data = await input('first-waits.jsonl', (i) => i < 100);
    const run = collect(['run', jobs, data, '--unordered', '--chunks', '3']);
    try {
      await until(() => lines(run.out()).length >= 200, 90_000);
      expect(run.child.exitCode).toBeNull();
      expect(lines(run.out()).sort()).toEqual(range(100, 300).sort());
    } finally {
      await writeFile(gate, '');
    }
    expect(await run.exit).toBe(0);
    expect(lines(run.out()).sort()).toEqual(range(0, 300).sort());
  }, 120_000);

  it('refuses --stream for a reduce job, before it runs', async () => {
    const { code, stderr } = await fanout(
      'run',
      'by-field',
      'examples/scientists.jsonl',
      '--stream',
    );
    expect(code).toBe(2);
    expect(stderr).toMatch(/--stream: by-field is a reduce job/);
  });
});

describe('GET /jobs/{id}/results and fanout result --follow', () => {
  let dev: DevProcess;
  let gate: string;
  beforeAll(async () => {
    gate = join(dir, 'gate-api');
    dev = await startDev(join(dir, 'data'), ['--jobs', await gatedJobs(gate)]);
    const body = Array.from({ length: 300 }, (_, i) =>
      JSON.stringify({ i, ...(i >= 200 && { wait: true }), ...(i === 250 && { bad: true }) }),
    ).join('\n');
    await putDataset(dev, 'stream.jsonl', `${body}\n`);
  }, 60_000);
  afterAll(async () => {
    await dev?.stop();
  });

  const submit = async (job: string) => {
    const answer = await fetch(`${dev.api}/jobs`, {
      method: 'POST',
      body: JSON.stringify({ job, input: 's3://fanout-local/datasets/stream.jsonl', chunks: 3 }),
    });
    expect(answer.status).toBe(202);
    return ((await answer.json()) as { jobId: string }).jobId;
  };
  const results = (jobId: string, after: number | string) =>
    fetch(`${dev.api}/jobs/${jobId}/results?after=${after}`, { redirect: 'manual' });

  it('answers the finished chunks after a cursor while the job runs, and --follow prints every line once, in order', async () => {
    const jobId = await submit('gated');
    // The first two chunks, while the third waits: more will come.
    let page = await results(jobId, 0);
    for (let tries = 0; page.headers.get('x-fanout-next') !== '2' && tries < 600; tries++) {
      await page.arrayBuffer();
      await new Promise((r) => setTimeout(r, 100));
      page = await results(jobId, 0);
    }
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    expect(page.headers.get('x-fanout-more')).toBe('true');
    expect(lines(await page.text())).toEqual(range(0, 200));
    // From the cursor: nothing new yet.
    const empty = await results(jobId, 2);
    expect(empty.headers.get('x-fanout-next')).toBe('2');
    expect(await empty.text()).toBe('');
    const follow = collect(['result', jobId, '--follow', '--api', dev.api]);
    await until(() => lines(follow.out()).length >= 200, 60_000);
    expect(follow.child.exitCode).toBeNull();
    await writeFile(gate, '');
    expect(await follow.exit).toBe(0);
    expect(lines(follow.out())).toEqual(range(0, 300));
    const done = await results(jobId, 3);
    expect(done.headers.get('x-fanout-more')).toBe('false');
    // A bad cursor is a 400 that says what it wanted.
    const bad = await results(jobId, 'x');
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/after must be a whole number/);
  }, 120_000);

  it('ends the stream of a job that fails with its error, never a silent short result', async () => {
    await writeFile(gate, ''); // the records wait no more; record 250 fails its chunk
    const jobId = await submit('broken');
    const status = await untilStatus(dev.api, jobId, (s) => s.status === 'FAILED', 60_000);
    expect(status.status).toBe('FAILED');
    const page = await results(jobId, 0);
    expect(page.status).toBe(409);
    expect(await page.json()).toMatchObject({ error: { code: 'JOB_FAILED' } });
    const follow = await fanout('result', jobId, '--follow', '--api', dev.api);
    expect(follow.code).toBe(1);
    expect(follow.stderr).toMatch(/is FAILED: .*a bad record/);
  }, 120_000);
});
