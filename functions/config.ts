/**
 * Configuration of the Lambda handlers, read from the environment once at cold start. The same
 * variables are set by CDK on AWS and by the local runtime, so the handlers cannot tell which
 * one they run on. A missing or malformed variable fails naming it.
 *
 * No SDK client is made here: clients.ts makes them, and the worker (whose hot requests are
 * lean, shared/adapters/lean-store.ts) loads it only when it needs the SDK.
 */

import { eventBridgeEvents, logEvents } from '#adapters/events.ts';
import type { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { ValidationError } from '#core/base/errors.ts';
import type { ObjectStore } from '#core/base/ports.ts';
import {
  DEFAULT_PRICING,
  DEPLOYED_MEMORY_MB,
  invocationUsage,
  type Usage,
} from '#core/cost/cost.ts';
import type { JobEvents } from '#core/model/events.ts';
import { checkSpeculation, type SpeculationOptions } from '#core/run/speculation.ts';

/** Environment variables the handlers read. */
export const ENV = {
  /** The bucket that holds jobs/ (and, by default, datasets/). */
  bucket: 'FANOUT_BUCKET',
  workerFunction: 'FANOUT_WORKER_FUNCTION',
  /**
   * The worker code's identity (a hash of its bundle), which cache entries are addressed by.
   * Default: unset (no job reuses work or keeps it)
   */
  codeId: 'FANOUT_CODE_ID',
  reducerFunction: 'FANOUT_REDUCER_FUNCTION',
  coordinatorFunction: 'FANOUT_COORDINATOR_FUNCTION',
  /** The worker function's timeout, so the coordinator bounds every wait. Default: 300 */
  workerTimeoutSeconds: 'FANOUT_WORKER_TIMEOUT_SECONDS',
  /**
   * The reducer function's timeout: the coordinator waits that long (plus a margin) for it, and
   * the reducer as long for a group of a tree reduce. Default: 300
   */
  reducerTimeoutSeconds: 'FANOUT_REDUCER_TIMEOUT_SECONDS',
  /** Comma-separated S3 URI prefixes jobs may read. Default: s3://{bucket}/datasets/ */
  allowedInputs: 'FANOUT_ALLOWED_INPUTS',
  /**
   * Comma-separated ARNs of the callers who may see and manage every job (the roles given
   * `grantAdmin`; an assumed session of such a role counts). Default: none
   */
  adminArns: 'FANOUT_ADMIN_ARNS',
  /**
   * `1`: a request that names no caller comes from the one local user, who owns every job
   * (`fanout dev` without --auth). Never set on AWS. Default: unset (such a request gets 403)
   */
  implicitOwner: 'FANOUT_IMPLICIT_OWNER',
  /**
   * `1`: a caller (not an admin) reads and uploads only under its own folder of each allowed
   * input prefix, `datasets/{account}-{user|role}-{name}/`. Default: unset
   */
  inputPrefixPerPrincipal: 'FANOUT_INPUT_PREFIX_PER_PRINCIPAL',
  /** Chunks in flight when a request names none. Default: 100 */
  defaultConcurrency: 'FANOUT_DEFAULT_CONCURRENCY',
  /** The most chunks in flight a request may ask for. Default: 1000 */
  maxConcurrency: 'FANOUT_MAX_CONCURRENCY',
  /**
   * Chunks a job dispatches at first; the rest of its concurrency opens once a chunk runs long
   * (see CoordinatorDeps.initialLanes). Default: all at once. The local runtime sets its cores.
   */
  initialConcurrency: 'FANOUT_INITIAL_CONCURRENCY',
  /** Seconds between the coordinator's heartbeats in status.json. Default: 10 */
  heartbeatSeconds: 'FANOUT_HEARTBEAT_SECONDS',
  /**
   * Milliseconds between the coordinator's progress writes to status.json while chunks run (a
   * PUT each: fewer costs less, and a client sees progress later). Default: 500
   */
  statusIntervalMs: 'FANOUT_STATUS_INTERVAL_MS',
  /**
   * Seconds of silence after which a RUNNING job's coordinator counts as lost: the sweeper
   * resumes the job, cancel ends it at once, redrive may resume it. Default: 120
   */
  staleAfterSeconds: 'FANOUT_STALE_AFTER_SECONDS',
  /** Resumes of a job whose coordinator keeps getting lost, before it FAILS. Default: 3 */
  maxResumes: 'FANOUT_MAX_RESUMES',
  /** `off`: no backup attempts for stragglers unless a job asks. Default: on */
  speculation: 'FANOUT_SPECULATION',
  /** A chunk straggles past this many times the median of its size. Default: 3 */
  speculationFactor: 'FANOUT_SPECULATION_FACTOR',
  /** …and not before it has run this many milliseconds. Default: 1000 */
  speculationFloorMs: 'FANOUT_SPECULATION_FLOOR_MS',
  /** At most this fraction of a job's chunks get a backup (at least 4). Default: 0.05 */
  speculationMaxExtra: 'FANOUT_SPECULATION_MAX_EXTRA',
  /** The EventBridge bus job state changes go to (AWS). Unset: see `events`. */
  eventBus: 'FANOUT_EVENT_BUS',
  /** `log`: job state changes go to the function's log (the local runtime). Unset: none. */
  events: 'FANOUT_EVENTS',
  /** The worker function's memory in MB, for the cost of failed attempts. Default: 1769 */
  workerMemoryMb: 'FANOUT_WORKER_MEMORY_MB',
  /** The functions' architecture, for the cost estimate's prices: arm64 (default) or x86_64. */
  architecture: 'FANOUT_ARCHITECTURE',
  /** Standard AWS SDK variables; set only when talking to the local runtime. */
  s3Endpoint: 'AWS_ENDPOINT_URL_S3',
  lambdaEndpoint: 'AWS_ENDPOINT_URL_LAMBDA',
} as const;

type Env = Record<string, string | undefined>;

/** Where job events go: EventBridge when a bus is set, the log under FANOUT_EVENTS=log. */
export function eventsFromEnv(env: Env = process.env): JobEvents | undefined {
  const bus = env[ENV.eventBus];
  if (bus !== undefined && bus !== '') return eventBridgeEvents(bus);
  return env[ENV.events] === 'log' ? logEvents() : undefined;
}

/** When this sandbox began its init: Lambda bills the init of a cold start too. */
const initStarted = performance.now();
/** How long the init took, once the handler module says it is done; billed once. */
let initMs: number | undefined;
let invoked = false;
/** This sandbox's id: drawn once per execution environment, for the job report's timeline. */
const SANDBOX = Math.random().toString(36).slice(2, 10);

/**
 * Performance marks of a sandbox's init: its code has loaded (every module it imports has been
 * read, compiled and run), and its init is done (clients made and primed). The bench reads them.
 */
export const INIT_MARKS = { loaded: 'fanout:code-loaded', ready: 'fanout:init-done' } as const;

/** Called by a handler module first thing in its body: the modules it imports have loaded. */
export function codeLoaded(): void {
  performance.mark(INIT_MARKS.loaded);
}

/** Called by a handler module when its init (imports, priming) is done. */
export function initDone(): void {
  initMs ??= performance.now() - initStarted;
  performance.mark(INIT_MARKS.ready);
}

/**
 * Measures one invocation for the cost estimate: its duration (with the sandbox's init on the
 * first invocation, as Lambda bills it) at the function's memory (Lambda sets
 * AWS_LAMBDA_FUNCTION_MEMORY_SIZE; the local runtime does not, and the deployed default is
 * used, so a local job reports what it would cost deployed).
 */
export function meterInvocation(role: keyof typeof DEPLOYED_MEMORY_MB) {
  const billedInit = initMs ?? 0;
  const from = performance.now() - billedInit;
  const coldStart = !invoked;
  invoked = true;
  initMs = 0;
  return {
    memoryMb: memoryMb(role),
    /** Where and when this invocation runs, for the attempt's record. */
    info: () => ({
      startedAt: Date.now(),
      coldStart,
      sandbox: SANDBOX,
      memoryMb: memoryMb(role),
      initMs: billedInit,
    }),
    /** The invocation's usage so far, with the S3 requests it sent. */
    usage: (s3Requests?: Usage['s3Requests']): Usage =>
      invocationUsage(performance.now() - from, memoryMb(role), s3Requests),
  };
}

/** The function's configured memory in MB. */
export function memoryMb(role: keyof typeof DEPLOYED_MEMORY_MB, env: Env = process.env): number {
  const set = Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE);
  return Number.isFinite(set) && set > 0 ? set : DEPLOYED_MEMORY_MB[role];
}

