/**
 * Why a run stops dispatching: the job failed past its tolerance, was cancelled, was taken over
 * by a newer run, or this invocation's time runs short (a continuation takes over). Every piece
 * of the engine reads the one signal before it dispatches; the first reason given is kept,
 * except that failing past the tolerance ends the run as failed whatever was asked before
 * (which is why this is not an AbortSignal: its first reason is final).
 */
export type StopReason = 'failed' | 'cancelled' | 'superseded' | 'continue';

/** The run's stop signal. */
export class Stop {
  reason: StopReason | undefined;

  /** True once a reason is given: no new dispatch starts. */
  get stopped(): boolean {
    return this.reason !== undefined;
  }

  /** Asks the run to stop; the first reason asked is kept. */
  request(reason: Exclude<StopReason, 'failed'>): void {
    this.reason ??= reason;
  }

  /** Failures past the job's tolerance: the run ends failed. */
  fail(): void {
    this.reason = 'failed';
  }
}
