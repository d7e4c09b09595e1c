/**
 * Benchmark 8, the keyed shuffle: by-field (a keyed job) on 2,000,000 records whose field is
 * drawn from 1,000,000 values (about 865,000 distinct), and wordcount (keyed, ranked) on
 * 1,000,000 lines whose words are drawn from 1,000,000 (about 1,000,000 distinct), each against
 * a single-thread Node loop with one Map in the same run: job time, whole run, peak RSS of the
 * whole local run, and an exact comparison of the results (docs/SHUFFLE.md).
 */
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { byFieldSinglePass, wordcountSinglePass } from './baseline.ts';
import { generate } from './gen.ts';
import { dataDir, measured, ms, type Report, root, runIfMain } from './report.ts';

const RECORDS = 2_000_000;
const KEYS = 1_000_000;
const LINES = 1_000_000;

/** One `fanout run JOB FILE --json`: its job time, wall time, peak RSS and result. */
async function fanout(job: string, file: string) {
  const run = await measured(process.execPath, [
    join(root, 'cli/bin.mjs'),
    'run',
    job,
    file,
    '--json',
  ]);
  if (run.code !== 0) throw new Error(`fanout run ${job} exited ${run.code}`);
  const lines = run.stdout.trim().split('\n');
  const summary = JSON.parse(lines.at(-1)!) as { durationMs: number; chunks: number };
  return { ...run, summary, result: lines.slice(0, -1).join('\n') };
}

export async function run(): Promise<Report> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, `scientists-${RECORDS}-k${KEYS}.jsonl`);
  if (!existsSync(file)) await generate({ records: RECORDS, out: file, seed: 42, keys: KEYS });
  const text = join(dataDir, `text-${LINES}-k${KEYS}.txt`);
  if (!existsSync(text)) {
    await generate({ records: LINES, out: text, seed: 42, kind: 'text', keys: KEYS });
  }
  const mb = (await stat(file)).size / 1e6;
  const textMb = (await stat(text)).size / 1e6;
  let started = performance.now();
  const loop = await byFieldSinglePass(file);
  const loopMs = performance.now() - started;
  const fan = await fanout('by-field', file);
  started = performance.now();
  // The loop's result as the job writes it: the ranked counts as one JSON object.
  const words = JSON.stringify(await wordcountSinglePass(text));
  const wordsLoopMs = performance.now() - started;
  const fanWords = await fanout('wordcount', text);
  const distinct = Object.keys(loop.result).length;
  const distinctWords = Object.keys(JSON.parse(words)).length;
  return {
    name: 'shuffle',
    title: `8. Keyed shuffle: by-field on ${RECORDS.toLocaleString('en')} records with ${distinct.toLocaleString('en')} distinct fields (${mb.toFixed(1)} MB); wordcount on ${LINES.toLocaleString('en')} lines with ${distinctWords.toLocaleString('en')} distinct words (${textMb.toFixed(1)} MB)`,
    columns: ['run', 'ms', 'peak RSS MB'],
    rows: [
      ['by-field: single-thread Node loop (one Map)', ms(loopMs), ''],
      ['fanout run by-field: job time', fan.summary.durationMs, ''],
      ['fanout run by-field: end to end', ms(fan.wallMs), ms(fan.peakRssMb)],
      ['wordcount: single-thread Node loop (one Map)', ms(wordsLoopMs), ''],
      ['fanout run wordcount: job time', fanWords.summary.durationMs, ''],
      ['fanout run wordcount: end to end', ms(fanWords.wallMs), ms(fanWords.peakRssMb)],
    ],
    figures: {
      'by-field: job time ÷ Node loop (target ≤ 0.8)': Number(
        (fan.summary.durationMs / loopMs).toFixed(2),
      ),
      'by-field: peak RSS MB of the whole local run (target ≤ 800)': ms(fan.peakRssMb),
      'by-field: result matches the single pass': fan.result === JSON.stringify(loop.result),
      'by-field: chunks': fan.summary.chunks,
      'wordcount: job time ÷ Node loop (target ≤ 0.8)': Number(
        (fanWords.summary.durationMs / wordsLoopMs).toFixed(2),
      ),
      'wordcount: peak RSS MB of the whole local run (target ≤ 800)': ms(fanWords.peakRssMb),
      'wordcount: result matches the single pass': fanWords.result === words,
      'wordcount: chunks': fanWords.summary.chunks,
    },
    notes: [
      'fields and words drawn uniformly from 1,000,000 values (npm run gen -- --keys 1000000)',
      'peak RSS: the largest sum of the resident sets of the fanout process and its sandboxes (child processes), sampled every 100 ms',
    ],
  };
}

await runIfMain(import.meta.url, run);
