/**
 * zod schemas of the events the functions receive. A malformed event fails fast with zod's
 * message instead of half-running a chunk. `zod/mini`: a cold start compiles only the checks
 * used here, not the classic API (the worker's import measured ~10 ms less).
 */
import * as z from 'zod/mini';
import { MAX_OBJECTS_PER_CHUNK } from '#core/data/plan.ts';
import type { ChunkTask, PartitionTask } from '#core/model/documents.ts';
import { englishZodMessages, MAX_PARTITIONS } from '#core/model/job.ts';
import { JOB_ID } from '#core/model/keys.ts';

englishZodMessages();

const jobId = z.string().check(z.regex(JOB_ID));
const nonNegative = z.int().check(z.nonnegative());
const nonNegativeNumber = z.number().check(z.nonnegative());

/** `{ jobId }`: the coordinator's event. */
export const jobEventSchema = z.object({ jobId });

/**
 * The sweeper's events: Lambda's invocation record for a coordinator event that failed for good
 * (the coordinator's on-failure destination; only the fields read), or anything else (the
 * schedule's event), which means "sweep every active job".
 */
export const failureRecordSchema = z.object({
  requestContext: z.object({ condition: z.string() }),
  requestPayload: jobEventSchema,
  responsePayload: z.nullish(
    z.object({ errorType: z.optional(z.string()), errorMessage: z.optional(z.string()) }),
  ),
});

/**
 * A sweep's options, where the event carries them: QUEUED jobs silent this long are orphans.
 * The local runtime asks this of its first sweep (no event queued in an earlier process
 * survives it); the schedule's events on AWS carry nothing, and the default applies.
 */
export const sweepEventSchema = z.object({
  queuedStaleAfterSeconds: z.optional(z.int().check(z.positive())),
});

/** The reducer's event: the whole job, or one group of its chunks (tree reduce). */
const usageSchema = z.object({
  lambdaGbSeconds: nonNegativeNumber,
  lambdaRequests: nonNegative,
  s3Requests: z.object({ get: nonNegative, put: nonNegative, list: nonNegative }),
  apiRequests: nonNegative,
});

export const reduceEventSchema = z.object({
  jobId,
  /** The coordinator run's usage, its memory and the prices to use (see ReduceBilling). */
  usage: z.optional(usageSchema),
  waitingMemoryMb: z.optional(z.number().check(z.positive())),
  coordinatorRun: z.optional(
    z.object({
      role: z.literal('coordinator'),
      epoch: z.optional(nonNegative),
      startedAt: z.iso.datetime(),
      endedAt: z.iso.datetime(),
      billedMs: nonNegativeNumber,
      memoryMb: z.number().check(z.positive()),
    }),
  ),
  pricing: z.optional(
    z.object({
      region: z.string().check(z.minLength(1)),
      architecture: z.enum(['arm64', 'x86_64']),
    }),
  ),
  group: z.optional(
    z
      .object({
        job: z.string().check(z.minLength(1)),
        from: nonNegative,
        to: nonNegative,
        chunks: z.array(nonNegative).check(z.minLength(1)),
      })
      .check(
        z.refine((g) => g.from < g.to, 'group.from must be below group.to'),
        z.refine(
          (g) => g.chunks.length === g.to - g.from,
          'group.chunks must hold to - from indexes',
        ),
      ),
  ),
});

/** The worker's event. */
export const chunkTaskSchema: z.ZodMiniType<ChunkTask> = z.object({
  jobId,
  job: z.string(),
  params: z.unknown(),
  format: z.enum(['jsonl', 'csv', 'lines', 'parquet']),
  columns: z.optional(z.array(z.string())),
  onBadRecord: z.enum(['fail', 'skip']),
  bucket: z.string().check(z.minLength(3)),
  index: nonNegative,
  attempt: z.int().check(z.minimum(1)),
  segments: z
    .array(
      z.object({
        object: z.object({
          bucket: z.string().check(z.minLength(3)),
          key: z.string().check(z.minLength(1)),
          size: nonNegative,
          etag: z.string().check(z.minLength(1)),
          versionId: z.optional(z.string()),
        }),
        start: nonNegative,
        end: nonNegative,
        gzip: z.boolean(),
        header: z.optional(z.array(z.string())),
        lineage: z.optional(
          z.array(
            z.object({
              etag: z.string().check(z.minLength(1)),
              versionId: z.optional(z.string()),
              size: nonNegative,
            }),
          ),
        ),
      }),
    )
    .check(z.minLength(1), z.maxLength(MAX_OBJECTS_PER_CHUNK)),
  dispatchedAt: z.optional(nonNegativeNumber),
  buckets: z.optional(z.int().check(z.minimum(1), z.maximum(MAX_PARTITIONS))),
  // Reuse: the job's cache prefix, the packs, and where each piece's entry lies or 0
  // (shared/core/run/cache.ts). `onlyCached` is the coordinator's own (a chunk it runs
  // itself): never a worker's.
  cache: z.optional(
    z.object({
      prefix: z.string().check(z.regex(/^cache\/[0-9a-f]{32}\/$/)),
      packs: z.array(
        z.object({
          key: z.string().check(z.regex(/^cache\/[0-9a-f]{32}\/packs\//)),
          etag: z.string().check(z.minLength(1)),
          size: nonNegative,
        }),
      ),
      at: z.array(z.union([z.literal(0), z.tuple([nonNegative, nonNegative, nonNegative])])),
    }),
  ),
});

/** A place in a sorted job's order (shared/core/shuffle/order.ts). */
const sortPoint = z.object({
  key: z.union([z.string(), z.number()]),
  chunk: nonNegative,
  pos: nonNegative,
});

/** The worker's event for a keyed job's partition task, or a sorted job's range. */
export const partitionTaskSchema: z.ZodMiniType<PartitionTask> = z.object({
  kind: z.literal('partition'),
  jobId,
  job: z.string(),
  params: z.unknown(),
  bucket: z.string().check(z.minLength(3)),
  index: nonNegative,
  attempt: z.int().check(z.minimum(1)),
  dispatchedAt: z.optional(nonNegativeNumber),
  first: nonNegative,
  end: z.int().check(z.minimum(1), z.maximum(MAX_PARTITIONS)),
  buckets: z.optional(z.int().check(z.minimum(1), z.maximum(MAX_PARTITIONS))),
  sources: z.array(
    z.object({
      key: z.string().check(z.minLength(1)),
      etag: z.string(),
      size: nonNegative,
      start: nonNegative,
      end: nonNegative,
      inline: z.optional(z.boolean()),
      chunk: z.optional(nonNegative),
      pos: z.optional(nonNegative),
    }),
  ),
  range: z.optional(z.object({ from: z.optional(sortPoint), to: z.optional(sortPoint) })),
});
