/**
 * The embedded local runtime: a real S3 API server and a Lambda Invoke API server on 127.0.0.1,
 * running the same bundles CDK deploys. The synthesized template is the source of truth: each
 * function runs with its timeout, memory, environment and reserved concurrency from the
 * template, under credentials of its own, and every request it makes is authorized against its
 * role's policy (local/iam/enforce.ts). `fanout run`, `fanout dev`, `npm start` and the tests
 * start one in-process.
 */
import { availableParallelism } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { createS3Client } from '#adapters/s3-clients.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { ValidationError } from '#core/base/errors.ts';
import { type Invoker, type ObjectStore, systemClock } from '#core/base/ports.ts';
import { JOB_EVENT_DETAIL_TYPE } from '#core/model/events.ts';
import type { AnyJob } from '#core/model/job.ts';
import type { SubmitDeps } from '#core/run/submit.ts';
import { jobs } from '#jobs/index.ts';
import { bundleFunctions, bundleInputs } from './bundle.ts';
import { type ChaosSpec, chaosFaults } from './chaos.ts';
import { API_GATEWAY, Enforcement, EVENTBRIDGE } from './iam/enforce.ts';
import { LOCAL_USER } from './iam/principals.ts';
import { registryBuildOptions } from './job-path.ts';
import {
  type FunctionSpec,
  type LambdaServerOptions,
  type LocalLambdaServer,
  startLambdaServer,
} from './lambda/server.ts';
import { repoRoot } from './paths.ts';
import { type LocalS3Server, startS3Server } from './s3/server.ts';
import type { AuthPrincipal } from './sigv4.ts';
import {
  type Deployment,
  FUNCTION_ROLES,
  type FunctionRole,
  readDeployment,
} from './template/deployment.ts';
import { defaultTemplate, readTemplate } from './template/source.ts';

// The local runtime runs on Node 20, where the AWS SDK warns that its 2027 releases need Node 22
// on every client it creates; the deployed functions run on nodejs24.x. Say it once, in the docs.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** The functions fanout deploys, by entry point. */
export const FUNCTION_ENTRIES: Record<FunctionRole, string> = {
  coordinator: resolve(repoRoot, 'functions/coordinator/index.ts'),
  worker: resolve(repoRoot, 'functions/worker/index.ts'),
  reducer: resolve(repoRoot, 'functions/reducer/index.ts'),
  api: resolve(repoRoot, 'functions/api/index.ts'),
  sweeper: resolve(repoRoot, 'functions/sweeper/index.ts'),
};

/**
 * What the local machine sets in place of the template, measured on a 2-core machine
 * (docs/LOCAL.md):
 * - sandboxes per function where the template reserves no concurrency: the account's pool is
 *   this machine; 16 workers, so a small input's one-record tasks (the lesson's seven 1-second
 *   records) all run at once, as on Lambda, while byte-range jobs dispatch one chunk per core;
 * - the heartbeat, staleness and sweep cadence, in seconds rather than minutes.
 */
export const LOCAL_DEFAULTS = {
  bucket: 'fanout-local',
  workerSandboxes: 16,
  coordinatorSandboxes: 4,
  reducerSandboxes: 4,
  apiSandboxes: 8,
  sweeperSandboxes: 1,
  /** Chunks in flight for inputs split into byte ranges: one per core (CPU-bound work). */
  byteRangeConcurrency: availableParallelism(),
  /** The coordinator's heartbeat: every second (on AWS every 10 s; writes are free here). */
  heartbeatSeconds: 1,
  /**
   * A job silent this long has lost its coordinator (ten missed heartbeats, a margin a busy
   * two-core machine does not miss). `FANOUT_STALE_AFTER_SECONDS` overrides it.
   */
  staleAfterSeconds: 10,
  /** A runtime with a persistent data directory sweeps its jobs this often (and at start). */
  sweepSeconds: 2,
} as const;

