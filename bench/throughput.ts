/**
 * Benchmark 1, throughput: `fanout run by-field` end to end on a generated 2,000,000-record file
 * against, in the same run, a single-thread Node loop, Python's multiprocessing.Pool.map over
 * byte-range chunks (skipped with a message when python3 is absent) and faast.js in local mode
 * (bench/faast/: its tuned setup paired with fanout run by run, and its TypeScript setup once);
 * and `fanout run wordcount` on a generated text file against a single-thread loop.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { medianOf } from '#core/run/speculation.ts';
import { byFieldSinglePass, wordcountSinglePass } from './baseline.ts';
import { generate } from './gen.ts';
import { dataDir, ms, type Report, rate, root, runIfMain } from './report.ts';

const exec = promisify(execFile);
/** Pairs of fanout and tuned faast.js runs, end to end. */
const PAIRS = Number(process.env.BENCH_PAIRS ?? 3);

async function dataset(kind: 'scientists' | 'text', records: number): Promise<string> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, `${kind}-${records}.${kind === 'text' ? 'txt' : 'jsonl'}`);
  if (!existsSync(file)) await generate({ records, out: file, seed: 42, kind });
  return file;
}

/**
 * The same records as a Parquet file (cached beside the JSONL one): name, field, born (INT32),
 * nobel, in row groups of 100,000 rows, Snappy-compressed (hyparquet-writer's default).
 */
async function parquetOf(jsonl: string): Promise<string> {
  const file = jsonl.replace(/\.jsonl$/, '.parquet');
  if (existsSync(file)) return file;
  const name: string[] = [];
  const field: string[] = [];
  const born: number[] = [];
  const nobel: boolean[] = [];
  for (const line of (await readFile(jsonl, 'utf8')).split('\n')) {
    if (line === '') continue;
    const r = JSON.parse(line) as { name: string; field: string; born: number; nobel: boolean };
    name.push(r.name);
    field.push(r.field);
    born.push(r.born);
    nobel.push(r.nobel);
  }
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: 'name', data: name, type: 'STRING' },
      { name: 'field', data: field, type: 'STRING' },
      { name: 'born', data: born, type: 'INT32' },
      { name: 'nobel', data: nobel, type: 'BOOLEAN' },
    ],
    rowGroupSize: 100_000,
  });
  await writeFile(file, new Uint8Array(buffer));
  return file;
}

/** Runs `fanout run … --json`; returns wall time, job time and the result text. */
async function fanout(job: string, file: string) {
  const started = performance.now();
  const { stdout } = await exec(
    process.execPath,
    [join(root, 'cli/bin.mjs'), 'run', job, file, '--json'],
    {
      cwd: root,
      maxBuffer: 1 << 26,
    },
  );
  const wall = performance.now() - started;
  const lines = stdout.trim().split('\n');
  const summary = JSON.parse(lines.at(-1)!) as { durationMs: number; chunks: number };
  return {
    wall,
    job: summary.durationMs,
    chunks: summary.chunks,
    result: lines.slice(0, -1).join('\n'),
  };
}

/**
 * by-field with faast.js in local mode, the TypeScript peer, timed from spawn to exit as
 * `fanout run` is. `tuned`: its best setup (bench/faast/run.mjs): plain `node`, a plain
 * JavaScript function module (by-field.ts with its types stripped ahead of time, here), and
 * `cleanup({ gcTimeout: 0 })` then exit. Otherwise the TypeScript setup (run.ts under tsx, the
 * module packed through an esbuild loader), reported beside it.
 */
