/**
 * A deploy rehearsal: the stack synthesized with short timeouts (the `fanout:*TimeoutSeconds`
 * context keys), run by `fanout dev --template FILE`, every role enforced. A job longer than one
 * coordinator run continues across runs and succeeds exactly; a SIGKILL mid-job and a restart
 * still end SUCCEEDED; an unknown job is a 404, though the api may not read keys that do not
 * exist without listing.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultTemplate } from '#local/template/source.ts';
import { bin, type DevProcess, root, startDev, untilStatus } from '../fixtures/dev-process.ts';

/**
 * Short enough that a 12-second job needs continuations: each coordinator run dispatches until
 * 5 s (one 2 s worker timeout and its margins) are left of its 10 s.
 */
const CONTEXT = {
  'fanout:workerTimeoutSeconds': '2',
  'fanout:coordinatorTimeoutSeconds': '10',
  'fanout:reducerTimeoutSeconds': '2',
};

let dir: string;
let template: string;
const running: DevProcess[] = [];

const RECORDS = 48;
const people = Array.from(
  { length: RECORDS },
  (_, i) =>
    `${JSON.stringify({ name: `p${i}`, field: `f${i % 5}`, born: 1900 + i, nobel: i % 7 === 0 })}\n`,
).join('');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-rehearsal-'));
  // A file, as `cdk synth -c …` leaves cdk.out/Fanout.template.json.
  template = join(dir, 'Fanout.template.json');
  await copyFile((await defaultTemplate(CONTEXT)).path, template);
  await writeFile(join(dir, 'people.jsonl'), people);
});
afterAll(async () => {
  for (const dev of running) await dev.kill();
  await rm(dir, { recursive: true, force: true });
});

/** Uploads the dataset and submits `scientists` at 1 s a chunk, four at a time. */
async function submit(dev: DevProcess): Promise<string> {
  const put = await fetch(`${dev.s3}/fanout-local/datasets/people.jsonl`, {
    method: 'PUT',
    body: people,
  });
  expect(put.status).toBe(200);
  const res = await fetch(`${dev.api}/jobs`, {
    method: 'POST',
    body: JSON.stringify({
      job: 'scientists',
      input: 's3://fanout-local/datasets/people.jsonl',
      params: { year: 2020, sleepMs: 1000 },
      chunks: RECORDS,
      concurrency: 4,
    }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { jobId: string }).jobId;
}

let expected: string | undefined;
/** The single-pass result, as `fanout run` gives it. */
async function singlePass(): Promise<string> {
  expected ??= (
    await promisify(execFile)(
      process.execPath,
      [bin, 'run', 'scientists', join(dir, 'people.jsonl'), '--params', '{"year":2020}'],
      { cwd: root },
    )
  ).stdout.trim();
  return expected;
}

describe('a deploy rehearsal on the template', () => {
  it('continues a long job across coordinator runs and succeeds exactly; an unknown job is a 404', async () => {
    const dev = await startDev(join(dir, 'long'), ['--template', template]);
    running.push(dev);
    expect(dev.output()).toContain(template);
    const jobId = await submit(dev);
    const ended = await untilStatus(
      dev.api,
      jobId,
      (s) => s.status !== 'RUNNING' && s.status !== 'QUEUED',
      90_000,
    );
    // A failure's message (an AccessDenied of a missing grant) is what a reader needs to see.
    expect(ended, JSON.stringify(ended.error)).toMatchObject({
      status: 'SUCCEEDED',
      records: RECORDS,
    });
    expect(ended.continuations).toBeGreaterThanOrEqual(2);
    const result = await (await fetch(`${dev.api}/jobs/${jobId}/result`)).text();
    expect(result.trim()).toBe(await singlePass());
    // Every role did only what its policy allows.
    expect(dev.logs()).not.toMatch(/AccessDenied/);

    const unknown = await fetch(`${dev.api}/jobs/zzzzzzzzz00000000`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    await dev.stop();
  }, 120_000);

  it('finishes after a SIGKILL mid-job and a restart on the same --dir', async () => {
    const data = join(dir, 'killed');
    const env = { FANOUT_STALE_AFTER_SECONDS: '2' };
    const first = await startDev(data, ['--template', template], env);
    running.push(first);
    const jobId = await submit(first);
    const midway = await untilStatus(first.api, jobId, (s) => s.chunks.succeeded >= 8, 60_000);
    expect(midway.status).toBe('RUNNING');
    await first.kill();

    const second = await startDev(data, ['--template', template], env);
    running.push(second);
    const ended = await untilStatus(second.api, jobId, (s) => s.status !== 'RUNNING', 90_000);
    // A failure's message (an AccessDenied of a missing grant) is what a reader needs to see.
    expect(ended, JSON.stringify(ended.error)).toMatchObject({
      status: 'SUCCEEDED',
      records: RECORDS,
    });
    expect(ended.resumes).toBeGreaterThanOrEqual(1);
    const result = await (await fetch(`${second.api}/jobs/${jobId}/result`)).text();
    expect(result.trim()).toBe(await singlePass());
    expect(second.logs()).not.toMatch(/AccessDenied/);
    await second.stop();
  }, 150_000);
});
