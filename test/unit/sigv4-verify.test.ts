/**
 * The local SigV4 verifier (local/sigv4.ts) against the SDK's signer, the one the CLI uses:
 * what it signs verifies; a session token must be carried and signed when the principal has
 * one; a query, a header or the clock that differs from what was signed does not.
 */
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { type AuthPrincipal, verifySigV4 } from '#local/sigv4.ts';

const alice: AuthPrincipal = {
  accessKeyId: 'AKIAALICE',
  secretAccessKey: 'alice-secret',
  arn: 'arn:aws:iam::111122223333:user/alice',
};
const temporary: AuthPrincipal = { ...alice, accessKeyId: 'ASIATEMP', sessionToken: 'token-1' };
const principals = new Map([alice, temporary].map((p) => [p.accessKeyId, p]));
const NOW = Date.parse('2026-12-07T12:00:00Z');

/** A request as the SDK signs it for `who`, in the shape the verifier reads. */
async function signedBy(who: AuthPrincipal, query: Record<string, string> = {}, token?: string) {
  const signer = new SignatureV4({
    service: 'execute-api',
    region: 'us-east-1',
    credentials: {
      accessKeyId: who.accessKeyId,
      secretAccessKey: who.secretAccessKey,
      ...(token !== undefined && { sessionToken: token }),
    },
    sha256: Sha256,
  });
  const body = '{"job":"by-field"}';
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 3000,
      path: '/jobs',
      query,
      headers: { host: '127.0.0.1:3000', 'content-type': 'application/json' },
      body,
    },
    { signingDate: new Date(NOW) },
  );
  const headers = Object.fromEntries(
    Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), String(v)]),
  );
  const q = new URLSearchParams(query).toString();
  return { method: 'POST', path: '/jobs', query: q, headers, body: new TextEncoder().encode(body) };
}

const verify = (request: Awaited<ReturnType<typeof signedBy>>, now = NOW) =>
  verifySigV4(request, principals, { region: 'us-east-1', now });

describe('verifySigV4', () => {
  it('accepts what the SDK signs, query included, and names the principal', async () => {
    expect(verify(await signedBy(alice, { limit: '5', all: 'true' }))).toEqual({
      principal: alice,
    });
  });

  it('refuses a changed query or header, and a clock 15 minutes and more away', async () => {
    const request = await signedBy(alice, { limit: '5' });
    expect(verify({ ...request, query: 'limit=6' })).toMatchObject({ refused: /does not match/ });
    const headers = { ...request.headers, 'content-type': 'text/plain' };
    expect(verify({ ...request, headers })).toMatchObject({ refused: /does not match/ });
    expect(verify(request, NOW + 16 * 60_000)).toMatchObject({ refused: /15 minutes/ });
    expect(verify(request, NOW + 14 * 60_000)).toEqual({ principal: alice });
  });

  it('wants the session token of a temporary principal, carried and signed', async () => {
    expect(verify(await signedBy(temporary, {}, 'token-1'))).toEqual({ principal: temporary });
    expect(verify(await signedBy(temporary))).toMatchObject({ refused: /session token/ });
    expect(verify(await signedBy(temporary, {}, 'token-2'))).toMatchObject({
      refused: /session token/,
    });
    // A token a principal without one does not expect.
    expect(verify(await signedBy(alice, {}, 'token-1'))).toMatchObject({
      refused: /session token/,
    });
  });
});
