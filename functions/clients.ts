/**
 * The handlers' SDK clients, from the environment (see config.ts for the variables): the
 * object store over the S3 client, and the Lambda invoker. The worker loads this module only
 * when a request needs the SDK (its hot requests are lean).
 */
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { createS3Client } from '#adapters/s3-clients.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { ENV, optionalUrl } from './config.ts';

type Env = Record<string, string | undefined>;

/**
 * The object store every handler uses. `maxSockets` bounds its sockets (half for the SDK
 * client, half for lean dataset GETs) where file descriptors are counted (the coordinator).
 */
export function storeFromEnv(
  env: Env = process.env,
  trace: { captureClient<C>(client: C): C } = { captureClient: (c) => c },
  options: { maxSockets?: number } = {},
) {
  const endpoint = optionalUrl(env, ENV.s3Endpoint);
  const half = options.maxSockets === undefined ? undefined : Math.max(1, options.maxSockets >> 1);
  return new S3ObjectStore(
    trace.captureClient(
      createS3Client({
        ...(endpoint !== undefined && { endpoint }),
        ...(half !== undefined && { maxSockets: half }),
      }),
    ),
    half === undefined ? {} : { leanSockets: half },
  );
}

/** The invoker the coordinator (and submitters) use; `maxSockets` caps its sockets. */
export function invokerFromEnv(env: Env = process.env, options: { maxSockets?: number } = {}) {
  const endpoint = optionalUrl(env, ENV.lambdaEndpoint);
  return new LambdaInvoker({
    ...(endpoint !== undefined && { endpoint }),
    ...(options.maxSockets !== undefined && { maxSockets: options.maxSockets }),
  });
}
