import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { FanoutService, type FanoutServiceProps } from './constructs/fanout-service.ts';

/** Props of {@link FanoutStack}. */
export interface FanoutStackProps extends StackProps {
  /** Passed to the FanoutService. @default {} */
  readonly service?: FanoutServiceProps;
}

/** The deployable stack: one FanoutService. */
export class FanoutStack extends Stack {
  readonly service: FanoutService;

  constructor(scope: Construct, id: string, props: FanoutStackProps = {}) {
    super(scope, id, props);
    this.service = new FanoutService(this, 'Fanout', props.service ?? {});
  }
}
