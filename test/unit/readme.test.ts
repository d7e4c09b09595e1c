/**
 * The README's TypeScript snippets cannot drift from the code: every ```ts block that starts
 * with a `// path/file.ts` comment is written out as that file (under .snippets/, inside the
 * clone, so `fanout` and zod resolve as they would for a user), then linted and formatted with
 * Biome and type-checked with tsc, the project's own settings.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const out = join(root, '.snippets');
const run = promisify(execFile);

afterAll(() => rm(out, { recursive: true, force: true }));

/** The README's ```ts blocks that name their file, as [path, source]. */
async function snippets(): Promise<[string, string][]> {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^( *)```ts\n([\s\S]*?)^\1```/gm)].map(([, indent, body]) =>
    (body as string)
      .split('\n')
      .map((line) => line.slice((indent as string).length))
      .join('\n'),
  );
  return blocks.flatMap((block) => {
    const path = /^\/\/ ([\w./-]+\.ts)\n/.exec(block)?.[1];
    return path === undefined ? [] : [[path, block] as [string, string]];
  });
}

describe('the README', () => {
  it('has snippets that lint, format and type-check', async () => {
    const files = await snippets();
    expect(files.map(([path]) => path)).toEqual([
      'my-jobs/nobels-by-decade.ts',
      'my-jobs/index.ts',
      'my-jobs/visits-per-user.ts',
      'my-jobs/words.ts',
      'my-jobs/by-birth-year.ts',
    ]);
    await rm(out, { recursive: true, force: true });
    for (const [path, source] of files) {
      await mkdir(dirname(join(out, path)), { recursive: true });
      await writeFile(join(out, path), source);
    }
    const biome = await run(
      process.execPath,
      [
        join(root, 'node_modules/@biomejs/biome/bin/biome'),
        'check',
        '--vcs-use-ignore-file=false',
        out,
      ],
      { cwd: out },
    ).catch((e: { stdout: string; stderr: string }) => e);
    expect('code' in biome ? `${biome.stdout}${biome.stderr}` : '').toBe('');
    await writeFile(
      join(out, 'tsconfig.json'),
      JSON.stringify({ extends: '../tsconfig.json', include: ['**/*.ts'] }),
    );
    const tsc = await run(
      process.execPath,
      [join(root, 'node_modules/.bin/tsc'), '--noEmit', '-p', out],
      {
        cwd: root,
      },
    ).catch((e: { stdout: string; stderr: string }) => e);
    expect('code' in tsc ? `${tsc.stdout}${tsc.stderr}` : '').toBe('');
  }, 120_000);
});
