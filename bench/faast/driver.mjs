// The faast.js side of benchmark 1, shared by both of its setups: by-field over a local JSONL
// file with one faast call per byte-range chunk (pool.py's split), each in one of faast.js's
// child processes (one per core, like `Pool(os.cpu_count())`), merged here. Plain JavaScript,
// so the tuned setup (run.mjs) runs under plain `node`.
//
// Prints one JSON line, { records, result, chunks, concurrency }, and exits: the caller times
// the process from spawn to exit, as it times `fanout run`.
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { faast } from 'faastjs';

/**
 * Runs by-field with `mod` (a module exporting `byFieldRange` and `FAAST_URL`) over the file
 * named by argv, with faast.js's `options` added to the tuned ones.
 *
 * @param {object} mod
 * @param {string[]} argv FILE [--chunks N]
 * @param {object} [options]
 */
export async function runByField(mod, argv, options = {}) {
  const [input, ...rest] = argv;
  if (input === undefined) throw new Error('usage: FILE [--chunks N]');
  // faast.js's children run in a temporary directory: the path must be absolute.
  const file = resolve(input);
  const chunksAt = rest.indexOf('--chunks');
  const chunks = chunksAt >= 0 ? Number(rest[chunksAt + 1]) : 4 * availableParallelism();
  const concurrency = availableParallelism();
  const size = (await stat(file)).size;
  const step = Math.ceil(size / chunks);
  const ranges = [];
  for (let s = 0; s < size; s += step) ranges.push([s, Math.min(size, s + step)]);

  const fm = await faast('local', mod, {
    concurrency, // child processes at once: one per core
    childProcess: true,
    maxRetries: 0,
    gc: 'off', // do not scan the temporary directory for other runs' leftovers
    validateSerialization: false, // no per-call round-trip check of arguments and results
    ...options,
  });
  try {
    const parts = await Promise.all(ranges.map(([s, e]) => fm.functions.byFieldRange(file, s, e)));
    const total = {};
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
    const result = {};
    for (const field of Object.keys(total).sort()) result[field] = total[field];
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
}
