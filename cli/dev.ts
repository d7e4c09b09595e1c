/**
 * `fanout dev`: the local runtime plus the HTTP API, on fixed loopback ports, until Ctrl-C.
 * curl, the AWS CLI and `fanout --api` work against it exactly as against a deployment, with
 * no credentials. Data in --dir survives restarts.
 */
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ValidationError } from '#core/base/errors.ts';
import { ACTIVE_PREFIX } from '#core/model/keys.ts';
import { readStatus, TERMINAL_STATES } from '#core/model/status.ts';
import { assertLoopback, startApiServer } from '#local/api-server.ts';
import { parseChaos } from '#local/chaos.ts';
import { loadRegistry } from '#local/job-path.ts';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';
import type { AuthPrincipal } from '#local/sigv4.ts';
import { parseCount, parsePositiveInt } from './args.ts';
import { printFunctionLog } from './logs.ts';

export const DEV_HELP = `Usage: fanout dev [--port 3000] [--s3-port 4569] [--dir .fanout] [--host 127.0.0.1] [--template FILE] [--jobs FILE] [--auth FILE] [--worker-memory MB] [--chaos SPEC --seed N]

Starts the local S3 server, the local Lambda server and the HTTP API on 127.0.0.1 and keeps them
running until Ctrl-C. Prints the API URL, the S3 endpoint and bucket, and the environment lines
to use them; what the functions log goes to stderr, prefixed with the function's name.

Options:
  --port N      the HTTP API's port (default 3000)
  --s3-port N   the S3 server's port (default 4569)
  --dir DIR     data directory of the S3 server; survives restarts (default .fanout). Jobs
                there whose coordinator was lost (a killed fanout dev) are resumed at start
                and while it runs: stale after FANOUT_STALE_AFTER_SECONDS (default 10)
  --chaos SPEC  inject faults (see 'fanout run --help'); --seed N seeds them (default 1)
  --template FILE
                a synthesized template (cdk.out/Fanout.template.json): every function runs
                with its timeout, memory, environment and reserved concurrency, and every
                request a function makes is authorized against its role, as IAM would
                (default: this checkout's stack, synthesized once and cached; docs/LOCAL.md)
  --jobs FILE   a job registry module (export const jobs = createRegistry([...])) to serve
                instead of the built-in jobs, as FanoutService's \`jobs\` prop deploys it.
                dev follows edits: once a file the functions are built from changes (the
                registry, its jobs, fanout's own sources in a clone), it rebuilds them and
                new submissions run the new code; a job that is running keeps the code it
                started with (the new code takes over once no job runs)
  --auth FILE   verify a real SigV4 signature on every request to the HTTP API, as API
                Gateway's IAM authorizer does: FILE is JSON, {"principals": [{"accessKeyId",
                "secretAccessKey", "arn", "admin"?, "sessionToken"?}]}; an unsigned or badly
                signed request gets 403 before anything runs, and each job belongs to the
                principal that submitted it (another gets 404; an admin sees all). Without
                it, requests are not authenticated and the one local user owns every job
  --worker-timeout S
                the worker function's timeout in seconds (default: the template's, 300); a
                chunk that runs past it is split in two, not retried as it is
  --worker-memory MB
                the worker function's memory (default: the template's, 1769): each
                sandbox's heap is limited to it, and one past it fails its invocation with
                Runtime.OutOfMemory, as on Lambda; the chunk is then split in two
  --host HOST   loopback address to bind: 127.0.0.1 (default), localhost or ::1; anything
                else is refused, because the local servers accept no credentials
  -h, --help    show this help
`;

