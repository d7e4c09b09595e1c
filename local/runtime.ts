/**
 * The embedded local runtime: a real S3 API server and a Lambda Invoke API server on 127.0.0.1,
 * running the same bundles CDK deploys, wired with the same environment variables as on AWS.
 * `fanout run`, `npm start` and the tests start one in-process.
 */
import { availableParallelism } from 'node:os';
import { basename, resolve } from 'node:path';
import { logEvents } from '#adapters/events.ts';
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { createS3Client } from '#adapters/s3-clients.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { ValidationError } from '#core/errors.ts';
import type { AnyJob } from '#core/job.ts';
import { type Invoker, type ObjectStore, systemClock } from '#core/ports.ts';
import type { SubmitDeps } from '#core/submit.ts';
import { rescueJob, type SweepDeps, sweepJobs } from '#core/sweep.ts';
import { jobs } from '#jobs/index.ts';
import { bundleFunctions } from './bundle.ts';
import { type ChaosSpec, chaosFaults } from './chaos.ts';
import { registryBuildOptions } from './job-path.ts';
import { type LocalLambdaServer, startLambdaServer } from './lambda/server.ts';
import { repoRoot } from './paths.ts';
import { type LocalS3Server, startS3Server } from './s3/server.ts';

// The local runtime runs on Node 20, where the AWS SDK warns that its 2027 releases need Node 22
// on every client it creates; the deployed functions run on nodejs24.x. Say it once, in the docs.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** The functions fanout deploys, by entry point. */
export const FUNCTION_ENTRIES = {
  coordinator: resolve(repoRoot, 'functions/coordinator/index.ts'),
  worker: resolve(repoRoot, 'functions/worker/index.ts'),
  reducer: resolve(repoRoot, 'functions/reducer/index.ts'),
  api: resolve(repoRoot, 'functions/api/index.ts'),
} as const;

/**
 * Local defaults, measured on a 2-core machine (docs/LOCAL.md):
 * - worker sandboxes: 16, so a small input's one-record tasks (the lesson's seven 1-second
 *   records) all run at once, as on Lambda, while byte-range jobs dispatch one chunk per core;
 * - timeouts as Lambda's usual settings for these roles.
 */
export const LOCAL_DEFAULTS = {
  bucket: 'fanout-local',
  workerSandboxes: 16,
  coordinatorSandboxes: 4,
  reducerSandboxes: 4,
  apiSandboxes: 8,
  workerTimeoutSeconds: 300,
  coordinatorTimeoutSeconds: 900,
  reducerTimeoutSeconds: 300,
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
  /** Resumes of a job whose coordinator keeps getting lost, before it FAILS. */
  maxResumes: 3,
} as const;

