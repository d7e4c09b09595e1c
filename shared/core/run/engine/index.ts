/**
 * The task engine (see engine.ts): `runTasks` over a `TaskKind`, and the pieces a kind or a
 * test needs.
 */
export { Billing } from './billing.ts';
export { type EngineDeps, type RunEnd, runTasks } from './engine.ts';
export { type Ownership, ownership } from './ownership.ts';
export { DETERMINISTIC, type RetryDecision, retryDecision } from './retry.ts';
export type { AttemptPayload, Finished, TaskKind, TaskResult } from './task.ts';
