/**
 * Asynchronous (Event) invocations of one function, as Lambda runs them: queued until a sandbox
 * is free under the function's concurrency, retried on a function error (twice by default, 1 s
 * and 2 s apart here), and then handed, as Lambda's invocation record, to the function's failure
 * destination.
 */
import { randomUUID } from 'node:crypto';
import type { FunctionPool } from './function-pool.ts';
import type { LambdaServerOptions } from './server.ts';

/** The Event invocations of one function. */
export class EventQueue {
  private readonly items: { event: unknown; attempt: number }[] = [];
  /** Invocations whose retry is scheduled. */
  private retrying = 0;

  constructor(
    private readonly pool: FunctionPool,
    private readonly hooks: {
      log: LambdaServerOptions['log'];
      closing: () => boolean;
      /** The function's ARN, for the invocation record. */
      arn: string;
    },
  ) {}

  /** Invocations waiting for a sandbox or for their retry. */
  get queued(): number {
    return this.items.length + this.retrying;
  }

  /** Queues an invocation. */
  push(event: unknown): void {
    this.items.push({ event, attempt: 1 });
    this.drain();
  }

  /** Starts what the function's concurrency allows (called whenever a slot frees). */
  drain(): void {
    const { pool } = this;
    while (
      !this.hooks.closing() &&
      this.items.length > 0 &&
      pool.inFlight < pool.spec.concurrency
    ) {
      const item = this.items.shift()!;
      pool.inFlight += 1;
      void pool.run(item.event, 'Event').then((outcome) => {
        pool.inFlight -= 1;
        if (outcome.kind === 'function-error') this.failed(item, outcome);
        this.drain();
      });
    }
  }

  private failed(
    item: { event: unknown; attempt: number },
    outcome: { errorType: string; errorMessage: string },
  ): void {
    const { spec } = this.pool;
    if (item.attempt <= (spec.retryAttempts ?? 2)) {
      this.hooks.log?.(
        spec.name,
        `async invocation failed (attempt ${item.attempt}): ${outcome.errorType}: ${outcome.errorMessage}\n`,
      );
      this.retrying += 1;
      setTimeout(() => {
        this.retrying -= 1;
        this.items.push({ event: item.event, attempt: item.attempt + 1 });
        this.drain();
      }, 1000 * item.attempt).unref();
      return;
    }
    if (this.hooks.closing()) return;
    spec.onFailure?.({
      version: '1.0',
      timestamp: new Date().toISOString(),
      requestContext: {
        requestId: randomUUID(),
        functionArn: `${this.hooks.arn}:$LATEST`,
        condition: 'RetriesExhausted',
        approximateInvokeCount: item.attempt,
      },
      requestPayload: item.event,
      responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
      responsePayload: { errorType: outcome.errorType, errorMessage: outcome.errorMessage },
    });
  }
}
