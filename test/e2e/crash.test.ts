/**
 * No job left behind: `fanout dev` killed with SIGKILL mid-job and started again on the same
 * --dir finishes the job with exactly the single-pass result, with no client action; and a job
 * whose coordinator crashes on every attempt ends FAILED, naming why, after the bounded resumes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '#core/model/documents.ts';
import { collect, fanout } from '../fixtures/cli.ts';
import {
  bin,
  type DevProcess,
  jobStatus,
  root,
  startDev,
  untilStatus as until,
} from '../fixtures/dev-process.ts';
import { until as waitFor } from '../fixtures/until.ts';

let dir: string;
const running: DevProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-crash-'));
});
afterAll(async () => {
  for (const dev of running) await dev.kill();
  await rm(dir, { recursive: true, force: true });
});

const people = Array.from(
  { length: 12 },
  (_, i) =>
    `${JSON.stringify({ name: `p${i}`, field: `f${i % 3}`, born: 1900 + i, nobel: false })}\n`,
).join('');

/** The lines of a runtime's logs that tell of a failure (for an assertion's message). */
function failures(dev: DevProcess): string {
  return dev
    .logs()
    .split('\n')
    .filter((line) => /fail|error/i.test(line))
    .join('\n');
}

async function submit(dev: DevProcess, params: unknown): Promise<string> {
  // Straight into the local S3 server (it takes unsigned requests), as `aws s3 cp` would.
  const put = await fetch(`${dev.s3}/fanout-local/datasets/crash/people.jsonl`, {
    method: 'PUT',
    body: people,
  });
  expect(put.status).toBe(200);
  const submitted = await fetch(`${dev.api}/jobs`, {
    method: 'POST',
    body: JSON.stringify({
      job: 'scientists',
      input: 's3://fanout-local/datasets/crash/people.jsonl',
      params,
      concurrency: 2,
      chunks: 12,
    }),
  });
  expect(submitted.status).toBe(202);
  return ((await submitted.json()) as { jobId: string }).jobId;
}

