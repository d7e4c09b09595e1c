/**
 * IAM as the local servers enforce it, from a deployment read off the template: every request
 * to the local S3 server, the Lambda Invoke server and the events sink is authorized against
 * its signer's role, and refused in AWS's shape when the role does not allow it. What passes
 * here does not fail on AWS for a reason the template already shows.
 *
 * Two readings are deliberately the stricter one:
 * - A GET or HEAD of a missing key is a 403 unless the signer may list the bucket with no
 *   prefix condition. S3 documents 403 without s3:ListBucket and 404 with it, but not how a
 *   prefix condition counts; fanout's S3 adapter copes with either (shared/adapters/s3-store.ts).
 * - Bucket policies are not evaluated, only the roles' identity policies (the bucket's policy
 *   denies non-TLS requests, and the local servers speak plain HTTP on loopback).
 */
import type { IncomingMessage } from 'node:http';
import type { Deployment, FunctionRole } from '../template/deployment.ts';
import { FUNCTION_ROLES } from '../template/deployment.ts';
import { type AuthorizationRequest, Policy } from './policy.ts';
import {
  type Credentials,
  isPrincipal,
  LOCAL_USER,
  type Principal,
  Principals,
  type Unidentified,
} from './principals.ts';
import { s3Authorizations } from './s3-actions.ts';

/** A refusal, as the server answers it. */
export interface Refusal {
  ok: false;
  status: number;
  /** AWS's error code (S3) or type (Lambda, EventBridge). */
  code: string;
  message: string;
}

/** An S3 request's verdict: refused, or allowed (and whether a missing key is a 403). */
export type S3Verdict = Refusal | { ok: true; denyMissing: boolean };

/** A Lambda or EventBridge request's verdict. */
export type Verdict = Refusal | { ok: true };

/** The service principal API Gateway invokes the api function as. */
export const API_GATEWAY = 'apigateway.amazonaws.com';
/** The service principal EventBridge rules invoke their targets as. */
export const EVENTBRIDGE = 'events.amazonaws.com';

const ALLOWED: { ok: true } = { ok: true };

/** Enforcement for one local runtime. */
export class Enforcement {
  readonly principals: Principals;
  private readonly credentials = new Map<FunctionRole, Credentials>();
  private readonly services = new Map<string, Credentials>();
  private readonly policies = new Map<FunctionRole, Policy>();
  /** Mounted directories (read-only buckets) stand in for the first allowed input prefix. */
  private readonly inputPrefix: string;
  /** Refusals so far, for tests and for the log. */
  denied = 0;

  constructor(
    private readonly deployment: Deployment,
    private readonly onDenied: (message: string) => void = () => undefined,
  ) {
    const user = { name: 'the local user', arn: `arn:aws:iam::${deployment.account}:user/local` };
    // Requests signed with no function's credentials are the person's own (principals.ts).
    this.principals = new Principals(user);
    this.principals.add(LOCAL_USER, user);
    for (const role of FUNCTION_ROLES) {
      const fn = deployment.functions[role];
      const policy = new Policy(fn.policies);
      this.policies.set(role, policy);
      const roleName = fn.roleArn.split('/').at(-1) ?? fn.roleArn;
      const principal: Principal = {
        name: `the ${role} function's role (${roleName})`,
        arn: `arn:aws:sts::${deployment.account}:assumed-role/${roleName}/${fn.name}`,
        policy,
      };
      this.credentials.set(role, this.principals.issue(principal, `ASIA${role.toUpperCase()}`));
    }
    for (const service of [API_GATEWAY, EVENTBRIDGE]) {
      const principal = { name: service, arn: service, service };
      this.services.set(service, this.principals.issue(principal, 'ASIASERVICE'));
    }
    const allowed = deployment.functions.api.environment.FANOUT_ALLOWED_INPUTS ?? '';
    const first = allowed.split(',')[0]?.trim() ?? '';
    this.inputPrefix = /^s3:\/\/[^/]+\/(.*)$/.exec(first)?.[1] ?? 'datasets/';
  }

  /** The credentials of a function's sandboxes. */
  credentialsOf(role: FunctionRole): Credentials {
    return this.credentials.get(role)!;
  }

  /** The credentials an AWS service's requests are signed with (API Gateway's, locally). */
  serviceCredentials(service: string): Credentials {
    const credentials = this.services.get(service);
    if (credentials === undefined) throw new Error(`no service principal ${service}`);
    return credentials;
  }

