/**
 * The `fanout` command. Exit codes: 0 the job succeeded, 1 the job failed (reason on stderr),
 * 2 usage error (unknown job, missing input, bad flag — the valid choices are listed).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FanoutError, ValidationError } from '#core/base/errors.ts';
import type { AnyJob } from '#core/model/job.ts';
import { jobs } from '#jobs/index.ts';
import { parseChaos } from '#local/chaos.ts';
import { isJobPath, preparePathJob } from '#local/job-path.ts';
import { repoRoot } from '#local/paths.ts';
import { LOCAL_DEFAULTS, startRuntime } from '#local/runtime.ts';
import { parseCount, parsePositiveInt } from './args.ts';
import { ApiError } from './client.ts';
import { DEMO_HELP, demoCommand } from './demo.ts';
import { DEV_HELP, devCommand } from './dev.ts';
import { VERB_HELP } from './help.ts';
import { INIT_HELP, initCommand } from './init.ts';
import { JOB_FLAGS, parseJobFlags } from './job-flags.ts';
import { printFunctionLog } from './logs.ts';
import {
  cancelCommand,
  jobsCommand,
  REMOTE_HELP,
  redriveCommand,
  reportCommand,
  resultCommand,
  statusCommand,
  submitCommand,
  uploadCommand,
} from './remote.ts';
import { type RunOptions, runJob } from './run.ts';

const RUN_HELP = `Usage: fanout run <job> <input> [options]

Runs a job on the embedded local runtime (a local S3 server and a local Lambda server on
127.0.0.1, no AWS account needed) and prints its result.

Arguments:
  <job>      one of: ${[...jobs.keys()].sort().join(', ')}, or a job module by path:
             ./my-job.ts (its default export) or ./jobs.ts#name (a named export)
  <input>    a local file, or a local directory (its regular files, recursively, in S3
             key order, dotfiles and dot-directories skipped), read in place and never
             copied; or s3://bucket/key or s3://bucket/prefix/ on the local S3 server (its data lives in --dir;
             without --dir every run starts with an empty server)

Options:
  --chunk-size SIZE    bytes per chunk, e.g. 8MiB (default: about 4 chunks per unit of
                       concurrency, 1 MiB..256 MiB; inputs up to 1 MiB are split on records)
  --chunks N           split the input into N chunks instead (not with --chunk-size)
  --concurrency N      chunks in flight (default: ${LOCAL_DEFAULTS.workerSandboxes} for inputs up to 1 MiB, one per core above;
                       a job starts one worker per core and widens once a chunk runs 250 ms)
  --params JSON        job parameters, e.g. '{"year":2020}'
  --format F           jsonl, csv, lines or parquet (default: what the input's names say, e.g.
                       .jsonl, .csv, .txt, .parquet, else the job's format; docs/FORMATS.md)
  --columns A,B        Parquet: read only these columns (default: the job's, else all)
  --on-bad-record P    fail (default: the chunk fails at the first malformed record) or skip
                       (malformed records are counted and the first 10 kept in the outcome)
  --output FILE        write the result to FILE (map-only jobs: JSONL; reduce jobs: JSON)
                       instead of stdout
  --stream             a map-only job: write its lines to stdout as its chunks finish, in
                       input order (a chunk's once every earlier chunk's are out), not once
                       it has ended; each line once, only a winning attempt's; a job that
                       fails ends the stream with its error (exit 1)
  --unordered          as --stream, but each chunk's lines as soon as it finishes
                       (as_completed)
  --report FILE        write the job report to FILE once the job ends: one self-contained
                       HTML page (timeline, concurrency, throughput, durations, errors, cost)
  --no-speculation     no backup attempts for straggling chunks (by default a chunk running
                       3x the median time of finished ones of its size, and 1 s at least,
                       gets one in the next free slot, a second if that one straggles too;
                       at most 5% more invocations, 4 at least)
  --guided-tail        shrink the last two rounds of chunks (the last 2 x concurrency x
                       chunk-size bytes), each to a (2 x concurrency)-th of what is left and
                       down to a quarter of the chunk size, so the job does not end on a few
                       big chunks alone (about 2.8 x concurrency more chunks)
  --partitions N       a keyed job (key(out)) or a sorted one (orderBy(out)): its reduce tasks,
                       1 to 10,000 (default: the job's, else from the bytes its map stage
                       writes: one per 256 MiB, or one per core while each gets 4 MiB;
                       docs/SHUFFLE.md)
  --result-format F    a keyed job's result: json (default: one object, keys in order, or
                       in rank order for a job with rank, as wordcount) or jsonl (a
                       {"key","value"} line per key, in the same order)
  --no-reuse           compute every chunk, and keep nothing for later jobs (by default, with
                       --dir, a job takes each piece of its input, a whole object or a cell of
                       1 MiB and up, from what an earlier job made of the same bytes with the
                       same code and params, and a chunk whose pieces all were made needs no
                       worker; without --dir nothing outlives the run, so nothing is kept;
                       docs/ARCHITECTURE.md, "Reuse")
  --json               end stdout with one JSON line: {"jobId","status","chunks","records",
                       "kept","bytes","bytesProcessed","reused","durationMs","output","cost"}
                       (records read, map outputs kept, input bytes read and mapped in this
                       run, chunks and pieces taken from the cache), and "partial" and "failedChunks" when failed chunks were
                       tolerated; cost is what the job would cost on AWS with the deployed
                       defaults (us-east-1, arm64; docs/COST.md)
  --max-attempts N     attempts per chunk before it counts as failed (default 3)
  --tolerated-failure-percent P, --tolerated-failure-count N
                       failed chunks tolerated (default 0): within them the job succeeds with
                       a partial result listing the failed chunks; beyond them it fails
  --dir DIR            keep the local S3 data in DIR (default: a temporary directory)
  --template FILE      run every function as this synthesized template configures it
                       (timeout, memory, environment, reserved concurrency) and enforce its
                       roles' IAM policies (default: this checkout's stack, synthesized once
                       and cached; docs/LOCAL.md)
  --worker-timeout S   the worker function's timeout in seconds (default: the template's, 300);
                       a chunk that runs past it is split in two, not retried as it is
  --worker-memory MB   the worker function's memory (default: the template's, 1769): each
                       sandbox's heap is limited to it, and one past it fails its invocation
                       with Runtime.OutOfMemory, as on Lambda; the chunk is then split in two
  --chaos SPEC         inject faults, e.g. worker-error=0.1,worker-timeout=0.02,throttle=0.05,
                       s3-slowdown=0.02 (fractions of worker invocations / S3 requests);
                       coordinator-crash=P crashes that fraction of coordinator invocations;
                       worker-slow=P stalls that fraction of worker invocations for 10 s
  --seed N             seed of the --chaos draws (default 1)
  -h, --help           show this help

Environment: FANOUT_LOGS=1 prints what the functions log to stderr.

Exit codes: 0 succeeded, 1 the job failed, 2 usage error.
`;

const MAIN_HELP = `Usage: fanout <command> [options]

Commands:
  run <job> <input>   run a job on the embedded local runtime and print its result
  dev                 serve the HTTP API, S3 and Lambda locally until Ctrl-C
  demo                run the lesson's two jobs on the local runtime (npm start)
  init [DIR]          start a project of your own: a job, its test, a registry, a CDK app
  list-jobs           list the jobs fanout can run (by-field, scientists, …)
  help [command]      show help ('fanout help run', 'fanout help dev')

${REMOTE_HELP}
`;

/**
 * Runs the CLI; returns the exit code. The caller exits the process next (cli/bin.mjs,
 * cli/entry.ts): a local runtime's sandboxes are left to end with it.
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // Every verb answers --help with its own usage.
    const help = command === undefined ? undefined : helpOf(command);
    if (help !== undefined && (rest.includes('--help') || rest.includes('-h'))) {
      process.stdout.write(help);
      return 0;
    }
    switch (command) {
      case 'run':
        return await runCommand(rest);
      case 'dev':
        return await devCommand(rest);
      case 'upload':
        return await uploadCommand(rest);
      case 'submit':
        return await submitCommand(rest);
      case 'status':
        return await statusCommand(rest);
      case 'result':
        return await resultCommand(rest);
      case 'report':
        return await reportCommand(rest);
      case 'jobs':
        return await jobsCommand(rest);
      case 'cancel':
        return await cancelCommand(rest);
      case 'redrive':
        return await redriveCommand(rest);
      case 'demo':
        return await demoCommand();
      case 'init':
        return await initCommand(rest);
      case 'list-jobs':
        process.stdout.write(listJobs());
        return 0;
      case '--version':
      case '-v':
      case 'version':
        process.stdout.write(`fanout ${version()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '-h':
      case '--help': {
        if (rest[0] === undefined) {
          process.stdout.write(MAIN_HELP);
          return 0;
        }
        const text = helpOf(rest[0]);
        if (text === undefined) throw unknownCommand(rest[0]);
        process.stdout.write(text);
        return 0;
      }
      default:
        throw unknownCommand(command);
    }
  } catch (error) {
    return reportError(error);
  }
}

/** Every command: the local ones, then those with help of their own (cli/help.ts). */
const COMMANDS = ['run', 'dev', 'demo', 'init', ...Object.keys(VERB_HELP)];

