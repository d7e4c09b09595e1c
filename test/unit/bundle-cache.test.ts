/**
 * The bundle cache stops esbuild's service once no build is in flight: it holds ~450 MB after
 * bundling the functions, and it stayed for the whole job or `fanout dev` (a cold by-field run
 * on the seven scientists peaked at 1,091 MB with it, 626 MB without).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cachedBundle } from '../../local/bundle-cache.mjs';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** This process's children whose command is esbuild's. */
function esbuildChildren(): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (parent === process.pid && command.includes('esbuild')) found.push(Number(pid));
    } catch {
      // gone while we looked
    }
  }
  return found;
}

describe('cachedBundle', () => {
  it.runIf(process.platform === 'linux')(
    'builds side by side, then leaves no esbuild process behind',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'fanout-bundle-'));
      dirs.push(dir);
      const entries = ['a', 'b'].map((name) => join(dir, `${name}.ts`));
      await Promise.all(
        entries.map((entry, i) => writeFile(entry, `export const n: number = ${i};\n`)),
      );
      const built = await Promise.all(
        entries.map((entry, i) =>
          cachedBundle({
            name: `probe${i}`,
            entry,
            rootDir: dir,
            cacheDir: join(dir, 'cache'),
            options: { bundle: true, format: 'esm', platform: 'node', logLevel: 'silent' },
          }),
        ),
      );
      expect(built.map((path) => readFileSync(path, 'utf8'))).toEqual([
        expect.stringContaining('n = 0'),
        expect.stringContaining('n = 1'),
      ]);
      expect(esbuildChildren()).toEqual([]);
    },
  );
});
