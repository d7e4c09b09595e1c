/**
 * The HTTP API (the same logic behind API Gateway on AWS and `fanout dev` locally):
 *
 * - `POST /jobs` submit a job → 202 `{ jobId, status, links }`
 * - `GET /jobs` the most recent jobs, paginated (`?limit=&cursor=`)
 * - `GET /jobs/{jobId}` the status document
 * - `GET /jobs/{jobId}/report` the job report (HTML; 303 to a presigned URL when large)
 * - `GET /jobs/{jobId}/result` the result (≤ 1 MB inline, else 303 to a presigned URL)
 * - `GET /jobs/{jobId}/results?after=N` a map-only job's output as its chunks finish, in input
 *   order, after the first N chunks (NDJSON; the next cursor and whether more will come in
 *   headers)
 * - `POST /jobs/{jobId}/cancel` stop dispatching; CANCELLED once in-flight chunks finish
 * - `POST /jobs/{jobId}/redrive` rerun the chunks of a FAILED or CANCELLED job that did not succeed
 * - `POST /uploads` a presigned PUT, or the first page of presigned multipart part URLs
 * - `POST /uploads/parts` the next page of part URLs of a multipart upload
 * - `POST /uploads/complete` completes a multipart upload
 * - `GET /openapi.json` the OpenAPI 3.1 description of all this
 *
 * Every request is validated before anything is written: a 4xx never leaves a trace in S3.
 */
import type { z } from 'zod';
import { JobFailedError, ValidationError } from '../base/errors.ts';
import type { Clock, Invoker, ObjectStore, UrlSigner } from '../base/ports.ts';
import type { JobStatus } from '../model/documents.ts';
import type { JobEvents } from '../model/events.ts';
import type { AnyJob } from '../model/job.ts';
import { findJob } from '../model/job.ts';
import { JOB_ID, jobKeys, keyProblem, parseInputUri } from '../model/keys.ts';
import { readJson, readStatus } from '../model/status.ts';
import { loadReport, renderReport } from '../report/report.ts';
import { cancelJob, redriveJob } from '../run/control.ts';
import { resolveInput } from '../run/plan-job.ts';
import { resultsAfter } from '../run/stream.ts';
import { submitJob } from '../run/submit.ts';
import { type ApiRequest, type ApiResponse, errorResponse, HttpError, json } from './http.ts';
import { openApiDocument } from './openapi.ts';
import { mayAccess, principalFolder, type Viewer, viewerOf } from './owners.ts';
import { completeSchema, submitSchema, uploadPartsSchema, uploadSchema } from './schemas.ts';

/** What the API needs. */
export interface ApiDeps {
  store: ObjectStore;
  signer: UrlSigner;
  invoker: Invoker;
  jobs: ReadonlyMap<string, AnyJob>;
  clock: Clock;
  bucket: string;
  coordinatorFunction: string;
  /** S3 URI prefixes jobs may read, e.g. `s3://my-bucket/datasets/`. */
  allowedInputs: readonly string[];
  /** Concurrency when a request gives none. */
  defaultConcurrency: number;
  /** The most chunks in flight a request may ask for. */
  maxConcurrency: number;
  /**
   * A RUNNING job silent this long has lost its coordinator: cancel ends it at once, redrive
   * resumes it. @default SWEEP_DEFAULTS.staleAfterMs
   */
  staleAfterMs?: number;
  /** Where job state changes are published (EventBridge on AWS). @default none */
  events?: JobEvents;
  log: (message: string, detail: unknown) => void;
  /** Callers who may see and manage every job: ARNs, or roles whose sessions are (owners.ts). */
  admins: readonly string[];
  /**
   * Requests that name no caller come from the one local user, who owns every job (`fanout dev`
   * without --auth). Never on AWS, where the IAM authorizer names every caller.
   */
  implicitOwner?: boolean;
  /**
   * A caller (not an admin) reads and uploads only under its own folder of each allowed input
   * prefix: `datasets/{principalFolder}/` (owners.ts). @default false
   */
  inputPrefixPerPrincipal?: boolean;
}

