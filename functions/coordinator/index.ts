/** Coordinator Lambda: plans a job and runs its chunks through the worker function. */

import { COORDINATOR_SOCKETS } from '#core/base/limits.ts';
import { systemClock } from '#core/base/ports.ts';
import { DEPLOYED_MEMORY_MB } from '#core/cost/cost.ts';
import { coordinateJob } from '#core/run/coordinator.ts';
import { jobs } from '#jobs/index.ts';
import { invokerFromEnv, storeFromEnv } from '../clients.ts';
import {
  codeLoaded,
  ENV,
  eventsFromEnv,
  memoryMb,
  optionalInt,
  PRIME_KEYS,
  pricingFromEnv,
  primeClients,
  requireEnv,
  speculationFromEnv,
} from '../config.ts';
import { jobEventSchema } from '../events.ts';
import { observability } from '../observability.ts';

codeLoaded();
const obs = await observability('coordinator');
const deps = {
  // A Lambda environment has 1,024 file descriptors: one socket per invocation in flight, and
  // a few dozen for S3 (COORDINATOR_SOCKETS).
  store: storeFromEnv(process.env, obs, { maxSockets: COORDINATOR_SOCKETS.s3 }),
  invoker: invokerFromEnv(process.env, { maxSockets: COORDINATOR_SOCKETS.invocations }),
  maxInvocations: COORDINATOR_SOCKETS.invocations,
  jobs,
  clock: systemClock,
  events: eventsFromEnv(),
  bucket: requireEnv(process.env, ENV.bucket),
  workerFunction: requireEnv(process.env, ENV.workerFunction),
  reducerFunction: requireEnv(process.env, ENV.reducerFunction),
  // Lambda sets the function's own name; a long job continues by invoking it again.
  coordinatorFunction: requireEnv(process.env, 'AWS_LAMBDA_FUNCTION_NAME'),
  workerTimeoutMs: optionalInt(process.env, ENV.workerTimeoutSeconds, 300) * 1000,
  reducerTimeoutMs: optionalInt(process.env, ENV.reducerTimeoutSeconds, 300) * 1000,
  heartbeatMs: optionalInt(process.env, ENV.heartbeatSeconds, 10) * 1000,
  statusIntervalMs: optionalInt(process.env, ENV.statusIntervalMs, 500),
  // The cost estimate: this function's memory as Lambda reports it, the workers' as configured.
  memoryMb: {
    coordinator: memoryMb('coordinator'),
    worker: optionalInt(process.env, ENV.workerMemoryMb, DEPLOYED_MEMORY_MB.worker),
  },
  pricing: pricingFromEnv(),
  // Loaded for a small Parquet input only: hyparquet costs every cold start ~15 ms else.
  parquetRowGroups: async (bytes: Uint8Array) =>
    (await import('#adapters/parquet.ts')).parquetRowGroupStarts(bytes),
  speculation: speculationFromEnv(process.env),
  ...(process.env[ENV.codeId] !== undefined && { codeId: process.env[ENV.codeId] }),
  ...(process.env[ENV.initialConcurrency] !== undefined && {
    initialLanes: optionalInt(process.env, ENV.initialConcurrency, 1),
  }),
};
await primeClients(process.env, {
  store: deps.store,
  keys: { read: PRIME_KEYS.status, write: PRIME_KEYS.status },
  invoker: deps.invoker,
  dryRunFunction: deps.workerFunction,
});

/**
 * Lambda entry point. The event is `{ jobId }`; the result the status when this run stopped.
 * A job that ended in this run is measured: its outcome, duration, chunks and throughput.
 */
export const handler = async (event: unknown, context: { getRemainingTimeInMillis(): number }) => {
  const { jobId } = jobEventSchema.parse(event);
  return obs.invocation(context, { jobId }, async () => {
    const status = await coordinateJob(jobId, {
      ...deps,
      remainingMs: () => context.getRemainingTimeInMillis(),
      onRun: (run) => {
        obs.metric('ChunksDispatched', 'Count', run.dispatched);
        obs.metric('ChunksRetried', 'Count', run.retries);
        obs.metric('Throttles', 'Count', run.throttles);
      },
    });
    if (status.finishedAt !== undefined && status.status !== 'RUNNING') {
      const seconds =
        Math.max(1, Date.parse(status.finishedAt) - Date.parse(status.createdAt)) / 1000;
      obs.metric(`Jobs${status.status[0]}${status.status.slice(1).toLowerCase()}`, 'Count', 1);
      obs.metric('JobDuration', 'Milliseconds', seconds * 1000);
      obs.metric('ChunksSucceeded', 'Count', status.chunks.succeeded);
      obs.metric('ChunksFailed', 'Count', status.chunks.failed);
      obs.metric('JobRecordsPerSecond', 'Count/Second', status.records / seconds);
      obs.metric('JobBytesPerSecond', 'Bytes/Second', status.bytes / seconds);
      obs.info('job ended', { status: status.status, chunks: status.chunks, cost: status.cost });
    }
    return status;
  });
};
