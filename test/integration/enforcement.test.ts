/**
 * The template's roles, enforced by the local servers: a job on the stack's own template does
 * nothing its roles do not allow, and a template that lacks a grant fails the job that needs it,
 * with AWS's AccessDenied, as the deployment would.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventBridgeEvents } from '#adapters/events.ts';
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { createS3Client } from '#adapters/s3-clients.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { startRuntime } from '#local/runtime.ts';
import type { Template } from '#local/template/deployment.ts';
import { defaultTemplate } from '#local/template/source.ts';
import { runJob } from '../../cli/run.ts';

let dir: string;
const quiet = { write: () => true } as unknown as NodeJS.WriteStream;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-enforce-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const dataset = (n: number) =>
  Array.from(
    { length: n },
    (_, i) =>
      `${JSON.stringify({ name: `s${i}`, field: `f${i % 4}`, born: 1900 + i, nobel: i % 3 === 0 })}\n`,
  ).join('');

/** The stack's template without `action` on resources ending `resourceSuffix`, for `role`. */
async function templateWithout(
  role: string,
  action: string,
  resourceSuffix: string,
): Promise<string> {
  const template = structuredClone((await defaultTemplate()).template) as Template;
  const resources = template.Resources ?? {};
  const fn = Object.values(resources).find(
    (r) => r.Type === 'AWS::Lambda::Function' && r.Metadata?.['fanout:function'] === role,
  );
  expect(fn, role).toBeDefined();
  const roleId = (fn!.Properties!.Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
  let removed = 0;
  for (const r of Object.values(resources)) {
    if (r.Type !== 'AWS::IAM::Policy') continue;
    if (!JSON.stringify(r.Properties?.Roles).includes(roleId)) continue;
    const doc = r.Properties?.PolicyDocument as {
      Statement: { Action: string | string[]; Resource: unknown }[];
    };
    for (const st of doc.Statement) {
      if (![st.Action].flat().includes(action)) continue;
      const list = [st.Resource].flat();
      const kept = list.filter((x) => !JSON.stringify(x).includes(resourceSuffix));
      removed += list.length - kept.length;
      st.Resource = kept.length === 1 ? kept[0] : kept;
    }
  }
  expect(removed).toBeGreaterThan(0);
  const file = join(dir, `without-${role}-${removed}.json`);
  await writeFile(file, JSON.stringify(template));
  return file;
}

describe('enforced roles', () => {
  it("lets a job on the stack's template do only what its roles allow", async () => {
    const runtime = await startRuntime();
    try {
      const file = join(dir, 'people.jsonl');
      await writeFile(file, dataset(40));
      const reduced = await runJob(runtime, { job: 'by-field', input: file, stderr: quiet });
      expect(reduced.status.status).toBe('SUCCEEDED');
      const mapped = await runJob(runtime, {
        job: 'scientists',
        input: file,
        chunks: 4,
        stderr: quiet,
      });
      expect(mapped.resultText?.trim().split('\n')).toHaveLength(40);
      expect(runtime.enforcement.denied).toBe(0);
    } finally {
      await runtime.close();
    }
  });

  it("fails a continuation with AccessDenied when the coordinator's role may not read the manifest", async () => {
    const runtime = await startRuntime({
      template: await templateWithout('coordinator', 's3:GetObject', '/manifest.json'),
      // A continuation after a few seconds: it reads the manifest the first run wrote.
      coordinatorTimeoutSeconds: 4,
      workerTimeoutSeconds: 1,
    });
    try {
      const file = join(dir, 'long.jsonl');
      await writeFile(file, dataset(14));
      const failed = await runJob(runtime, {
        job: 'scientists',
        input: file,
        params: { sleepMs: 500 },
        chunks: 14,
        concurrency: 2,
        stderr: quiet,
      }).catch((error: Error) => error);
      expect(failed).toBeInstanceOf(Error);
      expect((failed as Error).message).toMatch(
        /FAILED: GET s3:\/\/fanout-local\/jobs\/\w+\/manifest\.json was refused \(403 AccessDenied/,
      );
      expect(runtime.enforcement.denied).toBeGreaterThan(0);
    } finally {
      await runtime.close();
    }
  });
});

describe('each function as its role', () => {
  it("may not do what its role does not grant, and is told so in AWS's shape", async () => {
    const runtime = await startRuntime();
    try {
      const worker = runtime.enforcement.credentialsOf('worker');
      const store = new S3ObjectStore(
        createS3Client({ endpoint: runtime.s3.endpoint, credentials: worker }),
      );
      await runtime.store.put(runtime.bucket, 'datasets/in.jsonl', '{"a":1}\n');
      await runtime.store.put(runtime.bucket, 'jobs/zzzzzzzzz00000000/status.json', '{}');
      // Its own inputs: yes; a job's status: no.
      expect((await store.getBytes(runtime.bucket, 'datasets/in.jsonl')).body.length).toBe(8);
      await expect(
        store.getBytes(runtime.bucket, 'jobs/zzzzzzzzz00000000/status.json'),
      ).rejects.toMatchObject({
        code: 'ACCESS_DENIED',
        message: expect.stringMatching(/not authorized to perform: s3:GetObject/),
      });
      // A missing input is a 403 to a role that may not list the bucket, which the adapter
      // tells from a refusal by listing the prefix it may list.
      await expect(store.getBytes(runtime.bucket, 'datasets/gone.jsonl')).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
      // Lambda: the worker invokes nothing; EventBridge: it publishes nothing.
      const invoker = new LambdaInvoker({ endpoint: runtime.lambda.endpoint, credentials: worker });
      await expect(
        invoker.invoke(runtime.functions.coordinator, { jobId: 'zzzzzzzzz00000000' }),
      ).rejects.toMatchObject({ name: 'AccessDeniedException' });
      const saved = { ...process.env };
      Object.assign(process.env, {
        AWS_ENDPOINT_URL_EVENTBRIDGE: runtime.lambda.endpoint,
        AWS_ACCESS_KEY_ID: worker.accessKeyId,
        AWS_SECRET_ACCESS_KEY: worker.secretAccessKey,
        AWS_REGION: runtime.deployment.region,
      });
      try {
        await expect(
          eventBridgeEvents('default').publish({ jobId: 'x', status: 'RUNNING' } as never),
        ).rejects.toMatchObject({ name: 'AccessDeniedException' });
      } finally {
        process.env = saved;
      }
    } finally {
      await runtime.close();
    }
  });
});
