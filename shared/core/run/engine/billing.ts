/**
 * What the invocations of a run cost, for the job's cost: each invocation's own report of its
 * usage, or for one that failed (or lost, and outlives the run) its measured duration at the
 * function's memory. A throttled invocation did not run and costs nothing.
 */

import type { Clock } from '../../base/ports.ts';
import { addUsage, invocationUsage, noUsage, type Usage } from '../../cost/cost.ts';

/** The usage of a run's invocations. */
export class Billing {
  /** What the invocations used so far. */
  usage: Usage = noUsage();

  constructor(
    private readonly clock: Clock,
    /** The invoked function's memory, for invocations billed by their duration. */
    private readonly memoryMb: number,
  ) {}

  /** Adds an invocation's own report, or (without one) its duration since `startedAt`. */
  charge(startedAt: number, reported?: Usage): void {
    this.usage = addUsage(
      this.usage,
      reported ?? invocationUsage(this.clock.now() - startedAt, this.memoryMb),
    );
  }
}
