/**
 * `npm run bench`: the benchmarks, one after another, each in its own process (so one's heap
 * and sockets do not weigh on the next, and the simulation's RSS is its own), each printed as a
 * table and saved as bench/results/{name}.json, plus all.json. `npm run bench -- dispatch reduce`
 * runs a subset; each module also runs alone (`npx tsx bench/dispatch.ts`). Benchmarks assert
 * nothing: ratios measured in one run on one machine are what compare.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { machine, type Report, root } from './report.ts';

const ALL = [
  'throughput',
  'lesson',
  'dispatch',
  'simulate',
  'reduce',
  'small',
  'bundles',
  'shuffle',
  'load',
];

const chosen = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = chosen.filter((name) => !ALL.includes(name));
if (unknown.length > 0) {
  process.stderr.write(
    `unknown benchmark(s): ${unknown.join(', ')}; expected: ${ALL.join(', ')}\n`,
  );
  process.exit(2);
}
const m = machine();
process.stdout.write(`fanout benchmarks — ${m.cores} cores, ${m.cpu}, Node ${m.node}\n`);
const reports: Report[] = [];
for (const name of chosen.length > 0 ? chosen : ALL) {
  const started = performance.now();
  const code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, `bench/${name}.ts`)], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('exit', (c) => resolve(c ?? 1));
  });
  process.stdout.write(`  (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
  if (code !== 0) {
    process.stderr.write(`benchmark ${name} failed (exit ${code})\n`);
    process.exitCode = 1;
    continue;
  }
  reports.push(
    JSON.parse(await readFile(join(root, `bench/results/${name}.json`), 'utf8')) as Report,
  );
}
await writeFile(
  join(root, 'bench/results/all.json'),
  `${JSON.stringify({ date: new Date().toISOString(), machine: m, reports }, null, 2)}\n`,
);
