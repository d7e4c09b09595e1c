/**
 * `fanout run`: upload local input to the embedded runtime's S3, submit the job, follow it with
 * a progress bar, and deliver the result. Split from the argument parsing so `npm start`, the
 * benchmarks and the tests run jobs through exactly this path.
 */

import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { JobFailedError, NotFoundError, ValidationError } from '#core/base/errors.ts';
import { SMALL_INPUT_BYTES } from '#core/data/plan.ts';
import { describePlace, type JobStatus } from '#core/model/documents.ts';
import { findJob, parseParams } from '#core/model/job.ts';
import { formatS3Uri, jobKeys, parseInputUri } from '#core/model/keys.ts';
import { readStatus, TERMINAL_STATES } from '#core/model/status.ts';
import { loadReport, type ReportInput, renderReport } from '#core/report/report.ts';
import { resolveInput } from '#core/run/plan-job.ts';
import { finishedOutputs, resultsAfter } from '#core/run/stream.ts';
import { submitJob } from '#core/run/submit.ts';
import { LOCAL_DEFAULTS, type LocalRuntime, submitDeps } from '#local/runtime.ts';
import { formatBytes } from './args.ts';
import type { JobFlagValues } from './job-flags.ts';
import { createProgress } from './progress.ts';

/** What to run. */
export interface RunOptions extends JobFlagValues {
  job: string;
  /** A local file, a local directory, or an s3:// URI on the local S3 server. */
  input: string;
  /** Write the result here instead of returning it. */
  output?: string;
  /** Write the job report (one self-contained HTML page) here once the job has ended. */
  report?: string;
  /**
   * The longest wait between status polls. Polls start 10 ms apart and slow down to this, so
   * a short job is seen to end promptly and a long one is not polled needlessly. @default 250
   */
  pollMs?: number;
  /**
   * The job is reported stalled (and the run fails) when no function of the runtime has run or
   * waited to run for this long while the job has not ended. @default 15_000
   */
  stallMs?: number;
  /** Progress bars and notes. @default process.stderr */
  stderr?: NodeJS.WriteStream;
  /**
   * Stream the result here as it is read (ending it with a newline), instead of returning its
   * text: a large result (a keyed job's 40 MB object) is then never held whole in memory.
   */
  stdout?: NodeJS.WritableStream;
  /**
   * A map-only job's lines go to `stdout` as its chunks finish, not once it has ended:
   * `ordered` in input order (a chunk's once every earlier chunk's are out), `unordered` as
   * each chunk finishes (`as_completed`). Each line is written once, and only a winning
   * attempt's. A job that fails still throws JobFailedError, after the lines streamed so far.
   */
  stream?: 'ordered' | 'unordered';
}

/** How a run ended. */
export interface RunResult {
  jobId: string;
  status: JobStatus;
  /** Job time: from submission to the final status (the job's own clock). */
  durationMs: number;
  /** Where the result was written, when `output` was given. */
  output: string | null;
  /** The result's text, when neither `output` nor `stdout` was given. */
  resultText?: string;
}

/**
 * What a run that skipped malformed records says: the first samples themselves, since the local
 * S3 data (and the outcomes holding them) are gone once a run without --dir ends; with --dir,
 * where the rest are.
 */
function skippedNote(
  runtime: LocalRuntime,
  jobId: string,
  job: string,
  count: number,
  outcomes: ReportInput['outcomes'],
) {
  const samples = outcomes.flatMap((o) => o?.badRecords.samples ?? []).slice(0, 3);
  const where = runtime.persistent
    ? `; every chunk's first samples are in jobs/${jobId}/chunks/*.json under ${runtime.s3.dir}`
    : '';
  return `${job}: skipped ${count} malformed record(s)${where}${samples
    .map((s) => `\n  ${s.key} byte ${s.offset}: ${s.reason}; record starts: ${s.snippet}`)
    .join('')}\n`;
}

/**
 * A missing s3:// input is a usage error, as a missing local file is (exit 2), and the local
 * S3 server's data lives only as long as its --dir.
 */
function missingInput(error: unknown): never {
  if (!(error instanceof NotFoundError)) throw error;
  throw new ValidationError(
    `${error.message}; the local S3 server keeps data only in --dir (without it every run starts with an empty server): give --dir, or a local file or directory`,
    { cause: error },
  );
}

