/**
 * Where fanout's own files are. Found by walking up from this module to the package.json of
 * the package named `fanout`, rather than by a fixed `..`: the CLI runs from an esbuild bundle
 * in node_modules/.cache (cli/bin.mjs), where this module's location is the bundle's.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'fanout') return dir;
    } catch {
      // no package.json here: keep walking up
    }
    if (dirname(dir) === dir) {
      throw new Error(`no package.json of "fanout" above ${from}`);
    }
  }
}

/** The repository (package) root: package.json, package-lock.json, functions/, local/. */
export const repoRoot = findRoot(import.meta.dirname);
