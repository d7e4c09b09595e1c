/** The HTTP handler every SDK client here uses: keep-alive sockets, enough of them. */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/**
 * A request handler with keep-alive agents for http (the local servers) and https (AWS).
 * Reusing sockets matters: a coordinator holds one open request per chunk in flight.
 */
export function keepAliveHandler(maxSockets: number, requestTimeoutMs?: number): NodeHttpHandler {
  return new NodeHttpHandler({
    httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
    httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
    ...(requestTimeoutMs !== undefined && { requestTimeout: requestTimeoutMs }),
  });
}