async function faastjs(file: string, chunks: number, tuned: boolean) {
  const args = ['--chunks', String(chunks)];
  const module = tuned ? await faastModule() : '';
  const started = performance.now();
  try {
    const { stdout } = tuned
      ? await exec(process.execPath, [join(root, 'bench/faast/run.mjs'), module, file, ...args], {
          cwd: root,
          maxBuffer: 1 << 24,
        })
      : // Its children inherit the tsx loader: tsx's own executable (an absolute loader path).
        await exec(
          join(root, 'node_modules/.bin/tsx'),
          [join(root, 'bench/faast/run.ts'), file, ...args],
          { cwd: root, maxBuffer: 1 << 24 },
        );
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { result: unknown };
    return { wall: performance.now() - started, result: out.result };
  } catch (error) {
    return `faast.js failed: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** bench/faast/by-field.ts as plain JavaScript (types stripped by esbuild), for the tuned run. */
async function faastModule(): Promise<string> {
  const out = join(dataDir, 'faast/by-field.mjs');
  const { transform } = await import('esbuild');
  const source = await readFile(join(root, 'bench/faast/by-field.ts'), 'utf8');
  const { code } = await transform(source, { loader: 'ts', format: 'esm', target: 'node20' });
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, code);
  return out;
}

async function python(file: string): Promise<{ seconds: number; result: unknown } | string> {
  try {
    const { stdout } = await exec('python3', [join(root, 'bench/pool.py'), 'by-field', file], {
      maxBuffer: 1 << 24,
    });
    return JSON.parse(stdout) as { seconds: number; result: unknown };
  } catch (error) {
    return `python3 unavailable or failed: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** Runs the benchmark. */
export async function run(
  records = Number(process.env.BENCH_RECORDS ?? 2_000_000),
): Promise<Report> {
  const file = await dataset('scientists', records);
  const mb = (await stat(file)).size / 1e6;
  // Two rounds of the loop and of fanout, interleaved, each side's faster one kept: on a shared
  // two-core machine a single run of either can be off by 30%.
  let loop: Awaited<ReturnType<typeof byFieldSinglePass>> | undefined;
  let loopMs = Number.POSITIVE_INFINITY;
  let fan: Awaited<ReturnType<typeof fanout>> | undefined;
  for (let round = 0; round < 2; round++) {
    const started = performance.now();
    loop = await byFieldSinglePass(file);
    loopMs = Math.min(loopMs, performance.now() - started);
    const run = await fanout('by-field', file);
    if (fan === undefined || run.job < fan.job) fan = run;
  }
  if (loop === undefined || fan === undefined) throw new Error('no round ran');
  const py = await python(file);
  // fanout and tuned faast.js end to end, in pairs (A B A B …): each pair's ratio is taken in
  // one stretch of the machine's speed.
  const pairs: { fanout: number; faast: number }[] = [];
  let faast: Awaited<ReturnType<typeof faastjs>> = 'faast.js did not run';
  for (let p = 0; p < PAIRS; p++) {
    const f = await fanout('by-field', file);
    faast = await faastjs(file, fan.chunks, true);
    if (typeof faast === 'string') break;
    pairs.push({ fanout: f.wall, faast: faast.wall });
  }
  const faastTs = await faastjs(file, fan.chunks, false);
  const ratios = pairs.map((p) => p.faast / p.fanout);
  const parquet = await parquetOf(file);
  const parquetMb = (await stat(parquet)).size / 1e6;
  const fanParquet = await fanout('by-field', parquet);

  const text = await dataset('text', records / 2);
  const textMb = (await stat(text)).size / 1e6;
  const t = performance.now();
  const words = await wordcountSinglePass(text);
  const wordsLoopMs = performance.now() - t;
  const fanWords = await fanout('wordcount', text);

  const row = (name: string, millis: number, n: number, size: number) => [
    name,
    ms(millis),
    rate(n / (millis / 1000)),
    (size / (millis / 1000)).toFixed(1),
  ];
  const rows = [
    row('by-field: single-thread Node loop', loopMs, records, mb),
    ...(typeof py === 'string'
      ? []
      : [row('by-field: Python multiprocessing.Pool', py.seconds * 1000, records, mb)]),
    ...(pairs.length === 0
      ? []
      : [
          row(
            `by-field: faast.js local, tuned (end to end, median of ${pairs.length})`,
            medianOf(pairs.map((p) => p.faast)),
            records,
            mb,
          ),
          row(
            `by-field: fanout run (end to end, median of ${pairs.length}, paired)`,
            medianOf(pairs.map((p) => p.fanout)),
            records,
            mb,
          ),
        ]),
    ...(typeof faastTs === 'string'
      ? []
      : [
          row('by-field: faast.js local, TypeScript setup (end to end)', faastTs.wall, records, mb),
        ]),
    row('by-field: fanout run (end to end, faster of 2)', fan.wall, records, mb),
    row('by-field: fanout job time', fan.job, records, mb),
    row(
      `by-field: fanout run, Parquet (${parquetMb.toFixed(1)} MB, end to end)`,
      fanParquet.wall,
      records,
      parquetMb,
    ),
    row('by-field: fanout job time, Parquet', fanParquet.job, records, parquetMb),
    row('wordcount: single-thread Node loop', wordsLoopMs, records / 2, textMb),
    row('wordcount: fanout job time', fanWords.job, records / 2, textMb),
  ];
  const same = JSON.stringify(JSON.parse(fan.result)) === JSON.stringify(loop.result);
  const sameWords = JSON.stringify(JSON.parse(fanWords.result)) === JSON.stringify(words);
  return {
    name: 'throughput',
    title: `1. Throughput: by-field on ${rate(records)} records (${mb.toFixed(1)} MB, ${fan.chunks} chunks); wordcount on ${rate(records / 2)} lines (${textMb.toFixed(1)} MB)`,
    columns: ['run', 'ms', 'records/s', 'MB/s'],
    rows,
    figures: {
      'fanout job time vs Node loop': Number((loopMs / fan.job).toFixed(2)),
      'fanout end to end vs Node loop': Number((loopMs / fan.wall).toFixed(2)),
      ...(typeof py === 'string'
        ? { 'Python Pool': py }
        : {
            'fanout job time vs Python Pool': Number(((py.seconds * 1000) / fan.job).toFixed(2)),
            'fanout end to end vs Python Pool (target ≥ 5)': Number(
              ((py.seconds * 1000) / fan.wall).toFixed(2),
            ),
            'Python result matches': JSON.stringify(py.result) === JSON.stringify(loop.result),
          }),
      ...(typeof faast === 'string'
        ? { 'faast.js': faast }
        : {
            'faast.js tuned ÷ fanout, end to end, per pair (target ≥ 1.3 in every one)': ratios
              .map((r) => r.toFixed(2))
              .join(', '),
            'faast.js tuned ÷ fanout, lowest pair': Number(Math.min(...ratios).toFixed(2)),
            'faast.js result matches': JSON.stringify(faast.result) === JSON.stringify(loop.result),
          }),
      ...(typeof faastTs === 'string'
        ? {}
        : {
            'faast.js TypeScript setup ÷ fanout (faster of 2)': Number(
              (faastTs.wall / fan.wall).toFixed(2),
            ),
          }),
      'Parquet job time vs JSONL job time': Number((fan.job / fanParquet.job).toFixed(2)),
      ...(typeof py === 'string'
        ? {}
        : {
            'Parquet end to end vs Python Pool (JSONL)': Number(
              ((py.seconds * 1000) / fanParquet.wall).toFixed(2),
            ),
          }),
      'Parquet result matches':
        JSON.stringify(JSON.parse(fanParquet.result)) === JSON.stringify(loop.result),
      'wordcount job time vs Node loop': Number((wordsLoopMs / fanWords.job).toFixed(2)),
      'by-field results match': same,
      'wordcount results match': sameWords,
    },
    notes: [
      'by-field: the faster of two interleaved rounds of the Node loop and of fanout; Python and wordcount run once',
      '"job time" is submission to the final status; "end to end" adds starting the CLI, the local runtime and its sandboxes, and reading the result (the input is read in place)',
      'Parquet: the same records in row groups of 100,000 (Snappy), read by hyparquet; Python has no Parquet reader here (no pyarrow), so its row is the JSONL one',
      'faast.js local mode: one call per chunk (as many as fanout made), one child process per core, end to end from spawn to exit, as fanout run is timed; tuned: plain node, a plain JavaScript module, cleanup({ gcTimeout: 0 }) and exit; the TypeScript setup (tsx, an esbuild loader in its webpack) is reported beside it',
    ],
  };
}

await runIfMain(import.meta.url, run);
