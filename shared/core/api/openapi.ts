/**
 * The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json. Request bodies come
 * from the same zod schemas that validate them; test/unit/api.test.ts checks that every route is
 * documented and every documented operation is routed.
 */
import * as z from 'zod';
import { completeSchema, submitSchema, uploadPartsSchema, uploadSchema } from './schemas.ts';

const error = {
  description: 'error',
  content: {
    'application/json': {
      schema: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string' },
              message: { type: 'string' },
              requestId: { type: 'string' },
            },
          },
        },
      },
    },
  },
};

const jsonBody = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: z.toJSONSchema(schema, { target: 'draft-2020-12' }) } },
});

const ok = (description: string, schema: object = { type: 'object' }) => ({
  description,
  content: { 'application/json': { schema } },
});

const jobIdParam = {
  name: 'jobId',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[0-9a-z]{8,40}$' },
};

const errorInfo = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string' },
    name: { type: 'string' },
    message: { type: 'string' },
    context: { type: 'object' },
  },
};

const usage = {
  type: 'object',
  required: ['lambdaGbSeconds', 'lambdaRequests', 's3Requests', 'apiRequests'],
  properties: {
    lambdaGbSeconds: { type: 'number' },
    lambdaRequests: { type: 'integer' },
    s3Requests: {
      type: 'object',
      properties: {
        get: { type: 'integer' },
        put: { type: 'integer' },
        list: { type: 'integer' },
      },
    },
    apiRequests: { type: 'integer' },
  },
};

/** Tasks of one kind by state (TaskCounts). */
const taskCounts = {
  type: 'object',
  properties: Object.fromEntries(
    ['total', 'pending', 'running', 'succeeded', 'failed'].map((k) => [k, { type: 'integer' }]),
  ),
};

/** The status document (JobStatus in shared/core/model/documents.ts; a test holds the two together). */
export const statusSchema = {
  type: 'object',
  required: ['jobId', 'job', 'status', 'input', 'createdAt', 'chunks', 'records', 'bytes'],
  properties: {
    jobId: { type: 'string' },
    job: { type: 'string' },
    status: { enum: ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] },
    input: { type: 'string' },
    owner: {
      type: 'object',
      description:
        'who submitted the job: only this principal (the ARN, an assumed role without its session) and admins may see or manage it',
      required: ['arn', 'principal'],
      properties: {
        arn: { type: 'string' },
        principal: { type: 'string' },
        accountId: { type: 'string' },
        principalOrgId: { type: 'string' },
      },
    },
    createdAt: { type: 'string', format: 'date-time' },
    startedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: 'string', format: 'date-time' },
    chunks: taskCounts,
    partitions: {
      ...taskCounts,
      description: "a keyed or sorted job's partition tasks, once its map stage has ended",
    },
    records: { type: 'integer' },
    bytes: { type: 'integer', description: 'input bytes of the finished chunks' },
    bytesProcessed: {
      type: 'integer',
      description: 'input bytes the finished chunks read and mapped: bytes less what was reused',
    },
    reused: {
      type: 'object',
      description:
        'work taken from the cache: chunks that needed no worker, and pieces (cells of the input)',
      properties: { chunks: { type: 'integer' }, segments: { type: 'integer' } },
    },
    error: errorInfo,
    cancelRequested: { type: 'boolean' },
    epoch: { type: 'integer', description: 'which coordinator run owns the job' },
    heartbeatAt: { type: 'string', format: 'date-time' },
    continuations: { type: 'integer' },
    resumes: { type: 'integer', description: 'resumes after the coordinator was lost' },
    redrives: { type: 'integer' },
    result: {
      type: 'object',
      required: ['key', 'bytes', 'records', 'badRecords'],
      properties: {
        key: { type: 'string' },
        bytes: { type: 'integer' },
        records: { type: 'integer' },
        badRecords: { type: 'integer' },
        partial: { type: 'boolean' },
        failedChunks: {
          type: 'array',
          items: {
            type: 'object',
            required: ['index', 'key', 'start', 'end', 'error'],
            properties: {
              index: { type: 'integer' },
              key: { type: 'string' },
              start: { type: 'integer' },
              lastKey: { type: 'string' },
              end: { type: 'integer' },
              error: errorInfo,
            },
          },
        },
      },
    },
    usage,
    cost: {
      ...usage,
      required: [...usage.required, 'usd', 'prices'],
      properties: {
        ...usage.properties,
        usd: { type: 'number' },
        prices: {
          type: 'string',
          description: 'the price table entry: region, architecture, date',
        },
      },
    },
    runs: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          role: { enum: ['coordinator', 'reducer'] },
          epoch: { type: 'integer' },
          startedAt: { type: 'string', format: 'date-time' },
          endedAt: { type: 'string', format: 'date-time' },
          billedMs: { type: 'number' },
          memoryMb: { type: 'number' },
        },
      },
    },
  },
};