/** Options of {@link startRuntime}. */
export interface RuntimeOptions {
  /** Data directory of the S3 server; a temporary one (removed on close) when absent. */
  dir?: string;
  /**
   * A synthesized template (`cdk.out/Fanout.template.json`) whose configuration and roles the
   * functions run with. @default this checkout's stack, synthesized once and cached
   */
  template?: string;
  /**
   * CDK context for the default template, e.g. `{ 'fanout:workerTimeoutSeconds': '5' }`.
   * @default none
   */
  templateContext?: Record<string, string>;
  /** Worker sandboxes. @default the template's reserved concurrency, else 16 */
  workerSandboxes?: number;
  /** Overrides the template's worker timeout. */
  workerTimeoutSeconds?: number;
  /**
   * Overrides the template's worker memory (MB): what the sandboxes report, and their heap
   * limit. Every function's sandboxes are limited to its memory setting, as on Lambda.
   */
  workerMemoryMb?: number;
  /** Overrides the template's coordinator timeout. */
  coordinatorTimeoutSeconds?: number;
  /** Receives what the functions print (their console), like CloudWatch Logs. @default dropped */
  log?: (functionName: string, text: string) => void;
  /**
   * A job registry module to build the functions with instead of jobs/index.ts (a job by path,
   * local/job-path.ts), and that registry, imported. @default the built-in jobs
   */
  registry?: { module: string; jobs: ReadonlyMap<string, AnyJob> };
  /** See LambdaServerOptions.onInvoke. */
  onInvoke?: (functionName: string, event: unknown, invocationType: string) => void;
  /** Fault injection (see local/chaos.ts). */
  chaos?: { spec: ChaosSpec; seed: number };
  /**
   * The callers `fanout dev --auth FILE` verifies (local/sigv4.ts): the api function is then
   * told each caller and its admins, as on AWS. @default none: the one local user owns every job
   */
  auth?: { principals: readonly AuthPrincipal[] };
  /**
   * A fault aimed by the invocation's event, for tests (e.g. a timeout of one task's first
   * attempt); where it answers undefined, the chaos spec's draw decides.
   */
  faults?: NonNullable<LambdaServerOptions['faults']>;
  /**
   * Sweep jobs whose coordinator was lost (the sweeper function), at start and every
   * `LOCAL_DEFAULTS.sweepSeconds`. @default true when `dir` is given: jobs there outlive the
   * process that ran them
   */
  sweep?: boolean;
  /**
   * More variables for a function's sandboxes, over the template's and the local ones (a test
   * that needs a coordinator setting, say). @default none
   */
  functionEnv?: Partial<Record<FunctionRole, Record<string, string>>>;
  /** Told of slow one-time work (synthesizing the template), so a person knows why they wait. */
  note?: (text: string) => void;
  /** Fixed ports (0: any free port). */
  s3Port?: number;
  lambdaPort?: number;
}

/** A running local runtime. */
export interface LocalRuntime {
  bucket: string;
  s3: LocalS3Server;
  /** The jobs this runtime's functions know: the built-in ones, or a given registry. */
  jobs: ReadonlyMap<string, AnyJob>;
  /** The S3 data lives in a directory the caller gave (`dir`), not a temporary one. */
  persistent: boolean;
  lambda: LocalLambdaServer;
  /** The runtime's S3, through the same adapter the handlers use, as the local user. */
  store: ObjectStore;
  /** The runtime's Lambda endpoint, through the same adapter the coordinator uses. */
  invoker: Invoker;
  /**
   * The Lambda endpoint as API Gateway calls it (its service principal, which the template's
   * Lambda permissions allow to invoke the api function): what the local HTTP API uses.
   */
  gateway: Invoker;
  /** The local names of the functions. */
  functions: Record<FunctionRole, string>;
  /** What the template configures, as the runtime runs it. */
  deployment: Deployment;
  /** Who may do what: the functions' credentials, and the refusals so far. */
  enforcement: Enforcement;
  /** Where the template came from. */
  templatePath: string;
  /**
   * Rebuilds the functions' bundles from their sources (the registry's included) and gives the
   * functions whose bundle changed their new code (LocalLambdaServer.updateCode). Returns those
   * functions' roles: none when nothing changed.
   */
  reloadCode(): Promise<FunctionRole[]>;
  /** The source files the worker's bundle was built from (outside node_modules). */
  codeInputs(): Promise<string[]>;
  /**
   * Stops both servers and removes a temporary data directory. With `exiting`, the caller exits
   * the process next, and the sandboxes are left to end with it (see LocalLambdaServer.close).
   */
  close(options?: { exiting?: boolean }): Promise<void>;
}