function unknownCommand(command: string) {
  return new ValidationError(
    `unknown command ${JSON.stringify(command)}; expected one of: ${COMMANDS.join(', ')}`,
  );
}

/** A command's own help text, or undefined for an unknown command. */
function helpOf(command: string): string | undefined {
  if (command === 'run') return RUN_HELP;
  if (command === 'dev') return DEV_HELP;
  if (command === 'demo') return DEMO_HELP;
  if (command === 'init') return INIT_HELP;
  return VERB_HELP[command];
}

/** The registered jobs as aligned columns: name, format, kind, description. */
/** What a job does with its outputs, as `list-jobs` and the README's table say it. */
function kindOf(job: AnyJob): string {
  if (job.key !== undefined) return 'keyed';
  if (job.orderBy !== undefined) return 'sorted';
  return job.reduce === undefined ? 'map-only' : 'reduce';
}

function listJobs(): string {
  const rows = [...jobs.values()]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((job) => [job.name, job.format, kindOf(job), job.description ?? '']);
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  return rows
    .map(
      (r) =>
        `${r
          .slice(0, 3)
          .map((cell, c) => cell.padEnd(widths[c] as number))
          .join('  ')}  ${r[3]}\n`,
    )
    .join('');
}

/** The package's version, from its package.json. */
function version(): string {
  return (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string })
    .version;
}

