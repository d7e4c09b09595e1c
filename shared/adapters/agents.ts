/**
 * Keep-alive agents, apart from the SDK's request handler (http.ts) so that lean requests
 * (s3-lean.ts) use them without loading it.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';

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
