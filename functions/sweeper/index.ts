/**
 * Sweeper Lambda: keeps every job on its way to a terminal state (shared/core/run/sweep.ts).
 * - Every minute (an EventBridge schedule) it looks at the jobs marked active and resumes those
 *   whose coordinator's heartbeat is stale, or fails them after too many resumes.
 * - As the coordinator's on-failure destination it gets Lambda's record of a coordinator event
 *   that failed its attempts (or grew too old), and rescues that job at once.
 */
import { systemClock } from '#core/base/ports.ts';
import {
  type Rescue,
  rescueJob,
  SWEEP_DEFAULTS,
  type SweepReport,
  sweepJobs,
} from '#core/run/sweep.ts';
import { invokerFromEnv, storeFromEnv } from '../clients.ts';
import {
  codeLoaded,
  ENV,
  eventsFromEnv,
  optionalInt,
  PRIME_KEYS,
  primeClients,
  requireEnv,
} from '../config.ts';
import { failureRecordSchema, sweepEventSchema } from '../events.ts';
import { observability } from '../observability.ts';

codeLoaded();
const obs = await observability('sweeper');
const deps = {
  store: storeFromEnv(process.env, obs),
  invoker: invokerFromEnv(),
  clock: systemClock,
  events: eventsFromEnv(),
  bucket: requireEnv(process.env, ENV.bucket),
  coordinatorFunction: requireEnv(process.env, ENV.coordinatorFunction),
  staleAfterMs:
    optionalInt(process.env, ENV.staleAfterSeconds, SWEEP_DEFAULTS.staleAfterMs / 1000) * 1000,
  queuedStaleAfterMs: SWEEP_DEFAULTS.queuedStaleAfterMs,
  maxResumes: optionalInt(process.env, ENV.maxResumes, SWEEP_DEFAULTS.maxResumes),
};
await primeClients(process.env, {
  store: deps.store,
  keys: { read: PRIME_KEYS.status, write: PRIME_KEYS.status },
});

/** Lambda entry point: a failure record rescues its job; any other event sweeps. */
export const handler = (event: unknown, context?: unknown) =>
  obs.invocation(context, {}, () => sweep(event));

async function sweep(event: unknown): Promise<SweepReport | { jobId: string; rescue: Rescue }> {
  const record = failureRecordSchema.safeParse(event);
  if (record.success) {
    const { jobId } = record.data.requestPayload;
    const error = record.data.responsePayload;
    const reason = `${record.data.requestContext.condition}${error?.errorType ? `: ${error.errorType}` : ''}${error?.errorMessage ? `: ${error.errorMessage}` : ''}`;
    const rescue = await rescueJob(jobId, deps, { force: true, reason });
    obs.info('coordinator failure record', { jobId, reason, rescue });
    return { jobId, rescue };
  }
  const options = sweepEventSchema.safeParse(event);
  const queued = options.success ? options.data.queuedStaleAfterSeconds : undefined;
  const report = await sweepJobs(
    queued === undefined ? deps : { ...deps, queuedStaleAfterMs: queued * 1000 },
  );
  // One line per job taken over: the stack's metric filter counts them (an alarm). Jobs that
  // end FAILED are counted from their events, and listed in the summary below.
  for (const jobId of report.resumed)
    console.log(JSON.stringify({ message: 'job resumed', jobId }));
  if (report.resumed.length + report.failed.length + report.cancelled.length > 0) {
    console.log(JSON.stringify({ message: 'sweep', ...report }));
  }
  return report;
}
