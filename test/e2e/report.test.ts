/**
 * The job report in a real headless browser (Debian's Chromium through playwright-core): a job
 * with injected worker faults, its report opened from disk with no network, one bar per attempt,
 * the cost present, no console error. Skipped, saying why, where Chromium is not installed.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { readJson } from '#core/model/status.ts';
import { parseChaos } from '#local/chaos.ts';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';
import { generate } from '../../bench/gen.ts';
import { runJob } from '../../cli/run.ts';
import { CHROMIUM, renderPage } from '../fixtures/browser.ts';

const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
let dir: string;
let runtime: LocalRuntime;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-report-'));
  runtime = await startRuntime({
    chaos: { spec: parseChaos('worker-error=0.15'), seed: 3 },
  });
});
afterAll(async () => {
  await runtime?.close();
  await rm(dir, { recursive: true, force: true });
});

if (CHROMIUM === undefined) {
  // Said once, where the run's output shows it; the suite below is then skipped.
  console.warn(
    'report browser test skipped: Chromium is not installed (apt-get install -y chromium)',
  );
}

describe.skipIf(CHROMIUM === undefined)('the job report in Chromium', () => {
  it('shows one bar per attempt and the cost, with no console error and no request', async () => {
    const input = join(dir, 'people.jsonl');
    await generate({ records: 50_000, out: input, seed: 9 });
    const report = join(dir, 'report.html');
    const result = await runJob(runtime, {
      job: 'by-field',
      input,
      chunks: 24,
      // Faults are drawn in invocation order, which timing decides: with 8 attempts a chunk
      // fails for good with odds 0.15^8 (under 1e-6 for the 24), not 0.15^3 (8% for a job).
      maxAttempts: 8,
      report,
      stderr: quiet,
    });
    expect(result.status.status).toBe('SUCCEEDED');
    const manifest = (
      await readJson<Manifest>(runtime.store, runtime.bucket, jobKeys(result.jobId).manifest)
    ).value;
    const failures = manifest.chunks.reduce((n, c) => n + (c.failures?.length ?? 0), 0);
    expect(failures).toBeGreaterThan(0); // the injected faults are on the page too

    const screenshot = join(dir, 'report.png');
    const page = await renderPage(report, screenshot);
    expect(page.consoleErrors).toEqual([]);
    expect(page.requests).toEqual([]); // self-contained: nothing fetched
    expect(page.attempts).toBe(24 + failures);
    expect(page.costText).toContain(`$${result.status.cost?.usd}`);
    expect(page.costText).toMatch(/list prices checked \d{4}-\d{2}-\d{2}/);
    expect(page.title).toBe(`fanout job ${result.jobId}`);
    expect((await stat(screenshot)).size).toBeGreaterThan(10_000);
    expect(await readFile(report, 'utf8')).not.toMatch(/<script|https?:\/\//);
  });
});
