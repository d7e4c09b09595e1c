/**
 * Crash-only jobs in the pure core: the sweeper resumes jobs whose coordinator is gone, bounded;
 * resumed jobs rerun no finished chunk; a cancel stops dispatch at once; cancel and redrive work
 * on a job whose coordinator died. In-memory store, in-process invoker, a clock the test moves.
 */
import { describe, expect, it } from 'vitest';
import { ConflictError } from '#core/base/errors.ts';
import type { Clock } from '#core/base/ports.ts';
import type { ChunkTask, JobStatus } from '#core/model/documents.ts';
import { ACTIVE_PREFIX, jobKeys } from '#core/model/keys.ts';
import { reduceJob } from '#core/reduce/reducer.ts';
import { cancelJob, redriveJob } from '#core/run/control.ts';
import { type CoordinatorDeps, coordinateJob } from '#core/run/coordinator.ts';
import { submitJob } from '#core/run/submit.ts';
import { type SweepDeps, sweepJobs } from '#core/run/sweep.ts';
import { jobs } from '#jobs/index.ts';
import { DirectInvoker } from '../fixtures/direct-invoker.ts';
import { runWorkerTask } from '../fixtures/in-process.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const BUCKET = 'fanout-test';
const STALE = 10_000;

/** A clock the test moves by hand. */
function testClock(start = Date.parse('2026-12-02T10:00:00Z')) {
  const clock = {
    t: start,
    now: () => clock.t,
    iso: () => new Date(clock.t).toISOString(),
  };
  return clock satisfies Clock;
}

const records = (n: number) =>
  Array.from(
    { length: n },
    (_, i) => `${JSON.stringify({ name: `p${i}`, field: `f${i % 4}`, born: 1900 + i })}\n`,
  ).join('');

/**
 * A fanout in one process. `worker` may hold or fail chunks; `crashCoordinator` makes every
 * coordinator run take the job over and then die, as an out-of-memory kill would.
 */
function setup(
  options: {
    worker?: (task: ChunkTask, run: () => Promise<unknown>) => Promise<unknown>;
    crashCoordinator?: boolean;
  } = {},
) {
  const store = new MemoryStore();
  const clock = testClock();
  const perChunk = new Map<number, number>();
  const base = { store, jobs, clock, bucket: BUCKET };
  const coordinatorDeps = (): CoordinatorDeps => ({
    ...base,
    invoker,
    workerFunction: 'worker',
    reducerFunction: 'reducer',
    coordinatorFunction: 'coordinator',
    workerTimeoutMs: 60_000,
    // No periodic status writes or heartbeats: only the pre-dispatch check and the sweeper's
    // clock decide, so these tests cannot pass by timing.
    statusIntervalMs: 1e9,
    heartbeatMs: 1e9,
    sleep: async () => undefined,
  });
  const invoker: DirectInvoker = new DirectInvoker({
    worker: async (task: ChunkTask) => {
      // Map chunks only: a keyed job's partition tasks run on the worker function too.
      if (!('kind' in task)) perChunk.set(task.index, (perChunk.get(task.index) ?? 0) + 1);
      const run = () =>
        runWorkerTask(task, {
          ...base,
          gunzip: () => {
            throw new Error('no gzip here');
          },
        });
      return options.worker ? options.worker(task, run) : run();
    },
    reducer: ({ jobId }: { jobId: string }) =>
      reduceJob(jobId, { ...base, invoker, reducerFunction: 'reducer' }),
    coordinator: async ({ jobId }: { jobId: string }) => {
      if (options.crashCoordinator) {
        const { updateStatus } = await import('#core/model/status.ts');
        await updateStatus(store, BUCKET, jobId, (s) => ({
          ...s,
          status: 'RUNNING',
          epoch: (s.epoch ?? 0) + 1,
          heartbeatAt: clock.iso(),
        }));
        throw new Error('Runtime.OutOfMemory: the coordinator was killed');
      }
      return coordinateJob(jobId, coordinatorDeps());
    },
  });
  const sweepDeps: SweepDeps = {
    store,
    invoker,
    clock,
    bucket: BUCKET,
    coordinatorFunction: 'coordinator',
    staleAfterMs: STALE,
    maxResumes: 3,
  };
  const controlDeps = { ...base, invoker, coordinatorFunction: 'coordinator', staleAfterMs: STALE };
  const status = (jobId: string): JobStatus =>
    JSON.parse(store.text(BUCKET, jobKeys(jobId).status));
  const markers = () => [...store.objects.keys()].filter((k) => k.includes(`/${ACTIVE_PREFIX}`));
  const settle = async () => {
    while (invoker.background.length > 0) await Promise.all(invoker.background.splice(0));
  };
  const submit = async (n: number, chunks: number, concurrency = 1) => {
    await store.put(BUCKET, 'datasets/people.jsonl', records(n));
    return submitJob(
      { job: 'by-field', input: `s3://${BUCKET}/datasets/people.jsonl`, chunks, concurrency },
      { ...base, invoker, coordinatorFunction: 'coordinator' },
    );
  };
  return {
    store,
    clock,
    invoker,
    perChunk,
    sweepDeps,
    controlDeps,
    status,
    markers,
    settle,
    submit,
  };
}

