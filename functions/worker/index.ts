/** Worker Lambda: processes one chunk (a byte range of one object) and writes its part. */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { systemClock } from '#core/ports.ts';
import { runChunk } from '#core/worker.ts';
import { jobs } from '#jobs/index.ts';
import { primeClients, storeFromEnv } from '../config.ts';
import { chunkTaskSchema } from '../events.ts';

const store = storeFromEnv();
await primeClients(process.env, { store });

const gunzip = (compressed: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> =>
  Readable.from(compressed).pipe(createGunzip());

/** Lambda entry point. The event is a ChunkTask; the result a small ChunkSummary. */
export const handler = async (event: unknown) =>
  runChunk(chunkTaskSchema.parse(event), { store, jobs, clock: systemClock, gunzip });
