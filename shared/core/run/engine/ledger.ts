/**
 * The attempt ledger: the only writer of the tasks' records (the manifest's per-task entries).
 * It numbers attempts (a number names an attempt's part, so none is ever reused), and notes each
 * attempt that failed, was throttled, or lost to another, each backup, and each task's end.
 */
import { toErrorInfo } from '../../base/errors.ts';
import type { Clock } from '../../base/ports.ts';
import type { TaskRecord } from '../../model/documents.ts';

/** Writes the tasks' records, by index. */
export class AttemptLedger {
  constructor(
    private readonly records: readonly TaskRecord[],
    private readonly clock: Clock,
  ) {}

  private record(index: number): TaskRecord {
    return this.records[index]!;
  }

  /** A new run: failed-for-good marks are the last run's (its tasks are retried now). */
  reopen(): void {
    for (const record of this.records) delete record.failed;
  }

  /** The next attempt's number. */
  number(index: number): number {
    const record = this.record(index);
    record.attempts += 1;
    return record.attempts;
  }

  /** Attempts so far (for a failure's message). */
  attempts(index: number): number {
    return this.record(index).attempts;
  }

  /**
   * Gives back a throttled attempt's number, so that attempts count invocations that ran,
   * unless a later attempt (a backup) took a number meanwhile.
   */
  unnumber(index: number, attempt: number): void {
    const record = this.record(index);
    if (record.attempts === attempt) record.attempts -= 1;
  }

  /** Notes a failed or throttled attempt, for the report. */
  failed(
    index: number,
    attempt: { attempt: number; dispatchedAt?: number },
    extra: { throttled?: boolean; error?: string },
  ): void {
    const record = this.record(index);
    record.failures = [
      ...(record.failures ?? []),
      {
        attempt: attempt.attempt,
        dispatchedAt: attempt.dispatchedAt as number,
        endedAt: Date.parse(this.clock.iso()),
        ...extra,
      },
    ];
  }

  /** Keeps a failed attempt's error (the job's error, if the task fails for good). */
  error(index: number, error: unknown): void {
    const record = this.record(index);
    record.errors = [...(record.errors ?? []), toErrorInfo(error)];
  }

  /** Notes an attempt whose outcome did not count; `endedAt` absent: it still runs. */
  lost(
    index: number,
    attempt: { attempt: number; dispatchedAt?: number },
    backup: boolean,
    endedAt?: number,
  ): void {
    const record = this.record(index);
    record.lost = [
      ...(record.lost ?? []),
      {
        attempt: attempt.attempt,
        dispatchedAt: attempt.dispatchedAt as number,
        ...(endedAt !== undefined && { endedAt }),
        ...(backup && { backup: true }),
      },
    ];
  }

  /** A backup attempt starts. */
  backupStarted(index: number): void {
    const record = this.record(index);
    record.backups = (record.backups ?? 0) + 1;
  }

  /** A backup was throttled before it ran: it waits for the next slot, uncounted. */
  backupRequeued(index: number): void {
    (this.record(index).backups as number) -= 1;
  }

  /** A backup's outcome was the one that counted. */
  backupWon(index: number): void {
    this.record(index).backupWon = true;
  }

  /** The task's first outcome counted, `durationMs` after its first dispatch. */
  succeeded(index: number, durationMs: number): void {
    this.record(index).durationMs = durationMs;
  }

  /** The task failed for good. */
  failedForGood(index: number): void {
    this.record(index).failed = true;
  }
}
