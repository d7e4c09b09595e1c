/**
 * The local Lambda server's Invoke API behaviours, through the real LambdaClient and our
 * LambdaInvoker, against a bundled test function.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLambdaClient } from '#adapters/lambda-clients.ts';
import { LambdaInvoker } from '#adapters/lambda-invoker.ts';
import { FunctionError, InvocationTimeoutError, ThrottledError } from '#core/base/errors.ts';
import { bundleFunctions } from '#local/bundle.ts';
import { type LocalLambdaServer, startLambdaServer } from '#local/lambda/server.ts';
import { until } from '../fixtures/until.ts';

const entry = resolve(import.meta.dirname, '../fixtures/functions/probe.ts');
let cacheDir: string;
let server: LocalLambdaServer;
let invoker: LambdaInvoker;
let faults: 'error' | 'throttle' | undefined;
let probeBundle: string;

/** The error an invocation failed with (the test fails if it succeeded). */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected the invocation to fail');
    },
    (e: unknown) => e as FunctionError & ThrottledError,
  );

beforeAll(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'fanout-bundles-'));
  const { probe } = await bundleFunctions({ probe: entry }, { cacheDir });
  probeBundle = probe!;
  const spec = { bundle: probe!, env: { PROBE_VAR: 'from-env' } };
  server = await startLambdaServer({
    functions: [
      { name: 'probe', timeoutSeconds: 1, concurrency: 2, ...spec },
      { name: 'solo', timeoutSeconds: 5, concurrency: 1, ...spec },
      { name: 'faulty', timeoutSeconds: 1, concurrency: 1, ...spec },
    ],
    faults: (fn) => (fn === 'faulty' ? faults : undefined),
  });
  invoker = new LambdaInvoker({ endpoint: server.endpoint });
});
afterAll(async () => {
  await server?.close();
  await rm(cacheDir, { recursive: true, force: true });
});

