/**
 * esbuild bundles of the Lambda functions: the same single-file ESM bundles CDK deploys, run by
 * the local Lambda server. Built on demand and cached by content hash, so a warm start of the
 * CLI costs a few file hashes, not a build.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildOptions } from 'esbuild';
import { cachedBundle } from './bundle-cache.mjs';
import { repoRoot } from './paths.ts';

/**
 * The esbuild options of every function bundle (also what infra/ deploys). ESM with a `require`
 * shim, because some dependencies are CommonJS inside an ESM bundle.
 *
 * A cold start compiles every line its entry imports, so the bundle is split and minified: what
 * a handler imports only when it needs it (Powertools, the X-Ray tracer, hyparquet, multipart
 * uploads, presigning, the SDK's credential providers other than the environment's) goes to
 * chunks of its own that a sandbox never reads unless it uses them. Names are kept: errors
 * travel between functions by their class name (Lambda's `errorType`), and stack traces stay
 * readable.
 */
export const bundleOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  splitting: true,
  minify: true,
  keepNames: true,
  legalComments: 'none',
  mainFields: ['module', 'main'],
  banner: {
    js: "import { createRequire as __fanoutCreateRequire } from 'node:module'; const require = __fanoutCreateRequire(import.meta.url);",
  },
  logLevel: 'silent',
} satisfies BuildOptions;

/** Options of {@link bundleFunctions}. */
export interface BundleOptions {
  /** Where bundles are cached. @default node_modules/.cache/fanout/bundles under rootDir */
  cacheDir?: string;
  /** The repository root (for package-lock.json and relative paths). @default this repo */
  rootDir?: string;
  /**
   * More esbuild options (a job registry in place of jobs/index.ts), and a suffix that keeps
   * such bundles apart from the default ones in the cache.
   */
  extra?: { options: BuildOptions; suffix: string };
}

/**
 * Bundles each entry (function name → TypeScript entry path) and returns name → absolute path
 * of its bundle's entry (`index.mjs`, with its chunks beside it). A bundle is rebuilt only when
 * one of its own source files (outside node_modules), package-lock.json or the build options
 * changed.
 */
export async function bundleFunctions(
  entries: Record<string, string>,
  options: BundleOptions = {},
): Promise<Record<string, string>> {
  const rootDir = options.rootDir ?? repoRoot;
  const cacheDir = options.cacheDir ?? join(rootDir, 'node_modules/.cache/fanout/bundles');
  const lock = await readFile(join(rootDir, 'package-lock.json')).catch(() => Buffer.alloc(0));
  const results = await Promise.all(
    Object.entries(entries).map(async ([name, entry]) => {
      const path = await cachedBundle({
        name: `${name}${options.extra?.suffix ?? ''}`,
        entry,
        rootDir,
        cacheDir,
        options: { ...bundleOptions, ...options.extra?.options },
        lock,
      });
      return [name, path] as const;
    }),
  );
  return Object.fromEntries(results);
}

/**
 * The source files (outside node_modules) the last build of a bundle read, as its cache records
 * them: what `fanout dev` watches to follow edits. Empty before its first build.
 */
export async function bundleInputs(
  name: string,
  options: Pick<BundleOptions, 'cacheDir' | 'rootDir' | 'extra'> = {},
): Promise<string[]> {
  const rootDir = options.rootDir ?? repoRoot;
  const cacheDir = options.cacheDir ?? join(rootDir, 'node_modules/.cache/fanout/bundles');
  const file = join(cacheDir, `${name}${options.extra?.suffix ?? ''}.inputs.json`);
  return readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as string[],
    () => [],
  );
}
