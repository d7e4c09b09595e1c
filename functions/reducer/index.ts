/** Reducer Lambda: merges a job's parts into its result and marks the job SUCCEEDED. */
import { systemClock } from '#core/ports.ts';
import { reduceJob } from '#core/reducer.ts';
import { jobs } from '#jobs/index.ts';
import { ENV, requireEnv, storeFromEnv } from '../config.ts';
import { jobEventSchema } from '../events.ts';

const deps = {
  store: storeFromEnv(),
  jobs,
  clock: systemClock,
  bucket: requireEnv(process.env, ENV.bucket),
};

/** Lambda entry point. The event is `{ jobId }`; the result the job's final status. */
export const handler = async (event: unknown) => reduceJob(jobEventSchema.parse(event).jobId, deps);
