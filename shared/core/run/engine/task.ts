/**
 * What the task engine runs: tasks of one kind (map chunks; later reducer partitions, split
 * halves), each an index with a payload for the function it invokes, a size for the straggler
 * rule, and an outcome object that the first attempt to finish writes create-only, which makes
 * it the winner. The engine knows nothing else of a task.
 */

import type { FanoutError } from '../../base/errors.ts';
import type { Usage } from '../../cost/cost.ts';
import type { TaskRecord } from '../../model/documents.ts';

/** What every payload carries: which task, which attempt, when it was sent. */
export interface AttemptPayload {
  index: number;
  /** 1 for the first attempt; retries, backups, continuations and redrives count on. */
  attempt: number;
  /** When the engine sent this attempt (ms since the epoch), for the queue wait. */
  dispatchedAt?: number;
}

/** What an attempt answers, as far as the engine reads it. */
export interface TaskResult {
  /** Another attempt's outcome was written first: this one's result does not count. */
  duplicate?: boolean;
  /** The invocation's own usage (billed duration, memory, S3 requests). */
  usage?: Usage;
}

/** The tasks that already have an outcome (from an earlier run), and what they counted. */
export interface Finished {
  indexes: number[];
  records: number;
  bytes: number;
  /** With {@link TaskKind.reuseOf}: what they reused and processed. */
  reuse?: Reuse;
}

/** Work reused instead of done: whole tasks, pieces, and the bytes that were done. */
export interface Reuse {
  /** Tasks that needed no invocation. */
  tasks: number;
  /** Pieces of tasks taken from earlier work. */
  pieces: number;
  /** Input bytes processed (not reused). */
  processed: number;
}

/** One kind of task: what the engine needs to run any number of them. */
export interface TaskKind<P extends AttemptPayload, R extends TaskResult> {
  /** The function every attempt invokes. */
  functionName: string;
  /** That function's timeout: an invocation unanswered by then (and a margin) timed out. */
  timeoutMs: number;
  /** The tasks' records, by index: the ledger writes attempts, failures and backups there. */
  records: TaskRecord[];
  /**
   * Where status.json shows the tasks' progress: `chunks` (with the records and bytes read) or
   * `partitions` (a keyed job's reduce tasks). @default 'chunks'
   */
  progress?: 'chunks' | 'partitions';
  /** A task's size in bytes: the straggler rule compares time per byte. */
  size(index: number): number;
  /**
   * Prepares a task when it is first dispatched; the function it returns builds each
   * attempt's payload.
   */
  prepare(index: number): (attempt: number, dispatchedAt: number) => P;
  /** Records a winning result counts (a map chunk's records in). */
  recordsOf(result: R): number;
  /** Told of each task's winning result (its own attempt's, a backup's, or a reused one). */
  won?(index: number, result: R): void;
  /** What a winning result reused and processed; tasks of a kind without it reuse nothing. */
  reuseOf?(result: R): Reuse;
  /**
   * The task's result made without an invocation, from earlier work, or undefined when it must
   * run (called before a task's first attempt; `payload` is that attempt's).
   */
  reuse?(payload: P): Promise<R | undefined>;
  /** The tasks that have an outcome already, read from their outcome objects. */
  finished(): Promise<Finished>;
  /** A task's final failure, named so that the job's error says which task and where. */
  failure(index: number, error: unknown): FanoutError;
  /**
   * Replaces a task that ran out of memory or time by smaller ones that together do exactly its
   * work: appends their records to `records` (each with `from`), sets the task's `split`, makes
   * that durable, and returns their indexes in input order. Throws the task's final failure when
   * it cannot be made smaller. Absent: such a task is retried as it is.
   */
  split?(index: number, error: unknown): Promise<number[]>;
}
