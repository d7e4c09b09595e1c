/**
 * zod schemas of the events the functions receive. A malformed event fails fast with zod's
 * message instead of half-running a chunk.
 */
import * as z from 'zod';
import { MAX_OBJECTS_PER_CHUNK } from '#core/data/plan.ts';
import type { ChunkTask } from '#core/model/documents.ts';
import { JOB_ID } from '#core/model/keys.ts';

/** `{ jobId }`: the coordinator's event. */
export const jobEventSchema = z.object({ jobId: z.string().regex(JOB_ID) });

/**
 * The sweeper's events: Lambda's invocation record for a coordinator event that failed for good
 * (the coordinator's on-failure destination; only the fields read), or anything else (the
 * schedule's event), which means "sweep every active job".
 */
export const failureRecordSchema = z.object({
  requestContext: z.object({ condition: z.string() }),
  requestPayload: jobEventSchema,
  responsePayload: z
    .object({ errorType: z.string().optional(), errorMessage: z.string().optional() })
    .nullish(),
});

/**
 * A sweep's options, where the event carries them: QUEUED jobs silent this long are orphans.
 * The local runtime asks this of its first sweep (no event queued in an earlier process
 * survives it); the schedule's events on AWS carry nothing, and the default applies.
 */
export const sweepEventSchema = z.object({
  queuedStaleAfterSeconds: z.number().int().positive().optional(),
});

/** The reducer's event: the whole job, or one group of its chunks (tree reduce). */
const usageSchema = z.object({
  lambdaGbSeconds: z.number().nonnegative(),
  lambdaRequests: z.number().int().nonnegative(),
  s3Requests: z.object({
    get: z.number().int().nonnegative(),
    put: z.number().int().nonnegative(),
    list: z.number().int().nonnegative(),
  }),
  apiRequests: z.number().int().nonnegative(),
});

export const reduceEventSchema = z.object({
  jobId: z.string().regex(JOB_ID),
  /** The coordinator run's usage, its memory and the prices to use (see ReduceBilling). */
  usage: usageSchema.optional(),
  waitingMemoryMb: z.number().positive().optional(),
  coordinatorRun: z
    .object({
      role: z.literal('coordinator'),
      epoch: z.number().int().nonnegative().optional(),
      startedAt: z.number().nonnegative(),
      endedAt: z.number().nonnegative(),
      billedMs: z.number().nonnegative(),
      memoryMb: z.number().positive(),
    })
    .optional(),
  pricing: z
    .object({ region: z.string().min(1), architecture: z.enum(['arm64', 'x86_64']) })
    .optional(),
  group: z
    .object({
      job: z.string().min(1),
      from: z.number().int().nonnegative(),
      to: z.number().int().nonnegative(),
      chunks: z.array(z.number().int().nonnegative()).min(1),
    })
    .refine((g) => g.from < g.to, 'group.from must be below group.to')
    .refine((g) => g.chunks.length === g.to - g.from, 'group.chunks must hold to - from indexes')
    .optional(),
});

const nonNegative = z.number().int().nonnegative();

/** The worker's event. */
export const chunkTaskSchema: z.ZodType<ChunkTask> = z.object({
  jobId: z.string().regex(JOB_ID),
  job: z.string(),
  params: z.unknown(),
  format: z.enum(['jsonl', 'csv', 'lines', 'parquet']),
  columns: z.array(z.string()).optional(),
  onBadRecord: z.enum(['fail', 'skip']),
  bucket: z.string().min(3),
  index: nonNegative,
  attempt: z.number().int().min(1),
  segments: z
    .array(
      z.object({
        object: z.object({
          bucket: z.string().min(3),
          key: z.string().min(1),
          size: nonNegative,
          etag: z.string().min(1),
          versionId: z.string().optional(),
        }),
        start: nonNegative,
        end: nonNegative,
        gzip: z.boolean(),
        header: z.array(z.string()).optional(),
      }),
    )
    .min(1)
    .max(MAX_OBJECTS_PER_CHUNK),
  dispatchedAt: z.number().nonnegative().optional(),
});
