/**
 * The CLI verbs that drive an API (local `fanout dev` or a deployment): upload, submit, status,
 * result, jobs. Each prints what a person needs and, where useful, JSON for scripts.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { FanoutError, ValidationError } from '#core/base/errors.ts';
import type { JobStatus } from '#core/model/documents.ts';
import { TERMINAL_STATES } from '#core/model/status.ts';
import { formatBytes, parsePositiveInt } from './args.ts';
import { ApiClient } from './client.ts';
import { JOB_FLAGS, parseJobFlags } from './job-flags.ts';
import { createProgress } from './progress.ts';

const API_FLAG = { api: { type: 'string' } } as const;

/** Help of the API verbs. */
export const REMOTE_HELP = `Commands that drive an API (--api URL, default $FANOUT_API_URL, else http://127.0.0.1:3000).
Against a deployment, requests are signed with SigV4 from the standard AWS credential chain.

  fanout upload <file> [key]          upload a dataset under datasets/ (multipart when large);
                                      prints its s3:// URI
  fanout submit <job> <s3-uri> [--chunk-size SIZE | --chunks N] [--concurrency N]
                [--params JSON] [--on-bad-record fail|skip] [--max-attempts N]
                [--tolerated-failure-percent P] [--tolerated-failure-count N]
                [--format F] [--columns A,B] [--no-speculation] [--guided-tail]
                [--partitions N] [--result-format json|jsonl] [--no-reuse]
                                      submit a job; prints its id
  fanout status <jobId> [--watch]     print the job's status (--watch: a progress bar until it ends;
                                      exit 1 if it did not succeed)
  fanout result <jobId> [--output F] [--follow]
                                      print the result or write it to F (--follow: a map-only
                                      job's lines as its chunks finish, in input order)
  fanout report <jobId> [--output F]  the job report (one self-contained HTML page) to stdout or F
  fanout jobs [--limit N] [--cursor C]
                                      the most recent jobs
  fanout cancel <jobId> [--wait] [--json]
                                      stop dispatching; CANCELLED once in-flight chunks finish
                                      (--wait: until then; --json: print the status)
  fanout redrive <jobId> [--wait] [--json]
                                      rerun the chunks of a FAILED or CANCELLED job that did not
                                      succeed, then reduce (inputs must be unchanged)
`;

/** `fanout upload <file> [key]` */
export async function uploadCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: API_FLAG,
  });
  const [file, key, ...extra] = positionals;
  if (file === undefined || extra.length > 0)
    throw new ValidationError('usage: fanout upload <file> [key]');
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw new ValidationError(`${JSON.stringify(file)} is not a file`);
  const client = new ApiClient(values.api);
  const plan = await client.json<{
    s3Uri: string;
    url?: string;
    multipart?: PartPage & { uploadId: string; partSize: number; partCount: number };
    key: string;
  }>('POST', '/uploads', { key: key ?? basename(file), bytes: info.size });
  const progress = createProgress('upload');
  if (plan.url !== undefined) {
    let sent = 0;
    const body = Readable.toWeb(
      createReadStream(file).on('data', (chunk) => {
        sent += chunk.length;
        progress.update(sent, info.size, formatBytes(sent));
      }),
    ) as ReadableStream;
    const res = await fetch(plan.url, {
      method: 'PUT',
      body,
      duplex: 'half',
      headers: { 'content-length': String(info.size) },
    } as RequestInit);
    if (!res.ok)
      throw new FanoutError(
        'UPLOAD_FAILED',
        `upload failed: HTTP ${res.status} ${await res.text()}`,
      );
  } else if (plan.multipart !== undefined) {
    const { uploadId, partSize } = plan.multipart;
    const handle = await open(file);
    const done: { partNumber: number; etag: string }[] = [];
    let sent = 0;
    // Part URLs come a page at a time, asked for as the parts before them are sent, so none
    // waits long enough to expire.
    let page: PartPage | undefined = plan.multipart;
    const queue: { partNumber: number; url: string }[] = [];
    let fetching: Promise<void> | undefined;
    const nextPart = async () => {
      while (queue.length === 0 && page !== undefined) {
        if (page.parts.length > 0) {
          queue.push(...page.parts);
          page = { parts: [], ...(page.nextParts && { nextParts: page.nextParts }) };
        } else if (page.nextParts !== undefined) {
          const { path, body } = page.nextParts;
          fetching ??= client.json<PartPage>('POST', path, body).then((next) => {
            page = next;
            fetching = undefined;
          });
          await fetching;
        } else page = undefined;
      }
      return queue.shift();
    };
    try {
      // Four parts at a time: enough to fill a link, little memory (4 × partSize).
      const worker = async () => {
        for (let part = await nextPart(); part !== undefined; part = await nextPart()) {
          const start = (part.partNumber - 1) * partSize;
          const length = Math.min(partSize, info.size - start);
          const buffer = Buffer.alloc(length);
          await handle.read(buffer, 0, length, start);
          const res = await fetch(part.url, { method: 'PUT', body: buffer });
          if (!res.ok)
            throw new FanoutError(
              'UPLOAD_FAILED',
              `part ${part.partNumber} failed: HTTP ${res.status}`,
            );
          done.push({ partNumber: part.partNumber, etag: res.headers.get('etag') ?? '' });
          sent += length;
          progress.update(sent, info.size, formatBytes(sent));
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
    } finally {
      await handle.close();
    }
    done.sort((a, b) => a.partNumber - b.partNumber);
    await client.json('POST', '/uploads/complete', { key: plan.key, uploadId, parts: done });
  }
  progress.done(`${formatBytes(info.size)} → ${plan.s3Uri}`);
  process.stdout.write(`${plan.s3Uri}\n`);
  return 0;
}

/** A page of part URLs of a multipart upload (`POST /uploads`, `POST /uploads/parts`). */
interface PartPage {
  parts: { partNumber: number; url: string }[];
  nextParts?: { method: string; path: string; body: unknown };
}

/** `fanout submit <job> <s3-uri> [flags]` */
export async function submitCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { ...API_FLAG, ...JOB_FLAGS },
  });
  const [job, input, ...extra] = positionals;
  if (job === undefined || input === undefined || extra.length > 0) {
    throw new ValidationError(
      'usage: fanout submit <job> <s3-uri> [--chunk-size SIZE | --chunks N] [--concurrency N] [--params JSON] [--on-bad-record fail|skip]',
    );
  }
  // A token of this submission: the client retries a busy API, and a retried POST returns the
  // job the first one created rather than a second job.
  const body = { job, input, ...parseJobFlags(values), clientToken: randomUUID() };
  const answer = await new ApiClient(values.api).json<{ jobId: string }>('POST', '/jobs', body);
  process.stdout.write(`${answer.jobId}\n`);
  return 0;
}

