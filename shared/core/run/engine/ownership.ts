/**
 * The one rule of who owns a job: the coordinator run whose epoch status.json holds, while the
 * job has not ended. Every run takes the job over by raising the epoch (compare-and-swap), so a
 * run that sees another epoch, or an ended job, has been superseded and must not write the job's
 * progress or end it. A cancel request leaves the run the owner: it stops dispatching and ends
 * the job CANCELLED itself.
 */
import type { JobStatus } from '../../model/documents.ts';
import { TERMINAL_STATES } from '../../model/status.ts';

/** How a run of epoch `epoch` stands towards the job whose status is `status`. */
export type Ownership = 'owned' | 'cancel-requested' | 'superseded';

/** The ownership rule (see the module's comment). */
export function ownership(status: JobStatus, epoch: number): Ownership {
  if (status.epoch !== epoch || TERMINAL_STATES.has(status.status)) return 'superseded';
  return status.cancelRequested === true ? 'cancel-requested' : 'owned';
}
