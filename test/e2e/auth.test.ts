/**
 * Who may see and do what, against `fanout dev --auth` with principals A and B (plain) and C
 * (admin), through real SigV4 clients: `curl --aws-sigv4`, the CLI with credentials from the
 * environment, and the SDK's signer for requests a client would never send (a body changed after
 * signing, a date 20 minutes old). Issue 19's acceptance, point by point.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanoutWith, jobRoutes } from '../fixtures/cli.ts';
import { ADA, type DevProcess, putDataset, startDev } from '../fixtures/dev-process.ts';

const A = {
  accessKeyId: 'AKIAALICE',
  secretAccessKey: 'alice-secret',
  arn: 'arn:aws:iam::111122223333:user/alice',
};
const B = {
  accessKeyId: 'AKIABOB',
  secretAccessKey: 'bob-secret',
  arn: 'arn:aws:iam::111122223333:user/bob',
};
const C = {
  accessKeyId: 'AKIACAROL',
  secretAccessKey: 'carol-secret',
  arn: 'arn:aws:iam::111122223333:user/carol',
  admin: true,
};
type Who = typeof A;

let dev: DevProcess;
let dir: string;
const input = 's3://fanout-local/datasets/auth.jsonl';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-auth-'));
  const auth = join(dir, 'auth.json');
  await writeFile(auth, JSON.stringify({ principals: [A, B, C] }));
  dev = await startDev(join(dir, 'data'), ['--auth', auth]);
  await putDataset(dev, 'auth.jsonl', ADA);
}, 60_000);
afterAll(async () => {
  await dev?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** One request through `curl --aws-sigv4` as `who` (unsigned without one). */
async function curl(who: Who | undefined, method: string, path: string, body?: string) {
  const args = ['-s', '-X', method, '-w', '\n%{http_code}', `${dev.api}${path}`];
  if (who !== undefined) {
    args.push(
      '--aws-sigv4',
      'aws:amz:us-east-1:execute-api',
      '--user',
      `${who.accessKeyId}:${who.secretAccessKey}`,
    );
  }
  if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', body);
  const { stdout } = await promisify(execFile)('curl', args);
  const at = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
}

/** A request signed by the SDK's signer as `who`, then sent as `send` says (altered, say). */
async function signed(
  who: Who,
  method: string,
  path: string,
  body: string | undefined,
  options: { date?: Date; sendBody?: string; dropHeader?: string } = {},
) {
  const url = new URL(`${dev.api}${path}`);
  const signer = new SignatureV4({
    service: 'execute-api',
    region: 'us-east-1',
    credentials: { accessKeyId: who.accessKeyId, secretAccessKey: who.secretAccessKey },
    sha256: Sha256,
  });
  const request = await signer.sign(
    {
      method,
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: {
        host: url.host,
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body }),
    },
    {
      ...(options.date !== undefined && { signingDate: options.date }),
      ...(options.dropHeader !== undefined && { unsignableHeaders: new Set([options.dropHeader]) }),
    },
  );
  const { host: _host, ...headers } = request.headers as Record<string, string>;
  if (options.dropHeader !== undefined) delete headers[options.dropHeader];
  const sent = options.sendBody ?? body;
  return fetch(url, { method, headers, ...(sent !== undefined && { body: sent }) });
}

/** Every job C (the admin) can list. */
async function allJobs(): Promise<string[]> {
  const page = await curl(C, 'GET', '/jobs?all=true&limit=100');
  expect(page.status).toBe(200);
  return (JSON.parse(page.body) as { jobs: { jobId: string }[] }).jobs.map((j) => j.jobId);
}

const submission = JSON.stringify({ job: 'by-field', input });

