/**
 * The CLI's API client: no credentials to the local server, SigV4 (execute-api) to anything
 * else. The "remote" here is a server on another loopback address (127.0.0.2).
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, ApiError } from '../../cli/client.ts';

const seen: { headers: IncomingHttpHeaders; url: string; body: string }[] = [];
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (d) => {
    body += d;
  });
  req.on('end', () => {
    seen.push({ headers: req.headers, url: req.url ?? '', body });
    const status = req.url?.startsWith('/missing') ? 404 : 200;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify(
        status === 404 ? { error: { code: 'NOT_FOUND', message: 'no job x' } } : { ok: true },
      ),
    );
  });
});
let port: number;
const saved = { ...process.env };

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.2', r));
  port = (server.address() as AddressInfo).port;
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_REGION: 'eu-west-1',
  });
});
afterAll(() => {
  process.env = saved;
  server.close();
});

describe('ApiClient', () => {
  it('signs requests to a deployment with SigV4 for execute-api', async () => {
    const client = new ApiClient(`http://127.0.0.2:${port}`);
    expect(await client.json('POST', '/jobs', { job: 'by-field' }, { limit: '2' })).toEqual({
      ok: true,
    });
    const { headers, url, body } = seen.at(-1)!;
    expect(url).toBe('/jobs?limit=2');
    expect(body).toBe('{"job":"by-field"}');
    expect(headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=[^,]*host[^,]*, Signature=[0-9a-f]{64}$/,
    );
    expect(headers['x-amz-date']).toMatch(/^\d{8}T\d{6}Z$/);
  });

  it('sends no credentials to the local server unless the environment names some (fanout dev --auth)', async () => {
    const local = createServer((req, res) => {
      seen.push({ headers: req.headers, url: req.url ?? '', body: '' });
      res.end('{}');
    });
    await new Promise<void>((r) => local.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(local.address() as AddressInfo).port}`;
    const named = { ...process.env };
    try {
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_PROFILE;
      await new ApiClient(url).json('GET', '/jobs');
      expect(seen.at(-1)?.headers.authorization).toBeUndefined();
      process.env = { ...named };
      await new ApiClient(url).json('GET', '/jobs');
      expect(seen.at(-1)?.headers.authorization).toMatch(
        /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request/,
      );
    } finally {
      process.env = named;
      local.close();
    }
  });

  it('sends a request again while the gateway is busy, after Retry-After, and gives up after five', async () => {
    let calls = 0;
    let answers: number[] = [];
    const busy = createServer((req, res) => {
      calls += 1;
      const status = answers.shift() ?? 200;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (status === 429) headers['retry-after'] = '0';
      res.writeHead(status, headers);
      res.end(JSON.stringify(status === 200 ? { jobId: 'j' } : { message: 'busy' }));
      req.resume();
    });
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const client = new ApiClient(`http://127.0.0.1:${(busy.address() as AddressInfo).port}`);
    try {
      answers = [429, 502, 503, 504];
      expect(await client.json('POST', '/jobs', { job: 'x' })).toEqual({ jobId: 'j' });
      expect(calls).toBe(5);
      calls = 0;
      answers = [429, 429, 429, 429, 429, 429, 429];
      await expect(client.json('GET', '/jobs')).rejects.toMatchObject({ status: 429 });
      expect(calls).toBe(6); // the first and five more
      calls = 0;
      answers = [500];
      await expect(client.json('GET', '/jobs')).rejects.toMatchObject({ status: 500 });
      expect(calls).toBe(1); // not a gateway's busy answer: not sent again
    } finally {
      busy.close();
    }
  }, 30_000);

  it('turns API errors into ApiError with status and code', async () => {
    const error = await new ApiClient(`http://127.0.0.2:${port}`)
      .json('GET', '/missing')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 404, code: 'NOT_FOUND', message: 'no job x' });
  });
});
