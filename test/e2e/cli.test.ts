/**
 * The `fanout` command as a user runs it: a child process, exit codes, stdout and stderr.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byFieldSinglePass } from '../../bench/baseline.ts';
import { generate } from '../../bench/gen.ts';

const root = resolve(import.meta.dirname, '../..');
const bin = join(root, 'cli/bin.mjs');

async function fanout(...args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      cwd: root,
      maxBuffer: 1 << 26,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-e2e-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('fanout run', () => {
  it('gives the same by-field result for --chunks 37, --chunks 1 and a single pass (1,000,000 records)', async () => {
    const file = join(dir, 'million.jsonl');
    await generate({ records: 1_000_000, out: file, seed: 11 });
    const [many, one, single] = await Promise.all([
      fanout(
        'run',
        'by-field',
        file,
        '--chunks',
        '37',
        '--output',
        join(dir, 'out37.json'),
        '--json',
      ),
      fanout('run', 'by-field', file, '--chunks', '1', '--output', join(dir, 'out1.json')),
      byFieldSinglePass(file),
    ]);
    expect(many.code, many.stderr).toBe(0);
    expect(one.code, one.stderr).toBe(0);
    const summary = JSON.parse(many.stdout.trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({
      status: 'SUCCEEDED',
      chunks: 37,
      records: 1_000_000,
      output: join(dir, 'out37.json'),
    });
    expect(typeof summary.durationMs).toBe('number');
    const out37 = await readFile(join(dir, 'out37.json'), 'utf8');
    expect(out37).toBe(await readFile(join(dir, 'out1.json'), 'utf8'));
    expect(JSON.parse(out37)).toEqual(single.result);
    expect(single.records).toBe(1_000_000);
  });

  it('prints the lesson to stdout', async () => {
    const { code, stdout } = await fanout('run', 'scientists', 'examples/scientists.jsonl');
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')[0]).toBe('{"name":"Ada Lovelace","age":202}');
  });

  it('exits 1 with the reason when the job fails', async () => {
    const { code, stderr } = await fanout(
      'run',
      'wordcount',
      'examples/words.txt',
      '--params',
      '{"top":0}',
    );
    // top must be positive: a usage error caught before the runtime starts work
    expect(code).toBe(2);
    expect(stderr).toMatch(/invalid params for job wordcount: top/);
    const failing = await fanout('run', 'by-field', 'examples/words.txt');
    expect(failing.code).toBe(1);
    expect(failing.stderr).toMatch(/FAILED: .*malformed record at byte 0/);
  });

  it('exits 2 on usage errors, listing the valid choices', async () => {
    const unknown = await fanout('run', 'nope', 'examples/scientists.jsonl');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(
      /unknown job "nope"; expected one of: by-field, scientists, wordcount/,
    );
    const missing = await fanout('run', 'by-field', 'no/such/file.jsonl');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/does not exist; expected a local file/);
    const flag = await fanout('run', 'by-field', 'examples/scientists.jsonl', '--chunkz', '3');
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--chunkz/);
    const both = await fanout(
      'run',
      'by-field',
      'examples/scientists.jsonl',
      '--chunks',
      '2',
      '--chunk-size',
      '1MiB',
    );
    expect(both.code).toBe(2);
  });

  it('documents itself', async () => {
    const { code, stdout } = await fanout('run', '--help');
    expect(code).toBe(0);
    for (const flag of [
      '--chunk-size',
      '--chunks',
      '--concurrency',
      '--params',
      '--on-bad-record',
      '--output',
      '--json',
      '--dir',
    ]) {
      expect(stdout).toContain(flag);
    }
  });
});
