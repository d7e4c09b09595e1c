/**
 * Who signed a request to a local server. Each function's sandboxes get credentials of their
 * own, tied to the function's role; the person at the keyboard (the CLI, the AWS CLI with the
 * credentials `fanout dev` prints) is the account's administrator, as their own AWS credentials
 * would make them; AWS services (API Gateway in front of the api function, EventBridge's
 * schedule) have principals of their own, allowed by the template's resource-based permissions.
 *
 * A request names its signer by the access key id in its SigV4 credential scope (the
 * Authorization header, or X-Amz-Credential of a presigned URL). Signatures themselves are not
 * checked here. What enforcement guards is the functions' roles: a request signed with no
 * function's or service's credentials (unsigned, or signed with the person's own keys) comes
 * from the local user, as every request to `fanout dev` did before roles were enforced.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Policy } from './policy.ts';

/** A signer the local servers know. */
export interface Principal {
  /** For messages: a role's name, `the local user`, or a service principal. */
  name: string;
  /** Its ARN, as AWS names the caller in an AccessDenied message. */
  arn: string;
  /** Its identity policies; absent for the local user, who may do everything. */
  policy?: Policy;
  /** An AWS service principal (`apigateway.amazonaws.com`), allowed by resource policies. */
  service?: string;
}

/** Credentials to hand a sandbox or client. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** The local user's credentials: what `fanout dev` prints, and what the CLI signs with. */
export const LOCAL_USER: Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** Why a request has no principal. */
export type Unidentified = { reason: 'unsigned' } | { reason: 'unknown-key'; accessKeyId: string };

/** The access key id a request was signed with, or undefined for an unsigned one. */
export function accessKeyOf(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const scope = /Credential=([^/,\s]+)\//.exec(auth)?.[1];
    if (scope !== undefined) return scope;
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  const credential = new URLSearchParams(url.slice(q + 1)).get('X-Amz-Credential');
  return credential?.split('/')[0] || undefined;
}

/** The principals of one local runtime, by access key id. */
export class Principals {
  private readonly byKey = new Map<string, Principal>();

  /** Registers a principal under new credentials (random, like an STS session's). */
  issue(principal: Principal, prefix: string): Credentials {
    const accessKeyId = `${prefix}${randomBytes(6).toString('hex').toUpperCase()}`;
    const credentials = { accessKeyId, secretAccessKey: randomBytes(20).toString('base64') };
    this.byKey.set(accessKeyId, principal);
    return credentials;
  }

  /** Registers a principal under given credentials. */
  add(credentials: Credentials, principal: Principal): void {
    this.byKey.set(credentials.accessKeyId, principal);
  }

  /**
   * @param fallback who sent a request signed with no known credentials (the local user); when
   * absent, such a request is unidentified
   */
  constructor(private readonly fallback?: Principal) {}

  /** Who signed `req`, or why nobody known did. */
  identify(req: IncomingMessage): Principal | Unidentified {
    const accessKeyId = accessKeyOf(req);
    const known = accessKeyId === undefined ? undefined : this.byKey.get(accessKeyId);
    if (known !== undefined) return known;
    if (this.fallback !== undefined) return this.fallback;
    return accessKeyId === undefined
      ? { reason: 'unsigned' }
      : { reason: 'unknown-key', accessKeyId };
  }
}

/** True when `identified` is a principal rather than a reason. */
export const isPrincipal = (identified: Principal | Unidentified): identified is Principal =>
  'arn' in identified;
