/**
 * `fanout dev` as a user drives it: a child process, a dataset uploaded with the real AWS CLI, a
 * job submitted with plain HTTP, status polled until SUCCEEDED, its events in the log, and the
 * result compared with what `fanout run` prints for the same file. (The HTTP API through the
 * CLI verbs is test/e2e/api.test.ts, which also runs against a deployment.)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsS3Copy } from '../fixtures/aws-cli.ts';
import { bin, type DevProcess, root, startDev, untilStatus } from '../fixtures/dev-process.ts';

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
    // Quiet: no per-request warning (Powertools warned of empty metrics on every request).
    expect(dev.logs()).not.toContain('No application metrics to publish');
    const result = await (await fetch(`${api}/jobs/${jobId}/result`)).text();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [bin, 'run', 'by-field', lesson],
      { cwd: root },
    );
    expect(result).toBe(stdout.trim());
  });

  it("names the job file and line in a failed job's status, then follows the file's fix without a restart", async () => {
    // A registry module of one job, as --jobs takes it.
    const job = join(dir, 'buggy.ts');
    await writeFile(
      job,
      `import { createRegistry, defineJob } from 'fanout';

export const buggy = defineJob({
  name: 'buggy',
  format: 'jsonl',
  map: (r: { name: string; field: string }) =>
    r.name === 'Marie Curie' ? (JSON.parse('null') as { y: number }).y : r.name,
});

const VERSION = 1;

/** Each record after a second's wait, tagged with this file's version. */
export const slow = defineJob({
  name: 'slow',
  format: 'jsonl',
  map: async () => {
    await new Promise((r) => setTimeout(r, 1000));
    return VERSION;
  },
});

export const jobs = createRegistry([buggy, slow]);
`,
    );
    const own = await startDev(join(dir, 'buggy-data'), ['--jobs', job]);
    try {
      await awsS3Copy(own.s3, lesson, 's3://fanout-local/datasets/lesson/scientists.jsonl');
      const submitted = await fetch(`${own.api}/jobs`, {
        method: 'POST',
        body: JSON.stringify({
          job: 'buggy',
          input: 's3://fanout-local/datasets/lesson/scientists.jsonl',
        }),
      });
      expect(submitted.status).toBe(202);
      const { jobId } = (await submitted.json()) as { jobId: string };
      let status: { status: string; error?: { name: string; message: string } } = {
        status: 'QUEUED',
      };
      for (let i = 0; i < 300 && !['SUCCEEDED', 'FAILED'].includes(status.status); i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = (await (await fetch(`${own.api}/jobs/${jobId}`)).json()) as typeof status;
      }
      expect(status.status).toBe('FAILED');
      expect(status.error?.message).toContain('TypeError: job map threw on the record at byte');
      expect(status.error?.message).toContain(`(at ${job}:7:`);

      // The bug fixed in the file: dev rebuilds, says so, and the next submission runs it.
      const source = await readFile(job, 'utf8');
      await writeFile(
        job,
        source.replace(
          "r.name === 'Marie Curie' ? (JSON.parse('null') as { y: number }).y : r.name",
          'r.name',
        ),
      );
      for (
        let i = 0;
        i < 300 && !own.logs().includes('rebuilt; new submissions run the new code');
        i++
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(own.logs()).toContain(
        `fanout dev: ${job} changed: rebuilt; new submissions run the new code`,
      );
      const again = await fetch(`${own.api}/jobs`, {
        method: 'POST',
        body: JSON.stringify({
          job: 'buggy',
          input: 's3://fanout-local/datasets/lesson/scientists.jsonl',
        }),
      });
      const fixed = await untilStatus(
        own.api,
        ((await again.json()) as { jobId: string }).jobId,
        (s) => ['SUCCEEDED', 'FAILED'].includes(s.status),
        30_000,
      );
      expect(fixed).toMatchObject({ status: 'SUCCEEDED', records: 7 });

      // An edit while a job runs: that job keeps the code it started with, and the new code
      // takes over once it has ended. Seven chunks one at a time (7 s), so that the job still dispatches
      // chunks after the edit.
      const submit = async (job: string) => {
        const answer = await fetch(`${own.api}/jobs`, {
          method: 'POST',
          body: JSON.stringify({
            job,
            input: 's3://fanout-local/datasets/lesson/scientists.jsonl',
            chunks: 7,
            concurrency: 1,
          }),
        });
        return ((await answer.json()) as { jobId: string }).jobId;
      };
      const running = await submit('slow');
      await untilStatus(own.api, running, (s) => s.status === 'RUNNING', 30_000);
      await writeFile(job, (await readFile(job, 'utf8')).replace('VERSION = 1', 'VERSION = 2'));
      const ended = await untilStatus(
        own.api,
        running,
        (s) => ['SUCCEEDED', 'FAILED'].includes(s.status),
        60_000,
      );
      expect(ended.status).toBe('SUCCEEDED');
      const said = 'changed; the new code takes over once the 1 running job(s) end';
      expect(own.logs()).toContain(said);
      const old = await (await fetch(`${own.api}/jobs/${running}/result`)).text();
      expect(old.trim().split('\n')).toEqual(Array(7).fill('1'));
      for (let i = 0; i < 300 && own.logs().split('rebuilt;').length < 3; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const next = await untilStatus(
        own.api,
        await submit('slow'),
        (s) => ['SUCCEEDED', 'FAILED'].includes(s.status),
        60_000,
      );
      expect(next.status).toBe('SUCCEEDED');
      const now = await (await fetch(`${own.api}/jobs/${next.jobId}/result`)).text();
      expect(now.trim().split('\n')).toEqual(Array(7).fill('2'));
    } finally {
      await own.stop();
    }
  }, 60_000);

  it('refuses to bind a non-loopback address', async () => {
    const refused = await promisify(execFile)(process.execPath, [bin, 'dev', '--host', '0.0.0.0'], {
      cwd: root,
    }).catch((e) => e);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refusing to bind 0\.0\.0\.0/);
  });

  it('says which flag to change when a port is in use, in one line', async () => {
    // The running dev's own ports: its HTTP API's, then its S3 server's.
    const apiPort = new URL(api).port;
    const s3Port = new URL(s3).port;
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, [bin, 'dev', '--dir', join(dir, 'other'), ...args], {
        cwd: root,
      }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
    const free = await new Promise<string>((done) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => done(String(port)));
      });
    });
    const apiBusy = await run(['--port', apiPort, '--s3-port', free]);
    expect(apiBusy.code).toBe(2);
    expect(apiBusy.stderr).toBe(
      `fanout: port ${apiPort} on 127.0.0.1 is in use, so the HTTP API cannot listen there; choose another with --port N\n`,
    );
    const s3Busy = await run(['--port', free, '--s3-port', s3Port]);
    expect(s3Busy.code).toBe(2);
    expect(s3Busy.stderr).toBe(
      `fanout: port ${s3Port} on 127.0.0.1 is in use, so the S3 server cannot listen there; choose another with --s3-port N\n`,
    );
  });
});
