/**
 * Benchmark 9, many jobs at once: N by-field jobs submitted together to one local runtime (its
 * worker function has 8 sandboxes, so the jobs want more workers than it allows). Reports jobs
 * per second, and the p50 and maximum time from submission to SUCCEEDED: how evenly the jobs
 * share the workers (one waiting behind another's whole queue would show as a long maximum).
 * Every result is checked against a single pass.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readStatus } from '#core/model/status.ts';
import { submitJob } from '#core/run/submit.ts';
import { startRuntime, submitDeps } from '#local/runtime.ts';
import { byFieldSinglePass } from './baseline.ts';
import { generate } from './gen.ts';
import { dataDir, ms, type Report, runIfMain } from './report.ts';

const JOBS = Number(process.env.BENCH_LOAD_JOBS ?? 24);
const RECORDS = 50_000;

/** The p-th percentile (0..1) of ascending values. */
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;

export async function run(): Promise<Report> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, `scientists-${RECORDS}.jsonl`);
  if (!existsSync(file)) await generate({ records: RECORDS, out: file, seed: 9 });
  const expected = JSON.stringify((await byFieldSinglePass(file)).result);
  const runtime = await startRuntime();
  try {
    const key = 'datasets/load.jsonl';
    await runtime.store.put(runtime.bucket, key, await readFile(file));
    const input = `s3://${runtime.bucket}/${key}`;
    const deps = submitDeps(runtime);
    await runtime.lambda.prewarm(runtime.functions.worker, 8);
    const started = performance.now();
    const jobs = await Promise.all(
      Array.from({ length: JOBS }, () =>
        submitJob({ job: 'by-field', input, chunks: 8, concurrency: 8 }, deps),
      ),
    );
    // Each job's time: from submission to the status saying it ended, polled every 50 ms.
    const finished = await Promise.all(
      jobs.map(async ({ jobId }) => {
        for (;;) {
          const status = await readStatus(runtime.store, runtime.bucket, jobId);
          if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(status.status)) {
            return { status, ms: performance.now() - started };
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }),
    );
    const wallMs = performance.now() - started;
    let exact = 0;
    for (const { status } of finished) {
      if (status.status !== 'SUCCEEDED' || status.result === undefined) continue;
      const body = await runtime.store.getBytes(runtime.bucket, status.result.key);
      if (new TextDecoder().decode(body.body) === expected) exact += 1;
    }
    const times = finished.map((f) => f.ms).sort((a, b) => a - b);
    return {
      name: 'load',
      title: `9. Many jobs at once: ${JOBS} by-field jobs on ${RECORDS.toLocaleString('en')} records each, one local runtime (8 worker sandboxes)`,
      columns: ['measure', 'value'],
      rows: [
        ['jobs', JOBS],
        [
          'succeeded, exact',
          `${finished.filter((f) => f.status.status === 'SUCCEEDED').length}, ${exact}`,
        ],
        ['all done (ms)', ms(wallMs)],
        ['jobs per second', (JOBS / (wallMs / 1000)).toFixed(2)],
        ['time to finish, min (ms)', ms(times[0] ?? 0)],
        ['time to finish, p50 (ms)', ms(percentile(times, 0.5))],
        ['time to finish, max (ms)', ms(times.at(-1) ?? 0)],
      ],
      figures: {
        'jobs per second': Number((JOBS / (wallMs / 1000)).toFixed(2)),
        'time to finish p50 (ms)': ms(percentile(times, 0.5)),
        'time to finish max (ms)': ms(times.at(-1) ?? 0),
        'max ÷ p50': Number(((times.at(-1) ?? 0) / percentile(times, 0.5)).toFixed(2)),
        'results exact': `${exact}/${JOBS}`,
      },
      notes: [
        `each job: 8 chunks, concurrency 8; all ${JOBS} submitted at once (submitJob, as the api does), their statuses polled every 50 ms`,
      ],
    };
  } finally {
    await runtime.close();
  }
}

await runIfMain(import.meta.url, run);
