/**
 * One function's sandboxes, with Lambda's semantics: one invocation per sandbox at a time, warm
 * sandboxes reused (the most recently released first), a cold start per new sandbox (the bundle
 * imported once), a timeout that covers the cold start and discards the sandbox, and function
 * errors reported as Lambda reports them. Each sandbox is a child process running sandbox.mjs:
 * a process, not a worker thread, because a thread's heap limit is best effort (Node #47224: one
 * big allocation past it aborts the whole process), and a job that runs out of memory must fail
 * its invocation, not the local runtime.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { repoRoot } from '../paths.ts';
import type { FunctionSpec, FunctionStats, LambdaServerOptions } from './server.ts';

/** Lambda's synchronous payload limit (Invoke API): 6 MB. */
export const MAX_PAYLOAD = 6 * 1024 * 1024;

/** How long a `slow` fault stalls an invocation (chaos worker-slow). */
const SLOW_MS = 10_000;

const sandboxScript = join(repoRoot, 'local/lambda/sandbox.mjs');

/** What one invocation produced. */
export type Outcome =
  | { kind: 'ok'; payload: string }
  | { kind: 'function-error'; errorType: string; errorMessage: string; trace?: string[] };

interface Sandbox {
  worker: ChildProcess;
  ready: Promise<void>;
  pending?: { id: number; resolve: (o: Outcome) => void };
  /** When the sandbox last became idle (performance.now()); idle ones are reaped. */
  idleSince: number;
  /** The code it runs: sandboxes of older code are not reused (see FunctionPool.updateCode). */
  code: number;
}

/** What the pools of one server share. */
export interface PoolHooks {
  log: LambdaServerOptions['log'];
  onInvoke: LambdaServerOptions['onInvoke'];
  faults: LambdaServerOptions['faults'];
  /** The server is closing: released sandboxes are not kept. */
  closing: () => boolean;
}

let nextId = 1;

/** The sandboxes of one function. */
export class FunctionPool {
  /** Invocations in flight, synchronous and asynchronous: at most `spec.concurrency`. */
  inFlight = 0;
  readonly stats: FunctionStats = {
    invocations: 0,
    coldStarts: 0,
    throttles: 0,
    timeouts: 0,
    errors: 0,
    sandboxes: 0,
    busy: 0,
    queued: 0,
  };
  private idle: Sandbox[] = [];
  /** Sandboxes started ahead of demand (prewarm) that are not ready yet. */
  private warming: Sandbox[] = [];
  private readonly all = new Set<Sandbox>();

  /** Which code new sandboxes run: counts the updates. */
  private code = 0;

  constructor(
    public spec: FunctionSpec,
    private readonly hooks: PoolHooks,
  ) {}

  /**
   * New code, as Lambda's UpdateFunctionCode: sandboxes started from now on import `bundle`;
   * idle and warming ones stop now, busy ones once their invocation has ended, so an
   * invocation under way finishes on the code it started with. `env` is added to the
   * function's environment (UpdateFunctionConfiguration).
   */
  updateCode(bundle: string, env?: Record<string, string>): void {
    this.spec = { ...this.spec, bundle, ...(env && { env: { ...this.spec.env, ...env } }) };
    this.code += 1;
    for (const sandbox of [...this.idle, ...this.warming]) this.discard(sandbox);
  }

  /** Runs one invocation in a sandbox. The caller has already taken a concurrency slot. */
  async run(event: unknown, type: string): Promise<Outcome> {
    const { spec, stats } = this;
    stats.invocations += 1;
    stats.busy += 1;
    const requestId = randomUUID();
    const timeoutMs = spec.timeoutSeconds * 1000;
    try {
      const fault = this.hooks.faults?.(spec.name, type, event);
      if (fault === 'error') {
        return {
          kind: 'function-error',
          errorType: 'InjectedFault',
          errorMessage: 'fault injected by the local runtime',
        };
      }
      if (fault === 'timeout') {
        await new Promise((r) => setTimeout(r, timeoutMs));
        return this.timedOut(requestId);
      }
      // A straggler: the invocation stalls before it does any work, then runs as usual.
      if (fault === 'slow') await new Promise((r) => setTimeout(r, SLOW_MS));
      this.hooks.onInvoke?.(spec.name, event, type);
      const sandbox = this.acquire();
      const outcome = await this.invokeIn(sandbox, event, requestId, timeoutMs);
      if (outcome.kind === 'function-error') stats.errors += 1;
      this.release(sandbox);
      if (outcome.kind === 'ok' && Buffer.byteLength(outcome.payload) > MAX_PAYLOAD) {
        return {
          kind: 'function-error',
          errorType: 'Function.ResponseSizeTooLarge',
          errorMessage: `Response payload size exceeded maximum allowed payload size (${MAX_PAYLOAD} bytes).`,
        };
      }
      return outcome;
    } finally {
      stats.busy -= 1;
    }
  }

