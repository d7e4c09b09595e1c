/** Worker Lambda: processes one chunk (a byte range of one object) and writes its part. */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { countingStore } from '#core/counting-store.ts';
import { systemClock } from '#core/ports.ts';
import { runChunk } from '#core/worker.ts';
import { jobs } from '#jobs/index.ts';
import { initDone, meterInvocation, primeClients, storeFromEnv } from '../config.ts';
import { chunkTaskSchema } from '../events.ts';

const store = storeFromEnv();
await primeClients(process.env, { store });
initDone();

const gunzip = (compressed: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> =>
  Readable.from(compressed).pipe(createGunzip());

/**
 * Lambda entry point. The event is a ChunkTask; the result a small ChunkSummary with the
 * invocation's usage (duration, memory, S3 requests) for the job's cost.
 */
export const handler = async (event: unknown) => {
  const meter = meterInvocation('worker');
  const counted = countingStore(store);
  const summary = await runChunk(chunkTaskSchema.parse(event), {
    store: counted.store,
    jobs,
    clock: systemClock,
    gunzip,
    invocation: meter.info(),
  });
  return { ...summary, usage: meter.usage(counted.requests) };
};
