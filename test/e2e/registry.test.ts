/**
 * Your own job registry through fanout dev (`--jobs`, as FanoutService's `jobs` prop deploys it):
 * its jobs run; jobs it does not list are refused, as on a deployment built with it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevProcess, startDev } from '../fixtures/dev-process.ts';

let dir: string;
let dev: DevProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-registry-'));
  dev = await startDev(join(dir, 'data'), ['--jobs', 'test/fixtures/custom-registry.ts']);
});
afterAll(async () => {
  await dev?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('fanout dev --jobs', () => {
  it('suggests a job the registry serves in its banner', () => {
    expect(dev.output()).toContain(`-d '{"job":"custom-echo","input":`);
    expect(dev.output()).not.toContain('"job":"by-field"');
  });

  it('runs the registry’s jobs and refuses the others', async () => {
    const records = '{"a":1}\n{"b":[2,3]}\n';
    await fetch(`${dev.s3}/fanout-local/datasets/r/in.jsonl`, { method: 'PUT', body: records });
    const submit = (job: string) =>
      fetch(`${dev.api}/jobs`, {
        method: 'POST',
        body: JSON.stringify({ job, input: 's3://fanout-local/datasets/r/in.jsonl' }),
      });
    const refused = await submit('by-field');
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(
      /unknown job "by-field"; expected one of: custom-echo/,
    );
    const accepted = await submit('custom-echo');
    expect(accepted.status).toBe(202);
    const { jobId } = (await accepted.json()) as { jobId: string };
    let status = { status: 'QUEUED' };
    for (let i = 0; i < 200 && !['SUCCEEDED', 'FAILED'].includes(status.status); i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await (await fetch(`${dev.api}/jobs/${jobId}`)).json()) as { status: string };
    }
    expect(status.status).toBe('SUCCEEDED');
    expect(await (await fetch(`${dev.api}/jobs/${jobId}/result`)).text()).toBe(records);
  });
});
