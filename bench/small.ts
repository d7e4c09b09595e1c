/**
 * Benchmark 6, many small objects: `fanout run by-field` over a directory of 2,000 JSONL files of
 * 50 records each, end to end and in job time, against Python's multiprocessing.Pool.map with one
 * task per file, in the same run; then what one chunk costs in requests (S3 requests by kind and
 * Lambda invocations, counted at the local servers) for these files and for one larger file cut
 * into byte ranges; and reruns with a persistent --dir (reuse): unchanged, and after 20 files
 * were rewritten and 20 added, each with its invocations and the share of bytes processed.
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

/**
 * `fanout run by-field INPUT --json ...more`, end to end: wall time, job time, chunks, result,
 * invocations (all functions'), and the input bytes read and mapped.
 */
async function fanoutRun(input: string, ...more: string[]) {
  const started = performance.now();
  const { stdout } = await exec(
    process.execPath,
    [join(root, 'cli/bin.mjs'), 'run', 'by-field', input, '--json', ...more],
    { cwd: root, maxBuffer: 1 << 24 },
  );
  const wall = performance.now() - started;
  const lines = stdout.trim().split('\n');
  const summary = JSON.parse(lines.at(-1)!) as {
    durationMs: number;
    chunks: number;
    bytes: number;
    bytesProcessed?: number;
    cost: { lambdaRequests: number };
  };
  return {
    wall,
    job: summary.durationMs,
    chunks: summary.chunks,
    result: lines[0] ?? '',
    invocations: summary.cost.lambdaRequests,
    processed: (summary.bytesProcessed ?? summary.bytes) / summary.bytes,
  };
}

/**
 * Reruns (issue 18): by-field on a copy of the files with a persistent --dir, kept from cold,
 * rerun unchanged, then after 20 files rewritten and 20 added; each with its invocations.
 */
async function reruns(dir: string) {
  const copy = join(dataDir, `small-rerun-${process.pid}`);
  const s3 = join(dataDir, `small-rerun-s3-${process.pid}`);
  await rm(copy, { recursive: true, force: true });
  await exec('cp', ['-r', dir, copy]);
  try {
    const cold = await fanoutRun(copy, '--dir', s3);
    const unchanged = await fanoutRun(copy, '--dir', s3);
    const names = (await readdir(copy)).filter((f) => f.endsWith('.jsonl')).sort();
    const random = prng(5);
    for (let i = 0; i < 20; i++) {
      const name = names[Math.floor((i * names.length) / 20)] as string;
      await writeFile(join(copy, name), scientistLine(random).repeat(RECORDS_PER_FILE));
      await writeFile(
        join(copy, `zz-new-${i}.jsonl`),
        scientistLine(random).repeat(RECORDS_PER_FILE),
      );
    }
    const changed = await fanoutRun(copy, '--dir', s3);
    const exact = await fanoutRun(copy, '--dir', s3, '--no-reuse');
    return { cold, unchanged, changed, same: changed.result === exact.result };
  } finally {
    await rm(copy, { recursive: true, force: true });
    await rm(s3, { recursive: true, force: true });
  }
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
      // What one job costs when it keeps nothing for later ones (the reruns above do).
      {
        job: 'by-field',
        input: uri,
        concurrency: availableParallelism(),
        reuse: false,
        ...options,
      },
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
  const again = await reruns(dir);
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
      ['with --dir (reuse): wall ms / job ms', 'invocations', 'bytes processed'],
      ...(
        [
          ['cold, keeping every piece', again.cold],
          ['rerun, unchanged', again.unchanged],
          ['rerun, 20 files rewritten and 20 added', again.changed],
        ] as const
      ).map(([what, r]) => [
        `${what}: ${ms(r.wall)} / ${ms(r.job)}`,
        r.invocations,
        `${(r.processed * 100).toFixed(1)}%`,
      ]),
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
      'rerun unchanged: invocations (coordinator and reducer only: 2)': again.unchanged.invocations,
      'rerun unchanged vs cold without reuse, wall': Number(
        (again.unchanged.wall / fan.wall).toFixed(2),
      ),
      'rerun after changes matches --no-reuse': again.same,
    },
    notes: [
      'requests per chunk: everything one job sent to the local servers (submission, planning, status writes, the reducer; no client polling its status) divided by its chunks, so fixed costs are spread over them',
    ],
  };
}

await runIfMain(import.meta.url, run);
