/**
 * Benchmark 2, the lesson demo: the seven scientists with `sleepMs: 1000` on fanout against
 * Python's ProcessPoolExecutor.map with `time.sleep(1)` per record, in the same run.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ms, type Report, root, runIfMain } from './report.ts';

const exec = promisify(execFile);

/** One `fanout run` of the demo: its wall time and its summary. */
async function once(input: string) {
  const started = performance.now();
  const { stdout } = await exec(
    process.execPath,
    [
      join(root, 'cli/bin.mjs'),
      'run',
      'scientists',
      input,
      '--params',
      '{"sleepMs":1000}',
      '--json',
    ],
    { cwd: root },
  );
  const wall = performance.now() - started;
  const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
    durationMs: number;
    chunks: number;
  };
  return { wall, summary };
}

/** Runs the benchmark: three runs of the demo, reported by their median job time. */
export async function run(runs = 3): Promise<Report> {
  const input = join(root, 'examples/scientists.jsonl');
  const results: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < runs; i++) results.push(await once(input));
  results.sort((a, b) => a.summary.durationMs - b.summary.durationMs);
  const { wall, summary } = results[Math.floor(results.length / 2)]!;
  const jobTimes = results.map((r) => ms(r.summary.durationMs));
  let python: number | string;
  try {
    const out = await exec('python3', [join(root, 'bench/pool.py'), 'lesson', input]);
    python = (JSON.parse(out.stdout) as { seconds: number }).seconds * 1000;
  } catch (error) {
    python = `python3 unavailable or failed: ${(error as Error).message.split('\n')[0]}`;
  }
  return {
    name: 'lesson',
    title: '2. Lesson demo: seven scientists, one second of sleep each',
    columns: ['run', 'ms'],
    rows: [
      [`fanout job time (7 workers at once), median of ${runs}`, ms(summary.durationMs)],
      [`fanout job times of the ${runs} runs`, jobTimes.join(', ')],
      ['fanout run, end to end (CLI start, upload, job, result)', ms(wall)],
      ...(typeof python === 'number' ? [['Python ProcessPoolExecutor.map', ms(python)]] : []),
    ],
    figures: {
      'fanout job time ms, median (target ≤ 1300)': ms(summary.durationMs),
      'fanout job time ms, fastest': jobTimes[0]!,
      chunks: summary.chunks,
      ...(typeof python === 'number'
        ? { 'Python pool vs fanout job time': Number((python / summary.durationMs).toFixed(2)) }
        : { Python: python }),
    },
  };
}

await runIfMain(import.meta.url, run);