/** Where a job's cost is priced: the function's region and architecture (deployed: arm64). */
export function pricingFromEnv(env: Env = process.env) {
  return {
    region: env.AWS_REGION ?? DEFAULT_PRICING.region,
    architecture: env[ENV.architecture] === 'x86_64' ? ('x86_64' as const) : ('arm64' as const),
  };
}

/** A required variable; throws naming it when absent or empty. */
export function requireEnv(env: Env, name: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') {
    throw new ValidationError(`environment variable ${name} is not set; the function needs it`);
  }
  return value;
}

/** An optional endpoint variable; throws naming it when it is not an http(s) URL. */
export function optionalUrl(env: Env, name: string): string | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  if (!/^https?:\/\/[^\s]+$/.test(value)) {
    throw new ValidationError(
      `environment variable ${name} must be an http(s) URL; got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** An optional positive integer variable; throws naming it when malformed. */
export function optionalInt(env: Env, name: string, fallback: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ValidationError(
      `environment variable ${name} must be a positive integer; got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/**
 * The coordinator's backup policy for stragglers (CoordinatorDeps.speculation), from
 * FANOUT_SPECULATION*: only what is set, so the core's defaults apply to the rest.
 */
export function speculationFromEnv(env: Env = process.env): SpeculationOptions {
  const options: SpeculationOptions = {};
  const switchValue = env[ENV.speculation];
  if (switchValue !== undefined && switchValue !== '') {
    if (switchValue !== 'on' && switchValue !== 'off') {
      throw new ValidationError(
        `environment variable ${ENV.speculation} must be on or off; got ${JSON.stringify(switchValue)}`,
      );
    }
    options.enabled = switchValue === 'on';
  }
  const variables = {
    factor: ENV.speculationFactor,
    floorMs: ENV.speculationFloorMs,
    maxExtra: ENV.speculationMaxExtra,
  } as const;
  for (const [key, name] of Object.entries(variables) as [keyof typeof variables, string][]) {
    const value = env[name];
    if (value !== undefined && value !== '') options[key] = Number(value); // NaN fails the check
  }
  checkSpeculation(options, (key) => `environment variable ${variables[key]}`);
  return options;
}

/**
 * Keys no job writes, under paths each role may touch, so that priming is not an AccessDenied
 * on AWS (where CloudTrail would record it) nor in the local runtime: a status document of a
 * job id no job has (every role but the worker reads and writes status.json), and a chunk
 * outcome of it (the worker writes outcomes; it reads datasets and, after a lost write, an outcome).
 */
export const PRIME_KEYS = {
  status: 'jobs/.prime/status.json',
  outcome: 'jobs/.prime/chunks/0.json',
} as const;

/**
 * Pays the SDK's first-use costs during the function's init instead of inside its first job: the
 * first request of a client loads and compiles the SDK's lazily required code, evaluates the
 * endpoint rules and opens a connection, which measured 50–100 ms per fresh sandbox locally.
 * It reads `keys.read` (a key that does not exist: a 404, or a 403 where the role may not list
 * the bucket), writes `keys.write` on the condition that it exists with an ETag no object has
 * (refused: 404 or 412, nothing written) and, given a Lambda invoker, makes a DryRun invocation
 * of `dryRunFunction` (which checks the permission and runs nothing). Every failure is ignored,
 * since priming only saves time.
 */
export async function primeClients(
  env: Env,
  clients: {
    store: ObjectStore;
    keys: { read?: string; write?: string };
    invoker?: LambdaInvoker;
    dryRunFunction?: string;
  },
): Promise<void> {
  const bucket = env[ENV.bucket];
  const refused = { ifMatch: '"fanout-prime"' };
  const { read, write } = clients.keys;
  // A one-byte body: an empty one is sent without Content-Length, which the SDK warns about.
  await Promise.allSettled([
    bucket === undefined || read === undefined ? undefined : clients.store.getBytes(bucket, read),
    bucket === undefined || write === undefined
      ? undefined
      : clients.store.put(bucket, write, '-', refused),
    clients.invoker === undefined || clients.dryRunFunction === undefined
      ? undefined
      : clients.invoker.dryRun(clients.dryRunFunction),
  ]);
}
