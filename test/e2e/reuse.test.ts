/**
 * Only what changed (issue 18): a rerun of by-field over 2,000 small objects with a persistent
 * --dir takes every piece from the cache and invokes no worker; rewriting 20 objects and adding
 * 20 reads and maps only those; new params run everything; an entry truncated or edited by hand
 * is recomputed. Every result is compared with a run that reuses nothing.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanout } from '../fixtures/cli.ts';
import { putDataset, startDev, untilStatus } from '../fixtures/dev-process.ts';

let dir: string;
let data: string;
let s3: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-reuse-'));
  data = join(dir, 'data');
  s3 = join(dir, 's3');
  await mkdir(data);
  const fields = ['math', 'physics', 'chemistry', 'biology', 'medicine', 'cs', 'astronomy', 'x'];
  await Promise.all(
    Array.from({ length: 2000 }, (_, i) =>
      writeFile(join(data, `part-${String(i).padStart(4, '0')}.jsonl`), scientists(i, fields)),
    ),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Twenty records of object `i`. */
function scientists(i: number, fields: string[]): string {
  return Array.from(
    { length: 20 },
    (_, k) =>
      `${JSON.stringify({ name: `s${i}-${k}`, field: fields[(i * 7 + k) % fields.length], born: 1800 + ((i + k) % 150), nobel: (i + k) % 11 === 0 })}\n`,
  ).join('');
}

interface Run {
  result: string;
  summary: {
    status: string;
    chunks: number;
    bytes: number;
    bytesProcessed: number;
    reused: { chunks: number; segments: number };
    cost: { lambdaRequests: number };
  };
}

/** `fanout run by-field DATA --dir S3 --json ...more`: the result and the --json line. */
async function byField(...more: string[]): Promise<Run> {
  const { code, stdout, stderr } = await fanout(
    'run',
    'by-field',
    data,
    '--dir',
    s3,
    '--json',
    ...more,
  );
  expect(code, stderr).toBe(0);
  const lines = stdout.trimEnd().split('\n');
  return { summary: JSON.parse(lines.pop() as string), result: lines.join('\n') };
}

describe('reuse over 2,000 small objects', () => {
  it('reruns unchanged with no worker, then maps only what changed, and recomputes unsound entries', async () => {
    const cold = await byField();
    expect(cold.summary).toMatchObject({ status: 'SUCCEEDED', reused: { chunks: 0, segments: 0 } });
    expect(cold.summary.bytesProcessed).toBe(cold.summary.bytes);

    // Unchanged: every chunk made from the cache by the coordinator, no worker invoked (the
    // coordinator and the reducer are the only invocations), nothing read.
    const warm = await byField();
    expect(warm.result).toBe(cold.result);
    expect(warm.summary).toMatchObject({
      bytesProcessed: 0,
      reused: { chunks: cold.summary.chunks, segments: 2000 },
    });
    expect(warm.summary.cost.lambdaRequests).toBe(2);

    // 20 objects rewritten, 20 added: those are read and mapped, no more than 5% of the bytes.
    for (let i = 0; i < 20; i++) {
      const file = join(data, `part-${String(i * 97).padStart(4, '0')}.jsonl`);
      const text = await readFile(file, 'utf8');
      await writeFile(file, text.replaceAll('"physics"', '"optics"'));
      await writeFile(join(data, `part-${2000 + i}.jsonl`), scientists(5000 + i, ['new', 'math']));
    }
    const changed = await byField();
    const fresh = await byField('--no-reuse');
    expect(changed.result).toBe(fresh.result);
    expect(changed.result).not.toBe(cold.result);
    expect(changed.summary.reused.segments).toBe(1980);
    expect(changed.summary.bytesProcessed).toBeGreaterThan(0);
    expect(changed.summary.bytesProcessed).toBeLessThanOrEqual(0.05 * changed.summary.bytes);

    // New params: nothing of the above applies.
    const other = await byField('--params', '{"year":2030}');
    expect(other.summary).toMatchObject({ reused: { chunks: 0, segments: 0 } });
    expect(other.summary.bytesProcessed).toBe(other.summary.bytes);

    // Two entries damaged by hand: the last of one pack cut short, one in another edited. Both
    // are read again, the rest reused, and the result is exact.
    const packs = await cacheFiles(s3, '/packs/');
    expect(packs.length).toBeGreaterThanOrEqual(2);
    const [truncated, edited] = await newest(packs, 2);
    const body = await readFile(truncated as string);
    await writeFile(truncated as string, body.subarray(0, body.length - 10));
    const text = await readFile(edited as string, 'utf8');
    await writeFile(
      edited as string,
      text.replace(/"count":(\d)/, (_, d) => `"count":${(Number(d) + 1) % 10}`),
    );
    const repaired = await byField('--params', '{"year":2030}');
    const exact = await byField('--params', '{"year":2030}', '--no-reuse');
    expect(repaired.result).toBe(exact.result);
    expect(repaired.summary.reused.segments).toBe(2018);
    expect(repaired.summary.bytesProcessed).toBeGreaterThan(0);
  });
});

