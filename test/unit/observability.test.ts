/**
 * Tracing is decided at init from what the stack sets, not from the trace id: Lambda sets
 * _X_AMZN_TRACE_ID per invocation, after the init that makes the tracer.
 */
import { describe, expect, it } from 'vitest';
import { tracingEnabled } from '../../functions/observability.ts';

describe('tracingEnabled', () => {
  it('traces in Lambda where the stack turned tracing on, before any trace id is set', () => {
    expect(
      tracingEnabled({
        POWERTOOLS_TRACE_ENABLED: 'true',
        AWS_LAMBDA_FUNCTION_NAME: 'fanout-worker',
      }),
    ).toBe(true);
  });

  it('does not trace where the stack did not ask, outside Lambda, or when the local runtime turns it off', () => {
    expect(tracingEnabled({ AWS_LAMBDA_FUNCTION_NAME: 'f', _X_AMZN_TRACE_ID: 'Root=1-x' })).toBe(
      false,
    );
    expect(tracingEnabled({ POWERTOOLS_TRACE_ENABLED: 'true' })).toBe(false);
    expect(
      tracingEnabled({ POWERTOOLS_TRACE_ENABLED: 'false', AWS_LAMBDA_FUNCTION_NAME: 'f' }),
    ).toBe(false);
  });
});
