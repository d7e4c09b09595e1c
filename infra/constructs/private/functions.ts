/**
 * The five functions with their configuration, the coordinator's asynchronous-invocation
 * settings and failure destination, and the sweeper's schedule. Construct ids are the ones the
 * service has always used, so a deployed stack updates in place.
 */
import { Duration } from 'aws-cdk-lib';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import {
  EventInvokeConfig,
  type Function as LambdaFunctionConstruct,
} from 'aws-cdk-lib/aws-lambda';
import type { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { DEPLOYED_MEMORY_MB } from '../../../shared/core/cost/cost.ts';
import { FanoutFunction } from '../fanout-function.ts';
import type { FanoutServiceProps } from '../fanout-service.ts';
import { speculationEnv } from './settings.ts';

/** fanout's functions, by role. */
export type Functions = Record<
  'api' | 'coordinator' | 'worker' | 'reducer' | 'sweeper',
  LambdaFunctionConstruct
>;

/** What the functions are made with. */
export interface FunctionContext {
  bucket: IBucket;
  prefixes: readonly string[];
  timeouts: { coordinator: Duration; worker: Duration; reducer: Duration };
  maxConcurrency: number;
  common: { logRetention: RetentionDays; logLevel?: string; jobs?: string };
}

/** Creates the functions in `scope`; returns them and the sweeper's log group. */
export function createFunctions(
  scope: Construct,
  props: FanoutServiceProps,
  ctx: FunctionContext,
): { functions: Functions; sweeperLogs: LogGroup } {
  const reserved = (n: number | undefined) =>
    n === undefined ? {} : { reservedConcurrentExecutions: n };
  const workerFunction = new FanoutFunction(scope, 'Worker', {
    ...ctx.common,
    handler: 'worker',
    memorySize: props.workerMemoryMb ?? DEPLOYED_MEMORY_MB.worker,
    timeout: ctx.timeouts.worker,
    ...(props.workerReservedConcurrency !== undefined && {
      reservedConcurrentExecutions: props.workerReservedConcurrency,
    }),
    environment: { FANOUT_BUCKET: ctx.bucket.bucketName },
  });
  const worker = workerFunction.function;
  const reducer = new FanoutFunction(scope, 'Reducer', {
    ...ctx.common,
    handler: 'reducer',
    memorySize: props.reducerMemoryMb ?? 1769,
    timeout: ctx.timeouts.reducer,
    ...reserved(props.reservedConcurrency?.reducer),
    environment: {
      FANOUT_BUCKET: ctx.bucket.bucketName,
      FANOUT_REDUCER_TIMEOUT_SECONDS: String(ctx.timeouts.reducer.toSeconds()),
    },
  }).function;
  const coordinator = new FanoutFunction(scope, 'Coordinator', {
    ...ctx.common,
    handler: 'coordinator',
    memorySize: props.coordinatorMemoryMb ?? 1024,
    timeout: ctx.timeouts.coordinator,
    ...reserved(props.reservedConcurrency?.coordinator),
    environment: {
      FANOUT_BUCKET: ctx.bucket.bucketName,
      FANOUT_WORKER_TIMEOUT_SECONDS: String(ctx.timeouts.worker.toSeconds()),
      FANOUT_REDUCER_TIMEOUT_SECONDS: String(ctx.timeouts.reducer.toSeconds()),
      FANOUT_WORKER_FUNCTION: worker.functionName,
      FANOUT_REDUCER_FUNCTION: reducer.functionName,
      // For the job's cost estimate: the workers' memory, and the functions' architecture.
      FANOUT_WORKER_MEMORY_MB: String(props.workerMemoryMb ?? DEPLOYED_MEMORY_MB.worker),
      FANOUT_ARCHITECTURE: 'arm64',
      // Cache entries are addressed by the worker's code (docs/ARCHITECTURE.md, "Reuse"): new
      // worker code is a new identity, so no job reuses what older code made. Known once the
      // worker is bundled (a synthesis that skips bundling deploys nothing).
      ...(workerFunction.codeId !== undefined && { FANOUT_CODE_ID: workerFunction.codeId }),
      ...speculationEnv(props.speculation),
    },
  }).function;
  const api = new FanoutFunction(scope, 'Api', {
    ...ctx.common,
    handler: 'api',
    memorySize: 512,
    timeout: Duration.seconds(29),
    ...reserved(props.reservedConcurrency?.api),
    environment: {
      FANOUT_BUCKET: ctx.bucket.bucketName,
      FANOUT_COORDINATOR_FUNCTION: coordinator.functionName,
      FANOUT_ALLOWED_INPUTS: ctx.prefixes
        .map((p) => `s3://${ctx.bucket.bucketName}/${p}`)
        .join(','),
      FANOUT_DEFAULT_CONCURRENCY: String(props.defaultConcurrency ?? 100),
      FANOUT_MAX_CONCURRENCY: String(ctx.maxConcurrency),
    },
  }).function;
  // Crash-only jobs (shared/core/run/sweep.ts): the sweeper resumes a job whose coordinator is
  // gone, on a schedule and as the coordinator's on-failure destination.
  const sweeperFunction = new FanoutFunction(scope, 'Sweeper', {
    ...ctx.common,
    handler: 'sweeper',
    memorySize: 256,
    timeout: Duration.minutes(1),
    ...reserved(props.reservedConcurrency?.sweeper),
    environment: {
      FANOUT_BUCKET: ctx.bucket.bucketName,
      FANOUT_COORDINATOR_FUNCTION: coordinator.functionName,
      FANOUT_MAX_RESUMES: String(props.maxResumes ?? 3),
    },
  });
  const sweeper = sweeperFunction.function;
  const sweeperLogs = sweeperFunction.logGroup;
  // Lambda retries a failed coordinator event twice, keeps it at most an hour (while the
  // coordinator is throttled), then hands the record to the sweeper, which resumes the job or
  // fails it with the reason. The destination is given by ARN, and its invoke permission sits
  // in a policy of its own, so the coordinator does not depend on the sweeper that depends on
  // it (as LambdaDestination's grant in the default policy would make it).
  new EventInvokeConfig(scope, 'CoordinatorAsyncInvoke', {
    function: coordinator,
    retryAttempts: 2,
    maxEventAge: Duration.hours(1),
    onFailure: { bind: () => ({ destination: sweeper.functionArn }) },
  });
  new Policy(scope, 'CoordinatorFailureDestination', {
    statements: [
      new PolicyStatement({
        actions: ['lambda:InvokeFunction'],
        resources: [sweeper.functionArn],
      }),
    ],
  }).attachToRole(coordinator.role!);
  new Rule(scope, 'SweepSchedule', {
    description: 'fanout: resume jobs whose coordinator was lost',
    schedule: Schedule.rate(props.sweepInterval ?? Duration.minutes(1)),
    targets: [new LambdaFunction(sweeper, { retryAttempts: 0 })],
  });
  return { functions: { api, coordinator, worker, reducer, sweeper }, sweeperLogs };
}