/** Runs `fanout dev`; resolves with the exit code once stopped. */
export async function devCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      port: { type: 'string' },
      's3-port': { type: 'string' },
      dir: { type: 'string' },
      host: { type: 'string' },
      chaos: { type: 'string' },
      seed: { type: 'string' },
      'worker-timeout': { type: 'string' },
      'worker-memory': { type: 'string' },
      template: { type: 'string' },
      jobs: { type: 'string' },
      auth: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(DEV_HELP);
    return 0;
  }
  if (positionals.length > 0)
    throw new ValidationError(`fanout dev takes no arguments; got ${positionals.join(' ')}`);
  const host = values.host ?? '127.0.0.1';
  assertLoopback(host);
  const port = values.port === undefined ? 3000 : parsePositiveInt('--port', values.port);
  const s3Port =
    values['s3-port'] === undefined ? 4569 : parsePositiveInt('--s3-port', values['s3-port']);
  const dir = values.dir ?? '.fanout';
  // A port in use is a usage error that names the flag, not a stack (or a crash) later on.
  await assertPortFree(host, port, '--port', 'the HTTP API');
  await assertPortFree(host, s3Port, '--s3-port', 'the S3 server');

  // Your own registry, as FanoutService's `jobs` prop deploys it: these jobs and no others.
  const registry =
    values.jobs === undefined
      ? undefined
      : {
          module: resolve(values.jobs),
          jobs: (await loadRegistry(resolve(values.jobs), values.jobs)).jobs,
        };
  const auth = values.auth === undefined ? undefined : await readAuthFile(values.auth);
  const runtime = await startRuntime({
    note: (text) => process.stderr.write(`fanout: ${text}\n`),
    ...(registry !== undefined && { registry }),
    ...(auth !== undefined && { auth }),
    dir,
    s3Port,
    ...(values.template !== undefined && { template: values.template }),
    // The functions' logs, as CloudWatch would hold them: the api's 500s say to look here.
    log: printFunctionLog,
    ...(values.chaos !== undefined && {
      chaos: {
        spec: parseChaos(values.chaos),
        seed: values.seed === undefined ? 1 : parseCount('--seed', values.seed),
      },
    }),
    ...(values['worker-memory'] !== undefined && {
      workerMemoryMb: parsePositiveInt('--worker-memory', values['worker-memory']),
    }),
    ...(values['worker-timeout'] !== undefined && {
      workerTimeoutSeconds: parsePositiveInt('--worker-timeout', values['worker-timeout']),
    }),
  });
  const api = await startApiServer({
    // API Gateway's own principal, which the template's Lambda permissions let invoke the api.
    invoker: runtime.gateway,
    functionName: runtime.functions.api,
    port,
    host,
    ...(auth !== undefined && { auth: { ...auth, region: runtime.deployment.region } }),
  }).catch(async (error) => {
    await runtime.close();
    throw error;
  });
  await runtime.lambda.prewarm(runtime.functions.api, 1);
  const s3 = runtime.s3.endpoint;
  // The banner's example job is one this registry serves.
  const example = runtime.jobs.has('by-field') ? 'by-field' : [...runtime.jobs.keys()].sort()[0];
  process.stdout.write(`fanout dev: the HTTP API is on ${api.url}

  S3 endpoint  ${s3}   bucket ${runtime.bucket}   data in ${dir}
  functions as ${runtime.templatePath} configures them, their roles enforced

  export FANOUT_API_URL=${api.url}
  export AWS_ENDPOINT_URL_S3=${s3} AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1

  aws --endpoint-url ${s3} s3 cp data.jsonl s3://${runtime.bucket}/datasets/data.jsonl
  curl -s -XPOST ${api.url}/jobs -d '{"job":"${example}","input":"s3://${runtime.bucket}/datasets/data.jsonl"}'

Ctrl-C to stop.
`);
  const following = followEdits(runtime, values.jobs ?? 'the built-in jobs');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  following.stop();
  await api.close();
  await runtime.close();
  return 0;
}

/** Throws a ValidationError naming `flag` when `port` is taken on `host`. */
async function assertPortFree(host: string, port: number, flag: string, what: string) {
  const probe = createServer();
  const error = await new Promise<NodeJS.ErrnoException | undefined>((done) => {
    probe.once('error', (e: NodeJS.ErrnoException) => done(e));
    probe.listen(port, host, () => probe.close(() => done(undefined)));
  });
  if (error?.code === 'EADDRINUSE') {
    throw new ValidationError(
      `port ${port} on ${host} is in use, so ${what} cannot listen there; choose another with ${flag} N`,
    );
  }
  if (error !== undefined) throw error;
}

/**
 * Jobs that have not ended: those with an active marker (a job that may still need a
 * coordinator) whose status is not terminal yet; the sweeper removes ended jobs' markers later.
 */
async function runningJobs(runtime: LocalRuntime): Promise<number> {
  const markers = await runtime.store.list(runtime.bucket, ACTIVE_PREFIX);
  let running = 0;
  for (const marker of markers) {
    const jobId = marker.key.slice(ACTIVE_PREFIX.length);
    const status = await readStatus(runtime.store, runtime.bucket, jobId).catch(() => undefined);
    if (status !== undefined && !TERMINAL_STATES.has(status.status)) running += 1;
  }
  return running;
}

/** How often dev looks at the sources' modification times. */
const FOLLOW_MS = 500;

