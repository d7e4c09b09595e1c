/**
 * docs/report.png: a job report rendered by the browser test's code path
 * (test/fixtures/browser.ts). `npm run report:screenshot`; needs Debian's chromium.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseChaos } from '#local/chaos.ts';
import { startRuntime } from '#local/runtime.ts';
import { generate } from '../bench/gen.ts';
import { runJob } from '../cli/run.ts';
import { renderPage } from '../test/fixtures/browser.ts';

const dir = await mkdtemp(join(tmpdir(), 'fanout-shot-'));
const runtime = await startRuntime({
  chaos: { spec: parseChaos('worker-error=0.15,worker-slow=0.05'), seed: 3 },
});
try {
  const input = join(dir, 'people.jsonl');
  await generate({ records: 250_000, out: input, seed: 9 });
  const report = join(dir, 'report.html');
  await runJob(runtime, { job: 'by-field', input, chunks: 24, maxAttempts: 8, report });
  const out = resolve(import.meta.dirname, '../docs/report.png');
  await renderPage(report, out);
  process.stdout.write(`wrote ${out}\n`);
} finally {
  await runtime.close();
  await rm(dir, { recursive: true, force: true });
}
