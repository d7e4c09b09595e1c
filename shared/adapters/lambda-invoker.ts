/** The Invoker port over `@aws-sdk/client-lambda` (AWS, or the local Lambda server). */
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { FunctionError, InvocationTimeoutError, ThrottledError } from '#core/base/errors.ts';
import type { Invoker } from '#core/base/ports.ts';
import { keepAliveAgents } from './agents.ts';
import { createLambdaClient, type LambdaClientOptions } from './lambda-clients.ts';

const decoder = new TextDecoder();
const encoder = new TextEncoder();
/**
 * Deadlines that get a client of their own. Callers use a few fixed ones; past this many, a
 * deadline is enforced with a per-call abort signal instead (slower, but no client per value).
 */
const MAX_DEADLINE_CLIENTS = 8;

/**
 * Lambda implementation of {@link Invoker}.
 *
 * A deadline (`timeoutMs`) is enforced by the client's request handler, not by a per-call abort
 * signal: per-call options would make the SDK rebuild its middleware chain on every call (see
 * {@link createLambdaClient}). So the invoker keeps one client per distinct deadline — in
 * practice two or three: the worker timeout plus a margin, the reducer's, none — and all of them
 * share one pool of keep-alive sockets. Past eight distinct deadlines, further ones fall back to
 * an abort signal per call.
 */
export class LambdaInvoker implements Invoker {
  private readonly clients = new Map<number | undefined, LambdaClient>();
  private readonly options: LambdaClientOptions;

  /** @param options how to reach Lambda; see {@link LambdaClientOptions} (`requestTimeoutMs` is set per call). */
  constructor(options: LambdaClientOptions = {}) {
    this.options = {
      ...options,
      agents: options.agents ?? keepAliveAgents(options.maxSockets ?? Number.POSITIVE_INFINITY),
    };
  }

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

  /**
   * A DryRun invocation: Lambda checks that the function exists and that the caller may invoke
   * it, and runs nothing. Used to prime the client (functions/config.ts).
   */
  async dryRun(functionName: string): Promise<void> {
    await this.send(functionName, {}, 'DryRun');
  }

  /** Closes the sockets of every client. */
  destroy(): void {
    for (const client of this.clients.values()) client.destroy();
    this.clients.clear();
  }

  private client(timeoutMs: number | undefined): LambdaClient {
    let client = this.clients.get(timeoutMs);
    if (client === undefined) {
      client = createLambdaClient({
        ...this.options,
        ...(timeoutMs !== undefined && { requestTimeoutMs: timeoutMs }),
      });
      this.clients.set(timeoutMs, client);
    }
    return client;
  }

  private async send(
    functionName: string,
    payload: unknown,
    type: 'RequestResponse' | 'Event' | 'DryRun',
    timeoutMs?: number,
  ) {
    const started = performance.now();
    const ownClient =
      timeoutMs === undefined ||
      this.clients.has(timeoutMs) ||
      this.clients.size < MAX_DEADLINE_CLIENTS;
    const signal = ownClient ? undefined : AbortSignal.timeout(timeoutMs as number);
    try {
      const command = new InvokeCommand({
        FunctionName: functionName,
        InvocationType: type,
        Payload: encoder.encode(JSON.stringify(payload)),
      });
      return signal === undefined
        ? await this.client(timeoutMs).send(command)
        : await this.client(undefined).send(command, { abortSignal: signal });
    } catch (error) {
      if (signal?.aborted) {
        throw new InvocationTimeoutError(functionName, timeoutMs as number, { cause: error });
      }
      const name = (error as { name?: string }).name;
      // A socket-level ETIMEDOUT is also a TimeoutError; the deadline's comes at the deadline
      // (timers may fire a few milliseconds early against this clock, hence the slack).
      if (
        name === 'TimeoutError' &&
        timeoutMs !== undefined &&
        performance.now() - started >= timeoutMs * 0.9
      ) {
        throw new InvocationTimeoutError(functionName, timeoutMs, { cause: error });
      }
      if (name === 'TooManyRequestsException') {
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
