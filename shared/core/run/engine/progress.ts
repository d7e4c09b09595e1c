/**
 * Durable progress: a task is done when its outcome object exists. A run loads what earlier runs
 * finished (a continuation, a resume after a crash, a redrive), counts it, and runs the rest.
 */
import type { AttemptPayload, Reuse, TaskKind, TaskResult } from './task.ts';

/** The run's counts, as status.json shows them. */
export interface Counts {
  succeeded: number;
  failed: number;
  running: number;
  /** Records of finished tasks (a map chunk's records in). */
  records: number;
  /** Input bytes of finished tasks. */
  bytes: number;
  /** With a kind that reuses work (TaskKind.reuseOf): what finished tasks reused. */
  reuse?: Reuse;
}

/**
 * The tasks left to run, in index order (a split task's parts were appended, so they come last),
 * and the counts of those already done (`finished` counts no split task). A fresh job (the first
 * run to get past its takeover) has no outcome yet and reads nothing.
 */
export async function loadProgress<P extends AttemptPayload, R extends TaskResult>(
  kind: TaskKind<P, R>,
  fresh: boolean,
): Promise<{ todo: number[]; counts: Counts }> {
  const finished = fresh ? { indexes: [], records: 0, bytes: 0 } : await kind.finished();
  const counts: Counts = {
    succeeded: finished.indexes.length,
    failed: 0,
    running: 0,
    records: finished.records,
    bytes: finished.bytes,
  };
  if (kind.reuseOf !== undefined) {
    counts.reuse = finished.reuse ?? { tasks: 0, pieces: 0, processed: finished.bytes };
  }
  const done = new Set(finished.indexes);
  // A split task is done once its parts are: they are tasks of their own.
  const todo = kind.records
    .filter((r) => !done.has(r.index) && r.split === undefined)
    .map((r) => r.index);
  return { todo, counts };
}
