/**
 * fanout's construct for a user's own CDK app: `import { FanoutService } from 'fanout/cdk'`
 * (the package's `exports` entry). It deploys the service with the user's job registry
 * (`jobs`), bundled by the installed esbuild, no Docker needed.
 */
export { FanoutService, type FanoutServiceProps } from './constructs/fanout-service.ts';
