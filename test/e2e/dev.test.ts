/**
 * `fanout dev` as a user drives it: a child process, a dataset uploaded with the real AWS CLI,
 * a job submitted with plain HTTP, status polled until SUCCEEDED, and the result compared with
 * what `fanout run` prints for the same file.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsS3Copy } from '../fixtures/aws-cli.ts';
import { bin, type DevProcess, root, startDev } from '../fixtures/dev-process.ts';

const lesson = join(root, 'examples/scientists.jsonl');

let dev: DevProcess;
let dir: string;
let api: string;
let s3: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-dev-'));
  dev = await startDev(join(dir, 'data'));
  ({ api, s3 } = dev);
  expect(dev.output()).toContain(`export FANOUT_API_URL=${api}`);
  expect(dev.output()).toContain(`AWS_ENDPOINT_URL_S3=${s3}`);
});
afterAll(async () => {
  await dev?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('fanout dev', () => {
  it('runs a job uploaded with the AWS CLI and submitted over HTTP, as fanout run does', async () => {
    await awsS3Copy(s3, lesson, 's3://fanout-local/datasets/lesson/scientists.jsonl');
    const submitted = await fetch(`${api}/jobs`, {
      method: 'POST',
      body: JSON.stringify({
        job: 'by-field',
        input: 's3://fanout-local/datasets/lesson/scientists.jsonl',
      }),
    });
    expect(submitted.status).toBe(202);
    const { jobId } = (await submitted.json()) as { jobId: string };
    let status: { status: string } = { status: 'QUEUED' };
    for (let i = 0; i < 200 && !['SUCCEEDED', 'FAILED'].includes(status.status); i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await (await fetch(`${api}/jobs/${jobId}`)).json()) as { status: string };
    }
    expect(status).toMatchObject({ status: 'SUCCEEDED', records: 7 });
    // Submitted through the API: its request is part of the job's cost.
    expect((status as { cost?: { apiRequests: number; usd: number } }).cost).toMatchObject({
      apiRequests: 1,
      usd: expect.any(Number),
    });
    // Each change of state was published as a job event (the functions' log under fanout dev).
    // The reducer logs its event just after it writes the status: wait for the line.
    for (let i = 0; i < 100 && !dev.logs().includes('"status":"SUCCEEDED"'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const events = dev
      .logs()
      .split('\n')
      .flatMap((line) => {
        const json = line.slice(line.indexOf('{'));
        if (!json.includes('"Fanout Job Status Change"')) return [];
        const event = JSON.parse(json) as {
          source: string;
          detail: { jobId: string; status: string };
        };
        return event.detail.jobId === jobId ? [`${event.source} ${event.detail.status}`] : [];
      });
    expect(events).toEqual(['fanout QUEUED', 'fanout RUNNING', 'fanout SUCCEEDED']);
    const result = await (await fetch(`${api}/jobs/${jobId}/result`)).text();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [bin, 'run', 'by-field', lesson],
      { cwd: root },
    );
    expect(result).toBe(stdout.trim());
  });

  it('is driven by the CLI verbs: upload, submit, status --watch, result, jobs', async () => {
    const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      promisify(execFile)(process.execPath, [bin, ...args, '--api', api], { cwd: root }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    const uploaded = await cli('upload', lesson, 'cli/lesson.jsonl');
    expect(uploaded.stdout.trim()).toBe('s3://fanout-local/datasets/cli/lesson.jsonl');
    const submitted = await cli(
      'submit',
      'scientists',
      's3://fanout-local/datasets/cli/lesson.jsonl',
      '--params',
      '{"year":2020}',
    );
    const jobId = submitted.stdout.trim();
    expect(jobId).toMatch(/^[0-9a-z]{17}$/);
    const watched = await cli('status', jobId, '--watch');
    expect(JSON.parse(watched.stdout)).toMatchObject({ jobId, status: 'SUCCEEDED' });
    const result = await cli('result', jobId);
    expect(result.stdout.split('\n')[0]).toBe('{"name":"Ada Lovelace","age":205}');
    // The job report through the API: one self-contained page with the job's timeline.
    const report = await cli('report', jobId);
    expect(report.stdout).toMatch(/^<!doctype html>/);
    expect(report.stdout).toContain(`fanout job <code>${jobId}</code>`);
    expect(report.stdout.match(/<rect class="attempt /g)?.length).toBe(7);
    const jobs = await cli('jobs', '--limit', '1');
    expect(jobs.stdout).toMatch(new RegExp(`^${jobId}\\s+SUCCEEDED\\s+scientists`));
    // One job and the way to the next page (the earlier test's job), nothing more.
    const lines = jobs.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^more: fanout jobs --cursor [0-9a-z]{17}$/);
    const rest = await cli('jobs', '--cursor', (lines[1] as string).split(' ').at(-1) as string);
    expect(rest.stdout).not.toContain(jobId);
    expect(rest.stdout).toMatch(/SUCCEEDED\s+by-field/);
    // One exit-code contract: a job that failed, and asking for its result, exit 1.
    await cli('upload', join(root, 'examples/words.txt'), 'cli/words.txt');
    const failing = (
      await cli('submit', 'by-field', 's3://fanout-local/datasets/cli/words.txt')
    ).stdout.trim();
    expect((await cli('status', failing, '--watch')).code).toBe(1);
    const notReady = await cli('result', failing);
    expect(notReady).toMatchObject({ code: 1, stderr: expect.stringMatching(/409 NOT_READY/) });
    const bad = await cli('submit', 'nope', 's3://fanout-local/datasets/cli/lesson.jsonl');
    expect(bad).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/unknown job "nope".*\(400 VALIDATION\)/),
    });
  });

  it('answers bad requests with JSON 4xx', async () => {
    const res = await fetch(`${api}/jobs`, {
      method: 'POST',
      body: '{"job":"by-field","input":"s3://fanout-local/datasets/none.jsonl"}',
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
  });

  it('refuses to bind a non-loopback address', async () => {
    const refused = await promisify(execFile)(process.execPath, [bin, 'dev', '--host', '0.0.0.0'], {
      cwd: root,
    }).catch((e) => e);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refusing to bind 0\.0\.0\.0/);
  });
});
