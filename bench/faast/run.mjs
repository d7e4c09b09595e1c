// faast.js's tuned setup for benchmark 1 (see driver.mjs): plain `node`, and a plain JavaScript
// function module, which faast.js's webpack packs with no loader. The module is by-field.ts with
// its types stripped ahead of time (bench/throughput.ts writes it). `node bench/faast/run.mjs
// MODULE.mjs FILE [--chunks N]`.
import { pathToFileURL } from 'node:url';
import { runByField } from './driver.mjs';

const [modulePath, ...argv] = process.argv.slice(2);
if (modulePath === undefined) throw new Error('usage: run.mjs MODULE.mjs FILE [--chunks N]');
await runByField(await import(pathToFileURL(modulePath).href), argv);
