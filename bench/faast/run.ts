/**
 * by-field with faast.js in local mode, for benchmark 1: one faast call per byte-range chunk
 * (pool.py's split), each in one of faast.js's child processes (one per core, like
 * `Pool(os.cpu_count())`), merged here. `tsx bench/faast/run.ts FILE [--chunks N]`.
 *
 * Prints one JSON line: { records, result, chunks, concurrency }. The caller times the process
 * from spawn to exit, as it times `fanout run`.
 */
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { faast } from 'faastjs';
import * as byField from './by-field.ts';

const [input, ...rest] = process.argv.slice(2);
if (input === undefined) throw new Error('usage: bench/faast/run.ts FILE [--chunks N]');
// faast.js's children run in a temporary directory: the path must be absolute.
const file = resolve(input);
const chunksAt = rest.indexOf('--chunks');
const chunks = chunksAt >= 0 ? Number(rest[chunksAt + 1]) : 4 * availableParallelism();
const concurrency = availableParallelism();

const size = (await stat(file)).size;
const step = Math.ceil(size / chunks);
const ranges: [number, number][] = [];
for (let s = 0; s < size; s += step) ranges.push([s, Math.min(size, s + step)]);

const fm = await faast('local', byField, {
  concurrency, // child processes at once: one per core
  childProcess: true,
  maxRetries: 0,
  gc: 'off', // do not scan the temporary directory for other runs' leftovers
  validateSerialization: false, // no per-call round-trip check of arguments and results
  webpackOptions: {
    devtool: false,
    module: {
      rules: [
        { test: /\.ts$/, loader: fileURLToPath(new URL('./ts-loader.cjs', import.meta.url)) },
      ],
    },
  },
});
try {
  const parts = await Promise.all(ranges.map(([s, e]) => fm.functions.byFieldRange(file, s, e)));
  const total: byField.ByField = {};
  let records = 0;
  for (const { stats, records: n } of parts) {
    records += n;
    for (const [field, s] of Object.entries(stats)) {
      const acc = total[field];
      if (acc === undefined) total[field] = { ...s };
      else {
        acc.count += s.count;
        acc.nobels += s.nobels;
        acc.ageSum += s.ageSum;
      }
    }
  }
  const result: byField.ByField = {};
  for (const field of Object.keys(total).sort()) result[field] = total[field]!;
  process.stdout.write(
    `${JSON.stringify({ records, result, chunks: ranges.length, concurrency })}\n`,
  );
} finally {
  // gcTimeout 0: no 10 s timer holding the process open after cleanup.
  await fm.cleanup({ gcTimeout: 0 });
}
// faastjs 8.0.75 can leave a call's 60 s timeout timer running when cleanup stops a child
// before its last message arrives: exit rather than wait for it.
process.exit(0);
