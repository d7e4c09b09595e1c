/**
 * The run's view of status.json, the job's shared document: a progress write every interval
 * (compare-and-swap, at most one in flight) and a final one, and a read before each dispatch.
 * Both hear of a cancel request or a newer epoch through the ownership rule and tell the stop
 * signal: no task starts after a cancel was acknowledged, and a superseded run writes nothing.
 */
import type { ObjectStore } from '../../base/ports.ts';
import { readStatus, updateStatus } from '../../model/status.ts';
import { ownership } from './ownership.ts';
import type { Counts } from './progress.ts';
import type { Stop } from './stop.ts';

/** What the status sync needs. */
export interface StatusSyncDeps {
  store: ObjectStore;
  bucket: string;
  jobId: string;
  /** Milliseconds between progress writes. */
  intervalMs: number;
  /** A periodic timer (real time, or a simulation's clock). */
  every: (ms: number, callback: () => void) => { stop(): void };
}

/** Keeps status.json current for one run, and reads it before each dispatch. */
export class StatusSync {
  private writing: Promise<void> | undefined;
  private timer: { stop(): void } | undefined;
  private reading: Promise<void> | undefined;
  private nextRead: Promise<void> | undefined;

  constructor(
    private readonly deps: StatusSyncDeps,
    private readonly epoch: number,
    private total: number,
    private readonly counts: Counts,
    private readonly stop: Stop,
    private readonly field: 'chunks' | 'partitions' = 'chunks',
  ) {}

  /** One progress write: the counts as they are now, unless the run no longer owns the job. */
  async write(): Promise<void> {
    const snapshot = { ...this.counts };
    const reuse = snapshot.reuse;
    await updateStatus(this.deps.store, this.deps.bucket, this.deps.jobId, (s) => {
      const owner = ownership(s, this.epoch);
      if (owner === 'superseded') {
        this.stop.request('superseded');
        return undefined;
      }
      if (owner === 'cancel-requested') this.stop.request('cancelled');
      const counts = {
        total: this.total,
        pending: this.total - snapshot.succeeded - snapshot.failed - snapshot.running,
        running: snapshot.running,
        succeeded: snapshot.succeeded,
        failed: snapshot.failed,
      };
      return this.field === 'partitions'
        ? { ...s, partitions: counts }
        : {
            ...s,
            chunks: counts,
            records: snapshot.records,
            bytes: snapshot.bytes,
            ...(reuse !== undefined && {
              bytesProcessed: reuse.processed,
              reused: { chunks: reuse.tasks, segments: reuse.pieces },
            }),
          };
    });
  }

  /** A task was split into `more` + 1: the total grows by `more`. */
  grow(more: number): void {
    this.total += more;
  }

  /** Starts the periodic writes; the first one begins at once. */
  touch(): void {
    if (this.timer !== undefined) return;
    this.timer = this.deps.every(this.deps.intervalMs, this.tick);
    this.tick();
  }

  /** Stops the periodic writes and makes the final one (its errors are the caller's). */
  async close(): Promise<void> {
    this.timer?.stop();
    while (this.writing !== undefined) await this.writing;
    await this.write();
  }

  private readonly tick = () => {
    if (this.writing !== undefined) return;
    this.writing = this.write()
      .catch(() => undefined) // progress is best effort; the final write reports errors
      .finally(() => {
        this.writing = undefined;
      });
  };

  /**
   * Reads status.json before a dispatch, so that a cancel (or a takeover) acknowledged before
   * the dispatch stops it. Reads run one at a time; callers that ask while one is in flight
   * share the next, which starts when it ends and so after they asked. At 1,000 lanes that is a
   * read per GET latency, not one per dispatch.
   */
  check(): Promise<void> {
    this.nextRead ??= (async () => {
      await this.reading; // the read in flight may have begun before this caller asked
      this.nextRead = undefined; // from here on, a caller that asks needs a newer read
      const read = this.read();
      this.reading = read;
      await read;
    })();
    return this.nextRead;
  }

  private async read(): Promise<void> {
    const s = await readStatus(this.deps.store, this.deps.bucket, this.deps.jobId).catch(
      () => undefined,
    );
    if (s === undefined) return; // best effort: the writes report errors
    const owner = ownership(s, this.epoch);
    if (owner === 'superseded') this.stop.request('superseded');
    else if (owner === 'cancel-requested') this.stop.request('cancelled');
  }
}
