/**
 * Benchmark 7, the function bundles: each function's bundle as it deploys (split and minified),
 * its size (what a cold start reads: the entry and the chunks it imports statically; and all
 * of it, lazy chunks included), and, in fresh Node processes (median of N), its import time
 * (until the handler's code has loaded) and its init time (its top-level await too:
 * observability, clients, priming). The S3 and Lambda endpoints are a stub on 127.0.0.1 that
 * answers every request at once with a 404, so priming costs its client-side work and no
 * network time.
 *
 * For the ratio, the worker is also built as it was before (one unminified file) and timed the
 * same way in the same run.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { medianOf } from '#core/run/speculation.ts';
import { bundleFunctions, bundleOptions } from '#local/bundle.ts';
import { FUNCTION_ENTRIES } from '#local/runtime.ts';
import { INIT_MARKS } from '../functions/config.ts';
import { ms, type Report, root, runIfMain } from './report.ts';

const exec = promisify(execFile);
const RUNS = Number(process.env.BENCH_IMPORT_RUNS ?? 9);

/** A stub of the S3 and Lambda endpoints: every request gets an immediate 404. */
async function stubEndpoint(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(404, { 'content-type': 'application/xml' });
      response.end('<Error><Code>NoSuchKey</Code><Message>stub</Message></Error>');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** One fresh process importing `entry`: ms until its code loaded, and until its init is done. */
interface Timing {
  code: number;
  init: number;
}

/** RUNS fresh processes importing `entry` (see {@link Timing}). */
async function importTimes(entry: string, env: Record<string, string>): Promise<Timing[]> {
  // The handler marks when its code has loaded (INIT_MARKS in functions/config.ts); a bundle
  // without the mark (the previous layout has it too: it is built from the same sources) would
  // report its whole import.
  const script = [
    'const t = performance.now();',
    `await import(${JSON.stringify(pathToFileURL(entry).href)});`,
    'const end = performance.now();',
    `const mark = performance.getEntriesByName(${JSON.stringify(INIT_MARKS.loaded)})[0];`,
    'process.stdout.write(JSON.stringify({ code: (mark?.startTime ?? end) - t, init: end - t }));',
    'process.exit(0);',
  ].join(' ');
  const times: Timing[] = [];
  for (let i = 0; i < RUNS; i++) {
    const { stdout } = await exec(process.execPath, ['--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    times.push(JSON.parse(stdout) as Timing);
  }
  return times;
}

/** Bytes a cold start reads (the entry and its static imports), and the bundle's in all. */
async function sizes(entry: string): Promise<{ start: number; all: number }> {
  const seen = new Set<string>();
  const visit = async (file: string): Promise<number> => {
    if (seen.has(file)) return 0;
    seen.add(file);
    const text = await readFile(file, 'utf8');
    let bytes = Buffer.byteLength(text);
    // esbuild's static imports of its own chunks: `import{…}from"./chunks/…"` or `import"./…"`.
    for (const m of text.matchAll(/import\s*(?:[\w$*{}\s,]*from\s*)?"(\.{1,2}\/[^"]+)"/g)) {
      bytes += await visit(resolve(dirname(file), m[1] as string));
    }
    return bytes;
  };
  const start = await visit(entry);
  const dir = dirname(entry);
  let all = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      if (e.isDirectory()) await walk(path);
      else if (path.endsWith('.mjs')) all += (await stat(path)).size;
    }
  };
  // A bundle that is one file (the previous layout) is its own directory's only .mjs.
  if (dir.endsWith('bundles')) all = (await stat(entry)).size;
  else await walk(dir);
  return { start, all };
}

const kb = (bytes: number) => `${Math.round(bytes / 1024).toLocaleString('en')} KB`;

/** Runs the benchmark. */
export async function run(): Promise<Report> {
  const bundles = await bundleFunctions(FUNCTION_ENTRIES);
  // The worker as it was bundled before: one file, not minified, everything in it.
  const { worker: before } = await bundleFunctions(
    { worker: FUNCTION_ENTRIES.worker },
    {
      extra: {
        options: { ...bundleOptions, splitting: false, minify: false, keepNames: false },
        suffix: '-one-file',
      },
    },
  );
  const stub = await stubEndpoint();
  const env = {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_ENDPOINT_URL_S3: stub.url,
    AWS_ENDPOINT_URL_LAMBDA: stub.url,
    AWS_LAMBDA_FUNCTION_NAME: 'coordinator',
    FANOUT_BUCKET: 'bench',
    FANOUT_WORKER_FUNCTION: 'worker',
    FANOUT_REDUCER_FUNCTION: 'reducer',
    FANOUT_COORDINATOR_FUNCTION: 'coordinator',
    // As the local runtime runs them; on AWS Powertools loads too (its own chunks).
    FANOUT_OBSERVABILITY: 'off',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  const rows: (string | number)[][] = [];
  const figures: Report['figures'] = {};
  try {
    for (const [name, entry] of [
      ...Object.entries(bundles),
      ['worker, one unminified file (before)', before],
    ] as [string, string][]) {
      const times = await importTimes(entry, env);
      const code = medianOf(times.map((t) => t.code));
      const init = medianOf(times.map((t) => t.init));
      const size = await sizes(entry);
      rows.push([name, kb(size.start), kb(size.all), ms(code), ms(init)]);
      figures[`${name}: code loaded ms, median`] = ms(code);
    }
  } finally {
    await stub.close();
  }
  const now = figures['worker: code loaded ms, median'] as number;
  const then = figures['worker, one unminified file (before): code loaded ms, median'] as number;
  figures['worker import ms (target ≤ 60)'] = now;
  figures['worker import: before ÷ now'] = Number((then / now).toFixed(2));
  return {
    name: 'bundles',
    title: `7. Function bundles: size, import and init time (fresh processes, median of ${RUNS})`,
    columns: ['bundle', 'read at start', 'all chunks', 'import ms', 'init ms'],
    rows,
    figures,
    notes: [
      `bundles under ${join(root, 'node_modules/.cache/fanout/bundles')}`,
      'read at start: the entry and the chunks it imports statically; the rest loads on use',
      'import: until the handler code has loaded (every module it imports read, compiled and run)',
      'init: until its top-level await is done too (observability, clients, priming); S3 and Lambda are a stub answering 404 at once',
    ],
  };
}

await runIfMain(import.meta.url, run);
