/**
 * The `fanout` command as a user runs it: a child process, exit codes, stdout and stderr.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byFieldSinglePass } from '../../bench/baseline.ts';
import { generate } from '../../bench/gen.ts';
import { fanout, root } from '../fixtures/cli.ts';

/** A map-only jsonl job module with no params, by path (imports fanout as a user would). */
async function mapOnlyJob(name: string, map: string, more = ''): Promise<string> {
  const file = join(dir, `${name}.ts`);
  await writeFile(
    file,
    `import { defineJob } from 'fanout';

export default defineJob({
  name: '${name}',
  format: 'jsonl',
  map: ${map},${more}
});
`,
  );
  return file;
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
    // A missing s3:// input is a usage error too, and says the local S3 server starts empty.
    const s3 = await fanout('run', 'by-field', 's3://fanout-local/datasets/none.jsonl');
    expect(s3.code).toBe(2);
    expect(s3.stderr).toMatch(/no object at .*every run starts with an empty server/);
    // --chunks cannot split a gzip file: refused, with why.
    const gz = join(dir, 'one.jsonl.gz');
    await writeFile(gz, gzipSync('{"name":"A","field":"f","born":1900,"nobel":false}\n'));
    const split = await fanout('run', 'by-field', gz, '--chunks', '4');
    expect(split.code).toBe(2);
    expect(split.stderr).toMatch(/is gzip, which is decompressed whole by one worker/);
  });

  it('fails a corrupt .gz at once, naming gzip (exit 1, one attempt)', async () => {
    const bad = join(dir, 'bad.jsonl.gz');
    await writeFile(bad, 'this is not gzip\n');
    const { code, stderr } = await fanout('run', 'by-field', bad);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /after 1 attempt\(s\): .*CorruptInputError: bad\.jsonl\.gz is not valid gzip/,
    );
  });

  it('skips dotfiles in a directory, and shows skipped records escaped, with --json partial fields', async () => {
    const data = join(dir, 'dotted');
    await mkdir(join(data, '.git'), { recursive: true });
    const good = '{"name":"A","field":"f","born":1900,"nobel":false}\n';
    await writeFile(join(data, 'a.jsonl'), good);
    await writeFile(join(data, '.hidden.jsonl'), 'garbage\n');
    await writeFile(join(data, '.git', 'HEAD'), 'garbage\n');
    await writeFile(join(data, 'b.jsonl'), `{"name": \u0007bell\u001b[31m}\n${good}`);
    const skipped = await fanout('run', 'by-field', data, '--on-bad-record', 'skip', '--json');
    expect(skipped.code).toBe(0);
    const summary = JSON.parse(skipped.stdout.trim().split('\n').at(-1) as string);
    expect(summary).toMatchObject({ status: 'SUCCEEDED', records: 3 }); // 2 good + 1 bad, no dotfile
    // The sample itself, control characters escaped; no path into a temporary directory.
    expect(skipped.stderr).toMatch(
      /skipped 1 malformed record\(s\)\n {2}b\.jsonl byte 0: .*\\x07bell\\x1b\[31m/,
    );
    expect(skipped.stderr).not.toMatch(/chunks\/\*\.json/);
    expect(skipped.stderr).not.toContain('\u001b');

    // Tolerated failures: the summary says the result is partial, and which chunks.
    await writeFile(join(data, 'b.jsonl'), `{"name": broken}\n${good}`);
    const partial = await fanout(
      'run',
      'by-field',
      data,
      '--chunks',
      '2',
      '--tolerated-failure-count',
      '1',
      '--json',
    );
    expect(partial.code).toBe(0);
    const last = JSON.parse(partial.stdout.trim().split('\n').at(-1) as string);
    expect(last).toMatchObject({
      partial: true,
      failedChunks: [expect.objectContaining({ index: 1, key: 'b.jsonl' })],
    });
  });

  it('runs a job module by path, registered nowhere, on a file and on a directory', async () => {
    const jobsDir = join(dir, 'my-jobs');
    await mkdir(jobsDir, { recursive: true });
    const job = join(jobsDir, 'fields.ts');
    // Imports fanout's public API by its package name, from outside the clone.
    await writeFile(
      job,
      `import * as z from 'zod';
import { defineJob, RecordSyntaxError } from 'fanout';

const count = (name: string) =>
  defineJob({
    name,
    format: 'jsonl',
    params: z.object({}).strict(),
    map: (r: unknown) => {
      const field = (r as { field?: unknown }).field;
      if (typeof field !== 'string') throw new RecordSyntaxError('no field');
      return field;
    },
    reduce: {
      init: () => ({}) as Record<string, number>,
      add: (acc: Record<string, number>, f: string) => ({ ...acc, [f]: (acc[f] ?? 0) + 1 }),
      merge: (a: Record<string, number>, b: Record<string, number>) => {
        const out = { ...a };
        for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
        return out;
      },
    },
  });
export default count('fields');
export const other = count('fields-too');
export const notAJob = 42;
`,
    );
    const expected = { math: 2, physics: 2, chemistry: 2, astronomy: 1 };
    const data = join(dir, 'sci-dir');
    await mkdir(data, { recursive: true });
    const lines = (await readFile(join(root, 'examples/scientists.jsonl'), 'utf8'))
      .trim()
      .split('\n');
    await writeFile(join(data, 'a.jsonl'), `${lines.slice(0, 3).join('\n')}\n`);
    await writeFile(join(data, 'b.jsonl'), `${lines.slice(3).join('\n')}\n`);
    // Side by side: each run is mostly its own start-up.
    const [onFile, named, wrong, missing] = await Promise.all([
      fanout('run', job, 'examples/scientists.jsonl'),
      fanout('run', `${job}#other`, data),
      fanout('run', `${job}#notAJob`, data),
      fanout('run', './no/such/job.ts', data),
    ]);
    expect(onFile.code, onFile.stderr).toBe(0);
    expect(JSON.parse(onFile.stdout)).toEqual(expected);
    expect(named.code, named.stderr).toBe(0);
    expect(JSON.parse(named.stdout)).toEqual(expected);
    expect(named.stderr).toMatch(/^fields-too succeeded/m);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/export "notAJob" is not a job/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/does not exist; expected a registered job name or a path/);
  });

  it('counts records read and kept when a map drops some; a job without params runs with {}', async () => {
    // No params: the job takes none.
    const job = await mapOnlyJob(
      'physicists',
      `(r: { name: string; field: string }) => (r.field === 'physics' ? r.name : undefined)`,
    );
    const run = await fanout('run', job, 'examples/scientists.jsonl', '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^physicists succeeded: 7\/7 chunks, 7 records, 2 kept, /m);
    const lines = run.stdout.trim().split('\n');
    expect(lines.slice(0, -1)).toEqual(['"Marie Curie"', '"Sally Ride"']);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ records: 7, kept: 2 });
    const refused = await fanout('run', job, 'examples/scientists.jsonl', '--params', '{"year":1}');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('invalid params for job physicists: it declares no params');
  });

  it("fails a job whose map throws after two attempts, naming the user's error", async () => {
    const job = await mapOnlyJob(
      'buggy',
      `(r: { name: string; field: string }) =>
    r.name === 'Marie Curie' ? (JSON.parse('null') as { y: number }).y : r.name`,
    );
    // A job may ask for more attempts of its own errors (a flaky service it calls). One record
    // only: a second failing chunk would end the job while this one still had attempts left.
    const patient = await mapOnlyJob(
      'patient',
      `(r: { name: string }) => {
    if (r.name === 'Marie Curie') throw new RangeError('the service is down');
    return r.name;
  }`,
      '\n  codeErrorAttempts: 3,',
    );
    // Side by side: each is mostly its own bundling and start-up.
    const [failed, tried] = await Promise.all([
      fanout('run', job, 'examples/scientists.jsonl'),
      fanout('run', patient, 'examples/scientists.jsonl'),
    ]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(
      /failed after 2 attempt\(s\): fanout-worker failed: TypeError: job map threw on the record at byte \d+ of scientists\.jsonl \(chunk \d+\): /,
    );
    // Where the user's code threw it: the job file, line 7 (the map's body), as written.
    expect(failed.stderr).toContain(`(at ${job}:7:`);
    expect(tried.code).toBe(1);
    expect(tried.stderr).toMatch(/failed after 3 attempt\(s\): fanout-worker failed: RangeError: /);
  });

  it('npm start shows each command before its progress and its result', async () => {
    // One stream, as a terminal shows both.
    const { stdout } = await promisify(execFile)(
      'sh',
      ['-c', `"${process.execPath}" cli/bin.mjs demo 2>&1`],
      {
        cwd: root,
      },
    );
    const lines = stdout.split('\n');
    const at = (pattern: RegExp) => lines.findIndex((l) => pattern.test(l));
    expect(at(/^\$ fanout run by-field /)).toBeGreaterThanOrEqual(0);
    expect(at(/^\$ fanout run by-field /)).toBeLessThan(at(/^by-field succeeded/));
    expect(at(/^by-field succeeded/)).toBeLessThan(at(/^\{"astronomy"/));
    expect(at(/^\$ fanout run scientists /)).toBeLessThan(at(/^scientists succeeded/));
  });

  it('answers --help on every verb and `help VERB` the same, with exit 0; --version', async () => {
    const verbs = [
      'run',
      'dev',
      'demo',
      'init',
      'upload',
      'submit',
      'status',
      'result',
      'report',
      'jobs',
      'cancel',
      'redrive',
      'list-jobs',
      'help',
    ];
    // Every verb side by side: 30 processes one after another took 14 s of CI.
    await Promise.all(
      verbs.map(async (verb) => {
        const [own, viaHelp] = await Promise.all([fanout(verb, '--help'), fanout('help', verb)]);
        expect(own.code, verb).toBe(0);
        expect(own.stdout, verb).toMatch(new RegExp(`^Usage: fanout ${verb}`));
        expect(viaHelp, verb).toEqual(own);
      }),
    );
    const version = await fanout('--version');
    expect(version).toMatchObject({ code: 0, stdout: 'fanout 0.1.0\n' });
    const unknown = await fanout('help', 'nope');
    expect(unknown.code).toBe(2);
  });

  it('lists jobs in aligned columns', async () => {
    const { code, stdout } = await fanout('list-jobs');
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    const kinds = lines.map((l) => l.search(/ (map-only|reduce|keyed|sorted) /) + 1);
    expect(lines.length).toBeGreaterThanOrEqual(3); // the built-in jobs
    expect(kinds.every((k) => k > 0)).toBe(true); // every line has a kind, after the name
    expect(new Set(kinds).size).toBe(1); // the kind column starts at the same place on every line
    expect(lines.find((l) => l.startsWith('wordcount '))).toMatch(/ keyed /);
    expect(lines.find((l) => l.startsWith('scientists '))).toMatch(/ map-only /);
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
