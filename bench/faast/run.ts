/**
 * faast.js's TypeScript setup for benchmark 1 (see driver.mjs), as the bench first ran it: the
 * driver under tsx, and the TypeScript function module packed by faast.js's webpack through an
 * esbuild loader. `tsx bench/faast/run.ts FILE [--chunks N]`. Reported beside the tuned setup
 * (run.mjs), never instead of it.
 */
import { fileURLToPath } from 'node:url';
import * as byField from './by-field.ts';
import { runByField } from './driver.mjs';

await runByField(byField, process.argv.slice(2), {
  webpackOptions: {
    devtool: false,
    module: {
      rules: [
        { test: /\.ts$/, loader: fileURLToPath(new URL('./ts-loader.cjs', import.meta.url)) },
      ],
    },
  },
});