describe('a crashed fanout dev', () => {
  it('finishes a job it was killed in the middle of, once started again on the same --dir', async () => {
    const data = join(dir, 'killed');
    // Stale after 2 s instead of 10: the restarted runtime takes the job over sooner.
    const env = { FANOUT_STALE_AFTER_SECONDS: '2' };
    const first = await startDev(data, [], env);
    running.push(first);
    const jobId = await submit(first, { year: 2020, sleepMs: 400 });
    const midway = await until(first.api, jobId, (s) => s.chunks.succeeded >= 2, 30_000);
    expect(midway).toMatchObject({ status: 'RUNNING' });
    await first.kill();
    expect(midway.chunks.succeeded).toBeLessThan(12);

    const second = await startDev(data, [], env);
    running.push(second);
    // No client action: only reads of the status until the job ends.
    const ended = await until(second.api, jobId, (s) => s.status !== 'RUNNING', 40_000);
    expect(ended).toMatchObject({ status: 'SUCCEEDED', resumes: 1, records: 12 });

    const result = await (await fetch(`${second.api}/jobs/${jobId}/result`)).text();
    const input = join(dir, 'people.jsonl');
    await writeFile(input, people);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [bin, 'run', 'scientists', input, '--params', '{"year":2020}'],
      { cwd: root },
    );
    expect(result.trim()).toBe(stdout.trim());
    await second.stop();
  });

  it('loses nothing of a stream it was killed in the middle of: --follow from the start, after a restart, gives every line once', async () => {
    const data = join(dir, 'killed-stream');
    const env = { FANOUT_STALE_AFTER_SECONDS: '2' };
    const first = await startDev(data, [], env);
    running.push(first);
    const jobId = await submit(first, { year: 2020, sleepMs: 800 });
    const watching = collect(['result', jobId, '--follow', '--api', first.api]);
    // Killed once the stream has shown some lines, and before the job ended.
    await waitFor(() => watching.out().length > 0 || watching.ended(), 30_000);
    expect(watching.ended(), `${watching.err()}\n${failures(first)}`).toBe(false);
    await first.kill();
    const killedAt = JSON.parse(
      await readFile(join(data, 'fanout-local/jobs', jobId, 'status.json._S3rver_object'), 'utf8'),
    ) as JobStatus;
    expect(killedAt.chunks.succeeded).toBeLessThan(12);
    // The stream broke with the server; what it had shown was final, in order.
    await watching.exit;
    const shown = watching.out();

    const second = await startDev(data, [], env);
    running.push(second);
    const follow = await fanout('result', jobId, '--follow', '--api', second.api);
    // On a failure, what the restarted runtime logged says why (an API 500 logs its cause).
    expect(follow.code, `${follow.stderr}\n${failures(second)}`).toBe(0);
    const input = join(dir, 'people-stream.jsonl');
    await writeFile(input, people);
    const single = await fanout('run', 'scientists', input, '--params', '{"year":2020}');
    expect(follow.stdout).toBe(single.stdout);
    expect(single.stdout.startsWith(shown)).toBe(true);
    expect(await jobStatus(second.api, jobId)).toMatchObject({ status: 'SUCCEEDED', resumes: 1 });
    await second.stop();
  });

  it('finishes a keyed job killed during its reduce stage, once started again, exactly', async () => {
    const data = join(dir, 'killed-keyed');
    const env = { FANOUT_STALE_AFTER_SECONDS: '2' };
    const registry = ['--jobs', 'test/fixtures/keyed-registry.ts'];
    const first = await startDev(data, registry, env);
    running.push(first);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i % 20}`);
    const put = await fetch(`${first.s3}/fanout-local/datasets/crash/keys.jsonl`, {
      method: 'PUT',
      body: `${keys.map((k) => JSON.stringify({ k })).join('\n')}\n`,
    });
    expect(put.status).toBe(200);
    const submitted = await fetch(`${first.api}/jobs`, {
      method: 'POST',
      body: JSON.stringify({
        job: 'slow-keyed',
        input: 's3://fanout-local/datasets/crash/keys.jsonl',
        params: { finishMs: 150 },
        partitions: 6,
        chunks: 4,
        concurrency: 2,
      }),
    });
    expect(submitted.status).toBe(202);
    const { jobId } = (await submitted.json()) as { jobId: string };
    // Killed once a partition has finished and others have not.
    const midway = await until(
      first.api,
      jobId,
      (s) => (s.partitions?.succeeded ?? 0) >= 1,
      30_000,
    );
    expect(midway).toMatchObject({ status: 'RUNNING', chunks: { succeeded: 4 } });
    await first.kill();
    expect(midway.partitions?.succeeded).toBeLessThan(6);

    const second = await startDev(data, registry, env);
    running.push(second);
    const ended = await until(second.api, jobId, (s) => s.status !== 'RUNNING', 40_000);
    expect(ended).toMatchObject({ status: 'SUCCEEDED', resumes: 1, partitions: { succeeded: 6 } });
    const result = await (await fetch(`${second.api}/jobs/${jobId}/result`)).json();
    expect(result).toEqual(
      Object.fromEntries(
        Array.from({ length: 20 }, (_, i) => `k${i}`)
          .sort()
          .map((k) => [k, 2]),
      ),
    );
    await second.stop();
  });

  it('fails a job whose coordinator crashes on every attempt, after its resumes, naming why', async () => {
    const dev = await startDev(join(dir, 'crashing'), ['--chaos', 'coordinator-crash=1']);
    running.push(dev);
    const jobId = await submit(dev, { year: 2020 });
    // Each round: three attempts (retried after 1 s and 2 s), then the failure destination
    // resumes the job; the fourth round's failure ends it.
    const ended = await until(dev.api, jobId, (s) => s.status === 'FAILED', 50_000);
    expect(ended).toMatchObject({
      status: 'FAILED',
      resumes: 3,
      error: { code: 'COORDINATOR_LOST' },
    });
    expect(ended.error?.message).toMatch(/stopped without finishing it 4 times/);
    expect(ended.error?.message).toMatch(/last error: RetriesExhausted: InjectedFault/);
    expect(ended.result).toBeUndefined();
    await dev.stop();
  });
});