describe('a rerun after one bad object was fixed', () => {
  it('reads only the chunk that failed: the job that failed kept what its other chunks read', async () => {
    const data = join(dir, 'fixed');
    const s3 = join(dir, 's3-fixed');
    await mkdir(data);
    const fields = ['math', 'physics'];
    for (let i = 0; i < 40; i++) {
      await writeFile(join(data, `f-${String(i).padStart(2, '0')}.jsonl`), scientists(i, fields));
    }
    const bad = join(data, 'f-39.jsonl');
    await writeFile(bad, `${scientists(39, fields)}{"name": broken\n`);
    const run = (...more: string[]) =>
      fanout('run', 'by-field', data, '--dir', s3, '--json', '--concurrency', '2', ...more);
    const failed = await run();
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/malformed record at byte \d+ of f-39.jsonl/);

    await writeFile(bad, scientists(39, fields));
    const fixed = await run();
    expect(fixed.code, fixed.stderr).toBe(0);
    const lines = fixed.stdout.trimEnd().split('\n');
    const summary = JSON.parse(lines.pop() as string) as Run['summary'];
    // Two chunks: the one without the bad object was kept when the job failed, and is taken
    // from the cache now; only the other is read and mapped.
    expect(summary.chunks).toBe(2);
    expect(summary.reused.chunks).toBe(1);
    expect(summary.bytesProcessed).toBeGreaterThan(0);
    expect(summary.bytesProcessed).toBeLessThan(summary.bytes);
    const exact = await run('--no-reuse');
    expect(lines.join('\n')).toBe(exact.stdout.trimEnd().split('\n').slice(0, -1).join('\n'));
  });
});

describe('reuse over a prefix on fanout dev', () => {
  it('reruns 2,000 objects with no worker, then maps only the 40 that changed', async () => {
    const dev = await startDev(join(dir, 'dev'));
    try {
      const fields = ['math', 'physics', 'chemistry'];
      const names = Array.from({ length: 2000 }, (_, i) => `p-${String(i).padStart(4, '0')}.jsonl`);
      for (let i = 0; i < names.length; i += 100) {
        await Promise.all(
          names
            .slice(i, i + 100)
            .map((n, k) => putDataset(dev, `reuse/${n}`, scientists(i + k, fields))),
        );
      }
      const submit = async (more: Record<string, unknown> = {}) => {
        const answer = await fetch(`${dev.api}/jobs`, {
          method: 'POST',
          body: JSON.stringify({
            job: 'by-field',
            input: 's3://fanout-local/datasets/reuse/',
            ...more,
          }),
        });
        expect(answer.status).toBe(202);
        const { jobId } = (await answer.json()) as { jobId: string };
        const ended = await untilStatus(
          dev.api,
          jobId,
          (s) => s.status !== 'RUNNING' && s.status !== 'QUEUED',
          60_000,
        );
        expect(ended.status).toBe('SUCCEEDED');
        return {
          status: ended,
          result: await (await fetch(`${dev.api}/jobs/${jobId}/result`)).text(),
        };
      };
      const cold = await submit();
      expect(cold.status.bytesProcessed).toBe(cold.status.bytes);
      const warm = await submit();
      expect(warm.result).toBe(cold.result);
      expect(warm.status).toMatchObject({
        bytesProcessed: 0,
        reused: { chunks: warm.status.chunks.total, segments: 2000 },
      });
      for (let i = 0; i < 20; i++) {
        await putDataset(dev, `reuse/${names[i * 100]}`, scientists(9000 + i, ['new']));
        await putDataset(dev, `reuse/q-${i}.jsonl`, scientists(8000 + i, fields));
      }
      const changed = await submit();
      expect(changed.result).not.toBe(cold.result);
      expect(changed.result).toBe((await submit({ reuse: false })).result);
      expect(changed.status.reused?.segments).toBe(1980);
      expect(changed.status.bytesProcessed).toBeLessThanOrEqual(0.05 * changed.status.bytes);
    } finally {
      await dev.stop();
    }
  });
});

