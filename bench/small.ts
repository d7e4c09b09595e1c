/**
 * Benchmark 6, many small objects: `fanout run by-field` over a directory of 2,000 JSONL files of
 * 50 records each, end to end and in job time, against Python's multiprocessing.Pool.map with one
 * task per file, in the same run; then what one chunk costs in requests (S3 requests by kind and
 * Lambda invocations, counted at the local servers) for these files and for one larger file cut
 * into byte ranges.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Manifest } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { readJson, readStatus } from '#core/model/status.ts';
import { submitJob } from '#core/run/submit.ts';
import { startRuntime, submitDeps } from '#local/runtime.ts';
import type { S3Requests } from '#local/s3/server.ts';
import { byFieldSinglePass } from './baseline.ts';
import { generate, prng, scientistLine } from './gen.ts';
import { dataDir, ms, type Report, rate, root, runIfMain } from './report.ts';

const exec = promisify(execFile);
const FILES = Number(process.env.BENCH_SMALL_FILES ?? 2000);
const RECORDS_PER_FILE = 50;

/** The directory of small files, generated once (deterministically) and reused. */
async function smallFiles(): Promise<string> {
  const dir = join(dataDir, `small-${FILES}x${RECORDS_PER_FILE}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  const building = `${dir}.${process.pid}`;
  await mkdir(building, { recursive: true });
  const random = prng(11);
  for (let f = 0; f < FILES; f++) {
    let text = '';
    for (let r = 0; r < RECORDS_PER_FILE; r++) text += scientistLine(random);
    await writeFile(join(building, `part-${String(f).padStart(5, '0')}.jsonl`), text);
  }
  await writeFile(join(building, '.complete'), '');
  await rm(dir, { recursive: true, force: true });
  await rename(building, dir);
  return dir;
}

/** `fanout run by-field INPUT --json`, end to end: wall time, job time, chunks, result. */
async function fanoutRun(input: string) {
  const started = performance.now();
  const { stdout } = await exec(
    process.execPath,
    [join(root, 'cli/bin.mjs'), 'run', 'by-field', input, '--json'],
    { cwd: root, maxBuffer: 1 << 24 },
  );
  const wall = performance.now() - started;
  const lines = stdout.trim().split('\n');
  const summary = JSON.parse(lines.at(-1)!) as { durationMs: number; chunks: number };
  return { wall, job: summary.durationMs, chunks: summary.chunks, result: lines[0] ?? '' };
}

async function python(dir: string): Promise<{ seconds: number; result: unknown } | string> {
  try {
    const { stdout } = await exec('python3', [join(root, 'bench/pool.py'), 'by-field-files', dir], {
      maxBuffer: 1 << 24,
    });
    return JSON.parse(stdout) as { seconds: number; result: unknown };
  } catch (error) {
    return `python3 unavailable or failed: ${(error as Error).message.split('\n')[0]}`;
  }
}

/**
 * Per chunk: S3 requests by kind and invocations, counted at the local servers for one job
 * submitted directly (no status polling by a client, which would count as the job's).
 */
async function requestBudget(input: string, options: { chunks?: number } = {}) {
  const runtime = await startRuntime();
  try {
    const invocations = () =>
      Object.values(runtime.functions).reduce(
        (n, name) => n + runtime.lambda.stats(name).invocations,
        0,
      );
    const uri = input.startsWith('s3://')
      ? input
      : input.endsWith('.jsonl')
        ? `s3://${await runtime.s3.mount(dirname(input))}/${basename(input)}`
        : `s3://${await runtime.s3.mount(input)}/`;
    const s3Before = runtime.s3.requests();
    const invokedBefore = invocations();
    const { jobId } = await submitJob(
      { job: 'by-field', input: uri, concurrency: availableParallelism(), ...options },
      submitDeps(runtime),
    );
    // The coordinator's invocation ends when the job has: wait for the functions to go idle.
    const busy = () =>
      Object.values(runtime.functions).some((name) => {
        const stats = runtime.lambda.stats(name);
        return stats.busy > 0 || stats.queued > 0;
      });
    do await new Promise((r) => setTimeout(r, 200));
    while (busy());
    const s3After = runtime.s3.requests();
    const invokedAfter = invocations();
    const status = await readStatus(runtime.store, runtime.bucket, jobId);
    const { value: manifest } = await readJson<Manifest>(
      runtime.store,
      runtime.bucket,
      jobKeys(jobId).manifest,
    );
    if (status.status !== 'SUCCEEDED') throw new Error(`job ${jobId} ended ${status.status}`);
    const chunks = status.chunks.total;
    const per = (k: keyof S3Requests) => (s3After[k] - s3Before[k]) / chunks;
    const durations = manifest.chunks.map((c) => c.durationMs ?? 0);
    return {
      chunks,
      objects: manifest.objects.length,
      get: per('get'),
      put: per('put'),
      head: per('head'),
      list: per('list'),
      invocations: (invokedAfter - invokedBefore) / chunks,
      chunkMs: durations.reduce((a, b) => a + b, 0) / chunks,
    };
  } finally {
    await runtime.close();
  }
}

