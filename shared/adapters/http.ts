/** The HTTP handler every SDK client here uses: keep-alive sockets, enough of them. */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/** A pair of keep-alive agents, one for http (the local servers) and one for https (AWS). */
export interface KeepAliveAgents {
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
}

/**
 * Keep-alive agents with at most `maxSockets` sockets per host. Reusing sockets matters: a
 * coordinator holds one open request per chunk in flight, and a new TLS connection per chunk
 * would cost a handshake each time.
 */
export function keepAliveAgents(maxSockets: number): KeepAliveAgents {
  return {
    httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
    httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
  };
}

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
