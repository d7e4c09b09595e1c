/**
 * Benchmark 3, dispatch: the coordinator's invoker (LambdaInvoker over the real SDK client)
 * against the local Lambda server with a no-op worker: 10,000 invocations, `LANES` in flight.
 * Measures how fast one coordinator can hand out chunks, not how fast chunks run.
 */
import { join } from 'node:path';
import { createLambdaClient } from '#adapters/lambda-clients.ts';
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { bundleFunctions } from '#local/bundle.ts';
import { startLambdaServer } from '#local/lambda/server.ts';
import { ms, type Report, rate, root, runIfMain } from './report.ts';

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
    // Warm the client's sockets and JIT too, then measure.
    await Promise.all(
      Array.from({ length: lanes }, (_, i) => invoker.invoke('noop', { value: i })),
    );
    let next = 0;
    const started = performance.now();
    const lane = async () => {
      while (next < invocations) {
        next += 1;
        await invoker.invoke('noop', { value: next });
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    const elapsed = performance.now() - started;
    const perSecond = invocations / (elapsed / 1000);
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
      ],
      figures: { 'invocations/s (target ≥ 3000)': Math.round(perSecond) },
      notes: [
        'the client, the server and the sandboxes share the same two cores; on AWS the coordinator pays only the client side',
      ],
    };
  } finally {
    await server.close();
  }
}

await runIfMain(import.meta.url, run);