  /** One invocation in one sandbox, bounded by the timeout (its cold start included). */
  private invokeIn(
    sandbox: Sandbox,
    event: unknown,
    requestId: string,
    timeoutMs: number,
  ): Promise<Outcome> {
    const deadline = Date.now() + timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new Promise<Outcome>((resolve) => {
      // The timeout covers the cold start too, as on Lambda.
      timer = setTimeout(() => {
        sandbox.pending = undefined;
        this.discard(sandbox);
        resolve(this.timedOut(requestId));
      }, timeoutMs);
      sandbox.ready.then(
        () => {
          const id = nextId++;
          sandbox.pending = { id, resolve };
          sandbox.worker.send({ type: 'invoke', id, event, deadline, requestId });
        },
        (error: Error & { errorType?: string }) => {
          this.discard(sandbox);
          resolve({
            kind: 'function-error',
            errorType: error.errorType ?? 'Runtime.ImportModuleError',
            errorMessage: error.message,
          });
        },
      );
    }).finally(() => clearTimeout(timer));
  }

  private timedOut(requestId: string): Outcome {
    this.stats.timeouts += 1;
    return {
      kind: 'function-error',
      errorType: 'Sandbox.Timedout',
      errorMessage: `${new Date().toISOString()} ${requestId} Task timed out after ${this.spec.timeoutSeconds.toFixed(2)} seconds`,
    };
  }

  /**
   * A sandbox for an invocation: an idle one, else one still warming up (its init is under way
   * already), else a new one (a cold start).
   */
  private acquire(): Sandbox {
    return this.idle.pop() ?? this.warming.shift() ?? this.start();
  }

  private release(sandbox: Sandbox): void {
    if (!this.all.has(sandbox) || this.hooks.closing()) return;
    if (sandbox.code !== this.code) {
      this.discard(sandbox);
      return;
    }
    sandbox.idleSince = performance.now();
    this.idle.push(sandbox);
  }

  private discard(sandbox: Sandbox): void {
    this.all.delete(sandbox);
    this.idle = this.idle.filter((s) => s !== sandbox);
    this.warming = this.warming.filter((s) => s !== sandbox);
    this.stats.sandboxes = this.all.size;
    sandbox.worker.kill('SIGKILL');
  }

  /** Sandboxes idle since before `cutoff` (performance.now()) are stopped. */
  reap(cutoff: number): void {
    for (const sandbox of this.idle.filter((s) => s.idleSince <= cutoff)) this.discard(sandbox);
  }

  /** Starts sandboxes ahead of demand, like provisioned concurrency, up to `count` in all. */
  async prewarm(count: number): Promise<void> {
    const starting: Promise<void>[] = [];
    while (this.all.size < Math.min(count, this.spec.concurrency)) {
      const sandbox = this.start();
      this.warming.push(sandbox);
      starting.push(
        sandbox.ready.then(() => {
          // Unless an invocation took it meanwhile, it is now idle.
          const at = this.warming.indexOf(sandbox);
          if (at < 0) return;
          this.warming.splice(at, 1);
          this.release(sandbox);
        }),
      );
    }
    await Promise.all(starting);
  }

  /** Kills every sandbox now; invocations in flight fail like a crash. */
  terminate(): void {
    for (const sandbox of [...this.all]) {
      this.discard(sandbox);
      const pending = sandbox.pending;
      sandbox.pending = undefined;
      pending?.resolve({
        kind: 'function-error',
        errorType: 'Runtime.ExitError',
        errorMessage: 'sandbox terminated',
      });
    }
  }