/** Results up to this size are returned inline; larger ones by presigned URL. */
export const INLINE_RESULT_BYTES = 1_000_000;
/** Uploads larger than this get presigned multipart part URLs. */
export const MULTIPART_THRESHOLD = 64 * 1024 * 1024;
/**
 * How long presigned URLs live. Short, because a URL signed with a function's session
 * credentials stops working when that session ends, however long it asked for (S3 user guide,
 * "Sharing objects with presigned URLs"), and Lambda does not say when that is: results and
 * reports are fetched at once, and upload part URLs come a page at a time, as they are needed.
 */
export const PRESIGN_SECONDS = { download: 300, upload: 900 } as const;
/**
 * Part URLs per answer of `POST /uploads` and `POST /uploads/parts`. A URL signed with session
 * credentials is about 1.5-2 KB: a page is some 200 KB, where all 10,000 parts at once would
 * pass Lambda's 6 MB response limit.
 */
export const UPLOAD_PARTS_PAGE = 100;
const MIN_PART = 16 * 1024 * 1024;

function parseBody<T>(schema: z.ZodType<T>, body: string | undefined): T {
  let value: unknown;
  try {
    value = JSON.parse(body ?? '');
  } catch {
    throw new HttpError(400, 'BAD_REQUEST', 'the request body must be a JSON object');
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const detail = result.error.issues
      .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(body)'}: ${i.message}`)
      .join('; ');
    throw new HttpError(400, 'BAD_REQUEST', `invalid request body: ${detail}`);
  }
  return result.data;
}

/** The input prefixes a caller may read: each allowed one, or its own folder of each. */
function allowedInputsOf(viewer: Viewer, deps: ApiDeps): readonly string[] {
  if (deps.inputPrefixPerPrincipal !== true || viewer.admin) return deps.allowedInputs;
  const folder = principalFolder(viewer.owner);
  return deps.allowedInputs.map((prefix) => `${prefix}${folder}/`);
}

/**
 * Confines an upload key to datasets/: relative, no `..` segments, no control characters or
 * backslashes. `my/data.jsonl` and `datasets/my/data.jsonl` name the same object. With
 * `inputPrefixPerPrincipal`, a caller's keys are in its own folder: `my/data.jsonl` is
 * `datasets/{folder}/my/data.jsonl`, and a key elsewhere in datasets/ is refused.
 */
function callerDatasetKey(raw: string, request: ApiRequest, deps: ApiDeps): string {
  const viewer = viewerOf(request.caller, deps);
  if (deps.inputPrefixPerPrincipal !== true || viewer.admin) return datasetKey(raw);
  const own = `datasets/${principalFolder(viewer.owner)}/`;
  if (raw.startsWith('datasets/') && !raw.startsWith(own)) {
    throw new HttpError(
      400,
      'INPUT_NOT_ALLOWED',
      `key ${JSON.stringify(raw.slice(0, 80))} is outside your folder; expected a key under ${own} (or one relative to it)`,
    );
  }
  return datasetKey(raw.startsWith(own) ? raw : `${own}${raw}`);
}

/**
 * Confines an upload key to datasets/: relative, no `..` segments, no control characters or
 * backslashes. `my/data.jsonl` and `datasets/my/data.jsonl` name the same object.
 */
export function datasetKey(raw: string): string {
  const key = raw.startsWith('datasets/') ? raw : `datasets/${raw}`;
  // The rules apply to the key as stored: datasets/ counts toward S3's 1,024 bytes.
  const problem = keyProblem(key);
  if (problem !== undefined) {
    throw new HttpError(
      400,
      'BAD_REQUEST',
      `key ${JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key)} ${problem}`,
    );
  }
  return key;
}

type Route = (request: ApiRequest, params: string[], deps: ApiDeps) => Promise<ApiResponse>;