/**
 * What submitting, cancelling and redriving a job on this runtime need (`submitJob`,
 * `cancelJob`, `redriveJob`): the API handler's view of it, with the built-in job registry.
 */
export function submitDeps(runtime: LocalRuntime): SubmitDeps {
  return {
    store: runtime.store,
    invoker: runtime.invoker,
    jobs: runtime.jobs,
    clock: systemClock,
    bucket: runtime.bucket,
    coordinatorFunction: runtime.functions.coordinator,
  };
}

/** The local stale-after setting, from FANOUT_STALE_AFTER_SECONDS or the default. */
function staleAfterSeconds(): number {
  const raw = process.env.FANOUT_STALE_AFTER_SECONDS;
  const seconds = Number(raw ?? LOCAL_DEFAULTS.staleAfterSeconds);
  if (!(Number.isSafeInteger(seconds) && seconds > 0)) {
    throw new ValidationError(
      `FANOUT_STALE_AFTER_SECONDS must be a positive integer; got ${JSON.stringify(raw)}`,
    );
  }
  return seconds;
}

/** The template the runtime runs: the given file, or this checkout's stack (cached synth). */
async function loadDeployment(options: RuntimeOptions) {
  const source =
    options.template === undefined
      ? await defaultTemplate(options.templateContext, () =>
          options.note?.(
            "synthesizing this checkout's stack for the local runtime (once, about 5 s; cached until its sources change)",
          ),
        )
      : { path: resolve(options.template), template: await readTemplate(options.template) };
  return {
    path: source.path,
    deployment: readDeployment(source.template, { bucket: LOCAL_DEFAULTS.bucket }),
  };
}

/**
 * What the local machine sets over the template's environment: its endpoints and credentials,
 * its cadence, its pool, and no X-Ray (docs/LOCAL.md lists each and why).
 */
function localEnvironment(
  role: FunctionRole,
  ctx: {
    deployment: Deployment;
    enforcement: Enforcement;
    endpoints: { s3: string; lambda: string };
    options: RuntimeOptions;
    workerSandboxes: number;
    s3Attempts: number | undefined;
  },
): Record<string, string> {
  const { options } = ctx;
  const credentials = ctx.enforcement.credentialsOf(role);
  return {
    AWS_ENDPOINT_URL_S3: ctx.endpoints.s3,
    AWS_ENDPOINT_URL_LAMBDA: ctx.endpoints.lambda,
    // Job events go to the local events sink (EventBridge's PutEvents on the Lambda server).
    AWS_ENDPOINT_URL_EVENTBRIDGE: ctx.endpoints.lambda,
    AWS_REGION: ctx.deployment.region,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    // This machine is the account's pool: a job may ask for as many workers as it has.
    FANOUT_DEFAULT_CONCURRENCY: String(ctx.workerSandboxes),
    FANOUT_MAX_CONCURRENCY: String(ctx.workerSandboxes),
    // Two cores cannot run sixteen cold sandboxes at once for chunks that take milliseconds:
    // a job opens one lane per core, and the rest once a chunk runs long (it is waiting).
    FANOUT_INITIAL_CONCURRENCY: String(availableParallelism()),
    FANOUT_HEARTBEAT_SECONDS: String(LOCAL_DEFAULTS.heartbeatSeconds),
    FANOUT_STALE_AFTER_SECONDS: String(staleAfterSeconds()),
    ...(options.workerTimeoutSeconds !== undefined && {
      FANOUT_WORKER_TIMEOUT_SECONDS: String(options.workerTimeoutSeconds),
    }),
    // Who may see what (shared/core/api/owners.ts): with verified callers, the admins --auth
    // names (the template's admin roles cannot call here); without, the one local user owns
    // every job.
    ...(role === 'api' &&
      (options.auth === undefined
        ? { FANOUT_IMPLICIT_OWNER: '1' }
        : { FANOUT_ADMIN_ARNS: adminArns(options.auth) })),
    // Powertools logs and metrics only where the logs are read: importing it costs each
    // sandbox's start ~40 ms. No X-Ray daemon runs here, so no tracer either.
    FANOUT_OBSERVABILITY: options.log === undefined ? 'off' : 'on',
    POWERTOOLS_TRACE_ENABLED: 'false',
    ...(process.env.POWERTOOLS_LOG_LEVEL !== undefined && {
      POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL,
    }),
    // The backup policy, as the FanoutService prop sets it on AWS, from this process's env.
    ...Object.fromEntries(
      Object.entries(process.env).filter(
        (e): e is [string, string] => e[0].startsWith('FANOUT_SPECULATION') && e[1] !== undefined,
      ),
    ),
    // Source maps cost each sandbox ~50 ms and ~9 MB at start; they only matter where
    // someone reads the functions' stack traces, in their logs.
    NODE_OPTIONS: options.log !== undefined ? '--enable-source-maps' : '',
    ...(ctx.s3Attempts !== undefined && { AWS_MAX_ATTEMPTS: String(ctx.s3Attempts) }),
  };
}