describe('fanout dev --auth', () => {
  it('keeps A’s job from B: 404 on every route, as for a random job id, and not listed; C sees and manages it', async () => {
    const created = await curl(A, 'POST', '/jobs', submission);
    expect(created.status).toBe(202);
    const jobId = (JSON.parse(created.body) as { jobId: string }).jobId;
    const random = 'zzzzzzzzzzzzzzzzz';
    // Every route of one job, as the API declares them: a new one is covered as it is added.
    for (const { method, suffix } of jobRoutes()) {
      const theirs = await curl(B, method, `/jobs/${jobId}${suffix}`);
      const none = await curl(B, method, `/jobs/${random}${suffix}`);
      expect(theirs.status, `${method} ${suffix}`).toBe(404);
      expect(none.status, `${method} ${suffix}`).toBe(404);
      expect(theirs.body.replace(jobId, 'ID'), `${method} ${suffix}`).toBe(
        none.body.replace(random, 'ID'),
      );
    }
    const listedByB = JSON.parse((await curl(B, 'GET', '/jobs')).body) as {
      jobs: { jobId: string }[];
    };
    expect(listedByB.jobs.map((j) => j.jobId)).not.toContain(jobId);
    const listedByA = JSON.parse((await curl(A, 'GET', '/jobs')).body) as {
      jobs: { jobId: string }[];
    };
    expect(listedByA.jobs.map((j) => j.jobId)).toContain(jobId);
    // C, an admin: sees it, lists it with all=true, and gets its result once it has succeeded.
    const status = JSON.parse((await curl(C, 'GET', `/jobs/${jobId}`)).body) as {
      owner: { principal: string };
    };
    expect(status.owner.principal).toBe(A.arn);
    expect(await allJobs()).toContain(jobId);
    for (let tries = 0; tries < 600; tries++) {
      const now = JSON.parse((await curl(C, 'GET', `/jobs/${jobId}`)).body) as { status: string };
      if (now.status === 'SUCCEEDED') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const result = await curl(C, 'GET', `/jobs/${jobId}/result`);
    expect(result.status).toBe(200);
    expect(JSON.parse(result.body)).toEqual({ math: { count: 1, nobels: 0, ageSum: 202 } });
    // B's all=true is refused.
    expect((await curl(B, 'GET', '/jobs?all=true')).status).toBe(403);
  }, 120_000);

  it('refuses unsigned requests, a wrong secret, a body changed after signing and a date 20 minutes old, creating nothing', async () => {
    const before = await allJobs();
    expect((await curl(undefined, 'POST', '/jobs', submission)).status).toBe(403);
    expect(
      (await curl({ ...A, secretAccessKey: 'wrong' }, 'POST', '/jobs', submission)).status,
    ).toBe(403);
    const altered = await signed(A, 'POST', '/jobs', submission, {
      sendBody: JSON.stringify({ job: 'scientists', input }),
    });
    expect(altered.status).toBe(403);
    expect(await altered.text()).toMatch(/the body is not the one that was signed/);
    // Without the body's hash among the headers, the signature itself gives it away.
    const unhashed = await signed(A, 'POST', '/jobs', submission, {
      sendBody: JSON.stringify({ job: 'scientists', input }),
      dropHeader: 'x-amz-content-sha256',
    });
    expect(unhashed.status).toBe(403);
    expect(await unhashed.text()).toMatch(/signature does not match/);
    const old = await signed(A, 'POST', '/jobs', submission, {
      date: new Date(Date.now() - 20 * 60_000),
    });
    expect(old.status).toBe(403);
    expect(await old.text()).toMatch(/more than 15 minutes/);
    // The same signer, as it is: accepted (what the refusals changed is what they were for).
    const fine = await signed(A, 'GET', '/jobs', undefined);
    expect(fine.status).toBe(200);
    expect(await allJobs()).toEqual(before);
  }, 60_000);

  it('never answers a fuzzed Authorization header with a 5xx, nor creates a job', async () => {
    const before = await allJobs();
    const good = `AWS4-HMAC-SHA256 Credential=${A.accessKeyId}/20261207/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(64)}`;
    const header = fc.oneof(
      fc.nat(good.length).map((n) => good.slice(0, n)),
      fc.constant(`${good}, ${good}`),
      fc.constant(good.replace('us-east-1', 'eu-west-1')),
      fc.constant(good.replace('execute-api', 's3')),
      fc.string({ minLength: 1000, maxLength: 8000 }).map((s) => `AWS4-HMAC-SHA256 ${s}`),
      fc.string({ maxLength: 300 }),
    );
    await fc.assert(
      fc.asyncProperty(header, async (authorization) => {
        const answer = await fetch(`${dev.api}/jobs`, {
          method: 'POST',
          headers: {
            authorization: authorization.replace(/[\r\n\0]/g, ' '),
            'x-amz-date': '20261207T000000Z',
          },
          body: submission,
        }).catch(() => undefined); // a header Node itself cannot send
        if (answer === undefined) return;
        expect(answer.status).toBeLessThan(500);
        expect([400, 403, 431]).toContain(answer.status);
      }),
      { numRuns: 60 },
    );
    expect(await allJobs()).toEqual(before);
  }, 120_000);

  it('lets the CLI sign with credentials from the environment: A submits and reads, B is told there is no such job', async () => {
    const asA = { AWS_ACCESS_KEY_ID: A.accessKeyId, AWS_SECRET_ACCESS_KEY: A.secretAccessKey };
    const asB = { AWS_ACCESS_KEY_ID: B.accessKeyId, AWS_SECRET_ACCESS_KEY: B.secretAccessKey };
    const submitted = await fanoutWith(asA, 'submit', 'by-field', input, '--api', dev.api);
    expect(submitted.code, submitted.stderr).toBe(0);
    const jobId = submitted.stdout.trim();
    const mine = await fanoutWith(asA, 'status', jobId, '--api', dev.api);
    expect(mine.code).toBe(0);
    const theirs = await fanoutWith(asB, 'status', jobId, '--api', dev.api);
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toMatch(/no job .* \(404 NOT_FOUND\)/);
    const unsigned = await fanoutWith({}, 'jobs', '--api', dev.api);
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/not signed/);
  }, 60_000);
});