/** The routes, in match order: method, path pattern, handler. The OpenAPI test reads this. */
export const ROUTES: readonly { method: string; path: string; pattern: RegExp; handle: Route }[] = [
  {
    method: 'GET',
    path: '/openapi.json',
    pattern: /^\/openapi\.json$/,
    handle: async (_request, _params, deps) => json(200, openApiDocument([...deps.jobs.keys()])),
  },
  { method: 'POST', path: '/jobs', pattern: /^\/jobs$/, handle: postJob },
  { method: 'GET', path: '/jobs', pattern: /^\/jobs$/, handle: listJobs },
  { method: 'GET', path: '/jobs/{jobId}', pattern: /^\/jobs\/([^/]+)$/, handle: getJob },
  {
    method: 'GET',
    path: '/jobs/{jobId}/report',
    pattern: /^\/jobs\/([^/]+)\/report$/,
    handle: getReport,
  },
  {
    method: 'GET',
    path: '/jobs/{jobId}/result',
    pattern: /^\/jobs\/([^/]+)\/result$/,
    handle: getResult,
  },
  {
    method: 'GET',
    path: '/jobs/{jobId}/results',
    pattern: /^\/jobs\/([^/]+)\/results$/,
    handle: getResults,
  },
  {
    method: 'POST',
    path: '/jobs/{jobId}/cancel',
    pattern: /^\/jobs\/([^/]+)\/cancel$/,
    handle: postCancel,
  },
  {
    method: 'POST',
    path: '/jobs/{jobId}/redrive',
    pattern: /^\/jobs\/([^/]+)\/redrive$/,
    handle: postRedrive,
  },
  { method: 'POST', path: '/uploads', pattern: /^\/uploads$/, handle: postUpload },
  {
    method: 'POST',
    path: '/uploads/parts',
    pattern: /^\/uploads\/parts$/,
    handle: postUploadParts,
  },
  {
    method: 'POST',
    path: '/uploads/complete',
    pattern: /^\/uploads\/complete$/,
    handle: postUploadComplete,
  },
];

/** Handles one request; never throws (errors become responses). */
export async function handleApiRequest(request: ApiRequest, deps: ApiDeps): Promise<ApiResponse> {
  try {
    const path = request.path.length > 1 ? request.path.replace(/\/+$/, '') : request.path;
    const matching = ROUTES.filter((r) => r.pattern.test(path));
    if (matching.length === 0)
      throw new HttpError(404, 'NOT_FOUND', `no route ${request.method} ${request.path}`);
    const route = matching.find((r) => r.method === request.method);
    if (route === undefined) {
      return {
        ...json(405, {
          error: {
            code: 'METHOD_NOT_ALLOWED',
            message: `${request.method} is not allowed on ${request.path}; allowed: ${matching.map((r) => r.method).join(', ')}`,
          },
        }),
        headers: {
          'content-type': 'application/json',
          allow: matching.map((r) => r.method).join(', '),
        },
      };
    }
    const params = (route.pattern.exec(path) ?? []).slice(1).map(decodeURIComponent);
    return await route.handle(request, params, deps);
  } catch (error) {
    return errorResponse(error, request.requestId, deps.log);
  }
}

async function postJob(
  request: ApiRequest,
  _params: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const body = parseBody(submitSchema, request.body);
  const viewer = viewerOf(request.caller, deps);
  findJob(deps.jobs, body.job);
  parseInputUri(body.input);
  const allowed = allowedInputsOf(viewer, deps);
  if (!allowed.some((prefix) => body.input.startsWith(prefix))) {
    throw new HttpError(
      400,
      'INPUT_NOT_ALLOWED',
      `input ${body.input} is outside the allowed inputs; expected a URI under ${allowed.join(' or ')}`,
    );
  }
  const concurrency = body.concurrency ?? deps.defaultConcurrency;
  if (concurrency > deps.maxConcurrency) {
    throw new ValidationError(
      `concurrency must be at most ${deps.maxConcurrency}; got ${concurrency}`,
    );
  }
  // The input must exist now (404 otherwise); the coordinator pins it when the job starts.
  await resolveInput(body.input, deps.store);
  const job = await submitJob(
    { ...body, concurrency, owner: viewer.owner },
    { ...deps, viaApi: true },
  );
  return json(
    202,
    {
      jobId: job.jobId,
      status: 'QUEUED',
      links: { self: `/jobs/${job.jobId}`, result: `/jobs/${job.jobId}/result` },
    },
    { location: `/jobs/${job.jobId}` },
  );
}