/** Runs a job on a started runtime. Throws ValidationError (usage) or JobFailedError. */
export async function runJob(runtime: LocalRuntime, options: RunOptions): Promise<RunResult> {
  const stderr = options.stderr ?? process.stderr;
  // Everything a user can get wrong is checked before any byte is uploaded.
  const job = findJob(runtime.jobs, options.job);
  parseParams(job, options.params);
  if (options.stream !== undefined && (job.reduce !== undefined || job.orderBy !== undefined)) {
    throw new ValidationError(
      `--${options.stream === 'ordered' ? 'stream' : 'unordered'}: ${job.name} is ${job.orderBy !== undefined ? 'sorted: its order exists once its sort has ended' : 'a reduce job: its result exists once every chunk is merged'}; only a map-only job's lines stream`,
    );
  }

  // A job is about to run: start its sandboxes while the input is resolved, as provisioned
  // concurrency would, so cold starts do not add to the job's time. Best effort. A job opens one
  // lane per core at first (FANOUT_INITIAL_CONCURRENCY); one with a task per record of a small
  // input opens a lane per task at once: warm as many workers as the plan will use.
  const tasks = await smallPlanTasks(options);
  const warming = Promise.all([
    runtime.lambda.prewarm(runtime.functions.coordinator, 1),
    runtime.lambda.prewarm(runtime.functions.reducer, 1),
    runtime.lambda.prewarm(
      runtime.functions.worker,
      tasks ??
        Math.min(
          options.concurrency ?? LOCAL_DEFAULTS.byteRangeConcurrency,
          LOCAL_DEFAULTS.byteRangeConcurrency,
        ),
    ),
  ]).catch(() => undefined);
  const uri = await inputUri(runtime, options.input, options.chunks);
  // The size decides the default concurrency. A local input is measured on disk: listing it
  // through S3 costs the CLI an XML parse per object (0.3-0.4 s for 2,000 files).
  const totalBytes = options.input.startsWith('s3://')
    ? (await resolveInput(uri, runtime.store).catch(missingInput)).reduce(
        (sum, o) => sum + o.size,
        0,
      )
    : await localSize(options.input);
  const small = totalBytes <= SMALL_INPUT_BYTES && options.chunkSize === undefined;
  const concurrency =
    options.concurrency ??
    (small ? LOCAL_DEFAULTS.workerSandboxes : LOCAL_DEFAULTS.byteRangeConcurrency);

  // Cold starts belong to the run, not to the job's time: submit once the sandboxes are warm.
  await warming;
  const request = await submitJob(
    { ...options, job: job.name, input: uri, params: options.params ?? {}, concurrency },
    submitDeps(runtime),
  );

  // Settles with the stream's error, if any: a job that fails mid-stream is reported below.
  const streaming =
    options.stream === undefined || options.stdout === undefined
      ? undefined
      : streamLines(runtime, request.jobId, options.stream, options.stdout).then(
          () => undefined,
          (error: unknown) => error,
        );
  const status = await followJob(runtime, request.jobId, {
    pollMs: options.pollMs ?? 250,
    stallMs: options.stallMs ?? 15_000,
    stderr,
    label: job.name,
  });
  // The last lines come after the job's end is seen; a failed job's stream ends with its error.
  const streamError = await streaming;
  if (streamError !== undefined && !(streamError instanceof JobFailedError)) throw streamError;
  // The report and the note on skipped records read the same outcomes: once, for both.
  let loaded: Promise<ReportInput> | undefined;
  const report = () =>
    (loaded ??= loadReport(runtime.store, runtime.bucket, request.jobId, status));
  if (options.report !== undefined) {
    // The report is written whatever the job's end: a failed job's is the one most read.
    await writeFile(options.report, renderReport(await report()));
  }
  const durationMs =
    status.finishedAt === undefined
      ? 0
      : Date.parse(status.finishedAt) - Date.parse(status.createdAt);
  if (status.status !== 'SUCCEEDED' || status.result === undefined) {
    const reason = status.error?.message ?? `job ended ${status.status}`;
    throw new JobFailedError(`job ${request.jobId} (${job.name}) ${status.status}: ${reason}`, {
      context: { jobId: request.jobId },
    });
  }
  if (status.result.partial === true) {
    const failed = status.result.failedChunks ?? [];
    stderr.write(
      `${job.name}: PARTIAL result: ${failed.length} chunk(s) failed within the tolerance and are missing: ${failed
        .map((c) => `#${c.index} (${describePlace(c)}: ${c.error.message})`)
        .join('; ')}\n`,
    );
  }
  if (status.result.badRecords > 0) {
    const { outcomes } = await report();
    stderr.write(skippedNote(runtime, request.jobId, job.name, status.result.badRecords, outcomes));
  }
  if (streaming !== undefined) return { jobId: request.jobId, status, durationMs, output: null };
  const result = await runtime.store.head(runtime.bucket, status.result.key);
  const body = runtime.store.readRange(result, 0, result.size);
  if (options.output !== undefined) {
    await pipeline(Readable.from(body), createWriteStream(options.output));
    return { jobId: request.jobId, status, durationMs, output: options.output };
  }
  if (options.stdout !== undefined) {
    await streamResult(body, options.stdout);
    return { jobId: request.jobId, status, durationMs, output: null };
  }
  const pieces: Uint8Array[] = [];
  for await (const piece of body) pieces.push(piece);
  const resultText = Buffer.concat(pieces).toString('utf8');
  return { jobId: request.jobId, status, durationMs, output: null, resultText };
}

/**
 * Writes a map-only job's lines to `out` as its chunks finish (shared/core/run/stream.ts), until
 * every line is out; polls every 100 ms, and at once when a chunk's outcome is written.
 */
async function streamLines(
  runtime: LocalRuntime,
  jobId: string,
  mode: 'ordered' | 'unordered',
  out: NodeJS.WritableStream,
): Promise<void> {
  const { store, bucket } = runtime;
  const outcomes = `${jobKeys(jobId).root}/chunks/`;
  let wake: (() => void) | undefined;
  const unsubscribe = runtime.s3.onWrite((b, key) => {
    if (b === bucket && (key.startsWith(outcomes) || key === jobKeys(jobId).status)) wake?.();
  });
  const write = async (text: string) => {
    if (text !== '' && !out.write(text)) await once(out, 'drain');
  };
  try {
    let after = 0;
    const seen = new Set<number>();
    for (;;) {
      let more: boolean;
      if (mode === 'unordered') {
        const found = await finishedOutputs(store, bucket, jobId, seen);
        await write(found.text);
        more = found.more;
      } else {
        const page = await resultsAfter(store, bucket, jobId, after);
        await write(page.text);
        if (page.part !== undefined) {
          const part = { bucket, key: page.part.key, size: page.part.bytes, etag: page.part.etag };
          for await (const piece of store.readRange(part, 0, part.size)) {
            if (!out.write(piece)) await once(out, 'drain');
          }
        }
        // A full page: ask again at once.
        if (page.next > after && page.more) {
          after = page.next;
          continue;
        }
        after = page.next;
        more = page.more;
      }
      if (!more) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
  }
}

/** Writes the result's pieces to `out` as they come, honouring backpressure; ends with a newline. */
async function streamResult(
  body: AsyncIterable<Uint8Array>,
  out: NodeJS.WritableStream,
): Promise<void> {
  let last: number | undefined;
  for await (const piece of body) {
    if (piece.length === 0) continue;
    last = piece[piece.length - 1];
    if (!out.write(piece)) await once(out, 'drain');
  }
  if (last !== 10) out.write('\n');
}

/**
 * The S3 URI of the input: an s3:// URI as it is; a local file or directory served in place by
 * the local S3 server as a read-only bucket (nothing is copied; a file edited while the job
 * runs fails it with DatasetChangedError, as an overwritten S3 object would).
 */
async function inputUri(runtime: LocalRuntime, input: string, chunks?: number): Promise<string> {
  if (input.startsWith('s3://')) {
    parseInputUri(input);
    return input;
  }
  const info = await stat(input).catch(() => undefined);
  if (info === undefined || !(info.isFile() || info.isDirectory())) {
    throw new ValidationError(
      `input ${JSON.stringify(input)} does not exist; expected a local file, a local directory, or s3://bucket/key`,
    );
  }
  if (info.isFile() && input.endsWith('.gz') && (chunks ?? 1) > 1) {
    throw new ValidationError(
      `--chunks ${chunks}: ${basename(input)} is gzip, which is decompressed whole by one worker and cannot be split; split it into several .gz files (a directory of them runs one chunk per file), or decompress it`,
    );
  }
  if (info.isDirectory()) return formatS3Uri(await runtime.s3.mount(input), '');
  return formatS3Uri(await runtime.s3.mount(dirname(input)), basename(input));
}