describe('the sweeper', () => {
  it('starts a coordinator for a job whose event was lost, once it is stale, then drops its marker', async () => {
    const t = setup();
    const lost = new DirectInvoker({});
    await t.store.put(BUCKET, 'datasets/people.jsonl', records(20));
    const { jobId } = await submitJob(
      { job: 'by-field', input: `s3://${BUCKET}/datasets/people.jsonl`, concurrency: 2 },
      {
        store: t.store,
        jobs,
        clock: t.clock,
        bucket: BUCKET,
        invoker: lost,
        coordinatorFunction: 'coordinator',
      },
    );
    await Promise.all(lost.background);
    expect(t.markers()).toHaveLength(1);

    t.clock.t += STALE; // not past the limit yet
    expect(await sweepJobs(t.sweepDeps)).toMatchObject({ checked: 1, resumed: [] });
    t.clock.t += 1;
    expect(await sweepJobs(t.sweepDeps)).toMatchObject({ resumed: [jobId] });
    await t.settle();
    expect(t.status(jobId)).toMatchObject({ status: 'SUCCEEDED', resumes: 1 });
    expect(t.markers()).toHaveLength(1); // removed by the next sweep, which sees it ended
    expect(await sweepJobs(t.sweepDeps)).toMatchObject({ removed: 1 });
    expect(t.markers()).toEqual([]);
  });

  it('resumes a job killed mid-run without rerunning a finished chunk, and gets the single-pass result', async () => {
    // Chunk 3 hangs on its first attempt: the coordinator waiting on it is as good as dead.
    let release: () => void = () => undefined;
    let hung = false;
    const t = setup({
      worker: async (task, run) => {
        if (task.index === 3 && !hung) {
          hung = true;
          await new Promise<void>((resolve) => {
            release = resolve;
          });
          throw new Error('the old run is gone');
        }
        return run();
      },
    });
    const { jobId } = await t.submit(80, 8);
    await new Promise((r) => setTimeout(r, 20));
    expect(t.status(jobId).status).toBe('RUNNING');
    expect([...t.perChunk.keys()].sort()).toEqual([0, 1, 2, 3]);

    t.clock.t += STALE + 1;
    expect((await sweepJobs(t.sweepDeps)).resumed).toEqual([jobId]);
    // The new run has the job; wait for it (the old one is still parked on chunk 3).
    for (let i = 0; i < 200 && t.status(jobId).status !== 'SUCCEEDED'; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(t.status(jobId)).toMatchObject({ status: 'SUCCEEDED', resumes: 1, epoch: 3 });
    // Chunks 0-2 finished before the crash and ran once; chunk 3 ran again; 4-7 once.
    expect(Object.fromEntries(t.perChunk)).toEqual({
      0: 1,
      1: 1,
      2: 1,
      3: 2,
      4: 1,
      5: 1,
      6: 1,
      7: 1,
    });
    const result = JSON.parse(t.store.text(BUCKET, jobKeys(jobId).result(false)));
    expect(
      Object.fromEntries(
        Object.entries(result).map(([f, v]) => [f, (v as { count: number }).count]),
      ),
    ).toEqual({
      f0: 20,
      f1: 20,
      f2: 20,
      f3: 20,
    });
    // The old run comes back, finds the job taken over, and changes nothing.
    release();
    await t.settle();
    expect(t.status(jobId)).toMatchObject({ status: 'SUCCEEDED', epoch: 3 });
    expect(t.perChunk.get(4)).toBe(1);
  });

  it('fails a job whose coordinator dies on every attempt, after the bounded resumes, naming why', async () => {
    const t = setup({ crashCoordinator: true });
    const { jobId } = await t.submit(10, 2);
    await t.settle();
    const outcomes: string[] = [];
    for (let sweep = 0; sweep < 6 && t.status(jobId).status === 'RUNNING'; sweep++) {
      t.clock.t += STALE + 1;
      const report = await sweepJobs(t.sweepDeps);
      outcomes.push(
        report.resumed.length > 0 ? 'resumed' : report.failed.length > 0 ? 'failed' : '-',
      );
      await t.settle();
    }
    expect(outcomes).toEqual(['resumed', 'resumed', 'resumed', 'failed']);
    const status = t.status(jobId);
    expect(status).toMatchObject({ status: 'FAILED', resumes: 3 });
    expect(status.error).toMatchObject({ code: 'COORDINATOR_LOST' });
    expect(status.error?.message).toMatch(/stopped without finishing it 4 times/);
    expect(status.error?.message).toMatch(/resumed 3 times, the limit/);
    expect(t.markers()).toEqual([]);
  });

  it('leaves a job with a live heartbeat alone', async () => {
    const t = setup({ crashCoordinator: true });
    const { jobId } = await t.submit(10, 2);
    await t.settle();
    t.clock.t += STALE - 1;
    expect(await sweepJobs(t.sweepDeps)).toMatchObject({ checked: 1, resumed: [], failed: [] });
    expect(t.status(jobId)).toMatchObject({ status: 'RUNNING', epoch: 1 });
  });
});

describe('cancel', () => {
  it('stops dispatch at once: no chunk starts after the cancel is acknowledged', async () => {
    let cancelled: JobStatus | undefined;
    const started: number[] = [];
    const t = setup({
      worker: async (task, run) => {
        started.push(task.index);
        // The cancel is acknowledged while chunk 2 runs; status writes are off in this setup,
        // so only the check before each dispatch can see it.
        if (task.index === 2) cancelled = await cancelJob(task.jobId, t.controlDeps);
        return run();
      },
    });
    const { jobId } = await t.submit(60, 6);
    await t.settle();
    expect(cancelled).toMatchObject({ status: 'RUNNING', cancelRequested: true });
    expect(started).toEqual([0, 1, 2]);
    expect(t.status(jobId).status).toBe('CANCELLED');
  });

  it('ends a RUNNING job whose coordinator is lost at once, and lets redrive resume it', async () => {
    const t = setup({ crashCoordinator: true });
    const { jobId } = await t.submit(10, 2);
    await t.settle();
    // Heartbeat fresh: the coordinator might be alive, so cancel only marks the job, and
    // redrive refuses.
    await expect(redriveJob(jobId, t.controlDeps)).rejects.toThrow(ConflictError);
    t.clock.t += STALE + 1;
    const redriven = await redriveJob(jobId, t.controlDeps);
    expect(redriven).toMatchObject({ status: 'RUNNING', epoch: 2, redrives: 1, resumes: 0 });
    await t.settle(); // the redriven coordinator crashes too (it takes the job: epoch 3)
    t.clock.t += STALE + 1;
    const ended = await cancelJob(jobId, t.controlDeps);
    expect(ended).toMatchObject({ status: 'CANCELLED', cancelRequested: true });
    expect(ended.finishedAt).toBe(t.clock.iso());
  });
});
