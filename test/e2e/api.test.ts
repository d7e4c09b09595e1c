/**
 * The HTTP API end to end, through the CLI verbs and plain HTTP: against a `fanout dev` this file
 * starts, or, with FANOUT_E2E_DEPLOYED=1 (`npm run test:deployed`), against a real deployment at
 * FANOUT_API_URL with SigV4 from the standard AWS credentials, the way Powertools runs its e2e
 * suites against deployed stacks. Nothing here depends on which one it is.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, type DevProcess, root, startDev } from '../fixtures/dev-process.ts';

const deployed = process.env.FANOUT_E2E_DEPLOYED === '1';
const lesson = join(root, 'examples/scientists.jsonl');
// Keys of this run only: a deployment is shared with other runs.
const run = `e2e-${Date.now().toString(36)}`;

let dev: DevProcess | undefined;
let dir: string | undefined;
let api: string;

beforeAll(async () => {
  if (deployed) {
    const url = process.env.FANOUT_API_URL;
    if (url === undefined || url === '') {
      throw new Error(
        'FANOUT_E2E_DEPLOYED=1 needs FANOUT_API_URL (the stack output FanoutApiUrl) and AWS credentials',
      );
    }
    api = url;
  } else {
    dir = await mkdtemp(join(tmpdir(), 'fanout-api-e2e-'));
    dev = await startDev(join(dir, 'data'));
    api = dev.api;
  }
}, 60_000);
afterAll(async () => {
  await dev?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  promisify(execFile)(process.execPath, [bin, ...args, '--api', api], { cwd: root }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );

describe(`the HTTP API (${deployed ? 'deployed' : 'fanout dev'})`, () => {
  it('is driven by the CLI verbs: upload, submit, status --watch, result, report, jobs', async () => {
    const uploaded = await cli('upload', lesson, `${run}/lesson.jsonl`);
    const input = uploaded.stdout.trim();
    expect(input).toMatch(new RegExp(`^s3://[a-z0-9.-]+/datasets/${run}/lesson\\.jsonl$`));
    // One exit-code contract: a job that failed, and asking for its result, exit 1.
    const words = (await cli('upload', join(root, 'examples/words.txt'), `${run}/words.txt`))
      .stdout;
    const failing = (await cli('submit', 'by-field', words.trim())).stdout.trim();
    expect((await cli('status', failing, '--watch')).code).toBe(1);
    const notReady = await cli('result', failing);
    expect(notReady).toMatchObject({ code: 1, stderr: expect.stringMatching(/409 NOT_READY/) });
    const submitted = await cli('submit', 'scientists', input, '--params', '{"year":2020}');
    const jobId = submitted.stdout.trim();
    expect(jobId, submitted.stderr).toMatch(/^[0-9a-z]{17}$/);
    const watched = await cli('status', jobId, '--watch');
    const final = JSON.parse(watched.stdout) as Record<string, unknown> & {
      runs?: { startedAt: unknown; endedAt: unknown }[];
    };
    expect(final).toMatchObject({ jobId, status: 'SUCCEEDED' });
    // Every time in the status is an ISO string, as the README's table says.
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    for (const field of ['createdAt', 'startedAt', 'finishedAt', 'heartbeatAt']) {
      if (final[field] !== undefined) expect(final[field], field).toMatch(iso);
    }
    expect(final.runs?.length).toBeGreaterThan(0);
    for (const run of final.runs ?? []) {
      expect(run.startedAt).toMatch(iso);
      expect(run.endedAt).toMatch(iso);
    }
    const result = await cli('result', jobId);
    expect(result.stdout.split('\n')[0]).toBe('{"name":"Ada Lovelace","age":205}');
    // The job report through the API: one self-contained page with the job's timeline.
    const report = await cli('report', jobId);
    expect(report.stdout).toMatch(/^<!doctype html>/);
    expect(report.stdout).toContain(`fanout job <code>${jobId}</code>`);
    expect(report.stdout.match(/<rect class="attempt /g)?.length).toBe(7);
    // Newest first, one per page, and the way to the next page.
    const jobs = await cli('jobs', '--limit', '1');
    const lines = jobs.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${jobId}\\s+SUCCEEDED\\s+scientists`));
    expect(lines[1]).toMatch(/^more: fanout jobs --cursor [0-9a-z]{17}$/);
    const next = await cli('jobs', '--limit', '1', '--cursor', jobId);
    expect(next.code).toBe(0);
    expect(next.stdout).toMatch(/^[0-9a-z]{17}\s/); // an older job (this run submitted several)
    expect(next.stdout).not.toContain(jobId);
    const bad = await cli('submit', 'nope', input);
    expect(bad).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/unknown job "nope".*\(400 VALIDATION\)/),
    });
  });

  it('cancels in one line, waits for the end with --wait, and points the result at redrive', async () => {
    const input = (await cli('upload', lesson, `${run}/cancel.jsonl`)).stdout.trim();
    const jobId = (
      await cli('submit', 'scientists', input, '--params', '{"sleepMs":1500}', '--concurrency', '2')
    ).stdout.trim();
    // Cancelled once a chunk runs, so that the answer has chunks in flight to speak of.
    for (let i = 0; i < 200; i++) {
      const s = JSON.parse((await cli('status', jobId)).stdout) as { chunks: { running: number } };
      if (s.chunks.running > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const cancelled = await cli('cancel', jobId, '--wait');
    expect(cancelled.code).toBe(0);
    const [first, last] = cancelled.stdout.trim().split('\n');
    expect(first).toMatch(
      new RegExp(
        `^cancel requested for job ${jobId}: no new chunk starts; [1-9]\\d* chunk\\(s\\) in flight will finish, then it is CANCELLED`,
      ),
    );
    expect(last).toBe(`job ${jobId} is CANCELLED`);
    const result = await cli('result', jobId);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`fanout redrive ${jobId}`);
  }, 60_000);

  it('answers bad requests with JSON 4xx', async () => {
    const uploaded = (await cli('upload', lesson, `${run}/again.jsonl`)).stdout.trim();
    const bucket = /^s3:\/\/([^/]+)\//.exec(uploaded)?.[1];
    const missing = await cli('submit', 'by-field', `s3://${bucket}/datasets/${run}/none.jsonl`);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringMatching(/404 NOT_FOUND/) });
    const outside = await cli('submit', 'by-field', `s3://${bucket}/datasets/../jobs/x.json`);
    expect(outside).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/"\." or "\.\." segments/),
    });
  });
});
