/**
 * esbuild bundles of the Lambda functions: the same single-file ESM bundles CDK deploys, run by
 * the local Lambda server. Built on demand and cached by content hash, so a warm start of the
 * CLI costs a few file hashes, not a build.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { type BuildOptions, build } from 'esbuild';

const repoRoot = resolve(import.meta.dirname, '..');

/**
 * The esbuild options of every function bundle (also what infra/ passes to NodejsFunction).
 * ESM with a `require` shim, because some dependencies are CommonJS inside an ESM bundle.
 */
export const bundleOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  minify: false,
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
}

/**
 * Bundles each entry (function name → TypeScript entry path) and returns name → absolute path
 * of its `.mjs` bundle. A bundle is rebuilt only when one of its own source files (outside
 * node_modules), package-lock.json or the build options changed.
 */
export async function bundleFunctions(
  entries: Record<string, string>,
  options: BundleOptions = {},
): Promise<Record<string, string>> {
  const rootDir = options.rootDir ?? repoRoot;
  const cacheDir = options.cacheDir ?? join(rootDir, 'node_modules/.cache/fanout/bundles');
  await mkdir(cacheDir, { recursive: true });
  const lock = await readFile(join(rootDir, 'package-lock.json')).catch(() => Buffer.alloc(0));
  const results = await Promise.all(
    Object.entries(entries).map(async ([name, entry]) => {
      const inputsFile = join(cacheDir, `${name}.inputs.json`);
      const known: string[] | undefined = await readFile(inputsFile, 'utf8')
        .then((t) => JSON.parse(t) as string[])
        .catch(() => undefined);
      if (known !== undefined) {
        const key = await contentKey(rootDir, entry, known, lock);
        const cached = join(cacheDir, `${name}-${key}.mjs`);
        if (key !== undefined && existsSync(cached)) return [name, cached] as const;
      }
      const outfile = join(cacheDir, `${name}-build-${process.pid}-${Date.now()}.mjs`);
      const result = await build({
        ...bundleOptions,
        entryPoints: [entry],
        outfile,
        absWorkingDir: rootDir,
        metafile: true,
      });
      const inputs = Object.keys(result.metafile.inputs)
        .filter((p) => !p.includes('node_modules/'))
        .map((p) => resolve(rootDir, p))
        .sort();
      const key = await contentKey(rootDir, entry, inputs, lock);
      const final = join(cacheDir, `${name}-${key}.mjs`);
      // Rename is atomic: a concurrent CLI sees the old bundle or the new one, never half.
      await rename(outfile, final);
      await rename(`${outfile}.map`, `${final}.map`).catch(() => undefined);
      await writeFile(inputsFile, JSON.stringify(inputs));
      await pruneStale(cacheDir, name, final);
      return [name, final] as const;
    }),
  );
  return Object.fromEntries(results);
}

/** Removes a function's older bundles, so the cache holds one per function. */
async function pruneStale(cacheDir: string, name: string, keep: string): Promise<void> {
  const mine = new RegExp(`^${name}-[0-9a-f]{16}\\.mjs(\\.map)?$`);
  for (const file of await readdir(cacheDir)) {
    const path = join(cacheDir, file);
    if (mine.test(file) && path !== keep && path !== `${keep}.map`) {
      await rm(path, { force: true });
    }
  }
}

/** Hash of the build options, the entry, its source files' contents and the lock file. */
async function contentKey(
  rootDir: string,
  entry: string,
  inputs: string[],
  lock: Uint8Array,
): Promise<string | undefined> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(bundleOptions));
  hash.update(relative(rootDir, resolve(rootDir, entry)));
  hash.update(lock);
  for (const file of inputs) {
    const content = await readFile(file).catch(() => undefined);
    if (content === undefined) return undefined; // a source file went away: rebuild
    hash.update(relative(rootDir, file));
    hash.update(content);
  }
  return hash.digest('hex').slice(0, 16);
}
