/**
 * The fanout stack's CloudFormation template, synthesized in process with the app's own
 * context (cdk.json) and no asset bundling: what the local runtime reads to run every function
 * as the template configures it, and what the cfn-lint test checks. `cdk synth` gives the same
 * template, with the functions' bundles beside it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { repoRoot } from '../local/paths.ts';
import { FanoutStack } from './stack.ts';

/** The stack's name in infra/app.ts, and so in `cdk.out/Fanout.template.json`. */
export const STACK_NAME = 'Fanout';

/** The context cdk.json gives the app (feature flags). */
function appContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(join(repoRoot, 'cdk.json'), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  return cdkJson.context ?? {};
}

/**
 * Synthesizes the stack of infra/app.ts with `context` added (for example the timeout keys of
 * a deploy rehearsal) and returns its template.
 */
export function synthTemplate(context: Record<string, unknown> = {}): object {
  const app = new App({
    context: { ...appContext(), ...context, 'aws:cdk:bundling-stacks': [] },
  });
  new FanoutStack(app, STACK_NAME);
  return app.synth().getStackByName(STACK_NAME).template as object;
}