  /** Ends every sandbox's process (the server closes). */
  stopAll(): Promise<unknown> {
    return Promise.all(
      [...this.all].map((s) => {
        const ended = new Promise<void>((resolve) => {
          if (s.worker.exitCode !== null || s.worker.signalCode !== null) resolve();
          else s.worker.once('exit', () => resolve());
        });
        s.worker.kill('SIGKILL');
        return ended;
      }),
    );
  }

  /** A new sandbox: a child process that imports the bundle (the cold start). */
  private start(): Sandbox {
    const { spec } = this;
    const worker = fork(sandboxScript, [], {
      env: {
        AWS_REGION: spec.env?.AWS_REGION ?? 'us-east-1',
        AWS_LAMBDA_FUNCTION_NAME: spec.name,
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(spec.memoryMb ?? 1024),
        // Node 20 locally; the Lambda runtime is nodejs24.x, where the SDK does not warn.
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ...spec.env,
        FANOUT_SANDBOX: JSON.stringify({
          bundle: spec.bundle,
          handlerName: spec.handler ?? 'handler',
          functionName: spec.name,
          memoryMb: spec.memoryMb ?? 1024,
          region: spec.env?.AWS_REGION ?? 'us-east-1',
        }),
      },
      // Not the server's own flags (a loader, --inspect): a sandbox runs its bundle alone, with
      // its heap limited to the function's memory setting when asked.
      execArgv:
        spec.memoryMb !== undefined && spec.heapLimit === true
          ? [`--max-old-space-size=${spec.memoryMb}`]
          : [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    // A heap past its limit: V8 says so on stderr as the process aborts.
    let outOfMemory = false;
    const forward = (chunk: Buffer) => this.hooks.log?.(spec.name, chunk.toString('utf8'));
    worker.stdout?.on('data', forward);
    worker.stderr?.on('data', (chunk: Buffer) => {
      if (chunk.includes('JavaScript heap out of memory')) outOfMemory = true;
      forward(chunk);
    });
    const sandbox: Sandbox = { worker, idleSince: 0, ready: readyOf(worker), code: this.code };
    sandbox.ready.catch(() => undefined);
    worker.on('message', (m: { type: string; id?: number } & Record<string, unknown>) => {
      const pending = sandbox.pending;
      if (m.type !== 'result' || pending === undefined || pending.id !== m.id) return;
      sandbox.pending = undefined;
      pending.resolve(
        m.ok
          ? { kind: 'ok', payload: m.payload as string }
          : {
              kind: 'function-error',
              errorType: m.errorType as string,
              errorMessage: m.errorMessage as string,
              trace: m.trace as string[],
            },
      );
    });
    const crashed = (error?: Error, code?: number | null, signal?: NodeJS.Signals | null) => {
      if (this.all.has(sandbox)) this.discard(sandbox);
      const pending = sandbox.pending;
      sandbox.pending = undefined;
      // Past its heap limit (the function's memory setting): what Lambda reports for a
      // sandbox that ran out of memory. V8 aborts the process when its heap is exhausted.
      const oom = outOfMemory || signal === 'SIGABRT';
      pending?.resolve(
        oom
          ? {
              kind: 'function-error',
              errorType: 'Runtime.OutOfMemory',
              errorMessage: `RequestId: the function ran out of memory (its setting: ${spec.memoryMb ?? 1024} MB)`,
            }
          : {
              kind: 'function-error',
              errorType: 'Runtime.ExitError',
              // As Lambda words it: `Runtime exited with error: signal: killed` or `exit status 1`.
              errorMessage: `RequestId: Error: Runtime exited with error: ${error ? error.message : signal ? `signal: ${signal === 'SIGKILL' ? 'killed' : signal}` : `exit status ${code}`}`,
            },
      );
    };
    worker.on('error', (error) => crashed(error));
    worker.on('exit', (code, signal) => crashed(undefined, code, signal));
    this.all.add(sandbox);
    this.stats.sandboxes = this.all.size;
    this.stats.coldStarts += 1;
    return sandbox;
  }
}

/** Settles when the sandbox has imported its bundle, or fails with its init error. */
function readyOf(worker: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    worker.once('message', (m: { type: string; errorType?: string; errorMessage?: string }) => {
      if (m.type === 'ready') resolve();
      else reject(Object.assign(new Error(m.errorMessage), { errorType: m.errorType }));
    });
  });
}
