/**
 * Who may see and do what (issue 19): a job belongs to the caller that submitted it. Its status,
 * result, report, results, cancel and redrive are the owner's, and every admin's; anyone else is
 * told there is no such job (404, the same answer as for a job that does not exist), so a job's
 * existence does not leak. `GET /jobs` lists the caller's own jobs; an admin's `?all=true`
 * lists everyone's.
 *
 * The caller is the one API Gateway's IAM authorizer names (requestContext.authentication
 * .iamIdentity), or `fanout dev --auth`'s verified principal, which it names the same way. An
 * admin is a caller whose ARN, or whose assumed role, is in the api function's
 * FANOUT_ADMIN_ARNS: the roles `grantAdmin` was given at synthesis. Without a caller (`fanout
 * dev` without --auth) the implicit local user owns every job and is an admin.
 */
import type { JobOwner } from '../model/documents.ts';
import { HttpError } from './http.ts';

/** The caller as the request context names it. */
export interface Caller {
  arn: string;
  accountId?: string;
  principalOrgId?: string;
}

/** Who is asking: the owner a job they submit gets, and whether they administer every job. */
export interface Viewer {
  owner: JobOwner;
  admin: boolean;
}

/** The implicit owner of `fanout dev` without --auth: one person on their own machine. */
export const LOCAL_OWNER = 'local';

const ASSUMED_ROLE = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.+$/;
const ROLE = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/;

/**
 * Who owns what a caller submits, across sessions: an assumed role's ARN without its session
 * (`arn:aws:sts::111122223333:assumed-role/Analyst`); any other ARN as it is.
 */
export function principalOf(arn: string): string {
  const m = ASSUMED_ROLE.exec(arn);
  return m === null ? arn : `arn:${m[1]}:sts::${m[2]}:assumed-role/${m[3]}`;
}

/**
 * True when `arn` is one of `admins`: the same ARN, or an assumed session of an admin role (a
 * role's path is not in its sessions' ARNs: the account and the name decide).
 */
export function isAdmin(arn: string, admins: readonly string[]): boolean {
  const assumed = ASSUMED_ROLE.exec(arn);
  return admins.some((admin) => {
    if (admin === arn || admin === principalOf(arn)) return true;
    const role = ROLE.exec(admin);
    return assumed !== null && role !== null && role[2] === assumed[2] && role[3] === assumed[3];
  });
}

/** The viewer of a request (see the module's comment); 403 when it names no caller. */
export function viewerOf(
  caller: Caller | undefined,
  deps: { admins: readonly string[]; implicitOwner?: boolean },
): Viewer {
  if (caller === undefined) {
    if (deps.implicitOwner === true) {
      return { owner: { arn: LOCAL_OWNER, principal: LOCAL_OWNER }, admin: true };
    }
    throw new HttpError(403, 'FORBIDDEN', 'the request names no caller (it must be signed)');
  }
  return {
    owner: {
      arn: caller.arn,
      principal: principalOf(caller.arn),
      ...(caller.accountId !== undefined && { accountId: caller.accountId }),
      ...(caller.principalOrgId !== undefined && { principalOrgId: caller.principalOrgId }),
    },
    admin: isAdmin(caller.arn, deps.admins),
  };
}

/** May `viewer` see a job of `owner`? Its owner and admins may; a job without one, admins. */
export function mayAccess(viewer: Viewer, owner: JobOwner | undefined): boolean {
  return viewer.admin || (owner !== undefined && owner.principal === viewer.owner.principal);
}

/**
 * The folder of a caller's own inputs, with `inputPrefixPerPrincipal`: one path segment named
 * after the owner, `{account}-{user|role}-{name}` (`111122223333-role-Analyst`), or `local`.
 */
export function principalFolder(owner: JobOwner): string {
  const m =
    /^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):(user|role|assumed-role)\/(?:.*\/)?([^/]+)$/.exec(
      owner.principal,
    );
  if (m === null) return owner.principal.replace(/[^A-Za-z0-9_.=,@+-]/g, '_').slice(0, 200);
  return `${m[1]}-${m[2] === 'user' ? 'user' : 'role'}-${m[3]}`;
}