/**
 * The worker code's identity, for the coordinator's cache addresses (shared/core/run/cache.ts):
 * the key its bundle is cached by, a hash of every source it is built from and of the options.
 */
function codeEnv(workerBundle: string): Record<string, string> {
  return { FANOUT_CODE_ID: basename(dirname(workerBundle)) };
}

/** Local sandboxes of each function where the template reserves no concurrency. */
const LOCAL_SANDBOXES: Record<FunctionRole, number> = {
  api: LOCAL_DEFAULTS.apiSandboxes,
  coordinator: LOCAL_DEFAULTS.coordinatorSandboxes,
  worker: LOCAL_DEFAULTS.workerSandboxes,
  reducer: LOCAL_DEFAULTS.reducerSandboxes,
  sweeper: LOCAL_DEFAULTS.sweeperSandboxes,
};

/** Starts S3, bundles the functions (cached) and starts the Lambda server. */
export async function startRuntime(options: RuntimeOptions = {}): Promise<LocalRuntime> {
  const { path: templatePath, deployment } = await loadDeployment(options);
  const bucket = deployment.bucket;
  const names = Object.fromEntries(FUNCTION_ROLES.map((r) => [r, `fanout-${r}`])) as Record<
    FunctionRole,
    string
  >;
  const log = options.log;
  const enforcement = new Enforcement(deployment, (message) => log?.('fanout-iam', `${message}\n`));
  for (const role of FUNCTION_ROLES) {
    for (const arn of deployment.functions[role].unknownManagedPolicies) {
      log?.(
        'fanout-iam',
        `the ${role} function's role names the managed policy ${arn}, which the local runtime cannot read: its permissions are not granted here\n`,
      );
    }
  }
  const faults = options.chaos && chaosFaults(options.chaos.spec, options.chaos.seed, names);
  const aimed = options.faults;
  const lambdaFaults: LambdaServerOptions['faults'] =
    aimed === undefined
      ? faults?.lambda
      : (name, type, event) => aimed(name, type, event) ?? faults?.lambda(name, type);
  // Under chaos S3 answers SlowDown now and then; every client retries it, as on AWS, with
  // enough attempts that a run of bad luck does not fail a job.
  const s3Attempts = faults ? 10 : undefined;
  const bundling =
    options.registry === undefined
      ? {}
      : {
          extra: {
            options: registryBuildOptions(options.registry.module),
            suffix: `-${basename(options.registry.module, '.ts')}`,
          },
        };
  const build = () => bundleFunctions(FUNCTION_ENTRIES, bundling);
  const [s3, bundles] = await Promise.all([
    startS3Server({
      ...(options.dir !== undefined && { dir: options.dir }),
      ...(options.s3Port !== undefined && { port: options.s3Port }),
      buckets: [bucket],
      ...(faults && { faults: faults.s3 }),
      authorize: (req, target, query) => enforcement.s3(req, target, query),
    }),
    build(),
  ]);
  let lambda: LocalLambdaServer;
  try {
    lambda = await startFunctions({
      deployment,
      enforcement,
      options,
      names,
      bundles,
      s3,
      s3Attempts,
      ...(lambdaFaults && { faults: lambdaFaults }),
    });
  } catch (error) {
    await s3.close();
    throw error;
  }
  const store = new S3ObjectStore(
    createS3Client({
      endpoint: s3.endpoint,
      credentials: LOCAL_USER,
      ...(s3Attempts !== undefined && { maxAttempts: s3Attempts }),
    }),
  );
  const invoker = new LambdaInvoker({ endpoint: lambda.endpoint, credentials: LOCAL_USER });
  const gateway = new LambdaInvoker({
    endpoint: lambda.endpoint,
    credentials: enforcement.serviceCredentials(API_GATEWAY),
  });
  const sweeper = scheduleSweeps(options, enforcement, lambda, names.sweeper);
  return {
    bucket,
    s3,
    lambda,
    store,
    invoker,
    gateway,
    functions: names,
    deployment,
    enforcement,
    templatePath,
    jobs: options.registry?.jobs ?? jobs,
    persistent: options.dir !== undefined,
    async reloadCode() {
      const rebuilt = await build();
      const changed = FUNCTION_ROLES.filter((role) => rebuilt[role] !== bundles[role]);
      for (const role of changed) {
        lambda.updateCode(names[role], rebuilt[role]!);
        bundles[role] = rebuilt[role]!;
      }
      // New worker code has a new identity: no job reuses what the old code made (as a deploy
      // changes the coordinator's FANOUT_CODE_ID with the worker's code).
      if (changed.includes('worker') && options.dir !== undefined) {
        lambda.updateCode(names.coordinator, bundles.coordinator!, codeEnv(bundles.worker!));
      }
      return changed;
    },
    codeInputs: () => bundleInputs('worker', bundling),
    async close(closeOptions) {
      if (sweeper !== undefined) clearInterval(sweeper);
      await lambda.close(closeOptions);
      await s3.close();
    },
  };
}