const listSchema = {
  type: 'object',
  required: ['jobs'],
  properties: {
    jobs: {
      type: 'array',
      items: {
        type: 'object',
        required: ['jobId', 'job', 'status', 'input', 'createdAt'],
        properties: {
          jobId: { type: 'string' },
          job: { type: 'string' },
          status: statusSchema.properties.status,
          input: { type: 'string' },
          createdAt: { type: 'string', format: 'date-time' },
          finishedAt: { type: 'string', format: 'date-time' },
        },
      },
    },
    next: { type: 'string', description: 'pass as `cursor` for the next page; absent on the last' },
  },
};

/**
 * The document, with the registered jobs as the enum of `job` in a submission when given (the
 * API serves it so: a client sees what this deployment can run).
 */
export function openApiDocument(jobNames?: readonly string[]) {
  const submit = jsonBody(submitSchema) as {
    required: boolean;
    content: { 'application/json': { schema: { properties?: Record<string, object> } } };
  };
  const schema = submit.content['application/json'].schema;
  if (jobNames !== undefined && schema.properties?.job !== undefined) {
    schema.properties.job = { ...schema.properties.job, enum: [...jobNames].sort() };
  }
  return {
    ...document,
    paths: {
      ...document.paths,
      '/jobs': {
        ...document.paths['/jobs'],
        post: { ...document.paths['/jobs'].post, requestBody: submit },
      },
    },
  };
}

