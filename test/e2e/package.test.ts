/**
 * fanout as a package in a project of the user's own, outside the clone: `npm pack`'s tarball,
 * unpacked as `npm install` would place it, then `fanout init`, `npm test`, a job by path and
 * `cdk synth` in the new project, each as a user types it.
 *
 * One step is not the user's: the tarball's dependencies are linked from the clone's
 * node_modules rather than installed, because the suite runs with no network and npm cannot
 * resolve a new project's dependencies offline (its cache holds the clone's tarballs, not their
 * registry metadata). Everything fanout itself provides comes from the tarball alone.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../fixtures/dev-process.ts';

const run = promisify(execFile);
let dir: string;
let project: string;

/** Runs a command in the project as a user would, with the project's bins on PATH. */
async function inProject(command: string, args: string[]) {
  const env = {
    ...process.env,
    PATH: `${join(project, 'node_modules/.bin')}:${process.env.PATH}`,
    CDK_DISABLE_VERSION_CHECK: '1',
    CDK_DISABLE_CLI_TELEMETRY: 'true',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  return run(command, args, { cwd: project, env, maxBuffer: 1 << 24 });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fanout-package-'));
  project = join(dir, 'my-jobs');
  const { stdout } = await run('npm', ['pack', '--pack-destination', dir], { cwd: root });
  const tarball = join(dir, stdout.trim().split('\n').at(-1)!);
  // As `npm install` places it: the package under node_modules/fanout, its bin linked.
  const modules = join(project, 'node_modules');
  await mkdir(join(modules, 'fanout'), { recursive: true });
  await run('tar', ['xzf', tarball, '-C', join(modules, 'fanout'), '--strip-components=1']);
  for (const name of await readdir(join(root, 'node_modules'))) {
    if (name === '.bin' || name === '.cache' || name === '.package-lock.json') continue;
    await symlink(join(root, 'node_modules', name), join(modules, name));
  }
  await mkdir(join(modules, '.bin'));
  await symlink('../fanout/cli/bin.mjs', join(modules, '.bin/fanout'));
  for (const bin of ['vitest', 'cdk', 'tsx', 'tsc']) {
    await symlink(join(root, 'node_modules/.bin', bin), join(modules, '.bin', bin));
  }
}, 120_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the npm package', () => {
  it('starts a project with fanout init, whose test, job and CDK app all work', async () => {
    const init = await inProject('fanout', ['init', '--fanout', 'file:../fanout-0.1.0.tgz']);
    expect(init.stdout).toContain('fanout init: a project in .');
    const manifest = JSON.parse(await readFile(join(project, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ dependencies: { fanout: 'file:../fanout-0.1.0.tgz' } });
    // It never overwrites: a second init names the first file it finds.
    await expect(inProject('fanout', ['init'])).rejects.toMatchObject({
      stderr: expect.stringContaining(`${join(project, 'package.json')} exists`),
    });

    const test = await inProject('npm', ['test']);
    expect(test.stdout).toMatch(/1 passed/);
    // The project's own tsc checks its jobs, and fanout's sources they import, as written.
    await inProject('npm', ['run', 'typecheck']);

    const job = await inProject('fanout', ['run', './jobs/example.ts', 'data.jsonl']);
    expect(job.stdout.trim().split('\n')).toEqual([
      '"ADA LOVELACE"',
      '"GRACE HOPPER"',
      '"EMMY NOETHER"',
    ]);

    // `fanout/cdk` from the package: FanoutService with the project's registry, bundled.
    await inProject('cdk', ['synth', '-q', '--no-notices']);
    const template = JSON.parse(
      await readFile(join(project, 'cdk.out/Fanout.template.json'), 'utf8'),
    ) as { Resources: Record<string, { Type: string }> };
    const functions = Object.values(template.Resources).filter(
      (r) => r.Type === 'AWS::Lambda::Function',
    );
    expect(functions.length).toBeGreaterThanOrEqual(5);
    // The worker's bundle holds the project's job, not only the built-in ones.
    const assets = (await readdir(join(project, 'cdk.out'))).filter((n) => n.startsWith('asset.'));
    let found = false;
    for (const asset of assets) {
      const index = join(project, 'cdk.out', asset, 'index.mjs');
      const text = await readFile(index, 'utf8').catch(() => '');
      if (text.includes('toUpperCase') && text.includes('"example"')) found = true;
    }
    expect(found).toBe(true);
  }, 240_000);
});