/**
 * The Lambda server, with the events sink, authorizing every request as the template's roles
 * allow, and every function registered as the template configures it.
 */
async function startFunctions(ctx: {
  deployment: Deployment;
  enforcement: Enforcement;
  options: RuntimeOptions;
  names: Record<FunctionRole, string>;
  bundles: Record<string, string>;
  s3: LocalS3Server;
  s3Attempts: number | undefined;
  faults?: LambdaServerOptions['faults'];
}): Promise<LocalLambdaServer> {
  const { deployment, enforcement, options, names } = ctx;
  const log = options.log;
  const lambda = await startLambdaServer({
    port: options.lambdaPort ?? 0,
    functions: [],
    region: deployment.region,
    account: deployment.account,
    ...(ctx.faults && { faults: ctx.faults }),
    ...(log && { log }),
    ...(options.onInvoke && { onInvoke: options.onInvoke }),
    authorize: (req, name, arn) =>
      enforcement.invoke(
        req,
        FUNCTION_ROLES.find((r) => names[r] === name),
        arn,
      ),
    events: {
      authorize: (req, buses) => enforcement.putEvents(req, buses),
      // Job events, printed as EventBridge would deliver them (what `fanout dev` shows).
      publish: (entries) => {
        for (const e of entries) {
          if (e.DetailType !== JOB_EVENT_DETAIL_TYPE) continue;
          const event = {
            source: e.Source,
            'detail-type': e.DetailType,
            detail: JSON.parse(e.Detail ?? 'null'),
          };
          log?.('fanout-events', `${JSON.stringify(event)}\n`);
        }
      },
    },
  });
  const workerSandboxes =
    options.workerSandboxes ??
    deployment.functions.worker.reservedConcurrency ??
    LOCAL_DEFAULTS.workerSandboxes;
  const endpoints = { s3: ctx.s3.endpoint, lambda: lambda.endpoint };
  for (const role of FUNCTION_ROLES) {
    lambda.register(
      functionSpec(role, {
        deployment,
        enforcement,
        endpoints,
        options,
        workerSandboxes,
        s3Attempts: ctx.s3Attempts,
        bundle: ctx.bundles[role]!,
        workerBundle: ctx.bundles.worker!,
        lambda,
        names,
      }),
    );
  }
  return lambda;
}

