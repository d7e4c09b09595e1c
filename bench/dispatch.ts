/**
 * Benchmark 3, dispatch: the coordinator's invoker (LambdaInvoker over the real SDK client)
 * against the local Lambda server with a no-op worker: 10,000 invocations, `LANES` in flight.
 * Measures how fast one coordinator can hand out chunks, not how fast chunks run.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { createLambdaClient } from '#adapters/lambda-clients.ts';
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { bundleFunctions } from '#local/bundle.ts';
import { startLambdaServer } from '#local/lambda/server.ts';
import { ms, type Report, rate, root, runIfMain } from './report.ts';

/** Sends `invocations` no-op invocations through `invoker`, `lanes` at a time; returns ms. */
async function drive(invoker: LambdaInvoker, name: string, invocations: number, lanes: number) {
  // Warm the client's sockets and JIT first.
  await Promise.all(Array.from({ length: lanes }, (_, i) => invoker.invoke(name, { value: i })));
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < invocations) {
      next += 1;
      await invoker.invoke(name, { value: next });
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return performance.now() - started;
}

/**
 * The coordinator's side alone: the same invoker against an endpoint in another process that
 * answers every invocation at once, which is what the coordinator sees of Lambda on AWS.
 */
async function clientCeiling(invocations: number, lanes: number): Promise<number> {
  const child = fork(join(root, 'bench/instant-endpoint.mjs'), [], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    const port = await new Promise<number>((resolve) =>
      child.once('message', (m) => resolve(Number(m))),
    );
    const invoker = new LambdaInvoker(
      createLambdaClient({ endpoint: `http://127.0.0.1:${port}`, maxSockets: lanes }),
    );
    return await drive(invoker, 'noop', invocations, lanes);
  } finally {
    child.kill();
  }
}

/** Runs the benchmark. */
export async function run(invocations = 10_000, lanes = 64): Promise<Report> {
  const { noop } = await bundleFunctions({ noop: join(root, 'test/fixtures/functions/probe.ts') });
  const server = await startLambdaServer({
    functions: [{ name: 'noop', bundle: noop!, timeoutSeconds: 30, concurrency: lanes }],
  });
  try {
    const invoker = new LambdaInvoker(
      createLambdaClient({ endpoint: server.endpoint, maxSockets: lanes }),
    );
    await server.prewarm('noop', lanes);
    const elapsed = await drive(invoker, 'noop', invocations, lanes);
    const perSecond = invocations / (elapsed / 1000);
    await server.close();
    const ceiling = await clientCeiling(invocations, lanes);
    const ceilingPerSecond = invocations / (ceiling / 1000);
    return {
      name: 'dispatch',
      title: `3. Dispatch: ${rate(invocations)} no-op invocations through the local Lambda server, ${lanes} in flight`,
      columns: ['measure', 'value'],
      rows: [
        ['elapsed ms', ms(elapsed)],
        ['invocations/s', rate(perSecond)],
        ['coordinator time per chunk (µs)', Math.round((elapsed * 1000) / invocations)],
        [
          'round trip per invocation (µs, one lane)',
          Math.round((elapsed * 1000 * lanes) / invocations),
        ],
        ['coordinator side alone: invocations/s', rate(ceilingPerSecond)],
        ['coordinator side alone: µs per chunk', Math.round((ceiling * 1000) / invocations)],
      ],
      figures: {
        'invocations/s (target ≥ 3000)': Math.round(perSecond),
        'coordinator side alone, invocations/s': Math.round(ceilingPerSecond),
      },
      notes: [
        'the client, the server and the sandboxes share the same two cores; on AWS the coordinator pays only the client side',
        '"coordinator side alone" drives the same invoker against an endpoint in another process that answers at once (bench/instant-endpoint.mjs)',
      ],
    };
  } finally {
    await server.close().catch(() => undefined);
  }
}

await runIfMain(import.meta.url, run);
