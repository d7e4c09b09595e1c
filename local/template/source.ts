/**
 * Where the local runtime's template comes from: a file the user synthesized
 * (`fanout dev --template cdk.out/Fanout.template.json`), or by default the stack of this
 * checkout, synthesized on first use and cached by the content of its sources, cdk.json and the
 * context (a few seconds once; a cache hit costs a few file hashes).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { cachedBundle } from '../bundle-cache.mjs';
import { repoRoot } from '../paths.ts';
import { type Template, TemplateError } from './deployment.ts';

const run = promisify(execFile);

/** Reads a synthesized template. Throws TemplateError naming the file and what is wrong. */
export async function readTemplate(path: string): Promise<Template> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TemplateError(
      `cannot read the template ${path}: ${(error as Error).message}; expected a file written by cdk synth (cdk.out/Fanout.template.json)`,
    );
  }
  try {
    return JSON.parse(text) as Template;
  } catch {
    throw new TemplateError(
      `${path} is not JSON; expected a CloudFormation template from cdk synth`,
    );
  }
}

/**
 * The template of this checkout's stack (infra/app.ts) with `context` added, from the cache or
 * synthesized now. Throws TemplateError when it cannot be synthesized (aws-cdk-lib missing, or
 * the stack refuses its props), with the synthesizer's own message.
 */
export async function defaultTemplate(
  context: Record<string, string> = {},
  onSynth: () => void = () => undefined,
): Promise<{
  path: string;
  template: Template;
}> {
  const cacheDir = join(repoRoot, 'node_modules/.cache/fanout/templates');
  const bundle = await cachedBundle({
    name: 'synth',
    entry: join(repoRoot, 'local/template/synth-main.ts'),
    rootDir: repoRoot,
    cacheDir,
    options: {
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // aws-cdk-lib and the rest load from node_modules: only fanout's sources are bundled, and
      // they are what the cache key covers.
      packages: 'external',
      legalComments: 'none',
      logLevel: 'silent',
    },
  });
  const cdkJson = await readFile(join(repoRoot, 'cdk.json')).catch(() => Buffer.alloc(0));
  const key = createHash('sha256')
    .update(basename(bundle))
    .update(cdkJson)
    .update(JSON.stringify(Object.entries(context).sort()))
    .digest('hex')
    .slice(0, 16);
  const path = join(cacheDir, `Fanout-${key}.template.json`);
  if (!existsSync(path)) {
    onSynth();
    try {
      await run(process.execPath, [bundle, path, JSON.stringify(context)], {
        cwd: repoRoot,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? '');
      const why = /Error: (.*)/.exec(stderr)?.[1] ?? (stderr.trim() || (error as Error).message);
      throw new TemplateError(`cannot synthesize fanout's template: ${why}`);
    }
  }
  return { path, template: await readTemplate(path) };
}
