/**
 * Benchmark 3, dispatch: how fast one coordinator hands out chunks, not how fast chunks run.
 * The coordinator's invoker (LambdaInvoker over the real SDK client, in its own process as a
 * coordinator is — bench/dispatch-client.ts) sends 10,000 invocations, `lanes` in flight:
 * first to the local Lambda server running a no-op function, then to an endpoint that answers
 * every invocation at once, which is what the coordinator sees of Lambda when functions are
 * instant (its side alone).
 */
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { bundleFunctions } from '#local/bundle.ts';
import { startLambdaServer } from '#local/lambda/server.ts';
import { type Report, rate, root, runIfMain } from './report.ts';

/** Elapsed milliseconds of one client process: its first round, and its second. */
interface Rounds {
  coldMs: number;
  warmMs: number;
}

/** Runs bench/dispatch-client.ts in a child process; resolves with its two rounds' times. */
async function drive(endpoint: string, name: string, invocations: number, lanes: number) {
  const child = fork(
    join(root, 'bench/dispatch-client.ts'),
    [endpoint, name, String(invocations), String(lanes)],
    { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  return new Promise<Rounds>((resolve, reject) => {
    let elapsed: Rounds | undefined;
    child.on('message', (m) => {
      elapsed = m as Rounds;
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      elapsed === undefined
        ? reject(new Error(`dispatch client exited with ${code} before reporting`))
        : resolve(elapsed),
    );
  });
}

/** An Invoke endpoint that answers every invocation at once with `null`. */
async function instantEndpoint() {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 4 });
      res.end('null');
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Runs the benchmark. */
export async function run(invocations = 10_000, lanes = 64): Promise<Report> {
  const { noop } = await bundleFunctions({ noop: join(root, 'test/fixtures/functions/probe.ts') });
  const server = await startLambdaServer({
    functions: [{ name: 'noop', bundle: noop!, timeoutSeconds: 30, concurrency: lanes }],
  });
  let local: Rounds;
  try {
    await server.prewarm('noop', lanes);
    local = await drive(server.endpoint, 'noop', invocations, lanes);
  } finally {
    await server.close();
  }
  const instant = await instantEndpoint();
  let alone: Rounds;
  try {
    alone = await drive(instant.endpoint, 'noop', invocations, lanes);
  } finally {
    await instant.close();
  }
  const perSecond = (elapsedMs: number) => invocations / (elapsedMs / 1000);
  const row = (label: string, r: Rounds) => [
    label,
    rate(perSecond(r.coldMs)),
    rate(perSecond(r.warmMs)),
    Math.round((r.coldMs * 1000) / invocations),
    Math.round((r.warmMs * 1000) / invocations),
  ];
  return {
    name: 'dispatch',
    title: `3. Dispatch: ${rate(invocations)} no-op invocations from one coordinator process, ${lanes} in flight`,
    columns: ['endpoint', 'inv/s (fresh)', 'inv/s (warm)', 'µs/chunk (fresh)', 'µs/chunk (warm)'],
    rows: [
      row('local Lambda server, no-op function', local),
      row('instant endpoint (coordinator side alone)', alone),
    ],
    figures: {
      'invocations/s through the local Lambda server, fresh process (target ≥ 3000)': Math.round(
        perSecond(local.coldMs),
      ),
      'invocations/s through the local Lambda server, warm process': Math.round(
        perSecond(local.warmMs),
      ),
      'coordinator side alone, fresh process, invocations/s': Math.round(perSecond(alone.coldMs)),
      'coordinator side alone, warm process, invocations/s': Math.round(perSecond(alone.warmMs)),
    },
    notes: [
      'the coordinator runs in its own process (bench/dispatch-client.ts) and sends the invocations twice: "fresh" is a new process (its JIT still warming up), "warm" the same process again, as a warm coordinator container is for its next job',
      'the local Lambda server and its sandboxes share the same two cores with the coordinator; on AWS the coordinator pays only the client side, which the instant endpoint (answers every invocation at once) isolates',
    ],
  };
}

await runIfMain(import.meta.url, run);
