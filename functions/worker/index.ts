/** Worker Lambda: processes one chunk (a byte range of one object) and writes its part. */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { leanStoreFromEnv } from '#adapters/lean-store.ts';
import { countingStore } from '#core/base/counting-store.ts';
import { systemClock } from '#core/base/ports.ts';
import { runPartition } from '#core/run/partition.ts';
import { runChunk, type Spill } from '#core/run/worker.ts';
import { jobs } from '#jobs/index.ts';
import { codeLoaded, initDone, meterInvocation, PRIME_KEYS, primeClients } from '../config.ts';
import { chunkTaskSchema, partitionTaskSchema } from '../events.ts';
import { observability } from '../observability.ts';
import { withUserFrame } from '../source-location.ts';

codeLoaded();
const obs = await observability('worker');
// The SDK's store, for what the lean requests do not cover (loaded on first use).
const sdkStore = async () => (await import('../clients.ts')).storeFromEnv(process.env, obs);
// Reads, the outcome's create-only PUT, a part and a lost part's DELETE are lean requests: a
// worker that needs nothing else never loads the S3 client. Without credentials in the
// environment (the SDK's provider chain finds them), the SDK's store does everything.
const store = leanStoreFromEnv(process.env, sdkStore) ?? (await sdkStore());
// The worker's first request (the outcome's PUT) is the one primed.
await primeClients(process.env, { store, keys: { write: PRIME_KEYS.outcome } });
initDone();

const gunzip = (compressed: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> =>
  Readable.from(compressed).pipe(createGunzip());

/**
 * A sorted chunk's outputs, or a keyed chunk's combiner, past an eighth of the function's memory
 * (their JSON, or an estimate of it; in memory they take two to three times that), or past
 * FANOUT_SPILL_BYTES when set, spill to local disk: Lambda's /tmp, 512 MB by default and up to
 * 10 GB (the construct's ephemeral storage).
 */
const spill: Spill = {
  budgetBytes:
    Number(process.env.FANOUT_SPILL_BYTES) ||
    (Number(process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE) || 1024) * 2 ** 17,
  async write(bytes) {
    const dir = await mkdtemp(join(tmpdir(), 'fanout-spill-'));
    const path = join(dir, 'run.jsonl');
    await writeFile(path, bytes);
    return {
      read: () => createReadStream(path, { highWaterMark: 256 * 1024 }),
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  },
};

/**
 * Lambda entry point. The event is a ChunkTask, or a keyed or sorted job's PartitionTask
 * (`kind: 'partition'`); the result a small summary with the invocation's usage (duration, memory, S3
 * requests) for the job's cost.
 */
export const handler = async (event: unknown, context?: unknown) => {
  if ((event as { kind?: unknown } | null)?.kind === 'partition') return partition(event, context);
  const meter = meterInvocation('worker');
  const task = chunkTaskSchema.parse(event);
  return obs.invocation(
    context,
    { jobId: task.jobId, chunk: task.index, attempt: task.attempt },
    async () => {
      const counted = countingStore(store);
      const summary = await runChunk(task, {
        store: counted.store,
        jobs,
        clock: systemClock,
        gunzip,
        spill,
        invocation: meter.info(),
        // Loaded on a Parquet job's first chunk: hyparquet costs every cold start ~15 ms else.
        readParquet: async function* (segment, columns, onRead) {
          const { readParquetSegment } = await import('#adapters/parquet.ts');
          yield* readParquetSegment(counted.store, segment, columns, onRead);
        },
      }).catch((error: unknown) => {
        obs.metric('ChunkErrors', 'Count', 1);
        // A job's own bug: its message ends with the job file and line it was thrown at.
        throw withUserFrame(error);
      });
      const seconds = Math.max(summary.durationMs, 1) / 1000;
      obs.metric('ChunksSucceeded', 'Count', 1);
      obs.metric('ChunkDuration', 'Milliseconds', summary.durationMs);
      obs.metric('RecordsPerSecond', 'Count/Second', summary.recordsIn / seconds);
      obs.metric('BytesPerSecond', 'Bytes/Second', summary.bytesRead / seconds);
      obs.info('chunk done', { ...summary });
      return { ...summary, usage: meter.usage(counted.requests) };
    },
  );
};

/** A keyed or sorted job's partition task (shared/core/run/partition.ts). */
async function partition(event: unknown, context: unknown) {
  const meter = meterInvocation('worker');
  const task = partitionTaskSchema.parse(event);
  return obs.invocation(
    context,
    { jobId: task.jobId, partition: task.index, attempt: task.attempt },
    async () => {
      const counted = countingStore(store);
      const summary = await runPartition(task, {
        store: counted.store,
        jobs,
        clock: systemClock,
        invocation: meter.info(),
      }).catch((error: unknown) => {
        obs.metric('PartitionErrors', 'Count', 1);
        // A job's own bug: its message ends with the job file and line it was thrown at.
        throw withUserFrame(error);
      });
      obs.metric('PartitionsSucceeded', 'Count', 1);
      obs.info('partition done', { ...summary });
      return { ...summary, usage: meter.usage(counted.requests) };
    },
  );
}