/** One function's spec: the template's configuration, with the local machine's settings. */
function functionSpec(
  role: FunctionRole,
  ctx: Parameters<typeof localEnvironment>[1] & {
    bundle: string;
    workerBundle: string;
    lambda: LocalLambdaServer;
    names: Record<FunctionRole, string>;
  },
): FunctionSpec {
  const fn = ctx.deployment.functions[role];
  const timeoutSeconds =
    role === 'worker'
      ? (ctx.options.workerTimeoutSeconds ?? fn.timeoutSeconds)
      : role === 'coordinator'
        ? (ctx.options.coordinatorTimeoutSeconds ?? fn.timeoutSeconds)
        : fn.timeoutSeconds;
  const concurrency =
    role === 'worker' ? ctx.workerSandboxes : (fn.reservedConcurrency ?? LOCAL_SANDBOXES[role]);
  const destination = fn.async.onFailure;
  const target = FUNCTION_ROLES.find((r) => ctx.deployment.functions[r].arn === destination);
  return {
    name: fn.name,
    bundle: ctx.bundle,
    env: {
      ...fn.environment,
      ...localEnvironment(role, ctx),
      // Reuse only where the data outlives the runtime (--dir): without it nothing kept could
      // ever be found again.
      ...(role === 'coordinator' && ctx.options.dir !== undefined && codeEnv(ctx.workerBundle)),
      ...ctx.options.functionEnv?.[role],
    },
    timeoutSeconds,
    concurrency,
    memoryMb: role === 'worker' ? (ctx.options.workerMemoryMb ?? fn.memoryMb) : fn.memoryMb,
    // A sandbox past its memory setting dies as Lambda's does (Runtime.OutOfMemory).
    heapLimit: true,
    retryAttempts: fn.async.retryAttempts,
    // The failure destination, as Lambda sends it: with the function's own permission to
    // invoke it (the template's CoordinatorFailureDestination policy).
    ...(destination !== undefined &&
      target !== undefined && {
        onFailure: (record) => {
          if (ctx.enforcement.roleMayInvoke(role, destination)) {
            ctx.lambda.invokeEvent(ctx.names[target], record);
          }
        },
      }),
  };
}

/**
 * Jobs in a persistent directory outlive the process that ran them: one killed mid-job left
 * them RUNNING with no coordinator. A runtime on such a directory runs the sweeper function
 * at once, then keeps running it, as the template's schedule does on AWS (every minute there,
 * every few seconds here). No event queued in an earlier process survives it, so the first
 * sweep treats a QUEUED job that went quiet as an orphan too; later ones leave QUEUED jobs to
 * the event that will start them.
 */
function scheduleSweeps(
  options: RuntimeOptions,
  enforcement: Enforcement,
  lambda: LocalLambdaServer,
  sweeper: string,
): ReturnType<typeof setInterval> | undefined {
  if (!(options.sweep ?? options.dir !== undefined)) return undefined;
  if (!enforcement.serviceMayInvoke(EVENTBRIDGE, 'sweeper')) {
    options.log?.(
      'fanout-iam',
      'the template lets no schedule invoke the sweeper (no Lambda permission for events.amazonaws.com): jobs whose coordinator is lost are not resumed\n',
    );
    return undefined;
  }
  lambda.invokeEvent(sweeper, { queuedStaleAfterSeconds: staleAfterSeconds() });
  const timer = setInterval(() => {
    // One sweep at a time: a slow one is not joined by the next.
    const stats = lambda.stats(sweeper);
    if (stats.busy === 0 && stats.queued === 0) lambda.invokeEvent(sweeper, {});
  }, LOCAL_DEFAULTS.sweepSeconds * 1000);
  timer.unref();
  return timer;
}

/** The api function's admin ARNs: the admins `--auth` names. */
function adminArns(auth: { principals: readonly AuthPrincipal[] }): string {
  return auth.principals
    .filter((p) => p.admin === true)
    .map((p) => p.arn)
    .join(',');
}
