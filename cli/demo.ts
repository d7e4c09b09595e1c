/**
 * `fanout demo` (`npm start`): the lesson, end to end on the embedded local runtime. Runs
 * `by-field` (a reduce) and `scientists` (a map whose every record sleeps one second) on the
 * seven scientists, and shows that the seven seconds of sleeping take about a second of job
 * time, because the pool is as wide as the data.
 */
import { join } from 'node:path';
import { repoRoot } from '#local/paths.ts';
import { startRuntime } from '#local/runtime.ts';
import { runJob } from './run.ts';

/** Usage of `fanout demo`. */
export const DEMO_HELP = `Usage: fanout demo

Runs the lesson on the embedded local runtime: by-field and scientists (one second of sleep per
record) on examples/scientists.jsonl, and prints both results and their job times.
`;

/** Runs the demo; returns the exit code. The caller exits the process next. */
export async function demoCommand(): Promise<number> {
  const input = join(repoRoot, 'examples/scientists.jsonl');
  const started = performance.now();
  const runtime = await startRuntime({ note: (text) => process.stderr.write(`fanout: ${text}\n`) });
  const ready = performance.now() - started;
  try {
    // The seven one-second records should overlap their cold starts with the first job, as
    // provisioned concurrency would on AWS.
    const warming = runtime.lambda.prewarm(runtime.functions.worker, 7).catch(() => undefined);
    process.stdout.write(`fanout local runtime ready in ${ready.toFixed(0)} ms\n\n`);

    // Each command's line comes first, then its progress (stderr) and its result (stdout).
    process.stdout.write('$ fanout run by-field examples/scientists.jsonl\n');
    const byField = await runJob(runtime, { job: 'by-field', input });
    process.stdout.write(`${byField.resultText}\n`);
    process.stdout.write(
      `(${byField.status.chunks.total} chunks, job time ${byField.durationMs} ms)\n\n`,
    );

    await warming;
    process.stdout.write(
      `$ fanout run scientists examples/scientists.jsonl --params '{"sleepMs":1000}'\n`,
    );
    const sleepy = await runJob(runtime, { job: 'scientists', input, params: { sleepMs: 1000 } });
    process.stdout.write(sleepy.resultText ?? '');
    process.stdout.write(
      `(${sleepy.status.records} records sleeping 1 s each, ${sleepy.status.chunks.total} chunks: job time ${sleepy.durationMs} ms)\n`,
    );
    return 0;
  } finally {
    await runtime.close({ exiting: true });
  }
}
