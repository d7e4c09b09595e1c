/**
 * Issue 4's guarantees on the real local runtime: chaos gives the clean answer, a changed input
 * fails the job, a killed coordinator resumes without rerunning finished chunks, long jobs
 * continue across coordinator invocations, tolerance, cancel, redrive, concurrent CAS writers.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus, Manifest } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import {
  readJson,
  readStatus,
  TERMINAL_STATES,
  updateStatus,
  writeJson,
} from '#core/model/status.ts';
import { cancelJob, redriveJob } from '#core/run/control.ts';
import { submitJob } from '#core/run/submit.ts';
import { parseChaos } from '#local/chaos.ts';
import { type LocalRuntime, startRuntime, submitDeps } from '#local/runtime.ts';
import { byFieldSinglePass } from '../../bench/baseline.ts';
import { generate } from '../../bench/gen.ts';
import { followJob, runJob } from '../../cli/run.ts';
import { scientistsOutput } from '../fixtures/expected.ts';
import { jobs as keyedJobs } from '../fixtures/keyed-registry.ts';
import { until } from '../fixtures/until.ts';

const keyedRegistry = resolve(import.meta.dirname, '../fixtures/keyed-registry.ts');

const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-reliability-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Uploads `text` and submits a job on it; returns the job id. */
async function submit(runtime: LocalRuntime, text: string, request: Record<string, unknown>) {
  const key = `datasets/${Math.random().toString(36).slice(2)}.jsonl`;
  await runtime.store.put(runtime.bucket, key, text);
  const job = await submitJob(
    { concurrency: 2, ...request, input: `s3://${runtime.bucket}/${key}` } as Parameters<
      typeof submitJob
    >[0],
    submitDeps(runtime),
  );
  return { jobId: job.jobId, key };
}

