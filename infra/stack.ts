import { Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { FanoutService, type FanoutServiceProps } from './constructs/fanout-service.ts';

/** Props of {@link FanoutStack}. */
export interface FanoutStackProps extends StackProps {
  /** Passed to the FanoutService. @default {} */
  readonly service?: FanoutServiceProps;
}

/**
 * CDK context keys the stack reads, each a whole number of seconds, overriding the service's
 * timeout props: a deploy rehearsal synthesizes with short timeouts
 * (`cdk synth -c fanout:workerTimeoutSeconds=5 -c fanout:coordinatorTimeoutSeconds=30`) and runs
 * the template locally, where continuations then happen within seconds.
 */
export const TIMEOUT_CONTEXT = {
  workerTimeout: 'fanout:workerTimeoutSeconds',
  coordinatorTimeout: 'fanout:coordinatorTimeoutSeconds',
  reducerTimeout: 'fanout:reducerTimeoutSeconds',
} as const;

/** The deployable stack: one FanoutService. */
export class FanoutStack extends Stack {
  readonly service: FanoutService;

  constructor(scope: Construct, id: string, props: FanoutStackProps = {}) {
    super(scope, id, props);
    const fromContext: Partial<Record<keyof typeof TIMEOUT_CONTEXT, Duration>> = {};
    for (const [prop, key] of Object.entries(TIMEOUT_CONTEXT) as [
      keyof typeof TIMEOUT_CONTEXT,
      string,
    ][]) {
      const value: unknown = this.node.tryGetContext(key);
      if (value === undefined) continue;
      const seconds = Number(value);
      if (!(Number.isInteger(seconds) && seconds >= 1)) {
        throw new Error(
          `context ${key} must be a whole number of seconds ≥ 1; got ${JSON.stringify(value)}`,
        );
      }
      fromContext[prop] = Duration.seconds(seconds);
    }
    this.service = new FanoutService(this, 'Fanout', { ...props.service, ...fromContext });
  }
}
