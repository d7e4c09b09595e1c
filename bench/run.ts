/**
 * `npm run bench`: fanout vs a single-thread Node loop, measured in the same run on the same
 * generated file. Prints a table and writes bench/results/latest.json. Asserts nothing: figures
 * depend on the machine; ratios measured in one run are what compare.
 *
 * Options: --records N (default 2,000,000), --keep (reuse the generated file between runs).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { byFieldSinglePass } from './baseline.ts';
import { generate } from './gen.ts';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { records: { type: 'string' } } });
const records = Number(values.records ?? 2_000_000);
const dataDir = join(root, 'node_modules/.cache/fanout/bench');
const resultsDir = join(root, 'bench/results');
await mkdir(dataDir, { recursive: true });
await mkdir(resultsDir, { recursive: true });

const file = join(dataDir, `scientists-${records}.jsonl`);
if (!existsSync(file)) {
  process.stderr.write(`generating ${records} records into ${file}…\n`);
  await generate({ records, out: file, seed: 42 });
}
const bytes = (await stat(file)).size;
const mb = bytes / 1e6;

// 1. The single-thread Node loop.
let t = performance.now();
const baseline = await byFieldSinglePass(file);
const baselineMs = performance.now() - t;

// 2. fanout run by-field, end to end as a user runs it (CLI start, upload, job, result).
t = performance.now();
const { stdout } = await promisify(execFile)(
  process.execPath,
  [join(root, 'cli/bin.mjs'), 'run', 'by-field', file, '--json'],
  { cwd: root, maxBuffer: 1 << 24 },
);
const fanoutMs = performance.now() - t;
const lines = stdout.trim().split('\n');
const summary = JSON.parse(lines.at(-1)!) as {
  durationMs: number;
  chunks: number;
  records: number;
};
const fanoutResult = JSON.parse(lines.slice(0, -1).join('\n'));
const same = JSON.stringify(fanoutResult) === JSON.stringify(baseline.result);

const row = (name: string, ms: number) => ({
  name,
  ms: Math.round(ms),
  recordsPerSec: Math.round(records / (ms / 1000)),
  mbPerSec: Number((mb / (ms / 1000)).toFixed(1)),
});
const rows = [
  row('single-thread Node loop', baselineMs),
  row('fanout run by-field (end to end)', fanoutMs),
  row('fanout job time (submit → SUCCEEDED)', summary.durationMs),
];
const report = {
  benchmark: 'by-field throughput',
  date: new Date().toISOString(),
  machine: { cores: availableParallelism(), cpu: cpus()[0]?.model, node: process.version },
  input: { records, bytes, chunks: summary.chunks },
  rows,
  ratios: {
    endToEndVsLoop: Number((baselineMs / fanoutMs).toFixed(2)),
    jobTimeVsLoop: Number((baselineMs / summary.durationMs).toFixed(2)),
  },
  resultsMatch: same,
};

process.stdout.write(
  `by-field on ${records.toLocaleString('en')} records (${mb.toFixed(1)} MB), ${report.machine.cores} cores, ${summary.chunks} chunks\n\n`,
);
process.stdout.write(
  `${'run'.padEnd(40)}${'ms'.padStart(9)}${'records/s'.padStart(13)}${'MB/s'.padStart(9)}\n`,
);
for (const r of rows) {
  process.stdout.write(
    `${r.name.padEnd(40)}${String(r.ms).padStart(9)}${r.recordsPerSec.toLocaleString('en').padStart(13)}${String(r.mbPerSec).padStart(9)}\n`,
  );
}
process.stdout.write(
  `\nspeed-up vs the single-thread loop: ${report.ratios.endToEndVsLoop}× end to end, ${report.ratios.jobTimeVsLoop}× job time; results ${same ? 'match' : 'DIFFER'}\n`,
);
await writeFile(join(resultsDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
if (!same) process.exitCode = 1;