/**
 * One exit-code contract: 0 ok; 1 the job or the request failed (a job that failed or is not
 * ready, an unknown job id, a server error); 2 usage (a bad flag or value, refused as 400).
 */
function reportError(error: unknown): number {
  if (error instanceof ApiError && error.status < 500) {
    process.stderr.write(`fanout: ${error.message} (${error.status} ${error.code})\n`);
    return error.status === 400 ? 2 : 1;
  }
  if (error instanceof ValidationError || isParseArgsError(error)) {
    process.stderr.write(`fanout: ${(error as Error).message}\n`);
    return 2;
  }
  if (error instanceof FanoutError) {
    process.stderr.write(`fanout: ${error.message}\n`);
    return 1;
  }
  process.stderr.write(`fanout: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
  return 1;
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

async function runCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      ...JOB_FLAGS,
      output: { type: 'string' },
      report: { type: 'string' },
      json: { type: 'boolean' },
      dir: { type: 'string' },
      template: { type: 'string' },
      'worker-timeout': { type: 'string' },
      'worker-memory': { type: 'string' },
      chaos: { type: 'string' },
      seed: { type: 'string' },
      stream: { type: 'boolean' },
      unordered: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(RUN_HELP);
    return 0;
  }
  if (values.stream && values.unordered) {
    throw new ValidationError('give --stream or --unordered, not both');
  }
  const stream = values.stream ? 'ordered' : values.unordered ? 'unordered' : undefined;
  if (stream !== undefined && values.output !== undefined) {
    throw new ValidationError(
      `--${values.stream ? 'stream' : 'unordered'} writes the lines to stdout as they come; drop --output (or redirect stdout)`,
    );
  }
  const [job, input, ...extra] = positionals;
  if (job === undefined || input === undefined || extra.length > 0) {
    throw new ValidationError(
      `expected exactly <job> and <input>, got ${positionals.length} argument(s); see 'fanout run --help'`,
    );
  }
  // A job by path (./my-job.ts, file.ts#name): bundled with the built-in jobs, registered nowhere.
  const pathJob = isJobPath(job) ? await preparePathJob(job) : undefined;
  const options: RunOptions = {
    job: pathJob?.name ?? job,
    input,
    ...parseJobFlags(values),
    ...(values.output !== undefined && { output: values.output }),
    ...(values.report !== undefined && { report: values.report }),
    ...(stream !== undefined && { stream }),
  };
  const chaos =
    values.chaos === undefined
      ? undefined
      : {
          spec: parseChaos(values.chaos),
          seed: values.seed === undefined ? 1 : parseCount('--seed', values.seed),
        };
  // Usage errors in the job name or params surface before the runtime starts.
  if (pathJob === undefined && !jobs.has(job)) {
    throw new ValidationError(
      `unknown job ${JSON.stringify(job)}; expected one of: ${[...jobs.keys()].sort().join(', ')}, or a path to a job module (./my-job.ts)`,
    );
  }
  const runtime = await startRuntime({
    note: (text) => process.stderr.write(`fanout: ${text}\n`),
    ...(pathJob !== undefined && { registry: { module: pathJob.registry, jobs: pathJob.jobs } }),
    ...(values.dir !== undefined && { dir: values.dir }),
    ...(values.template !== undefined && { template: values.template }),
    ...(values['worker-memory'] !== undefined && {
      workerMemoryMb: parsePositiveInt('--worker-memory', values['worker-memory']),
    }),
    ...(values['worker-timeout'] !== undefined && {
      workerTimeoutSeconds: parsePositiveInt('--worker-timeout', values['worker-timeout']),
    }),
    ...(chaos !== undefined && { chaos }),
    // FANOUT_LOGS=1 shows what the functions log (dropped by default: stdout carries the result).
    ...(process.env.FANOUT_LOGS === '1' && { log: printFunctionLog }),
  });
  // Ctrl-C: stop the servers and remove the temporary data directory before exiting.
  const interrupted = () => {
    void runtime.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  try {
    // The result streams to stdout as it is read: a large one is never held whole.
    const result = await runJob(runtime, { ...options, stdout: process.stdout });
    if (values.json) {
      const { status } = result;
      process.stdout.write(
        `${JSON.stringify({
          jobId: result.jobId,
          status: status.status,
          chunks: status.chunks.total,
          records: status.records,
          // Map outputs kept: fewer than records when the map dropped some.
          ...(status.result !== undefined && { kept: status.result.records }),
          bytes: status.bytes,
          ...(status.bytesProcessed !== undefined && { bytesProcessed: status.bytesProcessed }),
          ...(status.reused !== undefined && { reused: status.reused }),
          durationMs: result.durationMs,
          output: result.output,
          ...(status.result?.partial === true && {
            partial: true,
            failedChunks: status.result.failedChunks ?? [],
          }),
          ...(status.cost !== undefined && { cost: status.cost }),
        })}\n`,
      );
    }
    return 0;
  } finally {
    process.off('SIGINT', interrupted);
    await runtime.close({ exiting: true });
  }
}