/** `fanout status <jobId> [--watch]` */
export async function statusCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { ...API_FLAG, watch: { type: 'boolean' } },
  });
  const [jobId, ...extra] = positionals;
  if (jobId === undefined || extra.length > 0)
    throw new ValidationError('usage: fanout status <jobId> [--watch]');
  const client = new ApiClient(values.api);
  const progress = createProgress(jobId);
  for (;;) {
    const status = await client.json<JobStatus>('GET', `/jobs/${encodeURIComponent(jobId)}`);
    if (!values.watch || TERMINAL_STATES.has(status.status)) {
      if (values.watch) progress.done(status.status.toLowerCase());
      process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      return values.watch && status.status !== 'SUCCEEDED' ? 1 : 0;
    }
    progress.update(
      status.chunks.succeeded,
      status.chunks.total,
      `${status.chunks.succeeded}/${status.chunks.total} chunks`,
    );
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** `fanout result <jobId> [--output FILE]` */
export const resultCommand = (args: string[]) => downloadCommand(args, 'result');

/** `fanout report <jobId> [--output FILE]`: the job report, one self-contained HTML page. */
export const reportCommand = (args: string[]) => downloadCommand(args, 'report');

/**
 * GET /jobs/{id}/result or /report, to stdout or --output. A large one comes from S3 directly,
 * by the presigned URL of a 303.
 */
async function downloadCommand(args: string[], what: 'result' | 'report'): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      ...API_FLAG,
      output: { type: 'string' },
      ...(what === 'result' && { follow: { type: 'boolean' } }),
    },
  });
  const [jobId, ...extra] = positionals;
  if (jobId === undefined || extra.length > 0)
    throw new ValidationError(`usage: fanout ${what} <jobId> [--output FILE]`);
  if (values.follow === true) {
    const out = values.output === undefined ? process.stdout : createWriteStream(values.output);
    await followResults(new ApiClient(values.api), jobId, out);
    if (out !== process.stdout) await new Promise<void>((r) => out.end(() => r()));
    return 0;
  }
  const answer = await new ApiClient(values.api).request(
    'GET',
    `/jobs/${encodeURIComponent(jobId)}/${what}`,
  );
  const out = values.output === undefined ? process.stdout : createWriteStream(values.output);
  if (answer.status === 303) {
    const res = await fetch(answer.headers.get('location') ?? '');
    if (!res.ok || res.body === null)
      throw new FanoutError(
        `${what.toUpperCase()}_FAILED`,
        `cannot download the ${what}: HTTP ${res.status}`,
      );
    await pipeline(Readable.fromWeb(res.body as never), out);
  } else {
    await pipeline(
      Readable.from([answer.text.endsWith('\n') ? answer.text : `${answer.text}\n`]),
      out,
    );
  }
  return 0;
}

