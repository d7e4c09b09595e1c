/** The HTTP handler every SDK client here uses: keep-alive sockets, enough of them. */
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { type KeepAliveAgents, keepAliveAgents } from './agents.ts';

/** Options of {@link keepAliveHandler}. */
export interface KeepAliveHandlerOptions {
  /**
   * A request that has not been answered after this many milliseconds is destroyed and fails
   * with a `TimeoutError`. Absent: no deadline.
   */
  requestTimeoutMs?: number;
}

/**
 * A request handler over keep-alive agents: `agents` to share sockets between clients (the
 * Lambda invoker keeps one client per deadline), or a socket count for agents of its own.
 */
export function keepAliveHandler(
  agents: KeepAliveAgents | number,
  options: KeepAliveHandlerOptions = {},
): NodeHttpHandler {
  return new NodeHttpHandler({
    ...(typeof agents === 'number' ? keepAliveAgents(agents) : agents),
    ...(options.requestTimeoutMs !== undefined && {
      requestTimeout: options.requestTimeoutMs,
      // Without this the handler only logs a warning when the deadline passes.
      throwOnRequestTimeout: true,
    }),
  });
}