/**
 * The tasks of a small local file split one record per task (as planChunks splits one when it
 * has no more records than `concurrency`: every lane then opens at once), counted from its
 * lines; undefined for anything else (more records, a large or compressed file, a directory, an
 * s3:// input, a chunk size or count given), whose job opens one lane per core at first.
 */
async function smallPlanTasks(options: RunOptions): Promise<number | undefined> {
  if (options.input.startsWith('s3://') || options.chunkSize !== undefined) return undefined;
  if (options.chunks !== undefined || /\.(gz|parquet)$/.test(options.input)) return undefined;
  const info = await stat(options.input).catch(() => undefined);
  if (info === undefined || !info.isFile() || info.size === 0 || info.size > SMALL_INPUT_BYTES) {
    return undefined;
  }
  const text = await readFile(options.input, 'utf8');
  const records = text.split('\n').filter((line) => line.trim() !== '').length;
  const header = options.format === 'csv' || options.input.endsWith('.csv') ? 1 : 0;
  const tasks = Math.max(1, records - header);
  return tasks <= (options.concurrency ?? LOCAL_DEFAULTS.workerSandboxes) ? tasks : undefined;
}

/** Bytes of a local file, or of the regular files under a directory (at least one). */
async function localSize(input: string): Promise<number> {
  const info = await stat(input);
  if (!info.isDirectory()) return info.size;
  const entries = await readdir(input, { recursive: true, withFileTypes: true });
  const files = entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  if (files.length === 0) {
    throw new ValidationError(`input directory ${JSON.stringify(input)} holds no files`);
  }
  const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
  return sizes.reduce((a, b) => a + b, 0);
}

