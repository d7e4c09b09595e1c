/**
 * Chunks that need more memory or time than the worker has (issue 17): `fanout run` with a small
 * `--worker-memory` or `--worker-timeout` splits them in two, recursively, instead of retrying
 * them as they are, and the job succeeds with the exact result; a single record too big fails
 * the job with an error that names it. Each job runs as a user runs it: a child process.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanout } from '../fixtures/cli.ts';

/**
 * Writes a job module as a user's would be (importing fanout), with `work(ms)`: a blocking wait,
 * as that much CPU work per record would take.
 */
async function jobModule(name: string, source: string): Promise<string> {
  const file = join(dir, `${name}.ts`);
  await writeFile(
    file,
    `import { defineJob } from 'fanout';

const gate = new Int32Array(new SharedArrayBuffer(4));
const work = (ms: number) => Atomics.wait(gate, 0, 0, ms);
${source}`,
  );
  return file;
}

/** The `--json` line that ends stdout. */
const summaryOf = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1) as string);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-limits-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('chunks that run out of memory or time are split', () => {
  it('memory: a job that keeps every record of its chunk (about 400 MB a chunk) succeeds at --worker-memory 256, exactly, and the report shows the splits', async () => {
    // Each record keeps 10 KB of heap until its chunk ends, as a job that needs its whole chunk
    // at once would (an exact sort, a dedupe): 40,000 records of ~100 bytes, 4 MB, need ~400 MB.
    const job = await jobModule(
      'hoard',
      `interface Acc { count: number; sum: number; kept: number[][] }
/** What leaves the worker is the counts: the kept arrays are not enumerable, so not serialized. */
const fresh = (): Acc => {
  const acc = { count: 0, sum: 0 } as Acc;
  Object.defineProperty(acc, 'kept', { enumerable: false, value: [] });
  return acc;
};
export default defineJob({
  name: 'hoard',
  format: 'jsonl',
  map: (r: unknown) => (r as { v: number }).v,
  reduce: {
    init: fresh,
    add(acc: Acc, v: number): Acc {
      acc.kept.push(new Array(1250).fill(v + 0.5));
      acc.count += 1;
      acc.sum += v;
      return acc;
    },
    merge: (a: Acc, b: Acc): Acc =>
      Object.assign(fresh(), { count: a.count + b.count, sum: a.sum + b.sum }),
    finish: (acc: Acc) => ({ count: acc.count, sum: acc.sum }),
  },
});
`,
    );
    const input = join(dir, 'hoard.jsonl');
    const n = 40_000;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(JSON.stringify({ v: i % 1000, pad: 'p'.repeat(80) }));
    await writeFile(input, `${lines.join('\n')}\n`);
    const report = join(dir, 'hoard.html');
    const { code, stdout, stderr } = await fanout(
      'run',
      job,
      input,
      '--worker-memory',
      '256',
      '--chunk-size',
      '4MiB',
      '--concurrency',
      '2',
      // Reuse folds each 1 MiB piece on its own and merges them: this job's hoard would never
      // outgrow the worker. What is tested here is the split of a chunk that does.
      '--no-reuse',
      '--report',
      report,
      '--json',
    );
    expect(code, stderr).toBe(0);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += i % 1000;
    expect(JSON.parse(stdout.trim().split('\n')[0] as string)).toEqual({ count: n, sum });
    const summary = summaryOf(stdout);
    expect(summary).toMatchObject({ status: 'SUCCEEDED', records: n });
    // One planned chunk, split at least once: the chunks counted are its parts.
    expect(summary.chunks).toBeGreaterThanOrEqual(2);
    const html = await readFile(report, 'utf8');
    expect(html).toContain('<h2>Splits</h2>');
    expect(html).toMatch(/class="attempt attempt-split"/);
    expect(html).toMatch(/Runtime\.OutOfMemory/);
  }, 180_000);

  it('time: chunks that need ~3 s succeed at --worker-timeout 2, every record once and in input order', async () => {
    const job = await jobModule(
      'slow',
      `export default defineJob({
  name: 'slow',
  format: 'jsonl',
  map: (r: unknown) => {
    work(10); // 10 ms of work per record
    return (r as { i: number }).i;
  },
});
`,
    );
    const input = join(dir, 'slow.jsonl');
    const n = 600;
    await writeFile(
      input,
      `${Array.from({ length: n }, (_, i) => JSON.stringify({ i })).join('\n')}\n`,
    );
    // Two chunks of 300 records: 3 s each, past the 2 s timeout.
    const { code, stdout, stderr } = await fanout(
      'run',
      job,
      input,
      '--worker-timeout',
      '2',
      '--chunks',
      '2',
      '--json',
    );
    expect(code, stderr).toBe(0);
    const out = stdout.trim().split('\n');
    const summary = JSON.parse(out.pop() as string);
    expect(out).toEqual(Array.from({ length: n }, (_, i) => String(i)));
    expect(summary).toMatchObject({ status: 'SUCCEEDED', records: n });
    expect(summary.chunks).toBeGreaterThanOrEqual(4);
  }, 180_000);

  it('a single record too big for the worker fails the job with an error that names its offset', async () => {
    const job = await jobModule(
      'big',
      `export default defineJob({
  name: 'big',
  format: 'jsonl',
  map: (r: unknown) => {
    if (!(r as { big?: boolean }).big) return 1;
    // One record needs far more than the worker's memory.
    const held: number[][] = [];
    for (;;) held.push(new Array(1_000_000).fill(held.length + 0.5));
  },
});
`,
    );
    const input = join(dir, 'big.jsonl');
    const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ i }));
    lines.splice(27, 0, JSON.stringify({ big: true }));
    const text = `${lines.join('\n')}\n`;
    const offset = Buffer.byteLength(`${lines.slice(0, 27).join('\n')}\n`);
    await writeFile(input, text);
    const { code, stderr } = await fanout(
      'run',
      job,
      input,
      '--worker-memory',
      '128',
      '--chunks',
      '1',
    );
    expect(code).toBe(1);
    expect(stderr).toContain(
      `ran out of memory and cannot be split further: the record at byte ${offset} of big.jsonl needs more memory than the worker has`,
    );
  }, 180_000);

  it('time: a keyed job’s partition that needs ~3 s succeeds at --worker-timeout 2, split between its buckets, exactly', async () => {
    const job = await jobModule(
      'slow-keys',
      `export default defineJob({
  name: 'slow-keys',
  format: 'jsonl',
  map: (r: unknown) => r as { k: string },
  key: (out: { k: string }) => out.k,
  reduce: {
    init: () => 0,
    add: (n: number) => n + 1,
    merge: (a: number, b: number) => a + b,
    finish: (n: number) => {
      work(1); // 1 ms of work per key, in the partition
      return n;
    },
  },
});
`,
    );
    const input = join(dir, 'slow-keys.jsonl');
    const keys = 3000;
    const lines: string[] = [];
    for (let i = 0; i < 2 * keys; i++) lines.push(JSON.stringify({ k: `k${i % keys}` }));
    await writeFile(input, `${lines.join('\n')}\n`);
    const report = join(dir, 'slow-keys.html');
    // One partition of 3,000 keys: 3 s of finish, past the 2 s timeout.
    const { code, stdout, stderr } = await fanout(
      'run',
      job,
      input,
      '--worker-timeout',
      '2',
      '--partitions',
      '1',
      '--report',
      report,
    );
    expect(code, stderr).toBe(0);
    const expected = Object.fromEntries(
      Array.from({ length: keys }, (_, i) => `k${i}`)
        .sort()
        .map((k) => [k, 2]),
    );
    expect(stdout.trim()).toBe(JSON.stringify(expected));
    const html = await readFile(report, 'utf8');
    expect(html).toMatch(/<td>partition 0<\/td><td>buckets 0–\d+<\/td><td>[^<]*Sandbox\.Timedout/);
  }, 180_000);
});
