/**
 * Benchmark 2, the lesson demo: the seven scientists with `sleepMs: 1000` on fanout against
 * Python's ProcessPoolExecutor.map with `time.sleep(1)` per record, in the same run.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ms, type Report, root, runIfMain } from './report.ts';

const exec = promisify(execFile);

/** Runs the benchmark. */
export async function run(): Promise<Report> {
  const input = join(root, 'examples/scientists.jsonl');
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
      ['fanout job time (7 workers at once)', ms(summary.durationMs)],
      ['fanout run, end to end (CLI start, upload, job, result)', ms(wall)],
      ...(typeof python === 'number' ? [['Python ProcessPoolExecutor.map', ms(python)]] : []),
    ],
    figures: {
      'fanout job time ms (target ≤ 1300)': ms(summary.durationMs),
      chunks: summary.chunks,
      ...(typeof python === 'number'
        ? { 'Python pool vs fanout job time': Number((python / summary.durationMs).toFixed(2)) }
        : { Python: python }),
    },
  };
}

await runIfMain(import.meta.url, run);
