/**
 * Synthesizes fanout's template into a file, in a process of its own (aws-cdk-lib is large, and
 * the CLI does not load it): `node synth-bundle.mjs OUT [CONTEXT_JSON]`. Run from a cached
 * bundle by local/template/source.ts.
 */
import { rename, writeFile } from 'node:fs/promises';
import { synthTemplate } from '../../infra/synth.ts';

const [out, context] = process.argv.slice(2);
if (out === undefined) {
  process.stderr.write('usage: synth-main OUT [CONTEXT_JSON]\n');
  process.exit(2);
}
const template = synthTemplate(context === undefined ? {} : JSON.parse(context));
// Written aside and renamed: a concurrent reader sees the whole template or none.
const partial = `${out}.${process.pid}.partial`;
await writeFile(partial, JSON.stringify(template));
await rename(partial, out);