/**
 * A job's status, for a caller who may see it (its owner, or an admin); anyone else is told
 * there is no such job, in the very words a job that does not exist gets (shared/core/api
 * /owners.ts).
 */
async function statusOf(jobId: string, deps: ApiDeps, request: ApiRequest): Promise<JobStatus> {
  const viewer = viewerOf(request.caller, deps);
  const missing = () => new HttpError(404, 'NOT_FOUND', `no job ${JSON.stringify(jobId)}`);
  if (!JOB_ID.test(jobId)) throw missing();
  const status = await readStatus(deps.store, deps.bucket, jobId).catch((error: unknown) => {
    if ((error as { code?: string }).code === 'NOT_FOUND') throw missing();
    throw error;
  });
  if (!mayAccess(viewer, status.owner)) throw missing();
  return status;
}

async function getJob(request: ApiRequest, [jobId]: string[], deps: ApiDeps): Promise<ApiResponse> {
  return json(200, await statusOf(jobId as string, deps, request));
}

async function getResult(
  request: ApiRequest,
  [jobId]: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const status = await statusOf(jobId as string, deps, request);
  if (status.status !== 'SUCCEEDED' || status.result === undefined) {
    const ended = status.status === 'FAILED' || status.status === 'CANCELLED';
    throw new HttpError(
      409,
      'NOT_READY',
      ended
        ? `job ${status.jobId} is ${status.status} and has no result; rerun the chunks that did not finish with fanout redrive ${status.jobId} (POST /jobs/${status.jobId}/redrive)`
        : `job ${status.jobId} is ${status.status}; its result exists once it is SUCCEEDED`,
    );
  }
  const { key, bytes } = status.result;
  const type = key.endsWith('.jsonl') ? 'application/x-ndjson' : 'application/json';
  if (bytes > INLINE_RESULT_BYTES) {
    const url = await deps.signer.presignGet(deps.bucket, key, PRESIGN_SECONDS.download);
    return {
      status: 303,
      headers: { location: url, 'content-type': 'application/json' },
      body: JSON.stringify({ url }),
    };
  }
  const { body } = await deps.store.getBytes(deps.bucket, key);
  return { status: 200, headers: { 'content-type': type }, body: new TextDecoder().decode(body) };
}

/**
 * A map-only job's output as its chunks finish, in input order, after the first `after` chunks
 * (shared/core/run/stream.ts): NDJSON of up to about 1 MB, or a 303 to one chunk's output when
 * it is bigger. `x-fanout-next` is the cursor to ask from next and `x-fanout-more` says whether
 * more will come; a job that ended FAILED or CANCELLED answers 409 JOB_FAILED.
 */
async function getResults(
  request: ApiRequest,
  [jobId]: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const raw = request.query.after ?? '0';
  const after = /^\d{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(after)) {
    throw new HttpError(
      400,
      'VALIDATION',
      `after must be a whole number of chunks (the x-fanout-next of the last page, or 0); got ${JSON.stringify(raw)}`,
    );
  }
  await statusOf(jobId as string, deps, request);
  const page = await resultsAfter(deps.store, deps.bucket, jobId as string, after).catch(
    (error: unknown) => {
      if (error instanceof JobFailedError) throw new HttpError(409, 'JOB_FAILED', error.message);
      throw error;
    },
  );
  const headers = { 'x-fanout-next': String(page.next), 'x-fanout-more': String(page.more) };
  if (page.part !== undefined) {
    const url = await deps.signer.presignGet(deps.bucket, page.part.key, PRESIGN_SECONDS.download);
    return {
      status: 303,
      headers: { ...headers, location: url, 'content-type': 'application/json' },
      body: JSON.stringify({ url, next: page.next, more: page.more }),
    };
  }
  return {
    status: 200,
    headers: { ...headers, 'content-type': 'application/x-ndjson' },
    body: page.text,
  };
}