const document = {
  openapi: '3.1.0',
  info: {
    title: 'fanout',
    version: '0.1.0',
    description:
      "Map/reduce over S3 datasets on AWS Lambda. On AWS every route needs SigV4 (IAM) authorization: sign requests for the execute-api service with the caller's AWS credentials (`fanout dev --auth FILE` verifies them locally). A job belongs to the caller that submitted it (`owner`): its status, result, results, report, cancel and redrive answer anyone but its owner and the admins 404, with the very body a job that does not exist gets (never 403, so a job's existence does not leak). GET /jobs lists the caller's own jobs; an admin's `all=true` lists everyone's (403 for anyone else).",
  },
  servers: [
    {
      url: '{api}',
      description: 'a deployment (the stack output FanoutApiUrl), or fanout dev',
      variables: { api: { default: 'http://127.0.0.1:3000' } },
    },
  ],
  security: [{ sigv4: [] }],
  components: {
    securitySchemes: {
      sigv4: {
        type: 'apiKey',
        name: 'Authorization',
        in: 'header',
        description:
          'AWS Signature Version 4 for the execute-api service (API Gateway IAM authorization); fanout dev takes no credentials',
        'x-amazon-apigateway-authtype': 'awsSigv4',
      },
    },
  },
  paths: {
    '/openapi.json': {
      get: { operationId: 'getOpenApi', responses: { 200: ok('this document') } },
    },
    '/jobs': {
      post: {
        operationId: 'submitJob',
        requestBody: jsonBody(submitSchema),
        responses: {
          202: ok('queued', {
            type: 'object',
            properties: {
              jobId: { type: 'string' },
              status: { const: 'QUEUED' },
              links: { type: 'object' },
            },
          }),
          400: error,
          404: error,
        },
      },
      get: {
        operationId: 'listJobs',
        parameters: [
          {
            name: 'limit',
            in: 'query',
            schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
          },
          {
            name: 'cursor',
            in: 'query',
            schema: { type: 'string' },
            description: '`next` of the previous page',
          },
        ],
        responses: {
          200: ok('most recent jobs first', listSchema),
          400: error,
        },
      },
    },
    '/jobs/{jobId}': {
      get: {
        operationId: 'getJob',
        parameters: [jobIdParam],
        responses: { 200: ok('the status document', statusSchema), 404: error },
      },
    },
    '/jobs/{jobId}/report': {
      get: {
        operationId: 'getReport',
        parameters: [jobIdParam],
        responses: {
          200: {
            description:
              'the job report: one self-contained HTML page (timeline, concurrency, throughput, durations, errors, cost), when at most 5 MB',
          },
          303: { description: 'a larger report: Location is a presigned S3 GET URL' },
          404: error,
        },
      },
    },
    '/jobs/{jobId}/result': {
      get: {
        operationId: 'getResult',
        parameters: [jobIdParam],
        responses: {
          200: {
            description:
              'the result: JSON (reduce jobs) or JSONL (map-only jobs, one output per line in input order), when at most 1 MB',
            content: {
              'application/json': { schema: { description: "the reduce job's result" } },
              'application/x-ndjson': { schema: { type: 'string' } },
            },
          },
          303: { description: 'a larger result: Location is a presigned S3 GET URL' },
          404: error,
          409: error,
        },
      },
    },
    '/jobs/{jobId}/results': {
      get: {
        operationId: 'getResults',
        description:
          "a map-only job's output while it runs, in input order: the lines of the chunks after the first `after` that have finished, up to the first that has not. Every line is final (only a winning attempt's outcome is read). Ask again from `x-fanout-next` until `x-fanout-more` is false; a sorted or reduce job answers 400",
        parameters: [
          jobIdParam,
          {
            name: 'after',
            in: 'query',
            required: false,
            description: 'chunks already delivered (the x-fanout-next of the last page); default 0',
            schema: { type: 'integer', minimum: 0 },
          },
        ],
        responses: {
          200: {
            description: 'JSONL lines of up to about 1 MB (possibly none yet)',
            headers: {
              'x-fanout-next': {
                description: 'the cursor to ask from next',
                schema: { type: 'integer' },
              },
              'x-fanout-more': {
                description: 'false once the job has SUCCEEDED and every line was delivered',
                schema: { type: 'boolean' },
              },
            },
            content: { 'application/x-ndjson': { schema: { type: 'string' } } },
          },
          303: {
            description:
              "the next chunk's output alone, too big for a page: Location is a presigned S3 GET URL (the same x-fanout-next and x-fanout-more headers)",
          },
          400: error,
          404: error,
          409: {
            ...error,
            description:
              'the job ended FAILED or CANCELLED (JOB_FAILED): the lines delivered are not its whole output',
          },
        },
      },
    },
    '/jobs/{jobId}/cancel': {
      post: {
        operationId: 'cancelJob',
        parameters: [jobIdParam],
        responses: {
          202: ok(
            'cancel requested: CANCELLED at once if QUEUED or if its coordinator was lost, else once in-flight chunks finish (no chunk starts after this answer)',
            statusSchema,
          ),
          404: error,
          409: error,
        },
      },
    },
    '/jobs/{jobId}/redrive': {
      post: {
        operationId: 'redriveJob',
        parameters: [jobIdParam],
        responses: {
          202: ok(
            'rerunning the chunks without a successful outcome (a FAILED or CANCELLED job, or a RUNNING one whose coordinator was lost)',
            statusSchema,
          ),
          404: error,
          409: error,
        },
      },
    },
    '/uploads': {
      post: {
        operationId: 'createUpload',
        requestBody: jsonBody(uploadSchema),
        responses: {
          201: ok(
            'a presigned PUT URL, or the first page of presigned multipart part URLs (nextParts asks for the next page) and the complete call',
          ),
          400: error,
        },
      },
    },
    '/uploads/parts': {
      post: {
        operationId: 'uploadParts',
        requestBody: jsonBody(uploadPartsSchema),
        responses: {
          200: ok('the next page of presigned part URLs, and how to ask for the one after'),
          400: error,
        },
      },
    },
    '/uploads/complete': {
      post: {
        operationId: 'completeUpload',
        requestBody: jsonBody(completeSchema),
        responses: { 200: ok('the uploaded object'), 400: error, 404: error },
      },
    },
  },
} as const;
