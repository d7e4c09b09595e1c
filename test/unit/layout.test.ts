/**
 * The layering docs/ARCHITECTURE.md describes: each folder of shared/core imports only from the
 * folders before it in LAYERS (and its own), and nothing in shared/core imports an adapter or an
 * AWS SDK package.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const CORE = resolve(import.meta.dirname, '../../shared/core');
const LAYERS = ['cost', 'base', 'data', 'model', 'shuffle', 'run', 'reduce', 'report', 'api'];

/** Every .ts file under shared/core, with the specifiers it imports. */
function coreFiles(): { file: string; imports: string[] }[] {
  return readdirSync(CORE, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => {
      const text = readFileSync(join(CORE, f), 'utf8');
      const imports = [...text.matchAll(/^(?:import|export)[^;]*?from '([^']+)'/gms)].map(
        (m) => m[1] as string,
      );
      return { file: f, imports };
    });
}

describe('shared/core layout', () => {
  it('imports only from its own folder and the folders before it', () => {
    const wrong: string[] = [];
    for (const { file, imports } of coreFiles()) {
      const layer = file.split('/')[0] as string;
      if (!LAYERS.includes(layer)) continue;
      for (const spec of imports.filter((s) => s.startsWith('.'))) {
        const target = relative(CORE, resolve(CORE, file, '..', spec)).split('/')[0] as string;
        if (LAYERS.includes(target) && LAYERS.indexOf(target) > LAYERS.indexOf(layer)) {
          wrong.push(`${file} → ${spec}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('imports no adapter and no AWS SDK package', () => {
    const wrong = coreFiles().flatMap(({ file, imports }) =>
      imports
        .filter(
          (s) => s.startsWith('#adapters') || s.startsWith('@aws-sdk/') || s.startsWith('@smithy/'),
        )
        .map((s) => `${file} → ${s}`),
    );
    expect(wrong).toEqual([]);
  });

  it('has a header for every folder', () => {
    for (const layer of LAYERS) {
      expect(readFileSync(join(CORE, layer, 'index.ts'), 'utf8'), layer).toMatch(/^\/\*\*/);
    }
  });
});