/** Runs the benchmark. */
export async function run(): Promise<Report> {
  const dir = await smallFiles();
  const files = (await readdir(dir))
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .map((f) => join(dir, f));
  const expected = await byFieldSinglePass(files);
  const fan = await fanoutRun(dir);
  const py = await python(dir);
  const same = JSON.stringify(JSON.parse(fan.result)) === JSON.stringify(expected.result);

  const big = join(dataDir, 'scientists-250000.jsonl');
  if (!existsSync(big)) await generate({ records: 250_000, out: big, seed: 42 });
  const budgets = [
    { name: `${rate(FILES)} small files`, ...(await requestBudget(dir)) },
    { name: 'one 19 MB file, 8 chunks', ...(await requestBudget(big, { chunks: 8 })) },
  ];
  const f2 = (n: number) => n.toFixed(2);
  return {
    name: 'small',
    title: `6. Many small objects: by-field over ${rate(FILES)} files of ${RECORDS_PER_FILE} records (${rate(expected.records)} records)`,
    columns: ['run', 'ms', 'chunks'],
    rows: [
      ['fanout run, end to end (CLI start to result)', ms(fan.wall), fan.chunks],
      ['fanout job time', ms(fan.job), fan.chunks],
      ...(typeof py === 'string'
        ? []
        : [['Python multiprocessing.Pool.map, a task per file', ms(py.seconds * 1000), FILES]]),
      [],
      ['requests per chunk (local servers)', 'S3 GET / PUT / HEAD / LIST', 'invocations'],
      ...budgets.map((b) => [
        `${b.name}: ${b.chunks} chunks, ${rate(b.objects)} objects, ${ms(b.chunkMs)} ms a chunk`,
        `${f2(b.get)} / ${f2(b.put)} / ${f2(b.head)} / ${f2(b.list)}`,
        f2(b.invocations),
      ]),
    ],
    figures: {
      'chunks (target ≤ 64)': fan.chunks,
      'job time ms (target ≤ 1500)': ms(fan.job),
      'end to end ms (target ≤ 4000)': ms(fan.wall),
      ...(typeof py === 'string'
        ? { 'Python Pool': py }
        : {
            'Python Pool vs fanout job time': Number(((py.seconds * 1000) / fan.job).toFixed(2)),
            'Python Pool vs fanout end to end': Number(((py.seconds * 1000) / fan.wall).toFixed(2)),
            'Python result matches': JSON.stringify(py.result) === JSON.stringify(expected.result),
          }),
      'fanout result matches': same,
    },
    notes: [
      'requests per chunk: everything one job sent to the local servers (submission, planning, status writes, the reducer; no client polling its status) divided by its chunks, so fixed costs are spread over them',
    ],
  };
}

await runIfMain(import.meta.url, run);
