import type { BuildOptions } from 'esbuild';

/** One bundle to build or find in the cache. */
export interface BundleSpec {
  /** The bundle's name in the cache (`{name}-{hash}.mjs`, or a directory when split). */
  name: string;
  /** Its entry point. */
  entry: string;
  /** The repository root: package-lock.json's directory, and esbuild's working directory. */
  rootDir: string;
  /** Where bundles are cached. */
  cacheDir: string;
  /** esbuild's options (entryPoints, outfile or outdir, and metafile are set here). */
  options: BuildOptions;
  /** package-lock.json's bytes, when the caller has read them already. */
  lock?: Uint8Array;
}

/**
 * The path of `entry`'s bundle (`{name}-{hash}.mjs`, or `{name}-{hash}/index.mjs` with its chunks
 * beside it when `options.splitting` is on), rebuilt only when its sources, the lock file or
 * options changed.
 */
export function cachedBundle(spec: BundleSpec): Promise<string>;
