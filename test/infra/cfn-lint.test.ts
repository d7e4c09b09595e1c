/**
 * cfn-lint on the template `cdk synth` produces (the app's own context, cdk.json): no error and
 * no warning beyond the one CDK itself causes. Skipped, saying so, where cfn-lint is absent.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { synthTemplate } from '../../infra/synth.ts';

const installed = spawnSync('cfn-lint', ['--version'], { encoding: 'utf8' }).status === 0;
if (!installed) {
  process.stderr.write('cfn-lint test skipped: cfn-lint is not installed (pip install cfn-lint)\n');
}

/**
 * W3005 ("dependency already enforced by a GetAtt"): CDK adds DependsOn from each function to its
 * role's default policy, on purpose (the policy must exist before the function runs).
 */
const ACCEPTED = new Set(['W3005']);

describe.skipIf(!installed)('cfn-lint', () => {
  it('finds no error and no warning in the synthesized template', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-lint-'));
    try {
      const file = join(dir, 'Fanout.template.json');
      writeFileSync(file, JSON.stringify(synthTemplate()));
      const run = spawnSync('cfn-lint', ['--format', 'json', file], { encoding: 'utf8' });
      expect(run.error).toBeUndefined();
      const findings = JSON.parse(run.stdout || '[]') as {
        Level: string;
        Message: string;
        Rule: { Id: string };
      }[];
      expect(
        findings
          .filter((f) => !ACCEPTED.has(f.Rule.Id))
          .map((f) => `${f.Level} ${f.Rule.Id}: ${f.Message}`),
      ).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
