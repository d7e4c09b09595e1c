/**
 * Benchmark 2, the lesson and the fixed cost of a run:
 *
 * - the tiny job: `node cli/bin.mjs run by-field examples/scientists.jsonl`, five runs, median
 *   wall time and peak RSS — what every run pays around its job (CLI start, local runtime,
 *   sandboxes, exit);
 * - the lesson demo: the seven scientists with `sleepMs: 1000` on fanout against Python's
 *   ProcessPoolExecutor.map with `time.sleep(1)` per record, in the same run.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { medianOf } from '#core/run/speculation.ts';
import { measured, ms, type Report, root, runIfMain } from './report.ts';

const exec = promisify(execFile);
const bin = join(root, 'cli/bin.mjs');
const input = join(root, 'examples/scientists.jsonl');

/** One `fanout run … --json`: wall time, peak RSS and its summary. */
async function once(args: string[]) {
  const run = await measured(process.execPath, [bin, 'run', ...args, '--json']);
  if (run.code !== 0) throw new Error(`fanout run ${args.join(' ')} exited ${run.code}`);
  const summary = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
    durationMs: number;
    chunks: number;
  };
  return { ...run, summary };
}

/** Runs the benchmark. */
export async function run(tinyRuns = 5, lessonRuns = 3): Promise<Report> {
  // The first run may build bundles; it is not counted.
  await once(['by-field', input]);
  const tiny: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < tinyRuns; i++) tiny.push(await once(['by-field', input]));
  const lesson: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < lessonRuns; i++) {
    lesson.push(await once(['scientists', input, '--params', '{"sleepMs":1000}']));
  }
  const jobTimes = lesson.map((r) => ms(r.summary.durationMs));
  let python: number | string;
  try {
    const out = await exec('python3', [join(root, 'bench/pool.py'), 'lesson', input]);
    python = (JSON.parse(out.stdout) as { seconds: number }).seconds * 1000;
  } catch (error) {
    python = `python3 unavailable or failed: ${(error as Error).message.split('\n')[0]}`;
  }
  const tinyWall = medianOf(tiny.map((r) => r.wallMs));
  const tinyRss = medianOf(tiny.map((r) => r.peakRssMb));
  const lessonJob = medianOf(jobTimes);
  return {
    name: 'lesson',
    title: '2. The tiny job, and the lesson demo (seven scientists, one second of sleep each)',
    columns: ['run', 'ms', 'peak RSS MB'],
    rows: [
      [
        `tiny job: fanout run by-field, end to end, median of ${tinyRuns}`,
        ms(tinyWall),
        ms(tinyRss),
      ],
      [
        'tiny job: each run',
        tiny.map((r) => ms(r.wallMs)).join(', '),
        tiny.map((r) => ms(r.peakRssMb)).join(', '),
      ],
      [`lesson: fanout job time, median of ${lessonRuns}`, lessonJob, ''],
      [`lesson: fanout job times of the ${lessonRuns} runs`, jobTimes.join(', '), ''],
      [
        'lesson: fanout run, end to end, median',
        ms(medianOf(lesson.map((r) => r.wallMs))),
        ms(medianOf(lesson.map((r) => r.peakRssMb))),
      ],
      ...(typeof python === 'number'
        ? [['lesson: Python ProcessPoolExecutor.map', ms(python), '']]
        : []),
    ],
    figures: {
      'tiny job median wall ms (target ≤ 1200)': ms(tinyWall),
      'tiny job median peak RSS MB (target ≤ 300)': ms(tinyRss),
      'lesson job time ms, median (target ≤ 1300)': lessonJob,
      chunks: lesson[0]?.summary.chunks ?? 0,
      ...(typeof python === 'number'
        ? { 'Python pool vs fanout job time': Number((python / lessonJob).toFixed(2)) }
        : { Python: python }),
    },
    notes: [
      'peak RSS: the largest sum of the resident sets of the fanout process and its sandboxes (child processes), sampled every 100 ms',
    ],
  };
}

await runIfMain(import.meta.url, run);
