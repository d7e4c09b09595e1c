/** Request bodies of the HTTP API, as zod schemas (validation and the OpenAPI document). */
import * as z from 'zod';

/** S3's object size limit: 5 TiB. */
const MAX_UPLOAD_BYTES = 5 * 1024 ** 4;

/** `POST /jobs` body. */
export const submitSchema = z
  .object({
    job: z.string().min(1).max(64),
    input: z.string().min(1).max(2048),
    params: z.record(z.string(), z.unknown()).optional(),
    chunkSize: z
      .number()
      .int()
      .min(1)
      .max(5 * 1024 ** 3)
      .optional(),
    chunks: z.number().int().min(1).max(100_000).optional(),
    concurrency: z.number().int().min(1).optional(),
    onBadRecord: z.enum(['fail', 'skip']).optional(),
    format: z.enum(['jsonl', 'csv', 'lines', 'parquet']).optional(),
    columns: z.array(z.string().min(1)).min(1).optional(),
    speculation: z.boolean().optional(),
    guidedTail: z.boolean().optional(),
    maxAttempts: z.number().int().min(1).max(10).optional(),
    toleratedFailurePercent: z.number().min(0).max(100).optional(),
    toleratedFailureCount: z.number().int().min(0).optional(),
    partitions: z.number().int().min(1).max(10_000).optional(),
    resultFormat: z.enum(['json', 'jsonl']).optional(),
    reuse: z.boolean().optional(),
    clientToken: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected 1 to 64 letters, digits, "_" or "-"')
      .optional(),
  })
  .strict();

/** `POST /uploads` body. */
export const uploadSchema = z
  .object({
    key: z.string().min(1).max(4096),
    bytes: z.number().int().min(0).max(MAX_UPLOAD_BYTES).optional(),
  })
  .strict();

/** `POST /uploads/parts` body: the next page of part URLs, as `nextParts` of an answer gives it. */
export const uploadPartsSchema = z
  .object({
    key: z.string().min(1).max(4096),
    uploadId: z.string().min(1).max(1024),
    partCount: z.number().int().min(1).max(10_000),
    from: z.number().int().min(1).max(10_000),
  })
  .strict();

/** `POST /uploads/complete` body. */
export const completeSchema = z
  .object({
    key: z.string().min(1).max(4096),
    uploadId: z.string().min(1).max(1024),
    parts: z
      .array(
        z
          .object({
            partNumber: z.number().int().min(1).max(10_000),
            etag: z.string().min(1).max(200),
          })
          .strict(),
      )
      .min(1)
      .max(10_000),
  })
  .strict();
