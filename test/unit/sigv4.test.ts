/**
 * The CLI's SigV4 signing against known answers: the AWS SigV4 test suite's credentials and
 * clock (AKIDEXAMPLE, 2015-08-30T12:36:00Z), with the expected Authorization headers computed
 * independently of this code (Python's hmac and hashlib, following the SigV4 specification).
 * A change to the canonical request (a header, the query, the body hash) changes the signature.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiClient } from '../../cli/client.ts';

const API = 'https://abc123.execute-api.us-east-1.amazonaws.com';
const TOKEN =
  'AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==';

const saved = { ...process.env };
const fetched = vi.fn(async (_url: string | URL, _init?: RequestInit) => new Response('{}'));

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'], now: new Date('2015-08-30T12:36:00Z') });
  vi.stubGlobal('fetch', fetched);
  fetched.mockClear();
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('AWS_')) delete process.env[name];
  }
  process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE';
  process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
  process.env = { ...saved };
});

const sent = () => {
  const [url, init] = fetched.mock.calls[0] ?? [];
  return { url: String(url), headers: (init?.headers ?? {}) as Record<string, string>, init };
};

describe('SigV4 for execute-api, known answers', () => {
  it('signs GET /jobs/j-1 exactly', async () => {
    await new ApiClient(API).json('GET', '/jobs/j-1');
    const { url, headers } = sent();
    expect(url).toBe(`${API}/jobs/j-1`);
    expect(headers['x-amz-date']).toBe('20150830T123600Z');
    expect(headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=1b849ce73f9f397cb99f86072faf3a62a9803080931d5d4751eae4cc02b31195',
    );
  });

  it('signs a POST with a JSON body, a query and a session token exactly', async () => {
    process.env.AWS_SESSION_TOKEN = TOKEN;
    await new ApiClient(API).json('POST', '/jobs', { job: 'by-field' }, { limit: '2' });
    const { url, headers, init } = sent();
    expect(url).toBe(`${API}/jobs?limit=2`);
    expect(init?.body).toBe('{"job":"by-field"}');
    expect(headers['x-amz-security-token']).toBe(TOKEN);
    expect(headers['x-amz-content-sha256']).toBe(
      '9ebe55baa34fd43b2e0d156c0d1183a6cf000dd4037fac3c04e935bc3fb7757d',
    );
    expect(headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/execute-api/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=a49aad0b19ee655dc0d7ea10ff0030c8b5c1e857e51cd5806213ecc5b55c11b6',
    );
  });
});
