/** Reducer Lambda: merges a job's parts into its result and marks the job SUCCEEDED. */
import { systemClock } from '#core/ports.ts';
import { reduceGroup, reduceJob } from '#core/reducer.ts';
import { jobs } from '#jobs/index.ts';
import { ENV, invokerFromEnv, primeClients, requireEnv, storeFromEnv } from '../config.ts';
import { reduceEventSchema } from '../events.ts';

const deps = {
  store: storeFromEnv(),
  invoker: invokerFromEnv(),
  jobs,
  clock: systemClock,
  bucket: requireEnv(process.env, ENV.bucket),
  // Lambda sets the function's own name: a large fan-in is merged by groups of invocations.
  reducerFunction: requireEnv(process.env, 'AWS_LAMBDA_FUNCTION_NAME'),
};
// A tree reduce invokes this function itself, hence the dry run of it.
await primeClients(process.env, {
  store: deps.store,
  invoker: deps.invoker,
  dryRunFunction: deps.reducerFunction,
});

/**
 * Lambda entry point. `{ jobId }` reduces the job and returns its final status; `{ jobId,
 * group }` merges one group of parts for a tree reduce and returns where the merge is.
 */
export const handler = async (event: unknown) => {
  const { jobId, group } = reduceEventSchema.parse(event);
  return group === undefined ? reduceJob(jobId, deps) : reduceGroup(jobId, group, deps);
};