describe('local Lambda server', () => {
  it('runs RequestResponse invocations and reuses the warm sandbox', async () => {
    expect(await invoker.invoke('probe', { value: [1, 'two'] })).toEqual({ echo: [1, 'two'] });
    const first = await invoker.invoke<{ invocations: number }>('solo', { action: 'state' });
    const second = await invoker.invoke<{ invocations: number }>('solo', { action: 'state' });
    expect(second.invocations).toBe(first.invocations + 1);
    expect(server.stats('solo')).toMatchObject({ coldStarts: 1, invocations: 2 });
  });

  it('gives a function new code: an invocation under way ends on the old, the next runs the new', async () => {
    const { probe: rebuilt } = await bundleFunctions(
      { probe: entry },
      {
        cacheDir,
        extra: { options: { define: { 'process.env.PROBE_CODE': '"B"' } }, suffix: '-b' },
      },
    );
    server.register({ name: 'updated', timeoutSeconds: 5, concurrency: 2, bundle: probeBundle });
    const during = invoker.invoke<{ code: string }>('updated', { action: 'code', ms: 500 });
    await until(() => server.stats('updated').busy === 1);
    server.updateCode('updated', rebuilt!);
    expect(await during).toEqual({ code: 'A' });
    expect(await invoker.invoke('updated', { action: 'code' })).toEqual({ code: 'B' });
    // The old sandbox was not reused: the new code needed a cold start of its own.
    expect(server.stats('updated')).toMatchObject({ coldStarts: 2, sandboxes: 1 });
  });

  it('fails an invocation past its memory setting with Runtime.OutOfMemory, and recovers', async () => {
    server.register({
      name: 'small',
      timeoutSeconds: 20,
      concurrency: 1,
      bundle: probeBundle,
      memoryMb: 64,
      heapLimit: true,
    });
    const error = await failure(invoker.invoke('small', { action: 'hog' }));
    expect(error).toBeInstanceOf(FunctionError);
    expect(error.errorType).toBe('Runtime.OutOfMemory');
    expect(error.errorMessage).toMatch(/ran out of memory \(its setting: 64 MB\)/);
    // The sandbox was discarded: the next invocation gets a new one.
    expect(await invoker.invoke('small', { value: 1 })).toEqual({ echo: 1 });
    // One allocation far past the limit fails the invocation the same way, and only it.
    const atOnce = await failure(invoker.invoke('small', { action: 'hog-at-once' }));
    expect(atOnce.errorType).toBe('Runtime.OutOfMemory');
    expect(await invoker.invoke('small', { value: 2 })).toEqual({ echo: 2 });
  }, 60_000);

  it('accepts function ARNs and qualified names', async () => {
    const arn = 'arn:aws:lambda:us-east-1:000000000000:function:probe:$LATEST';
    expect(await invoker.invoke(arn, { value: 1 })).toEqual({ echo: 1 });
  });

  it('passes the function env and context', async () => {
    expect(await invoker.invoke('probe', { action: 'env', name: 'PROBE_VAR' })).toEqual({
      value: 'from-env',
      functionName: 'probe',
    });
  });

  it('returns thrown errors as X-Amz-Function-Error: Unhandled with type, message and trace', async () => {
    const client = createLambdaClient({ endpoint: server.endpoint });
    const out = await client.send(
      new InvokeCommand({
        FunctionName: 'probe',
        Payload: Buffer.from(JSON.stringify({ action: 'throw', value: 'bad' })),
      }),
    );
    expect(out.FunctionError).toBe('Unhandled');
    const body = JSON.parse(Buffer.from(out.Payload!).toString());
    expect(body).toMatchObject({ errorType: 'ProbeError', errorMessage: 'bad' });
    expect(body.trace[0]).toMatch(/ProbeError: bad/);
    await expect(invoker.invoke('probe', { action: 'throw', value: 'bad' })).rejects.toMatchObject({
      errorType: 'ProbeError',
    });
  });

  it('times out, discards the sandbox and answers like Lambda', async () => {
    const before = server.stats('probe');
    const error = await failure(invoker.invoke('probe', { action: 'sleep', ms: 3000 }));
    expect(error).toBeInstanceOf(FunctionError);
    expect(error.errorType).toBe('Sandbox.Timedout');
    expect(error.message).toMatch(/Task timed out after 1\.00 seconds/);
    await invoker.invoke('probe', { value: 'after' });
    const after = server.stats('probe');
    expect(after.timeouts).toBe(before.timeouts + 1);
    expect(after.sandboxes).toBeLessThanOrEqual(2);
  });

  /** Waits until `solo` has no invocation running (a sleep the client gave up on). */
  const soloIdle = () => until(() => server.stats('solo').busy === 0);

  it('gives up on an invocation at its deadline without breaking the client', async () => {
    // A 3 s invocation with a 0.3 s deadline: given up after ~0.3 s. The bound (1.5 s) is 5x the
    // deadline and half the sleep, so neither a loaded machine nor an unenforced deadline fits.
    const started = performance.now();
    const error = await failure(
      invoker.invoke('solo', { action: 'sleep', ms: 3000 }, { timeoutMs: 300 }),
    );
    expect(error).toBeInstanceOf(InvocationTimeoutError);
    expect(performance.now() - started).toBeLessThan(1500);
    // The same deadline's client still works, and a deadline that is not reached is no error.
    await soloIdle(); // `solo` (concurrency 1) is still sleeping
    expect(await invoker.invoke('solo', { value: 3 }, { timeoutMs: 300 })).toEqual({ echo: 3 });
    expect(await invoker.invoke('solo', { value: 4 }, { timeoutMs: 5000 })).toEqual({ echo: 4 });
    // Many distinct deadlines: past the few that get a client of their own, the deadline is
    // still enforced (by an abort signal) and answers still arrive.
    for (let i = 0; i < 10; i++) {
      expect(await invoker.invoke('probe', { value: i }, { timeoutMs: 6000 + i })).toEqual({
        echo: i,
      });
    }
    const late = await failure(
      invoker.invoke('solo', { action: 'sleep', ms: 1500 }, { timeoutMs: 301 }),
    );
    expect(late).toBeInstanceOf(InvocationTimeoutError);
    await soloIdle();
  });

  it('answers 429 TooManyRequestsException past the concurrency limit', async () => {
    const busy = invoker.invoke('solo', { action: 'sleep', ms: 400 });
    await until(() => server.stats('solo').busy === 1);
    const error = await failure(invoker.invoke('solo', { value: 1 }));
    expect(error).toBeInstanceOf(ThrottledError);
    expect(error.retryAfterSeconds).toBe(1);
    await busy;
    expect(server.stats('solo').throttles).toBeGreaterThanOrEqual(1);
  });

  it('answers DryRun without running the function, and 404 for an unknown one', async () => {
    const before = server.stats('probe').invocations;
    await invoker.dryRun('probe');
    expect(server.stats('probe').invocations).toBe(before);
    await expect(invoker.dryRun('nope')).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
  });

  it('queues Event invocations (202) and runs them', async () => {
    const before = server.stats('solo').invocations;
    await invoker.invokeEvent('solo', { value: 'async' });
    for (let i = 0; i < 50 && server.stats('solo').invocations === before; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(server.stats('solo').invocations).toBe(before + 1);
    expect(server.stats('solo').queued).toBe(0);
  });

  it('reports a crashed sandbox as Runtime.ExitError and recovers', async () => {
    const error = await failure(invoker.invoke('probe', { action: 'crash' }));
    expect(error.errorType).toBe('Runtime.ExitError');
    expect(error.errorMessage).toMatch(/Runtime exited with error: exit status 3$/);
    expect(await invoker.invoke('probe', { value: 'ok' })).toEqual({ echo: 'ok' });
  });

  it('rejects unknown functions, bad JSON and oversized payloads like Lambda', async () => {
    await expect(invoker.invoke('nope', {})).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
    const bad = await fetch(`${server.endpoint}/2015-03-31/functions/probe/invocations`, {
      method: 'POST',
      body: '{',
    });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('x-amzn-errortype')).toBe('InvalidRequestContentException');
    await expect(
      invoker.invoke('probe', { value: 'y'.repeat(7 * 1024 * 1024) }),
    ).rejects.toMatchObject({
      name: 'RequestTooLargeException',
    });
    await expect(invoker.invoke('probe', { action: 'big' })).rejects.toMatchObject({
      errorType: 'Function.ResponseSizeTooLarge',
    });
  });

  it('takes Event payloads up to 1 MB, as Lambda does, and refuses larger ones', async () => {
    await expect(
      invoker.invokeEvent('probe', { value: 'y'.repeat(1024 * 1024 - 100) }),
    ).resolves.toBeUndefined();
    await expect(
      invoker.invokeEvent('probe', { value: 'y'.repeat(1024 * 1024 + 1) }),
    ).rejects.toMatchObject({ name: 'RequestTooLargeException' });
    // The same payload is a fine synchronous one (6 MB).
    expect(await invoker.invoke('probe', { value: 'y'.repeat(1024 * 1024 + 1) })).toEqual({
      echo: 'y'.repeat(1024 * 1024 + 1),
    });
  });

  it("authorizes each request, and answers a refusal in Lambda's shape", async () => {
    const guarded = await startLambdaServer({
      functions: [{ name: 'probe', timeoutSeconds: 1, concurrency: 1, bundle: probeBundle }],
      authorize: (_req, name, arn) =>
        name === 'probe'
          ? {
              ok: false,
              status: 403,
              code: 'AccessDeniedException',
              message: `no invoke of ${arn}`,
            }
          : { ok: true },
    });
    try {
      const client = new LambdaInvoker({ endpoint: guarded.endpoint });
      await expect(client.invoke('probe', {})).rejects.toMatchObject({
        name: 'AccessDeniedException',
        message: 'no invoke of arn:aws:lambda:us-east-1:000000000000:function:probe',
      });
      await expect(client.invoke('probe:live', {})).rejects.toMatchObject({
        message: expect.stringMatching(/function:probe:live$/),
      });
      expect(guarded.stats('probe').invocations).toBe(0);
    } finally {
      await guarded.close();
    }
  });

  it('prewarms sandboxes', async () => {
    await server.prewarm('probe', 2);
    expect(server.stats('probe').sandboxes).toBe(2);
  });

  it('injects faults on request', async () => {
    faults = 'error';
    await expect(invoker.invoke('faulty', {})).rejects.toMatchObject({
      errorType: 'InjectedFault',
    });
    faults = 'throttle';
    await expect(invoker.invoke('faulty', {})).rejects.toBeInstanceOf(ThrottledError);
    faults = undefined;
    expect(await invoker.invoke('faulty', { value: 2 })).toEqual({ echo: 2 });
  });
});

