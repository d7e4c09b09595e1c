/**
 * Benchmark 8, the keyed shuffle: by-field (a keyed job) on 2,000,000 records whose field is
 * drawn from 1,000,000 values (about 865,000 distinct), against a single-thread Node loop with
 * one Map in the same run: job time, whole run, peak RSS of the whole local run, and an exact
 * comparison of the results (docs/SHUFFLE.md).
 */
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { byFieldSinglePass } from './baseline.ts';
import { generate } from './gen.ts';
import { dataDir, measured, ms, type Report, root, runIfMain } from './report.ts';

const RECORDS = 2_000_000;
const KEYS = 1_000_000;

/** One `fanout run by-field FILE --json`: its job time, wall time, peak RSS and result. */
async function fanout(file: string) {
  const run = await measured(process.execPath, [
    join(root, 'cli/bin.mjs'),
    'run',
    'by-field',
    file,
    '--json',
  ]);
  if (run.code !== 0) throw new Error(`fanout run by-field exited ${run.code}`);
  const lines = run.stdout.trim().split('\n');
  const summary = JSON.parse(lines.at(-1)!) as { durationMs: number; chunks: number };
  return { ...run, summary, result: lines.slice(0, -1).join('\n') };
}

export async function run(): Promise<Report> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, `scientists-${RECORDS}-k${KEYS}.jsonl`);
  if (!existsSync(file)) await generate({ records: RECORDS, out: file, seed: 42, keys: KEYS });
  const mb = (await stat(file)).size / 1e6;
  const started = performance.now();
  const loop = await byFieldSinglePass(file);
  const loopMs = performance.now() - started;
  const fan = await fanout(file);
  const distinct = Object.keys(loop.result).length;
  return {
    name: 'shuffle',
    title: `8. Keyed shuffle: by-field on ${RECORDS.toLocaleString('en')} records with ${distinct.toLocaleString('en')} distinct fields (${mb.toFixed(1)} MB)`,
    columns: ['run', 'ms', 'peak RSS MB'],
    rows: [
      ['single-thread Node loop (one Map)', ms(loopMs), ''],
      ['fanout run by-field: job time', fan.summary.durationMs, ''],
      ['fanout run by-field: end to end', ms(fan.wallMs), ms(fan.peakRssMb)],
    ],
    figures: {
      'job time ÷ Node loop (target ≤ 0.8)': Number((fan.summary.durationMs / loopMs).toFixed(2)),
      'peak RSS MB of the whole local run (target ≤ 800)': ms(fan.peakRssMb),
      'result matches the single pass': fan.result === JSON.stringify(loop.result),
      chunks: fan.summary.chunks,
    },
    notes: [
      'fields drawn uniformly from 1,000,000 values (npm run gen -- --keys 1000000)',
      'peak RSS: the largest sum of the resident sets of the fanout process and its sandboxes (child processes), sampled every 10 ms',
    ],
  };
}

await runIfMain(import.meta.url, run);
