#!/usr/bin/env node
// The `fanout` executable: runs the TypeScript CLI through tsx's loader, so `npx fanout` works
// from a clone without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
