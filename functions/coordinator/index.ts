/** Coordinator Lambda: plans a job and runs its chunks through the worker function. */
import { coordinateJob } from '#core/coordinator.ts';
import { systemClock } from '#core/ports.ts';
import { jobs } from '#jobs/index.ts';
import { ENV, invokerFromEnv, requireEnv, storeFromEnv } from '../config.ts';
import { jobEventSchema } from '../events.ts';

const deps = {
  store: storeFromEnv(),
  invoker: invokerFromEnv(),
  jobs,
  clock: systemClock,
  bucket: requireEnv(process.env, ENV.bucket),
  workerFunction: requireEnv(process.env, ENV.workerFunction),
  reducerFunction: requireEnv(process.env, ENV.reducerFunction),
};

/** Lambda entry point. The event is `{ jobId }`; the result the job's final status. */
export const handler = async (event: unknown) =>
  coordinateJob(jobEventSchema.parse(event).jobId, deps);
