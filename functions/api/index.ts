/** API Lambda: API Gateway HTTP API (payload v2) events in, HTTP responses out. */
import { handleApiRequest } from '#core/api/api.ts';
import type { Caller } from '#core/api/owners.ts';
import { systemClock } from '#core/base/ports.ts';
import { jobs } from '#jobs/index.ts';
import { invokerFromEnv, storeFromEnv } from '../clients.ts';
import { codeLoaded, ENV, eventsFromEnv, optionalInt, requireEnv } from '../config.ts';
import { observability } from '../observability.ts';

const bucket = requireEnv(process.env, ENV.bucket);
codeLoaded();
const obs = await observability('api');
const store = storeFromEnv(process.env, obs);
const deps = {
  store,
  signer: store,
  invoker: invokerFromEnv(),
  jobs,
  clock: systemClock,
  events: eventsFromEnv(),
  bucket,
  coordinatorFunction: requireEnv(process.env, ENV.coordinatorFunction),
  allowedInputs: (process.env[ENV.allowedInputs] ?? `s3://${bucket}/datasets/`)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  defaultConcurrency: optionalInt(process.env, ENV.defaultConcurrency, 100),
  maxConcurrency: optionalInt(process.env, ENV.maxConcurrency, 1000),
  staleAfterMs: optionalInt(process.env, ENV.staleAfterSeconds, 120) * 1000,
  admins: (process.env[ENV.adminArns] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  implicitOwner: process.env[ENV.implicitOwner] === '1',
  inputPrefixPerPrincipal: process.env[ENV.inputPrefixPerPrincipal] === '1',
  log: (message: string, detail: unknown) => obs.error(message, detail),
};

/** The parts of an API Gateway HTTP API v2 event the handler reads. */
interface HttpApiEvent {
  rawPath?: string;
  queryStringParameters?: Record<string, string | undefined>;
  body?: string;
  isBase64Encoded?: boolean;
  requestContext?: {
    requestId?: string;
    http?: { method?: string };
    /** What the IAM authorizer says of the caller (`fanout dev --auth` says the same). */
    authentication?: {
      iamIdentity?: { userArn?: string; accountId?: string; principalOrgId?: string | null };
    };
  };
}

/** Lambda entry point. */
export const handler = async (event: HttpApiEvent, context?: unknown) =>
  obs.invocation(
    context,
    { route: `${event.requestContext?.http?.method ?? 'GET'} ${event.rawPath ?? '/'}` },
    () => answer(event),
  );

async function answer(event: HttpApiEvent) {
  const body =
    event.isBase64Encoded && event.body
      ? Buffer.from(event.body, 'base64').toString('utf8')
      : event.body;
  const response = await handleApiRequest(
    {
      method: event.requestContext?.http?.method ?? 'GET',
      path: event.rawPath ?? '/',
      query: event.queryStringParameters ?? {},
      ...(body !== undefined && { body }),
      requestId: event.requestContext?.requestId ?? 'unknown',
      ...callerOf(event),
    },
    deps,
  );
  if (response.status >= 500) obs.metric('ApiErrors', 'Count', 1);
  return { statusCode: response.status, headers: response.headers, body: response.body };
}

/** The caller the IAM authorizer named, if any. */
function callerOf(event: HttpApiEvent): { caller?: Caller } {
  const identity = event.requestContext?.authentication?.iamIdentity;
  if (identity?.userArn === undefined) return {};
  return {
    caller: {
      arn: identity.userArn,
      ...(identity.accountId !== undefined && { accountId: identity.accountId }),
      ...(typeof identity.principalOrgId === 'string' && {
        principalOrgId: identity.principalOrgId,
      }),
    },
  };
}
