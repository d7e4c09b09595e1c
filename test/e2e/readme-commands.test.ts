/**
 * The README's `npx fanout run` commands, run as written: its job files are written out from the
 * README's own snippets into a directory of their own (as a user's project would hold them, with
 * `examples/` beside them), and every command whose input is there must succeed. Commands on
 * inputs the README does not provide (a file it generates first, or `visits.jsonl`) are listed,
 * so that a new command is either run here or knowingly left out.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderedMap } from '#core/base/parallel.ts';
import { bin, root } from '../fixtures/dev-process.ts';

const run = promisify(execFile);
let dir: string;
let readme: string;

/** Commands the README shows on inputs it does not provide here. */
const NOT_RUN = new Set([
  // Its input comes from the `npm run gen` line before it (a million records: bench territory).
  'npx fanout run by-field /tmp/big.jsonl --chunks 37 --output out.json --json',
  // visits.jsonl is the reader's own data.
  'npx fanout run ./my-jobs/visits-per-user.ts visits.jsonl',
  // In the project `fanout init` writes: test/e2e/package.test.ts runs it there.
  'npx fanout run ./jobs/example.ts data.jsonl',
]);

beforeAll(async () => {
  readme = await readFile(join(root, 'README.md'), 'utf8');
  dir = await mkdtemp(join(tmpdir(), 'fanout-readme-'));
  await mkdir(join(dir, 'node_modules'));
  await symlink(root, join(dir, 'node_modules/fanout'));
  await symlink(join(root, 'node_modules/zod'), join(dir, 'node_modules/zod'));
  await symlink(join(root, 'examples'), join(dir, 'examples'));
  await copyFile(join(root, 'examples/scientists.jsonl'), join(dir, 'scientists.jsonl'));
  // The README's job files, from its ```ts blocks that name their path.
  for (const [, body] of readme.matchAll(/^ *```ts\n([\s\S]*?)^ *```/gm)) {
    const text = (body as string).replace(/^ {3}/gm, '');
    const path = /^\/\/ ([\w./-]+\.ts)\n/.exec(text)?.[1];
    if (path === undefined) continue;
    await mkdir(join(dir, dirname(path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Every `npx fanout run …` in the README, in blocks or inline, its line breaks undone. */
function commands(): string[] {
  const found = [
    ...readme.matchAll(/^npx fanout run [^\n#]*?(?=\s*(?:#|$))/gm),
    ...readme.matchAll(/`(npx fanout run[^`]*)`/g),
  ].map((m) => (m[1] ?? m[0]).replace(/\s+/g, ' ').trim());
  return [...new Set(found)];
}

describe("the README's commands", () => {
  it('run as written, each one', async () => {
    const all = commands();
    expect(all.length).toBeGreaterThanOrEqual(6);
    for (const skipped of NOT_RUN) expect(all, skipped).toContain(skipped);
    const runnable = all.filter((c) => !NOT_RUN.has(c));
    // Two at a time: each is mostly its own start-up and bundling, one after another 29 s of CI.
    const outputs = orderedMap(runnable.length, 2, async (i) => {
      const command = runnable[i] as string;
      const shell = command.replace(/^npx fanout/, `"${process.execPath}" "${bin}"`);
      const { stdout } = await run('sh', ['-c', shell], { cwd: dir, maxBuffer: 1 << 24 }).catch(
        (error: { stderr?: string }) => {
          throw new Error(`${command} failed: ${error.stderr ?? String(error)}`);
        },
      );
      return [command, stdout] as const;
    });
    for await (const [command, stdout] of outputs) expect(stdout.trim(), command).not.toBe('');
  }, 180_000);
});