/**
 * `fanout result JOB --follow`: a map-only job's lines as its chunks finish, in input order
 * (GET /jobs/{id}/results?after=N, asked again from each page's x-fanout-next until
 * x-fanout-more is false; every 500 ms while nothing new has finished). A job that ends FAILED
 * or CANCELLED ends it with that error (exit 1), after the lines that came.
 */
async function followResults(
  client: ApiClient,
  jobId: string,
  out: NodeJS.WritableStream,
): Promise<void> {
  const path = `/jobs/${encodeURIComponent(jobId)}/results`;
  for (let after = 0; ; ) {
    const answer = await client.request('GET', path, undefined, { after: String(after) });
    if (answer.status === 303) {
      const res = await fetch(answer.headers.get('location') ?? '');
      if (!res.ok || res.body === null) {
        throw new FanoutError(
          'RESULT_FAILED',
          `cannot download a chunk's lines: HTTP ${res.status}`,
        );
      }
      for await (const piece of Readable.fromWeb(res.body as never)) {
        if (!out.write(piece)) await once(out, 'drain');
      }
    } else if (answer.text !== '' && !out.write(answer.text)) {
      await once(out, 'drain');
    }
    const next = Number(answer.headers.get('x-fanout-next') ?? after);
    if (answer.headers.get('x-fanout-more') !== 'true') return;
    if (next === after) await new Promise((r) => setTimeout(r, 500));
    after = next;
  }
}

/** `fanout jobs [--limit N] [--cursor C]` */
export async function jobsCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { ...API_FLAG, limit: { type: 'string' }, cursor: { type: 'string' } },
  });
  const page = await new ApiClient(values.api).json<{
    jobs: { jobId: string; job: string; status: string; createdAt: string; input: string }[];
    next?: string;
  }>('GET', '/jobs', undefined, {
    ...(values.limit !== undefined && { limit: String(parsePositiveInt('--limit', values.limit)) }),
    ...(values.cursor !== undefined && { cursor: values.cursor }),
  });
  for (const j of page.jobs) {
    process.stdout.write(
      `${j.jobId}  ${j.status.padEnd(9)}  ${j.job.padEnd(12)}  ${j.createdAt}  ${j.input}\n`,
    );
  }
  if (page.next !== undefined) process.stdout.write(`more: fanout jobs --cursor ${page.next}\n`);
  return 0;
}

async function controlCommand(verb: 'cancel' | 'redrive', args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { ...API_FLAG, wait: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const [jobId, ...extra] = positionals;
  if (jobId === undefined || extra.length > 0)
    throw new ValidationError(`usage: fanout ${verb} <jobId> [--wait] [--json]`);
  const client = new ApiClient(values.api);
  const path = `/jobs/${encodeURIComponent(jobId)}`;
  let status = await client.json<JobStatus>('POST', `${path}/${verb}`);
  if (!values.json) process.stdout.write(`${controlLine(verb, status)}\n`);
  // --wait: until the job ends (a cancel: once its in-flight chunks have finished).
  while (values.wait === true && !TERMINAL_STATES.has(status.status)) {
    await new Promise((r) => setTimeout(r, 500));
    status = await client.json<JobStatus>('GET', path);
  }
  if (values.json) process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
  else if (values.wait === true) process.stdout.write(`job ${status.jobId} is ${status.status}\n`);
  return 0;
}

/** What a cancel or a redrive did, in one line. */
function controlLine(verb: 'cancel' | 'redrive', status: JobStatus): string {
  const { jobId, chunks } = status;
  if (verb === 'redrive') {
    return `job ${jobId} redriven: the chunks that did not finish run again (fanout status ${jobId} --watch)`;
  }
  if (TERMINAL_STATES.has(status.status)) return `job ${jobId} is ${status.status}`;
  return `cancel requested for job ${jobId}: no new chunk starts; ${chunks.running} chunk(s) in flight will finish, then it is CANCELLED (--wait waits for that)`;
}

/** `fanout cancel <jobId>` */
export const cancelCommand = (args: string[]) => controlCommand('cancel', args);

/** `fanout redrive <jobId>` */
export const redriveCommand = (args: string[]) => controlCommand('redrive', args);