/**
 * Records read, and how many the map kept when it dropped some (a map-only job's output lines,
 * a reduce job's outputs folded): "7 records" or "7 records, 3 kept".
 */
function recordsLine(status: JobStatus): string {
  const kept = status.result?.records;
  return kept === undefined || kept === status.records
    ? `${status.records} records`
    : `${status.records} records, ${kept} kept`;
}

/**
 * Polls status.json until the job ends, drawing chunks done / total. Never waits forever: when
 * no function is running or queued (retries included) for `stallMs` and the job has not ended,
 * nothing will end it, and the run fails saying so.
 */
export async function followJob(
  runtime: LocalRuntime,
  jobId: string,
  options: { pollMs: number; stallMs: number; stderr: NodeJS.WriteStream; label: string },
): Promise<JobStatus> {
  const progress = createProgress(options.label, options.stderr);
  let idleSince: number | undefined;
  let wait = Math.min(10, options.pollMs);
  // A write of the job's status.json ends the wait at once: the job's end is seen as it is
  // written, not up to a poll interval later. The polls remain for the stall check.
  const statusKey = jobKeys(jobId).status;
  let wake: (() => void) | undefined;
  // Also a write while a read is in flight: the next read then comes without a wait.
  let written = false;
  const unsubscribe = runtime.s3.onWrite((bucket, key) => {
    if (bucket !== runtime.bucket || key !== statusKey) return;
    written = true;
    wake?.();
  });
  try {
    return await pollStatus();
  } finally {
    unsubscribe();
  }

  async function pollStatus(): Promise<JobStatus> {
    for (;;) {
      written = false;
      const status = await readStatus(runtime.store, runtime.bucket, jobId);
      const { total, succeeded } = status.chunks;
      progress.update(succeeded, total, `${succeeded}/${total} chunks`);
      if (TERMINAL_STATES.has(status.status)) {
        progress.done(
          `${status.status.toLowerCase()}: ${status.chunks.succeeded}/${status.chunks.total} chunks, ${recordsLine(status)}, ${formatBytes(status.bytes)}`,
        );
        return status;
      }
      const active = Object.values(runtime.functions).some((name) => {
        const stats = runtime.lambda.stats(name);
        return stats.busy > 0 || stats.queued > 0;
      });
      idleSince = active ? undefined : (idleSince ?? Date.now());
      if (idleSince !== undefined && Date.now() - idleSince > options.stallMs) {
        progress.done('stalled');
        throw new JobFailedError(
          `job ${jobId} stalled: it is ${status.status}, but no function has run for ${Math.round(options.stallMs / 1000)} s; its coordinator failed and exhausted its retries (fanout redrive can resume it from its finished chunks)`,
          { context: { jobId } },
        );
      }
      if (written) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      wait = Math.min(options.pollMs, wait * 1.25);
    }
  }
}
