/**
 * What the pieces of one run share: the task kind, the gate every attempt goes through, the
 * ledger that writes the tasks' records, the stop signal, the counts status.json shows, and the
 * settings. Built once by the engine; each piece reads what it needs.
 */
import type { Clock } from '../../base/ports.ts';
import type { StragglerWatch } from '../speculation.ts';
import type { InvocationGate } from './gate.ts';
import type { AttemptLedger } from './ledger.ts';
import type { Counts } from './progress.ts';
import type { Stop } from './stop.ts';
import type { AttemptPayload, TaskKind, TaskResult } from './task.ts';

/** What a run counted, for its metrics. */
export interface RunCounters {
  /** Tasks dispatched (first attempts). */
  dispatched: number;
  /** Attempts retried after an error. */
  retries: number;
  /** Attempts throttled (429). */
  throttles: number;
}

/** The run's shared pieces and settings. */
export interface RunContext<P extends AttemptPayload, R extends TaskResult> {
  kind: TaskKind<P, R>;
  gate: InvocationGate<P, R>;
  ledger: AttemptLedger;
  stop: Stop;
  counts: Counts;
  counters: RunCounters;
  clock: Clock;
  /** Waits between retries. */
  sleep: (ms: number) => Promise<void>;
  random: () => number;
  /** Attempts per task, and throttles per task before it counts as failed. */
  maxAttempts: number;
  /** Attempts of a task whose error came from the job's own code (retry.ts). */
  jobCodeAttempts?: number;
  maxThrottled: number;
  /** The straggler rule, when backups are on. */
  watch: StragglerWatch | undefined;
}
