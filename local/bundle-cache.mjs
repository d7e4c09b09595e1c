// esbuild bundles cached by the content of their sources. Plain JavaScript, so the `fanout`
// executable (cli/bin.mjs) can load its own bundle with no TypeScript loader, and the local
// runtime (local/bundle.ts) its functions' bundles, through one piece of code.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';

/** Builds running in this process (esbuild's service is stopped when none is). */
let inFlight = 0;

/**
 * The path of `entry`'s bundle (its `index.mjs` when split into chunks), built with esbuild only
 * when one of its own source files (outside node_modules), package-lock.json or the build options
 * changed since the cached one.
 *
 * @param {import('./bundle-cache.d.mts').BundleSpec} spec
 * @returns {Promise<string>}
 */
export async function cachedBundle(spec) {
  const { name, entry, rootDir, cacheDir, options } = spec;
  await mkdir(cacheDir, { recursive: true });
  const lock =
    spec.lock ?? (await readFile(join(rootDir, 'package-lock.json')).catch(() => Buffer.alloc(0)));
  const inputsFile = join(cacheDir, `${name}.inputs.json`);
  /** @type {string[] | undefined} */
  const known = await readFile(inputsFile, 'utf8')
    .then((text) => JSON.parse(text))
    .catch(() => undefined);
  // With code splitting, a bundle is a directory: its entry (index.mjs) and the chunks that
  // the entry imports when it needs them.
  const split = options.splitting === true;
  /** @param {string} path */
  const entryOf = (path) => (split ? join(path, 'index.mjs') : path);
  /** @param {string | undefined} key */
  const finalPath = (key) => join(cacheDir, split ? `${name}-${key}` : `${name}-${key}.mjs`);
  if (known !== undefined) {
    const key = await contentKey(rootDir, entry, known, lock, options);
    if (key !== undefined && existsSync(entryOf(finalPath(key)))) return entryOf(finalPath(key));
  }
  // esbuild is loaded only to build: a cache hit does not pay for it.
  const esbuild = await import('esbuild');
  const building = join(
    cacheDir,
    `${name}-build-${process.pid}-${Date.now()}${split ? '' : '.mjs'}`,
  );
  inFlight += 1;
  let result;
  try {
    result = await esbuild.build({
      ...options,
      ...(split
        ? {
            entryPoints: { index: entry },
            outdir: building,
            outExtension: { '.js': '.mjs' },
            chunkNames: 'chunks/[name]-[hash]',
          }
        : { entryPoints: [entry], outfile: building }),
      absWorkingDir: rootDir,
      metafile: true,
    });
  } finally {
    // esbuild keeps its service process (~450 MB resident after bundling the functions) until
    // this process exits: through a whole job, or a whole `fanout dev`. Stopped once no build
    // is in flight; the next build starts it again.
    inFlight -= 1;
    if (inFlight === 0) await esbuild.stop();
  }
  const inputs = Object.keys(result.metafile.inputs)
    .filter((p) => !p.includes('node_modules/'))
    .map((p) => resolve(rootDir, p))
    .sort();
  const key = await contentKey(rootDir, entry, inputs, lock, options);
  const final = finalPath(key);
  if (split) {
    // A directory cannot replace another atomically: a concurrent process that built the same
    // sources first keeps its copy (the same content), and this one is dropped.
    await rename(building, final).catch(async (error) => {
      if (!existsSync(entryOf(final))) throw error;
      await rm(building, { recursive: true, force: true });
    });
  } else {
    // Rename is atomic: a concurrent process sees the old bundle or the new one, never half.
    await rename(building, final);
    await rename(`${building}.map`, `${final}.map`).catch(() => undefined);
  }
  await writeFile(inputsFile, JSON.stringify(inputs));
  await pruneStale(cacheDir, name, final);
  return entryOf(final);
}

/**
 * Removes a bundle's older versions (files, or directories of split bundles), so the cache
 * holds one per name.
 *
 * @param {string} cacheDir
 * @param {string} name
 * @param {string} keep
 */
async function pruneStale(cacheDir, name, keep) {
  const mine = new RegExp(`^${name}-[0-9a-f]{16}(\\.mjs(\\.map)?)?$`);
  for (const file of await readdir(cacheDir)) {
    const path = join(cacheDir, file);
    if (mine.test(file) && path !== keep && path !== `${keep}.map`) {
      await rm(path, { recursive: true, force: true });
    }
  }
}

/**
 * Hash of the build options, the entry, its source files' contents and the lock file; undefined
 * when a source file went away (rebuild).
 *
 * @param {string} rootDir
 * @param {string} entry
 * @param {string[]} inputs
 * @param {Uint8Array} lock
 * @param {object} options
 * @returns {Promise<string | undefined>}
 */
async function contentKey(rootDir, entry, inputs, lock, options) {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(options));
  hash.update(relative(rootDir, resolve(rootDir, entry)));
  hash.update(lock);
  for (const file of inputs) {
    const content = await readFile(file).catch(() => undefined);
    if (content === undefined) return undefined;
    hash.update(relative(rootDir, file));
    hash.update(content);
  }
  return hash.digest('hex').slice(0, 16);
}