describe('reuse on one large file', () => {
  it('keeps every cell of an object that grew by appending, proven by its CRC, and none of one edited', async () => {
    const file = join(dir, 'big.jsonl');
    const fields = ['math', 'physics', 'chemistry', 'biology'];
    const records = (from: number, n: number) =>
      Array.from(
        { length: n },
        (_, i) =>
          `${JSON.stringify({ name: `b${from + i}`, field: fields[(from + i) % 4], born: 1850 + ((from + i) % 120), nobel: (from + i) % 13 === 0 })}\n`,
      ).join('');
    // About 8 MiB: eight cells of 1 MiB.
    await writeFile(file, records(0, 120_000));
    const run = async (...more: string[]) => {
      const { code, stdout, stderr } = await fanout(
        'run',
        'by-field',
        file,
        '--dir',
        join(dir, 's3-big'),
        '--json',
        ...more,
      );
      expect(code, stderr).toBe(0);
      const lines = stdout.trimEnd().split('\n');
      return {
        summary: JSON.parse(lines.pop() as string) as Run['summary'],
        result: lines.join('\n'),
      };
    };
    const cold = await run();
    const cells = Math.ceil(cold.summary.bytes / 2 ** 20);
    expect(cells).toBeGreaterThanOrEqual(7);

    // 1% appended: only the old last cell (now longer) and the new bytes are read and mapped.
    const tail = records(120_000, 1_200);
    await writeFile(file, (await readFile(file, 'utf8')) + tail);
    const grown = await run();
    expect(grown.result).toBe((await run('--no-reuse')).result);
    expect(grown.summary.bytesProcessed).toBeGreaterThanOrEqual(tail.length);
    expect(grown.summary.bytesProcessed).toBeLessThanOrEqual(tail.length + 2 ** 20);
    expect(grown.summary.reused.segments).toBe(cells - 1);

    // The same size, one byte changed in the first cell: not an append, nothing reused.
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"b1"', '"c1"'));
    const edited = await run();
    expect(edited.summary.reused.segments).toBe(0);
    expect(edited.summary.bytesProcessed).toBe(edited.summary.bytes);
    expect(edited.result).toBe((await run('--no-reuse')).result);
  });
});

/** The files of the local S3 server's objects under cache/ whose path holds `within`. */
async function cacheFiles(root: string, within: string): Promise<string[]> {
  return (await readdir(root, { recursive: true }))
    .map((f) => join(root, f))
    .filter((f) => f.includes('/cache/') && f.includes(within) && f.endsWith('._S3rver_object'));
}

/** The `n` files written last (by the latest job). */
async function newest(files: string[], n: number): Promise<string[]> {
  const { stat } = await import('node:fs/promises');
  const times = await Promise.all(files.map(async (f) => [(await stat(f)).mtimeMs, f] as const));
  return times
    .sort((a, b) => b[0] - a[0])
    .slice(0, n)
    .map(([, f]) => f);
}
