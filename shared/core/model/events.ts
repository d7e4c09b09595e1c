/**
 * Job state changes as events (`source: "fanout"`, `detail-type: "Fanout Job Status Change"`),
 * so users react to a job's end without polling: EventBridge on AWS, the functions' log under
 * `fanout dev`. Publishing is best effort: a job never fails because an event could not be sent.
 */
import type { JobStatus } from './documents.ts';

export const JOB_EVENT_SOURCE = 'fanout';
export const JOB_EVENT_DETAIL_TYPE = 'Fanout Job Status Change';

/** Where job events go. */
export interface JobEvents {
  publish(detail: JobEventDetail): Promise<void>;
}

/** An event's detail: what a subscriber needs without reading the status document. */
export type JobEventDetail = Pick<
  JobStatus,
  | 'jobId'
  | 'job'
  | 'status'
  | 'input'
  | 'createdAt'
  | 'startedAt'
  | 'finishedAt'
  | 'chunks'
  | 'records'
> &
  Partial<Pick<JobStatus, 'error' | 'cost' | 'result'>> & { previousStatus?: JobStatus['status'] };

/** The detail of a change from `before` (absent: a new job) to `after`. */
function jobEventDetail(after: JobStatus, before?: JobStatus): JobEventDetail {
  const { jobId, job, status, input, createdAt, startedAt, finishedAt, chunks, records } = after;
  return {
    jobId,
    job,
    status,
    input,
    createdAt,
    ...(startedAt !== undefined && { startedAt }),
    ...(finishedAt !== undefined && { finishedAt }),
    chunks,
    records,
    ...(after.error !== undefined && { error: after.error }),
    ...(after.cost !== undefined && { cost: after.cost }),
    ...(after.result !== undefined && { result: after.result }),
    ...(before !== undefined && { previousStatus: before.status }),
  };
}

/** Publishes a change of state (not a progress update); swallows failures. */
export async function publishChange(
  events: JobEvents | undefined,
  after: JobStatus,
  before?: JobStatus,
): Promise<void> {
  if (events === undefined || (before !== undefined && before.status === after.status)) return;
  await events.publish(jobEventDetail(after, before)).catch(() => undefined);
}