  /**
   * Authorizes one S3 request. A mounted local directory (`fanout run DIR`, read in place) is
   * read as if it were the deployment bucket's first allowed input prefix (datasets/): who may
   * read or list that prefix may read or list the mount.
   */
  s3(
    req: IncomingMessage,
    target: { bucket: string; key: string; mounted: boolean },
    query: URLSearchParams,
  ): S3Verdict {
    const who = this.principals.identify(req);
    if (!isPrincipal(who)) return this.unidentified(who, 's3');
    const prefix = this.inputPrefix;
    let bucket = target.bucket;
    let key = target.key;
    let q = query;
    if (target.mounted) {
      bucket = this.deployment.bucket;
      if (key !== '') key = `${prefix}${key}`;
      else {
        q = new URLSearchParams(query);
        q.set('prefix', `${prefix}${query.get('prefix') ?? ''}`);
      }
    }
    const needed = s3Authorizations({
      method: req.method ?? 'GET',
      bucket,
      key,
      query: q,
      headers: req.headers,
    });
    if (who.policy === undefined) return { ok: true, denyMissing: false };
    for (const request of needed) {
      const refusal = this.check(who, request, 's3');
      if (refusal !== undefined) return refusal;
    }
    const method = (req.method ?? 'GET').toUpperCase();
    const objectRead = key !== '' && (method === 'GET' || method === 'HEAD');
    const denyMissing =
      objectRead &&
      !who.policy.allows({ action: 's3:ListBucket', resource: `arn:aws:s3:::${bucket}` });
    return { ok: true, denyMissing };
  }

  /** Authorizes an invocation of `functionArn` (with its qualifier, if the request named one). */
  invoke(req: IncomingMessage, target: FunctionRole | undefined, functionArn: string): Verdict {
    const who = this.principals.identify(req);
    if (!isPrincipal(who)) return this.unidentified(who, 'lambda');
    if (who.service !== undefined) {
      const allowed = this.deployment.servicePermissions.some(
        (p) => p.principal === who.service && p.target === target,
      );
      return allowed
        ? ALLOWED
        : this.refuse(who, { action: 'lambda:InvokeFunction', resource: functionArn }, 'lambda');
    }
    if (who.policy === undefined) return ALLOWED;
    return (
      this.check(who, { action: 'lambda:InvokeFunction', resource: functionArn }, 'lambda') ??
      ALLOWED
    );
  }

  /** Authorizes a PutEvents to the given buses (names or ARNs). */
  putEvents(req: IncomingMessage, buses: readonly string[]): Verdict {
    const who = this.principals.identify(req);
    if (!isPrincipal(who)) return this.unidentified(who, 'events');
    if (who.policy === undefined) return ALLOWED;
    for (const bus of buses) {
      const resource = bus.startsWith('arn:')
        ? bus
        : `arn:aws:events:${this.deployment.region}:${this.deployment.account}:event-bus/${bus}`;
      const refusal = this.check(who, { action: 'events:PutEvents', resource }, 'events');
      if (refusal !== undefined) return refusal;
    }
    return ALLOWED;
  }

  /**
   * Whether a function's role may invoke `destinationArn`: Lambda sends an asynchronous
   * invocation's failure record to its destination with the function's own permissions.
   */
  roleMayInvoke(role: FunctionRole, destinationArn: string): boolean {
    const allowed = this.policies
      .get(role)!
      .allows({ action: 'lambda:InvokeFunction', resource: destinationArn });
    if (!allowed) {
      this.denied += 1;
      this.onDenied(
        `the ${role} function's role may not invoke its failure destination ${destinationArn}: the record is dropped, as Lambda would`,
      );
    }
    return allowed;
  }

  /** Whether an AWS service may invoke a function (the template's Lambda permissions). */
  serviceMayInvoke(service: string, target: FunctionRole): boolean {
    return this.deployment.servicePermissions.some(
      (p) => p.principal === service && p.target === target,
    );
  }

  private check(
    who: Principal,
    request: AuthorizationRequest,
    service: 's3' | 'lambda' | 'events',
  ): Refusal | undefined {
    const decision = who.policy?.evaluate(request) ?? 'allow';
    return decision === 'allow' ? undefined : this.refuse(who, request, service, decision);
  }

  private refuse(
    who: Principal,
    request: AuthorizationRequest,
    service: 's3' | 'lambda' | 'events',
    decision: 'explicit-deny' | 'implicit-deny' = 'implicit-deny',
  ): Refusal {
    const why =
      decision === 'explicit-deny'
        ? 'with an explicit deny in an identity-based policy'
        : who.service !== undefined
          ? 'because no resource-based policy allows the lambda:InvokeFunction action'
          : `because no identity-based policy allows the ${request.action} action`;
    const message = `User: ${who.arn} is not authorized to perform: ${request.action} on resource: "${request.resource}" ${why}`;
    this.denied += 1;
    this.onDenied(`AccessDenied: ${who.name}: ${message}`);
    return {
      ok: false,
      status: service === 'events' ? 400 : 403,
      code: service === 's3' ? 'AccessDenied' : 'AccessDeniedException',
      message,
    };
  }

  private unidentified(who: Unidentified, service: 's3' | 'lambda' | 'events'): Refusal {
    this.denied += 1;
    if (who.reason === 'unsigned') {
      return {
        ok: false,
        status: 403,
        code: service === 's3' ? 'AccessDenied' : 'MissingAuthenticationTokenException',
        message:
          service === 's3'
            ? 'Access Denied (the request is not signed; sign it with the credentials fanout dev prints)'
            : 'Missing Authentication Token',
      };
    }
    return {
      ok: false,
      status: 403,
      code: service === 's3' ? 'InvalidAccessKeyId' : 'UnrecognizedClientException',
      message:
        service === 's3'
          ? `The AWS Access Key Id you provided does not exist in our records. (${who.accessKeyId}; use the credentials fanout dev prints)`
          : 'The security token included in the request is invalid.',
    };
  }
}