/**
 * Reports are answered inline while their body, JSON-encoded into the Lambda response as API
 * Gateway's payload carries it, is at most this many bytes (Lambda's limit is 6 MB, headers
 * included); larger ones are stored and presigned. Bytes, not characters: a report's non-ASCII
 * text and its escaped quotes and newlines take more.
 */
export const INLINE_REPORT_BYTES = 5_000_000;

/** The bytes of `text` once JSON-encoded (as a Lambda response carries it), in UTF-8. */
export function encodedBytes(text: string): number {
  return new TextEncoder().encode(JSON.stringify(text)).length;
}

async function getReport(
  request: ApiRequest,
  [jobId]: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const status = await statusOf(jobId as string, deps, request);
  const html = renderReport(await loadReport(deps.store, deps.bucket, jobId as string, status));
  if (encodedBytes(html) <= INLINE_REPORT_BYTES) {
    return { status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: html };
  }
  const key = jobKeys(jobId as string).report;
  await deps.store.put(deps.bucket, key, html, { contentType: 'text/html; charset=utf-8' });
  const url = await deps.signer.presignGet(deps.bucket, key, PRESIGN_SECONDS.download);
  return {
    status: 303,
    headers: { location: url, 'content-type': 'application/json' },
    body: JSON.stringify({ url }),
  };
}

async function postCancel(
  request: ApiRequest,
  [jobId]: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  await statusOf(jobId as string, deps, request);
  return json(202, await cancelJob(jobId as string, deps));
}

async function postRedrive(
  request: ApiRequest,
  [jobId]: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  await statusOf(jobId as string, deps, request);
  return json(202, await redriveJob(jobId as string, deps));
}

async function listJobs(
  request: ApiRequest,
  _params: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const limit = request.query.limit === undefined ? 20 : Number(request.query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    throw new ValidationError(
      `limit must be an integer from 1 to 100; got ${JSON.stringify(request.query.limit)}`,
    );
  }
  let cursor = request.query.cursor;
  if (cursor !== undefined && !JOB_ID.test(cursor)) {
    throw new ValidationError(
      `cursor ${JSON.stringify(cursor)} is not a job id from a previous page`,
    );
  }
  const all = request.query.all;
  if (all !== undefined && all !== 'true' && all !== 'false') {
    throw new ValidationError(`all must be true or false; got ${JSON.stringify(all)}`);
  }
  const viewer = viewerOf(request.caller, deps);
  if (all === 'true' && !viewer.admin) {
    throw new HttpError(403, 'FORBIDDEN', "all=true lists every caller's jobs: it is for admins");
  }
  const everyone = viewer.admin && all === 'true';
  // Another caller's jobs are left out: a page may take several listings to fill, up to a few.
  const jobs: Record<string, unknown>[] = [];
  let more = true;
  for (let listings = 0; more && jobs.length < limit && listings < 10; listings++) {
    const page = await deps.store.listPrefixes(deps.bucket, 'jobs/', {
      limit: limit - jobs.length,
      ...(cursor !== undefined && { startAfter: `jobs/${cursor}/` }),
    });
    const ids = page.prefixes
      .map((p) => p.slice('jobs/'.length, -1))
      .filter((id) => JOB_ID.test(id));
    const statuses = await Promise.all(
      ids.map((id) =>
        readJson<JobStatus>(deps.store, deps.bucket, jobKeys(id).status)
          .then((r) => r.value)
          .catch(() => undefined),
      ),
    );
    for (const s of statuses) {
      if (s === undefined) continue;
      if (!everyone && s.owner?.principal !== viewer.owner.principal) continue;
      jobs.push({
        jobId: s.jobId,
        job: s.job,
        status: s.status,
        input: s.input,
        createdAt: s.createdAt,
        finishedAt: s.finishedAt,
        ...(everyone && s.owner !== undefined && { owner: s.owner.principal }),
      });
    }
    more = page.next !== undefined;
    cursor = ids.at(-1) ?? cursor;
  }
  return json(200, { jobs, ...(more && cursor !== undefined && { next: cursor }) });
}

