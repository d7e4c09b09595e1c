/**
 * `fanout init [DIR]`: a project of the user's own that depends on fanout: an example job with
 * its vitest test, a registry, sample data, and a CDK app that deploys FanoutService with that
 * registry. It never overwrites a file: every file it would write must not exist yet.
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { ValidationError } from '#core/base/errors.ts';
import { repoRoot } from '#local/paths.ts';

/** Usage of `fanout init`. */
export const INIT_HELP = `Usage: fanout init [DIR] [--fanout SPEC]

Starts a project of your own in DIR (default: the current directory), which must not hold any
of the files it writes: package.json, tsconfig.json, cdk.json, app.ts, jobs/example.ts,
jobs/example.test.ts, jobs/index.ts, data.jsonl, README.md and .gitignore. Then:

  npm install                                  # fanout, vitest, tsx and the AWS CDK
  npm test                                     # the example job's test
  npx fanout run ./jobs/example.ts data.jsonl  # the job on the embedded local runtime
  npx cdk synth                                # the CloudFormation template, offline

Options:
  --fanout SPEC   what package.json depends on for fanout (default: file: and the path of
                  the fanout that runs this command, as fanout is not on the npm registry yet;
                  e.g. a tarball from npm pack, or a git URL)
`;

/** The dependencies a new project gets, at the versions this fanout is built and tested with. */
const DEV_DEPENDENCIES = [
  '@types/node',
  'aws-cdk',
  'aws-cdk-lib',
  'constructs',
  'tsx',
  'typescript',
  'vitest',
] as const;

/** Writes a new project; returns the exit code. */
export async function initCommand(args: string[]): Promise<number> {
  const { dir, spec } = parseInitArgs(args);
  const target = resolve(dir);
  const own = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  const pinned = (name: string) => own.devDependencies[name] ?? own.dependencies[name] ?? 'latest';
  const files = projectFiles(basename(target), spec ?? `file:${repoRoot}`, pinned);
  for (const name of Object.keys(files)) {
    const exists = await access(join(target, name)).then(
      () => true,
      () => false,
    );
    if (exists) {
      throw new ValidationError(
        `${join(target, name)} exists; fanout init writes only into a directory without ${Object.keys(files).join(', ')}`,
      );
    }
  }
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(target, name, '..'), { recursive: true });
    await writeFile(join(target, name), text);
  }
  const where = relative(process.cwd(), target) || '.';
  process.stdout.write(
    `fanout init: a project in ${where}, with fanout ${own.version}. Next:\n` +
      `${where === '.' ? '' : `  cd ${where}\n`}  npm install\n  npm test\n  npx fanout run ./jobs/example.ts data.jsonl\n  npx cdk synth\n`,
  );
  return 0;
}

function parseInitArgs(args: string[]): { dir: string; spec: string | undefined } {
  let dir: string | undefined;
  let spec: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--fanout') {
      spec = args[++i];
      if (spec === undefined || spec === '') {
        throw new ValidationError('--fanout needs a package spec, e.g. file:../fanout-0.1.0.tgz');
      }
    } else if (arg.startsWith('-')) {
      throw new ValidationError(`unknown option ${arg} for fanout init; expected --fanout SPEC`);
    } else if (dir === undefined) {
      dir = arg;
    } else {
      throw new ValidationError(`fanout init takes one directory; got ${dir} and ${arg}`);
    }
  }
  return { dir: dir ?? '.', spec };
}

/** The new project's files, by path. */
function projectFiles(
  name: string,
  fanout: string,
  pinned: (name: string) => string,
): Record<string, string> {
  const packageName = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-') || 'fanout-project';
  return {
    'package.json': `${JSON.stringify(
      {
        name: packageName,
        private: true,
        type: 'module',
        scripts: {
          test: 'vitest run',
          typecheck: 'tsc --noEmit',
          synth: 'cdk synth',
          deploy: 'cdk deploy',
        },
        dependencies: { fanout: fanout },
        devDependencies: Object.fromEntries(DEV_DEPENDENCIES.map((d) => [d, pinned(d)])),
      },
      null,
      2,
    )}\n`,
    'tsconfig.json': `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'preserve',
          moduleResolution: 'bundler',
          allowImportingTsExtensions: true,
          noEmit: true,
          strict: true,
          skipLibCheck: true,
          types: ['node'],
        },
        include: ['**/*.ts'],
        exclude: ['node_modules', 'cdk.out'],
      },
      null,
      2,
    )}\n`,
    'cdk.json': `${JSON.stringify({ app: 'npx tsx app.ts' }, null, 2)}\n`,
    'app.ts': `// The CDK app: FanoutService deploys the coordinator, workers, reducer, bucket and HTTP API,
// with the jobs of jobs/index.ts bundled into its functions. \`npx cdk synth\`, \`npx cdk deploy\`.
import { App, Stack } from 'aws-cdk-lib';
import { FanoutService } from 'fanout/cdk';

const app = new App();
const stack = new Stack(app, 'Fanout', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
new FanoutService(stack, 'Service', { jobs: 'jobs/index.ts' });
`,
    'jobs/example.ts': `// A map-only job: each record's name, upper-cased, in input order.
import { defineJob } from 'fanout';

export default defineJob({
  name: 'example',
  format: 'jsonl',
  map: (record: { name: string }) => record.name.toUpperCase(),
});
`,
    'jobs/example.test.ts': `import { expect, it } from 'vitest';
import example from './example.ts';

it('upper-cases each name', () => {
  expect(example.map({ name: 'Ada Lovelace' }, {})).toBe('ADA LOVELACE');
});
`,
    'jobs/index.ts': `// The jobs your deployment serves (FanoutService's \`jobs\`, \`fanout dev --jobs\`).
import { createRegistry } from 'fanout';
import example from './example.ts';

export const jobs = createRegistry([example]);
`,
    'data.jsonl': '{"name":"Ada Lovelace"}\n{"name":"Grace Hopper"}\n{"name":"Emmy Noether"}\n',
    'README.md': `# ${packageName}

Jobs for fanout: map/reduce over S3 datasets on AWS Lambda.

\`\`\`sh
npm install
npm test                                      # the jobs' tests (vitest)
npx fanout run ./jobs/example.ts data.jsonl   # a job on the embedded local runtime, no AWS account
npx fanout dev --jobs jobs/index.ts           # the HTTP API, S3 and Lambda on 127.0.0.1
npx cdk synth                                 # the CloudFormation template
npx cdk deploy                                # to your AWS account
\`\`\`

A job is a module that default-exports \`defineJob({...})\`; add it to \`jobs/index.ts\` to serve
it from \`fanout dev\` and from the deployment.
`,
    '.gitignore': 'node_modules/\ncdk.out/\n.fanout/\n',
  };
}
