/**
 * How the functions' timeouts fit together (shared/core/base/limits.ts), and what the coordinator
 * does with them: it hands over to a continuation rather than wait for a reducer it has no
 * time left for, and it never waits past its own end.
 */
import { describe, expect, it } from 'vitest';
import {
  defaultReducerTimeoutMs,
  handOverMs,
  invocationMarginMs,
  timeoutProblems,
} from '#core/base/limits.ts';
import { systemClock } from '#core/base/ports.ts';
import type { ChunkTask } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { reduceJob } from '#core/reduce/reducer.ts';
import { coordinateJob } from '#core/run/coordinator.ts';
import { submitJob } from '#core/run/submit.ts';
import { jobs } from '#jobs/index.ts';
import { DirectInvoker } from '../fixtures/direct-invoker.ts';
import { IN_PROCESS, runWorkerTask } from '../fixtures/in-process.ts';
import { MemoryStore } from '../fixtures/memory-store.ts';

const s = (seconds: number) => seconds * 1000;
const names = {
  coordinatorMs: 'coordinatorTimeout',
  workerMs: 'workerTimeout',
  reducerMs: 'reducerTimeout',
} as const;
const problems = (coordinator: number, worker: number, reducer: number) =>
  timeoutProblems(
    { coordinatorMs: s(coordinator), workerMs: s(worker), reducerMs: s(reducer) },
    (k) => names[k],
  );

describe('timeoutProblems', () => {
  it('refuses what cannot work and accepts what can', () => {
    // The old defaults: one worker timeout and its margins are more than the coordinator has.
    expect(problems(900, 900, 900)).toEqual([
      expect.stringMatching(
        /^workerTimeout \(900 s\) does not fit in coordinatorTimeout \(900 s\)/,
      ),
      expect.stringMatching(/^reducerTimeout \(900 s\) does not fit in coordinatorTimeout/),
    ]);
    // The new defaults, and the deploy rehearsal's timeouts with the default reducer.
    expect(problems(900, 300, defaultReducerTimeoutMs(s(900)) / 1000)).toEqual([]);
    expect(problems(30, 5, defaultReducerTimeoutMs(s(30)) / 1000)).toEqual([]);
    expect(problems(0.5, 5, 5)).toEqual([
      'coordinatorTimeout must be between 1 s and 900 s; got 0.5 s',
    ]);
    expect(problems(900, 901, 10)[0]).toMatch(/workerTimeout must be between 1 s and 900 s/);
  });

  it('holds at the boundary: half the coordinator for the worker and its margins', () => {
    for (let worker = 1; worker <= 900; worker++) {
      const fits = handOverMs(s(worker)) <= s(900) / 2;
      expect(problems(900, worker, 100).length === 0, `worker ${worker} s`).toBe(fits);
    }
  });
});

/** An in-process job whose coordinator believes it has `remainingMs` left. */
async function runWith(remainingMs: () => number) {
  const store = new MemoryStore();
  const bucket = 'fanout-test';
  await store.put(bucket, 'datasets/lesson.jsonl', '{"name":"a","field":"math","born":1900}\n');
  const deps = { store, jobs, clock: systemClock, bucket };
  let coordinatorRuns = 0;
  const invoker: DirectInvoker = new DirectInvoker({
    worker: (task: ChunkTask) => runWorkerTask(task, { ...deps, gunzip: (x) => x }),
    reducer: ({ jobId }: { jobId: string }) => reduceJob(jobId, deps),
    coordinator: ({ jobId }: { jobId: string }) => {
      coordinatorRuns += 1;
      return coordinateJob(jobId, {
        ...deps,
        invoker,
        ...IN_PROCESS,
        reducerTimeoutMs: s(300),
        // The first run is short of time; a continuation has its whole timeout.
        remainingMs: coordinatorRuns === 1 ? remainingMs : () => s(900),
        sleep: async () => undefined,
      });
    },
  });
  const job = await submitJob(
    { job: 'by-field', input: `s3://${bucket}/datasets/lesson.jsonl`, concurrency: 1 },
    { ...deps, invoker, coordinatorFunction: 'coordinator' },
  );
  while (invoker.background.length > 0) await invoker.background.shift();
  const status = JSON.parse(store.text(bucket, jobKeys(job.jobId).status));
  const reducerTimeouts = invoker.calls
    .filter((c) => c.functionName === 'reducer')
    .map((c) => c.timeoutMs);
  return { status, reducerTimeouts, coordinatorRuns };
}

describe('the coordinator and the reducer wait', () => {
  it('hands the reducer wait to a continuation when it has less time left than that wait', async () => {
    const short = await runWith(() => handOverMs(s(300)) - 1);
    expect(short.status).toMatchObject({ status: 'SUCCEEDED', continuations: 1 });
    expect(short.coordinatorRuns).toBe(2);
    expect(short.reducerTimeouts).toEqual([s(300) + invocationMarginMs(s(300))]);
  });

  it('waits for the reducer itself when the wait fits, never past its own end', async () => {
    const enough = await runWith(() => handOverMs(s(300)) + 1);
    expect(enough.status).toMatchObject({ status: 'SUCCEEDED' });
    expect(enough.status.continuations).toBeUndefined();
    expect(enough.coordinatorRuns).toBe(1);
    expect(enough.reducerTimeouts[0]).toBeLessThanOrEqual(handOverMs(s(300)) + 1 - 2_000);
  });
});

describe('the coordinator and its sockets', () => {
  it('keeps no more worker invocations in flight than maxInvocations, whatever the concurrency', async () => {
    const store = new MemoryStore();
    const bucket = 'fanout-test';
    const lines = Array.from(
      { length: 40 },
      (_, i) => `${JSON.stringify({ name: `p${i}`, field: 'f', born: 1900, nobel: false })}\n`,
    ).join('');
    await store.put(bucket, 'datasets/many.jsonl', lines);
    const deps = { store, jobs, clock: systemClock, bucket };
    const inFlight = { now: 0, max: 0 };
    const invoker: DirectInvoker = new DirectInvoker({
      worker: async (task: ChunkTask) => {
        inFlight.max = Math.max(inFlight.max, ++inFlight.now);
        try {
          await new Promise((r) => setTimeout(r, 5));
          return await runWorkerTask(task, { ...deps, gunzip: (x) => x });
        } finally {
          inFlight.now -= 1;
        }
      },
      reducer: ({ jobId }: { jobId: string }) => reduceJob(jobId, deps),
      coordinator: ({ jobId }: { jobId: string }) =>
        coordinateJob(jobId, {
          ...deps,
          invoker,
          ...IN_PROCESS,
          maxInvocations: 5,
          sleep: async () => undefined,
        }),
    });
    const job = await submitJob(
      { job: 'scientists', input: `s3://${bucket}/datasets/many.jsonl`, concurrency: 40 },
      { ...deps, invoker, coordinatorFunction: 'coordinator' },
    );
    while (invoker.background.length > 0) await invoker.background.shift();
    const status = JSON.parse(store.text(bucket, jobKeys(job.jobId).status));
    expect(status).toMatchObject({ status: 'SUCCEEDED', chunks: { total: 40 } });
    expect(inFlight.max).toBe(5);
  });
});