/** Options of {@link startRuntime}. */
export interface RuntimeOptions {
  /** Data directory of the S3 server; a temporary one (removed on close) when absent. */
  dir?: string;
  /** @default LOCAL_DEFAULTS.workerSandboxes */
  workerSandboxes?: number;
  /** @default LOCAL_DEFAULTS.workerTimeoutSeconds */
  workerTimeoutSeconds?: number;
  /** @default LOCAL_DEFAULTS.coordinatorTimeoutSeconds */
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
   * Sweep jobs whose coordinator was lost (shared/core/sweep.ts), at start and every
   * `LOCAL_DEFAULTS.sweepSeconds`. @default true when `dir` is given: jobs there outlive the
   * process that ran them
   */
  sweep?: boolean;
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
  /** The runtime's S3, through the same adapter the handlers use. */
  store: ObjectStore;
  /** The runtime's Lambda endpoint, through the same adapter the coordinator uses. */
  invoker: Invoker;
  functions: { coordinator: string; worker: string; reducer: string; api: string };
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

/** Starts S3, bundles the functions (cached) and starts the Lambda server. */
export async function startRuntime(options: RuntimeOptions = {}): Promise<LocalRuntime> {
  const bucket = LOCAL_DEFAULTS.bucket;
  const names = {
    coordinator: 'fanout-coordinator',
    worker: 'fanout-worker',
    reducer: 'fanout-reducer',
    api: 'fanout-api',
  };
  const faults = options.chaos && chaosFaults(options.chaos.spec, options.chaos.seed, names);
  const staleAfterSeconds = Number(
    process.env.FANOUT_STALE_AFTER_SECONDS ?? LOCAL_DEFAULTS.staleAfterSeconds,
  );
  if (!(Number.isSafeInteger(staleAfterSeconds) && staleAfterSeconds > 0)) {
    throw new ValidationError(
      `FANOUT_STALE_AFTER_SECONDS must be a positive integer; got ${JSON.stringify(process.env.FANOUT_STALE_AFTER_SECONDS)}`,
    );
  }
  // Late-bound: the sweeper's S3 and Lambda clients exist once both servers run.
  let sweepDeps: SweepDeps | undefined;
  // Under chaos S3 answers SlowDown now and then; every client retries it, as on AWS, with
  // enough attempts that a run of bad luck does not fail a job.
  const s3Attempts = faults ? 10 : undefined;
  const [s3, bundles] = await Promise.all([
    startS3Server({
      ...(options.dir !== undefined && { dir: options.dir }),
      ...(options.s3Port !== undefined && { port: options.s3Port }),
      buckets: [bucket],
      ...(faults && { faults: faults.s3 }),
    }),
    bundleFunctions(
      FUNCTION_ENTRIES,
      options.registry === undefined
        ? {}
        : {
            extra: {
              options: registryBuildOptions(options.registry.module),
              suffix: `-${basename(options.registry.module, '.ts')}`,
            },
          },
    ),
  ]);
  const lambdaPort = options.lambdaPort ?? 0;
  let lambda: LocalLambdaServer;
  try {
    // The Lambda endpoint must be known before the functions' env is; a fixed port or a first
    // start that learns the port and passes it through a late-bound env both work, so the
    // server takes the env after it has bound.
    lambda = await startLambdaServer({
      port: lambdaPort,
      functions: [],
      ...(faults && { faults: faults.lambda }),
      ...(options.log && { log: options.log }),
      ...(options.onInvoke && { onInvoke: options.onInvoke }),
    });
    const workerTimeoutSeconds =
      options.workerTimeoutSeconds ?? LOCAL_DEFAULTS.workerTimeoutSeconds;
    const env = {
      FANOUT_BUCKET: bucket,
      FANOUT_WORKER_TIMEOUT_SECONDS: String(workerTimeoutSeconds),
      FANOUT_WORKER_FUNCTION: names.worker,
      FANOUT_REDUCER_FUNCTION: names.reducer,
      FANOUT_COORDINATOR_FUNCTION: names.coordinator,
      FANOUT_ALLOWED_INPUTS: `s3://${bucket}/datasets/`,
      FANOUT_DEFAULT_CONCURRENCY: String(options.workerSandboxes ?? LOCAL_DEFAULTS.workerSandboxes),
      FANOUT_MAX_CONCURRENCY: String(options.workerSandboxes ?? LOCAL_DEFAULTS.workerSandboxes),
      // Two cores cannot run sixteen cold sandboxes at once for chunks that take milliseconds:
      // a job opens one lane per core, and the rest once a chunk runs long (it is waiting).
      FANOUT_INITIAL_CONCURRENCY: String(availableParallelism()),
      // Job state changes go to the functions' logs, which fanout dev prints (EventBridge on AWS).
      FANOUT_EVENTS: 'log',
      // Powertools logs and metrics only where the logs are read: importing it costs each
      // sandbox's start ~40 ms. No X-Ray here, so no tracer either.
      FANOUT_OBSERVABILITY: options.log === undefined ? 'off' : 'on',
      POWERTOOLS_SERVICE_NAME: 'fanout',
      POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'INFO',
      FANOUT_HEARTBEAT_SECONDS: String(LOCAL_DEFAULTS.heartbeatSeconds),
      FANOUT_STALE_AFTER_SECONDS: String(staleAfterSeconds),
      FANOUT_MAX_RESUMES: String(LOCAL_DEFAULTS.maxResumes),
      // The backup policy, as the FanoutService prop sets it on AWS, from this process's env.
      ...Object.fromEntries(
        Object.entries(process.env).filter(
          (e): e is [string, string] => e[0].startsWith('FANOUT_SPECULATION') && e[1] !== undefined,
        ),
      ),
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      // Source maps cost each sandbox ~50 ms and ~9 MB at start; they only matter where
      // someone reads the functions' stack traces, in their logs.
      ...(options.log !== undefined && { NODE_OPTIONS: '--enable-source-maps' }),
      ...(s3Attempts !== undefined && { AWS_MAX_ATTEMPTS: String(s3Attempts) }),
    };
    lambda.register({
      name: names.coordinator,
      bundle: bundles.coordinator!,
      env,
      timeoutSeconds: options.coordinatorTimeoutSeconds ?? LOCAL_DEFAULTS.coordinatorTimeoutSeconds,
      concurrency: LOCAL_DEFAULTS.coordinatorSandboxes,
      // The on-failure destination, as the stack configures it on AWS: a coordinator whose
      // event failed three times is resumed (or its job failed) without waiting for a sweep.
      onFailure: (record) => {
        const jobId = (record.requestPayload as { jobId?: unknown } | null)?.jobId;
        if (sweepDeps === undefined || typeof jobId !== 'string') return;
        const { errorType, errorMessage } = record.responsePayload;
        rescueJob(jobId, sweepDeps, { force: true, reason: `${errorType}: ${errorMessage}` }).catch(
          (error: Error) =>
            options.log?.(names.coordinator, `rescue of ${jobId}: ${error.message}\n`),
        );
      },
    });
    lambda.register({
      name: names.worker,
      bundle: bundles.worker!,
      env,
      timeoutSeconds: workerTimeoutSeconds,
      concurrency: options.workerSandboxes ?? LOCAL_DEFAULTS.workerSandboxes,
    });
    lambda.register({
      name: names.reducer,
      bundle: bundles.reducer!,
      env,
      timeoutSeconds: LOCAL_DEFAULTS.reducerTimeoutSeconds,
      concurrency: LOCAL_DEFAULTS.reducerSandboxes,
    });
    lambda.register({
      name: names.api,
      bundle: bundles.api!,
      env,
      timeoutSeconds: 30, // API Gateway's integration timeout
      concurrency: LOCAL_DEFAULTS.apiSandboxes,
    });
  } catch (error) {
    await s3.close();
    throw error;
  }
  const store = new S3ObjectStore(
    createS3Client({
      endpoint: s3.endpoint,
      ...(s3Attempts !== undefined && { maxAttempts: s3Attempts }),
    }),
  );
  const invoker = new LambdaInvoker({ endpoint: lambda.endpoint });
  sweepDeps = {
    store,
    invoker,
    clock: systemClock,
    bucket,
    coordinatorFunction: names.coordinator,
    staleAfterMs: staleAfterSeconds * 1000,
    maxResumes: LOCAL_DEFAULTS.maxResumes,
    ...(options.log && {
      events: logEvents((line) => options.log?.('fanout-sweeper', `${line}\n`)),
    }),
  };
  // Jobs in a persistent directory outlive the process that ran them: one killed mid-job left
  // them RUNNING with no coordinator. A new runtime on the directory sweeps at once, then keeps
  // sweeping. No event queued in an earlier process survives it, so at start a QUEUED job that
  // went quiet is an orphan too; later, a QUEUED job is only waiting for a sandbox.
  let sweeper: ReturnType<typeof setInterval> | undefined;
  if (options.sweep ?? options.dir !== undefined) {
    const deps = sweepDeps;
    let sweeping = false; // one sweep at a time: a slow one is not joined by the next
    const sweep = async (queuedStaleAfterMs: number) => {
      if (sweeping) return;
      sweeping = true;
      await sweepJobs({ ...deps, queuedStaleAfterMs })
        .catch((error: Error) =>
          options.log?.('fanout-sweeper', `sweep failed: ${error.message}\n`),
        )
        .finally(() => {
          sweeping = false;
        });
    };
    void sweep(deps.staleAfterMs);
    sweeper = setInterval(
      () => void sweep(Number.POSITIVE_INFINITY),
      LOCAL_DEFAULTS.sweepSeconds * 1000,
    );
    sweeper.unref();
  }
  return {
    bucket,
    s3,
    lambda,
    store,
    invoker,
    functions: names,
    jobs: options.registry?.jobs ?? jobs,
    persistent: options.dir !== undefined,
    async close(options) {
      if (sweeper !== undefined) clearInterval(sweeper);
      await lambda.close(options);
      await s3.close();
    },
  };
}
