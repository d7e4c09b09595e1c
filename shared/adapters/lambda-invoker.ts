/** The Invoker port over `@aws-sdk/client-lambda` (AWS, or the local Lambda server). */
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { FunctionError, InvocationTimeoutError, ThrottledError } from '#core/errors.ts';
import type { Invoker } from '#core/ports.ts';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Lambda implementation of {@link Invoker}. */
export class LambdaInvoker implements Invoker {
  constructor(private readonly client: LambdaClient) {}

  async invoke<T = unknown>(
    functionName: string,
    payload: unknown,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    const out = await this.send(functionName, payload, 'RequestResponse', options.timeoutMs);
    const text = out.Payload === undefined ? '' : decoder.decode(out.Payload);
    if (out.FunctionError !== undefined) {
      let errorType = out.FunctionError;
      let errorMessage = text;
      try {
        const body = JSON.parse(text) as { errorType?: string; errorMessage?: string };
        errorType = body.errorType ?? errorType;
        errorMessage = body.errorMessage ?? text;
      } catch {
        // Not JSON: keep the raw text as the message.
      }
      throw new FunctionError(functionName, errorType, errorMessage);
    }
    return (text === '' ? null : JSON.parse(text)) as T;
  }

  async invokeEvent(functionName: string, payload: unknown): Promise<void> {
    await this.send(functionName, payload, 'Event');
  }

  private async send(
    functionName: string,
    payload: unknown,
    type: 'RequestResponse' | 'Event',
    timeoutMs?: number,
  ) {
    const signal = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
    try {
      return await this.client.send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: type,
          Payload: encoder.encode(JSON.stringify(payload)),
        }),
        signal === undefined ? {} : { abortSignal: signal },
      );
    } catch (error) {
      if (signal?.aborted) {
        throw new InvocationTimeoutError(functionName, timeoutMs as number, { cause: error });
      }
      if ((error as { name?: string }).name === 'TooManyRequestsException') {
        const retryAfter = Number((error as { retryAfterSeconds?: string }).retryAfterSeconds);
        throw new ThrottledError(
          functionName,
          Number.isFinite(retryAfter) ? retryAfter : undefined,
          { cause: error },
        );
      }
      throw error;
    }
  }
}