async function postUpload(
  request: ApiRequest,
  _params: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const body = parseBody(uploadSchema, request.body);
  const key = callerDatasetKey(body.key, request, deps);
  const s3Uri = `s3://${deps.bucket}/${key}`;
  const expiresIn = PRESIGN_SECONDS.upload;
  if (body.bytes === undefined || body.bytes <= MULTIPART_THRESHOLD) {
    const url = await deps.signer.presignPut(deps.bucket, key, expiresIn);
    return json(201, { s3Uri, key, url, method: 'PUT', expiresIn });
  }
  const partSize = Math.max(MIN_PART, Math.ceil(body.bytes / 10_000 / (1024 * 1024)) * 1024 * 1024);
  const partCount = Math.ceil(body.bytes / partSize);
  const uploadId = await deps.signer.createMultipartUpload(deps.bucket, key);
  const page = await partPage(deps, { key, uploadId, partCount, from: 1 });
  return json(201, {
    s3Uri,
    key,
    multipart: {
      uploadId,
      partSize,
      partCount,
      ...page,
      complete: {
        method: 'POST',
        path: '/uploads/complete',
        body: {
          key,
          uploadId,
          parts: "[{ partNumber, etag }] from each part upload's ETag header",
        },
      },
    },
    expiresIn,
  });
}

/**
 * One page of part URLs, from part `from`, and how to ask for the next page while parts remain:
 * a client asks for each page as it needs it, so no URL waits long enough to expire.
 */
async function partPage(
  deps: ApiDeps,
  upload: { key: string; uploadId: string; partCount: number; from: number },
) {
  const to = Math.min(upload.partCount, upload.from + UPLOAD_PARTS_PAGE - 1);
  const parts = await Promise.all(
    Array.from({ length: to - upload.from + 1 }, async (_, i) => {
      const partNumber = upload.from + i;
      const url = await deps.signer.presignUploadPart(
        deps.bucket,
        upload.key,
        upload.uploadId,
        partNumber,
        PRESIGN_SECONDS.upload,
      );
      return { partNumber, url };
    }),
  );
  const next =
    to < upload.partCount
      ? {
          method: 'POST',
          path: '/uploads/parts',
          body: {
            key: upload.key,
            uploadId: upload.uploadId,
            partCount: upload.partCount,
            from: to + 1,
          },
        }
      : undefined;
  return { parts, ...(next !== undefined && { nextParts: next }) };
}

async function postUploadParts(
  request: ApiRequest,
  _params: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const body = parseBody(uploadPartsSchema, request.body);
  if (body.from > body.partCount) {
    throw new ValidationError(
      `from (${body.from}) is past the upload's last part (${body.partCount}); expected a part number from 1 to partCount`,
    );
  }
  const key = callerDatasetKey(body.key, request, deps);
  const page = await partPage(deps, { ...body, key });
  return json(200, { key, uploadId: body.uploadId, ...page, expiresIn: PRESIGN_SECONDS.upload });
}

async function postUploadComplete(
  request: ApiRequest,
  _params: string[],
  deps: ApiDeps,
): Promise<ApiResponse> {
  const body = parseBody(completeSchema, request.body);
  const key = callerDatasetKey(body.key, request, deps);
  await deps.signer.completeMultipartUpload(deps.bucket, key, body.uploadId, body.parts);
  return json(200, { s3Uri: `s3://${deps.bucket}/${key}`, key });
}
