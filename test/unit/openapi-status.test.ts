/**
 * The OpenAPI description of the status document is written by hand beside the JobStatus type:
 * this test holds the two together, field by field and nested object by nested object, and its
 * example is type-checked as a complete JobStatus, so a field added to one and not the other
 * fails either tsc or this test.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { statusSchema } from '#core/api/openapi.ts';
import type { JobStatus } from '#core/model/documents.ts';

/** Keys a type requires (not optional). */
type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];

/** A JobStatus with every field, nested ones included. */
const complete = {
  jobId: 'zd34glc7a0c3otgdq',
  job: 'by-field',
  status: 'SUCCEEDED',
  input: 's3://b/datasets/a.jsonl',
  owner: {
    arn: 'arn:aws:sts::111122223333:assumed-role/Analyst/alice',
    principal: 'arn:aws:sts::111122223333:assumed-role/Analyst',
    accountId: '111122223333',
    principalOrgId: 'o-abc',
  },
  createdAt: '2026-01-01T00:00:00.000Z',
  startedAt: '2026-01-01T00:00:00.000Z',
  finishedAt: '2026-01-01T00:00:01.000Z',
  chunks: { total: 1, pending: 0, running: 0, succeeded: 1, failed: 0 },
  partitions: { total: 1, pending: 0, running: 0, succeeded: 1, failed: 0 },
  records: 1,
  bytes: 10,
  error: { code: 'X', name: 'Error', message: 'm', context: {} },
  cancelRequested: false,
  epoch: 1,
  continuations: 0,
  heartbeatAt: '2026-01-01T00:00:00.000Z',
  resumes: 0,
  usage: {
    lambdaGbSeconds: 0,
    lambdaRequests: 0,
    s3Requests: { get: 0, put: 0, list: 0 },
    apiRequests: 0,
  },
  cost: {
    lambdaGbSeconds: 0,
    lambdaRequests: 0,
    s3Requests: { get: 0, put: 0, list: 0 },
    apiRequests: 0,
    usd: 0,
    prices: 'p',
  },
  runs: [
    {
      role: 'coordinator',
      epoch: 1,
      startedAt: '2026-12-07T00:00:00.000Z',
      endedAt: '2026-12-07T00:00:00.001Z',
      billedMs: 1,
      memoryMb: 1,
    },
  ],
  redrives: 0,
  bytesProcessed: 1,
  reused: { chunks: 0, segments: 0 },
  result: {
    key: 'k',
    bytes: 1,
    records: 1,
    badRecords: 0,
    partial: true,
    failedChunks: [
      {
        index: 0,
        key: 'k',
        start: 0,
        lastKey: 'l',
        end: 1,
        error: { code: 'X', name: 'E', message: 'm', context: {} },
      },
    ],
  },
} satisfies Required<JobStatus>;

interface Schema {
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
}

/** Where the schema and a value disagree: properties of one that the other lacks, by path. */
function differences(schema: Schema, value: unknown, path = 'JobStatus'): string[] {
  if (Array.isArray(value)) {
    return schema.items === undefined ? [] : differences(schema.items, value[0], `${path}[]`);
  }
  if (value === null || typeof value !== 'object' || schema.properties === undefined) return [];
  const documented = Object.keys(schema.properties);
  const actual = Object.keys(value);
  return [
    ...actual.filter((k) => !documented.includes(k)).map((k) => `${path}.${k} is not documented`),
    ...documented.filter((k) => !actual.includes(k)).map((k) => `${path}.${k} is not a field`),
    ...actual.flatMap((k) =>
      differences(
        schema.properties![k] as Schema,
        (value as Record<string, unknown>)[k],
        `${path}.${k}`,
      ),
    ),
  ];
}

describe('the OpenAPI status schema', () => {
  it('documents every field of JobStatus and no other, at every level', () => {
    expect(differences(statusSchema as Schema, complete)).toEqual([]);
  });

  it('requires exactly the fields JobStatus requires', () => {
    const required = [
      'jobId',
      'job',
      'status',
      'input',
      'createdAt',
      'chunks',
      'records',
      'bytes',
    ] as const;
    expectTypeOf<(typeof required)[number]>().toEqualTypeOf<RequiredKeys<JobStatus>>();
    expect([...(statusSchema.required ?? [])].sort()).toEqual([...required].sort());
  });
});
