/** Reducer Lambda: merges a job's parts into its result and marks the job SUCCEEDED. */

import { countingStore } from '#core/base/counting-store.ts';
import { systemClock } from '#core/base/ports.ts';
import { type ReducerDeps, reduceGroup, reduceJob } from '#core/reduce/reducer.ts';
import { jobs } from '#jobs/index.ts';
import { invokerFromEnv, storeFromEnv } from '../clients.ts';
import {
  codeLoaded,
  ENV,
  eventsFromEnv,
  initDone,
  meterInvocation,
  optionalInt,
  PRIME_KEYS,
  primeClients,
  requireEnv,
} from '../config.ts';
import { reduceEventSchema } from '../events.ts';
import { observability } from '../observability.ts';
import { withUserFrame } from '../source-location.ts';

type ReduceEvent = ReturnType<typeof reduceEventSchema.parse>;

codeLoaded();
const obs = await observability('reducer');
const invoker = invokerFromEnv();
const deps: ReducerDeps = {
  store: storeFromEnv(process.env, obs),
  invoker,
  jobs,
  clock: systemClock,
  events: eventsFromEnv(),
  bucket: requireEnv(process.env, ENV.bucket),
  // Lambda sets the function's own name: a large fan-in is merged by groups of invocations.
  reducerFunction: requireEnv(process.env, 'AWS_LAMBDA_FUNCTION_NAME'),
  reducerTimeoutMs: optionalInt(process.env, ENV.reducerTimeoutSeconds, 300) * 1000,
};
// A tree reduce invokes this function itself, hence the dry run of it.
await primeClients(process.env, {
  store: deps.store,
  keys: { read: PRIME_KEYS.status, write: PRIME_KEYS.status },
  invoker,
  dryRunFunction: deps.reducerFunction,
});
initDone();

/**
 * Lambda entry point. `{ jobId }` reduces the job and returns its final status; `{ jobId,
 * group }` merges one group of parts for a tree reduce and returns where the merge is.
 */
export const handler = async (
  event: unknown,
  context?: { getRemainingTimeInMillis?: () => number },
) => {
  const parsed = reduceEventSchema.parse(event);
  const remaining = context?.getRemainingTimeInMillis;
  const invocationDeps =
    remaining === undefined ? deps : { ...deps, remainingMs: () => remaining.call(context) };
  return obs.invocation(context, { jobId: parsed.jobId }, () =>
    // A job's own bug (its merge or finish): the message ends with the job file and line.
    reduce(parsed, invocationDeps).catch((error: unknown) => {
      throw withUserFrame(error);
    }),
  );
};

async function reduce(
  { jobId, group, usage, coordinatorRun, waitingMemoryMb, pricing }: ReduceEvent,
  deps: ReducerDeps,
) {
  if (group !== undefined) return reduceGroup(jobId, group, deps);
  const meter = meterInvocation('reducer');
  const started = performance.now();
  const startedAt = Date.now();
  const counted = countingStore(deps.store);
  return reduceJob(
    jobId,
    {
      ...deps,
      store: counted.store,
      meter: () => ({
        usage: meter.usage(counted.requests),
        durationMs: performance.now() - started,
        startedAt,
        memoryMb: meter.memoryMb,
      }),
    },
    {
      ...(usage !== undefined && { usage }),
      ...(coordinatorRun !== undefined && { coordinatorRun }),
      ...(waitingMemoryMb !== undefined && { waitingMemoryMb }),
      ...(pricing !== undefined && { pricing }),
    },
  );
}