describe('idle sandboxes', () => {
  it('are stopped after idleMs and replaced by a cold start on the next invocation', async () => {
    const { probe } = await bundleFunctions({ probe: entry }, { cacheDir });
    const idle = await startLambdaServer({
      functions: [{ name: 'probe', bundle: probe!, timeoutSeconds: 5, concurrency: 2 }],
      idleMs: 150,
    });
    try {
      const client = new LambdaInvoker({ endpoint: idle.endpoint });
      expect(await client.invoke('probe', { value: 1 })).toEqual({ echo: 1 });
      expect(idle.stats('probe').sandboxes).toBe(1);
      for (let i = 0; i < 100 && idle.stats('probe').sandboxes > 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(idle.stats('probe').sandboxes).toBe(0);
      expect(await client.invoke('probe', { value: 2 })).toEqual({ echo: 2 });
      expect(idle.stats('probe')).toMatchObject({ coldStarts: 2, sandboxes: 1 });
      client.destroy();
    } finally {
      await idle.close();
    }
  });
});

describe('bundleFunctions', () => {
  it('serves a warm cache hit without rebuilding', async () => {
    const first = await bundleFunctions({ probe: entry }, { cacheDir });
    const built = await stat(first.probe as string);
    const second = await bundleFunctions({ probe: entry }, { cacheDir });
    expect(second).toEqual(first);
    // The same file, not rewritten: a rebuild would land at the same content-hashed path.
    const again = await stat(second.probe as string);
    expect([again.ino, again.mtimeMs]).toEqual([built.ino, built.mtimeMs]);
  });
});