async function waitFor(
  runtime: LocalRuntime,
  jobId: string,
  until: (s: JobStatus) => boolean,
  ms = 60_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const status = await readStatus(runtime.store, runtime.bucket, jobId);
    if (until(status)) return status;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting; status ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const ended = (s: JobStatus) => TERMINAL_STATES.has(s.status);

const scientist = (i: number, bad = false) =>
  bad
    ? `{"name": broken ${i}}`
    : JSON.stringify({ name: `s${i}`, field: 'f', born: 1900 + i, nobel: false });
const dataset = (n: number, badAt: number[] = []) =>
  `${Array.from({ length: n }, (_, i) => scientist(i, badAt.includes(i))).join('\n')}\n`;

async function exists(runtime: LocalRuntime, key: string) {
  return runtime.store.head(runtime.bucket, key).then(
    () => true,
    () => false,
  );
}

/** A job's manifest, as the coordinator last wrote it. */
const manifestOf = async (runtime: LocalRuntime, jobId: string) =>
  (await readJson<Manifest>(runtime.store, runtime.bucket, jobKeys(jobId).manifest)).value;

describe('chaos', () => {
  it('gives exactly the clean result for by-field on 200,000 records under injected faults', async () => {
    const file = join(dir, 'chaos.jsonl');
    await generate({ records: 200_000, out: file, seed: 5 });
    const clean = await byFieldSinglePass(file);
    const runtime = await startRuntime({
      workerTimeoutSeconds: 2,
      chaos: {
        spec: parseChaos('worker-error=0.1,worker-timeout=0.02,throttle=0.05,s3-slowdown=0.02'),
        seed: 7,
      },
    });
    try {
      const result = await runJob(runtime, {
        job: 'by-field',
        input: file,
        chunks: 40,
        // Partition tasks too (a shuffle this small would otherwise be merged by the reducer).
        partitions: 4,
        maxAttempts: 8,
        // The bookkeeping below is of retries alone: backups would add attempts of their own.
        speculation: false,
        stderr: quiet,
      });
      expect(JSON.parse(result.resultText!)).toEqual(clean.result);
      expect(result.status.records).toBe(200_000);
      const manifest = await manifestOf(runtime, result.jobId);
      const retried = manifest.chunks.filter((c) => c.attempts > 1);
      expect(retried.length).toBeGreaterThan(0);
      // Every attempt but the last failed and left its error; a throttled one used no number.
      // A task split after a timeout failed in every attempt: its parts did its work.
      // by-field is keyed: its partition tasks run on the worker function, under the same faults.
      const partitions = manifest.partitions ?? [];
      expect(partitions.length).toBeGreaterThan(0);
      for (const c of [...manifest.chunks, ...partitions]) {
        const failed = c.split === undefined ? c.attempts - 1 : c.attempts;
        expect((c.errors ?? []).length, `task ${c.index}`).toBe(failed);
      }
      // Each attempt is one invocation the Lambda server ran (a 429 never reached a sandbox).
      const stats = runtime.lambda.stats(runtime.functions.worker);
      expect([...manifest.chunks, ...partitions].reduce((sum, c) => sum + c.attempts, 0)).toBe(
        stats.invocations,
      );
      expect(stats.errors + stats.throttles).toBeGreaterThan(0);
    } finally {
      await runtime.close();
    }
  }, 120_000);
});

describe('on the plain runtime', () => {
  let runtime: LocalRuntime;
  /** Worker invocations per job, per chunk index, as the Lambda server started them. */
  const invocations = new Map<string, number[]>();
  const invoked = (jobId: string) => invocations.get(jobId) ?? [];
  beforeAll(async () => {
    runtime = await startRuntime({
      onInvoke: (name, event) => {
        if (name !== runtime.functions.worker) return;
        const { jobId, index } = event as { jobId: string; index: number };
        const counts = invoked(jobId);
        counts[index] = (counts[index] ?? 0) + 1;
        invocations.set(jobId, counts);
      },
    });
  });
  afterAll(() => runtime?.close());

  it('fails with DatasetChangedError, and writes no result, when the input is overwritten mid-job', async () => {
    const { jobId, key } = await submit(runtime, dataset(40), {
      job: 'scientists',
      params: { sleepMs: 50 },
      chunks: 8,
    });
    await waitFor(runtime, jobId, (s) => s.chunks.succeeded >= 1 || ended(s));
    await runtime.store.put(runtime.bucket, key, dataset(41));
    const status = await waitFor(runtime, jobId, ended);
    expect(status.status).toBe('FAILED');
    expect(status.error).toMatchObject({ code: 'DATASET_CHANGED', name: 'DatasetChangedError' });
    expect(status.cost?.usd).toBeGreaterThan(0); // a failed job is priced too
    expect(status.error?.message).toContain(key);
    expect(await exists(runtime, jobKeys(jobId).result(true))).toBe(false);
  });

  it('resumes after the coordinator is killed, without rerunning any finished chunk', async () => {
    const { jobId } = await submit(runtime, dataset(12), {
      job: 'scientists',
      params: { sleepMs: 500 },
      chunks: 12,
    });
    await waitFor(runtime, jobId, (s) => s.chunks.succeeded >= 3);
    runtime.lambda.terminateSandboxes(runtime.functions.coordinator);
    // What had finished when the coordinator died: the chunks with an outcome.
    const finished = (
      await runtime.store.list(runtime.bucket, `${jobKeys(jobId).root}/chunks/`)
    ).map((o) => Number(/(\d+)\.json$/.exec(o.key)?.[1]));
    expect(finished.length).toBeGreaterThanOrEqual(3);
    expect(finished.length).toBeLessThan(12); // the resumed run had work left
    const status = await waitFor(runtime, jobId, ended);
    expect(status).toMatchObject({ status: 'SUCCEEDED', records: 12 });
    expect(status.epoch).toBeGreaterThanOrEqual(2);
    const counts = invoked(jobId);
    for (const i of finished) expect(counts[i], `chunk ${i} ran again`).toBe(1);
    for (let i = 0; i < 12; i++) expect(counts[i], `chunk ${i}`).toBeGreaterThanOrEqual(1);
  });

  it('succeeds with a partial result within the tolerance, and fails beyond it', async () => {
    const within = await submit(runtime, dataset(10, [4]), {
      job: 'scientists',
      chunks: 10,
      toleratedFailureCount: 1,
    });
    const partial = await waitFor(runtime, within.jobId, ended);
    expect(partial.status).toBe('SUCCEEDED');
    expect(partial.result).toMatchObject({
      partial: true,
      records: 9,
      failedChunks: [
        {
          index: 4,
          error: {
            context: { errorType: 'BadRecordError' },
            message: expect.stringMatching(/malformed record/),
          },
        },
      ],
    });

    const beyond = await submit(runtime, dataset(10, [1, 5, 8]), {
      job: 'scientists',
      chunks: 10,
      toleratedFailurePercent: 20,
    });
    const failed = await waitFor(runtime, beyond.jobId, ended);
    expect(failed.status).toBe('FAILED');
    expect(await exists(runtime, jobKeys(beyond.jobId).result(true))).toBe(false);
  });

  it('cancels: no new chunks, CANCELLED once in-flight ones finish, no result; redrive finishes it', async () => {
    // The coordinator's periodic progress writes also hear of a cancel; here they come once a
    // minute, so only the read before each dispatch can stop the next one in time.
    const perChunk: number[] = [];
    const own: LocalRuntime = await startRuntime({
      functionEnv: { coordinator: { FANOUT_STATUS_INTERVAL_MS: '60000' } },
      onInvoke: (name, event) => {
        if (name !== own.functions.worker) return;
        const { index } = event as { index: number };
        perChunk[index] = (perChunk[index] ?? 0) + 1;
      },
    });
    try {
      const deps = submitDeps(own);
      const started = () => perChunk.reduce((sum, n) => sum + (n ?? 0), 0);
      // Two lanes, chunks of 2 s: the cancel is acknowledged while both run, so the next
      // dispatch comes 2 s later, after the coordinator has read the cancel.
      const { jobId } = await submit(own, dataset(6), {
        job: 'scientists',
        params: { sleepMs: 2000 },
        chunks: 6,
      });
      for (let i = 0; i < 1000 && started() < 2; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(started()).toBe(2);
      await cancelJob(jobId, deps);
      const cancelled = await waitFor(own, jobId, ended);
      expect(cancelled).toMatchObject({
        status: 'CANCELLED',
        chunks: { succeeded: 2, running: 0 },
      });
      expect(started()).toBe(2); // no chunk started after the cancel was acknowledged
      expect(await exists(own, jobKeys(jobId).result(true))).toBe(false);
      await expect(cancelJob(jobId, deps)).rejects.toMatchObject({ code: 'CONFLICT' });

      await redriveJob(jobId, deps);
      const redriven = await waitFor(own, jobId, ended);
      expect(redriven).toMatchObject({ status: 'SUCCEEDED', records: 6, redrives: 1 });
      expect(perChunk).toEqual([1, 1, 1, 1, 1, 1]); // nothing ran twice
      await expect(redriveJob(jobId, deps)).rejects.toMatchObject({ code: 'CONFLICT' });
    } finally {
      await own.close();
    }
  });

  it("cancels during a keyed job's reduce stage: no new partition, CANCELLED, no result; redrive finishes it", async () => {
    const started = new Map<number, number>();
    const own: LocalRuntime = await startRuntime({
      registry: { module: keyedRegistry, jobs: keyedJobs },
      functionEnv: { coordinator: { FANOUT_STATUS_INTERVAL_MS: '60000' } },
      onInvoke: (name, event) => {
        const task = event as { kind?: string; index: number };
        if (name !== own.functions.worker || task.kind !== 'partition') return;
        started.set(task.index, (started.get(task.index) ?? 0) + 1);
      },
    });
    try {
      const deps = submitDeps(own);
      const count = () => [...started.values()].reduce((a, b) => a + b, 0);
      // Six partitions, two at a time, each finishing its keys for ~1 s: the cancel lands while
      // the first two run.
      const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
      const text = `${keys.map((k) => JSON.stringify({ k })).join('\n')}\n`;
      const { jobId } = await submit(own, text, {
        job: 'slow-keyed',
        params: { finishMs: 100 },
        partitions: 6,
        chunks: 3,
      });
      for (let i = 0; i < 2000 && count() < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(count()).toBe(2);
      await cancelJob(jobId, deps);
      const cancelled = await waitFor(own, jobId, ended);
      expect(cancelled).toMatchObject({
        status: 'CANCELLED',
        chunks: { succeeded: 3 },
        partitions: { total: 6, succeeded: 2, running: 0 },
      });
      expect(count()).toBe(2); // no partition started after the cancel was acknowledged
      expect(await exists(own, jobKeys(jobId).result(false))).toBe(false);

      await redriveJob(jobId, deps);
      const redriven = await waitFor(own, jobId, ended);
      expect(redriven).toMatchObject({ status: 'SUCCEEDED', partitions: { succeeded: 6 } });
      expect([...started.values()]).toEqual([1, 1, 1, 1, 1, 1]); // each partition ran once
      const result = JSON.parse(
        new TextDecoder().decode(
          (await own.store.getBytes(own.bucket, jobKeys(jobId).result(false))).body,
        ),
      );
      expect(result).toEqual(Object.fromEntries([...keys].sort().map((k) => [k, 1])));
    } finally {
      await own.close();
    }
  }, 60_000);

  it('refuses to redrive when a pinned input changed', async () => {
    const deps = submitDeps(runtime);
    const { jobId, key } = await submit(runtime, dataset(8, [3]), { job: 'scientists', chunks: 8 });
    expect((await waitFor(runtime, jobId, ended)).status).toBe('FAILED');
    await runtime.store.put(runtime.bucket, key, dataset(8));
    await expect(redriveJob(jobId, deps)).rejects.toMatchObject({ code: 'DATASET_CHANGED' });
  });

  it('fails a run that nothing will finish instead of waiting forever', async () => {
    // A job whose coordinator never runs: its status stays QUEUED and no function is busy.
    const jobId = 'zzzzstalled00001';
    await writeJson(runtime.store, runtime.bucket, jobKeys(jobId).status, {
      jobId,
      job: 'scientists',
      status: 'QUEUED',
      input: 's3://fanout-local/datasets/x',
      createdAt: new Date().toISOString(),
      chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
      records: 0,
      bytes: 0,
    });
    const started = Date.now();
    await expect(
      followJob(runtime, jobId, { pollMs: 20, stallMs: 300, stderr: quiet, label: 'stalled' }),
    ).rejects.toMatchObject({
      code: 'JOB_FAILED',
      message: expect.stringMatching(/stalled: it is QUEUED/),
    });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('never loses an update between concurrent status writers', async () => {
    const key = jobKeys('zzzzconcurrent01').status;
    await writeJson(runtime.store, runtime.bucket, key, { jobId: 'zzzzconcurrent01', records: 0 });
    await Promise.all(
      Array.from({ length: 20 }, () =>
        updateStatus(runtime.store, runtime.bucket, 'zzzzconcurrent01', (s) => ({
          ...s,
          records: s.records + 1,
        })),
      ),
    );
    expect((await readStatus(runtime.store, runtime.bucket, 'zzzzconcurrent01')).records).toBe(20);
  });
});

describe('long jobs', () => {
  it('continue across coordinator invocations when the coordinator times out in a few seconds', async () => {
    const runtime = await startRuntime({ coordinatorTimeoutSeconds: 4, workerTimeoutSeconds: 1 });
    try {
      const file = join(dir, 'long.jsonl');
      await writeFile(file, dataset(14));
      const result = await runJob(runtime, {
        job: 'scientists',
        input: file,
        params: { sleepMs: 500 },
        chunks: 14,
        concurrency: 2,
        stderr: quiet,
      });
      expect(result.status.continuations).toBeGreaterThanOrEqual(2);
      expect(
        result
          .resultText!.trim()
          .split('\n')
          .map((l) => JSON.parse(l).name),
      ).toEqual(Array.from({ length: 14 }, (_, i) => `s${i}`));
      expect(runtime.lambda.stats(runtime.functions.coordinator).timeouts).toBe(0);
    } finally {
      await runtime.close();
    }
  }, 120_000);
});

describe('stragglers', () => {
  let runtime: LocalRuntime;
  let file: string;
  let clean: string;
  beforeAll(async () => {
    file = join(dir, 'stragglers.jsonl');
    await generate({ records: 200_000, out: file, seed: 5 });
    runtime = await startRuntime({
      chaos: { spec: parseChaos('worker-slow=0.05'), seed: 11 },
    });
    clean = JSON.stringify((await byFieldSinglePass(file)).result);
  }, 60_000);
  afterAll(() => runtime?.close());

  it('backs up stalled chunks: the exact result, backups recorded in the manifest', async () => {
    const result = await runJob(runtime, {
      job: 'by-field',
      input: file,
      chunks: 40,
      stderr: quiet,
    });
    expect(result.resultText).toBe(clean);
    const manifest = await manifestOf(runtime, result.jobId);
    const backedUp = manifest.chunks.filter((c) => (c.backups ?? 0) > 0);
    expect(backedUp.length).toBeGreaterThan(0);
    expect(backedUp.some((c) => c.backupWon === true)).toBe(true);
    // The stalled originals lost, still running when the coordinator stopped: the report draws
    // them from the manifest.
    const lost = backedUp.flatMap((c) => c.lost ?? []);
    expect(lost.some((l) => l.endedAt === undefined && l.backup !== true)).toBe(true);
    // Without backups each stalled chunk would hold the job 10 s; the bound sits far from both.
    expect(result.durationMs).toBeLessThan(9_000);
  });

  it('counts exactly one part when a backup and its original both finish', async () => {
    // Its own runtime: with this seed exactly one of the first ten worker invocations stalls
    // (the draws follow invocation order, whichever chunk gets them), and the backup does not.
    const own = await startRuntime({ chaos: { spec: parseChaos('worker-slow=0.15'), seed: 7 } });
    try {
      await bothFinish(own);
    } finally {
      await own.close();
    }
  }, 60_000);

  const bothFinish = async (runtime: LocalRuntime) => {
    const out = join(dir, 'stragglers.out.jsonl');
    const result = await runJob(runtime, {
      job: 'scientists',
      input: file,
      chunks: 10, // outputs above 256K characters: each chunk writes a part
      output: out,
      stderr: quiet,
    });
    const manifest = await manifestOf(runtime, result.jobId);
    const backedUp = manifest.chunks.filter((c) => (c.backups ?? 0) > 0);
    expect(backedUp.length).toBeGreaterThan(0);
    // Let the stalled originals finish (they stall 10 s), lose the outcome and remove their part:
    // until no worker runs. (Counting parts alone would pass at once: a loser writes its part
    // only after its stall.)
    await until(() => runtime.lambda.stats(runtime.functions.worker).busy === 0, 30_000);
    const parts = (await runtime.store.list(runtime.bucket, `${jobKeys(result.jobId).root}/parts/`))
      .map((o) => o.key)
      .sort();
    expect(parts).toHaveLength(10); // one per chunk: the losers' parts are gone
    const expected = await scientistsOutput(file);
    expect((await readFile(out, 'utf8')).trim().split('\n')).toEqual(expected);
  };

  /**
   * The first test's stalls (same spec and seed) with speculation off: the exact result, no
   * backup, and a job that waited for a stall's 10 s.
   */
  const runWithoutBackups = async (own: LocalRuntime, speculation?: false) => {
    try {
      const result = await runJob(own, {
        job: 'by-field',
        input: file,
        chunks: 40,
        ...(speculation === false && { speculation }),
        stderr: quiet,
      });
      expect(result.resultText).toBe(clean);
      expect(result.durationMs).toBeGreaterThanOrEqual(10_000); // a stall ran its 10 s
      const manifest = await manifestOf(own, result.jobId);
      expect(manifest.chunks.filter((c) => (c.backups ?? 0) > 0)).toEqual([]);
    } finally {
      await own.close();
    }
  };
  const slowRuntime = () =>
    startRuntime({ chaos: { spec: parseChaos('worker-slow=0.05'), seed: 11 } });

  it('starts no backup with speculation off, for the runtime (FANOUT_SPECULATION*, as the FanoutService prop sets it) or for the job, and then waits for the stalled chunks', async () => {
    // Off for the whole runtime: the job does not ask, and still gets no backup.
    process.env.FANOUT_SPECULATION = 'off';
    const offForAll = await slowRuntime().finally(() => {
      delete process.env.FANOUT_SPECULATION;
    });
    const offForJob = await slowRuntime();
    // Side by side: each waits out its own stalls, which is most of its time.
    await Promise.all([runWithoutBackups(offForAll), runWithoutBackups(offForJob, false)]);
  }, 90_000);
});