/**
 * Follows edits of the files the functions are built from (the worker bundle's inputs outside
 * node_modules): on a change it waits until no job is running, so that a job keeps the code
 * it started with, then rebuilds and gives the functions their new code. Says so in one line;
 * a change that does not build leaves the code as it was, with the build's error.
 */
function followEdits(runtime: LocalRuntime, label: string): { stop(): void } {
  const say = (text: string) => process.stderr.write(`fanout dev: ${text}\n`);
  let seen = new Map<string, number>();
  let stopped = false;
  const snapshot = async () => {
    const times = new Map<string, number>();
    for (const file of await runtime.codeInputs()) {
      times.set(
        file,
        await stat(file).then(
          (s) => s.mtimeMs,
          () => -1,
        ),
      );
    }
    return times;
  };
  const changed = (now: Map<string, number>) =>
    now.size !== seen.size || [...now].some(([file, time]) => seen.get(file) !== time);
  const follow = async () => {
    seen = await snapshot();
    while (!stopped) {
      await new Promise((r) => setTimeout(r, FOLLOW_MS));
      const now = await snapshot();
      if (!changed(now)) continue;
      // A job runs the code it started with: the new code waits for the running jobs to end.
      let waiting = false;
      for (;;) {
        const running = await runningJobs(runtime);
        if (running === 0 || stopped) break;
        if (!waiting) {
          say(`${label} changed; the new code takes over once the ${running} running job(s) end`);
          waiting = true;
        }
        await new Promise((r) => setTimeout(r, FOLLOW_MS));
      }
      try {
        const roles = await runtime.reloadCode();
        if (roles.length > 0) say(`${label} changed: rebuilt; new submissions run the new code`);
      } catch (error) {
        say(
          `${label} changed but does not build, so the functions keep the code before it: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
      seen = await snapshot();
    }
  };
  void follow().catch((error: unknown) => say(`stopped following edits: ${String(error)}`));
  return {
    stop() {
      stopped = true;
    },
  };
}

/**
 * Reads `--auth FILE`: `{"principals": [{"accessKeyId", "secretAccessKey", "arn", "admin"?,
 * "sessionToken"?}]}`, each key id once. A usage error says what is wrong and where.
 */
export async function readAuthFile(file: string): Promise<{ principals: AuthPrincipal[] }> {
  const text = await readFile(file, 'utf8').catch((error: Error) => {
    throw new ValidationError(`--auth ${file}: cannot read it (${error.message})`);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ValidationError(`--auth ${file}: not JSON (${(error as Error).message})`);
  }
  const list = (parsed as { principals?: unknown })?.principals;
  if (!Array.isArray(list) || list.length === 0) {
    throw new ValidationError(
      `--auth ${file}: expected {"principals": [{"accessKeyId", "secretAccessKey", "arn", "admin"?}, ...]} with at least one principal`,
    );
  }
  const seen = new Set<string>();
  return {
    principals: list.map((p: Record<string, unknown>, i) => {
      const where = `--auth ${file}: principals[${i}]`;
      for (const field of ['accessKeyId', 'secretAccessKey', 'arn'] as const) {
        if (typeof p?.[field] !== 'string' || p[field] === '') {
          throw new ValidationError(`${where}.${field} must be a non-empty string`);
        }
      }
      if (!/^[A-Za-z0-9]{1,128}$/.test(p.accessKeyId as string)) {
        throw new ValidationError(`${where}.accessKeyId must be letters and digits`);
      }
      if (!/^arn:aws[a-z-]*:(iam|sts)::\d{12}:.+/.test(p.arn as string)) {
        throw new ValidationError(
          `${where}.arn must be an IAM or STS ARN, e.g. arn:aws:iam::111122223333:user/alice`,
        );
      }
      if (p.admin !== undefined && typeof p.admin !== 'boolean') {
        throw new ValidationError(`${where}.admin must be true or false`);
      }
      if (p.sessionToken !== undefined && typeof p.sessionToken !== 'string') {
        throw new ValidationError(`${where}.sessionToken must be a string`);
      }
      if (seen.has(p.accessKeyId as string)) {
        throw new ValidationError(`${where}.accessKeyId ${p.accessKeyId} is given twice`);
      }
      seen.add(p.accessKeyId as string);
      return {
        accessKeyId: p.accessKeyId as string,
        secretAccessKey: p.secretAccessKey as string,
        arn: p.arn as string,
        ...(p.admin === true && { admin: true }),
        ...(typeof p.sessionToken === 'string' && { sessionToken: p.sessionToken }),
      };
    }),
  };
}
