/**
 * Benchmark 4, scale: 100,000 chunks through the real coordinator (coordinateJob, its planner,
 * lanes, retries and status writer) against a simulated Lambda that follows AWS's model:
 * account concurrency 1,000; new sandboxes limited to 1,000 per 10 s; cold start ~250 ms; warm
 * invoke latency ~15 ms; chunk durations log-normal (median 1 s); 429 TooManyRequestsException
 * past either limit. Time is scaled down (20× by default, BENCH_SIM_SCALE) (every duration, and the coordinator's own waits),
 * and the report says so. Reports the makespan against the model's lower bound, throttles, and
 * the coordinator's peak RSS.
 */
import { createHash } from 'node:crypto';
import { coordinateJob } from '#core/coordinator.ts';
import { NotFoundError, PreconditionFailedError, ThrottledError } from '#core/errors.ts';
import { jobKeys } from '#core/keys.ts';
import type { ChunkTask, JobRequest, JobStatus } from '#core/model.ts';
import type { Invoker, ObjectInfo, ObjectStore } from '#core/ports.ts';
import { systemClock } from '#core/ports.ts';
import { mulberry32 } from '#core/random.ts';
import { writeJson } from '#core/status.ts';
import { jobs } from '#jobs/index.ts';
import { ms, type Report, rate, runIfMain } from './report.ts';

/** Time compression: 20 keeps one model second at 50 ms, slow enough that the coordinator's own
 * CPU (one core, shared with the simulator) is not what the makespan measures. */
const SCALE = Number(process.env.BENCH_SIM_SCALE ?? 20);
const MODEL = {
  accountConcurrency: 1000,
  newSandboxesPer10s: 1000,
  coldStartMs: 250,
  warmLatencyMs: 15,
  medianDurationMs: 1000,
  sigma: 0.5,
};
const sleep = (millis: number) => new Promise<void>((r) => setTimeout(r, millis));

/** A store for the coordinator's own documents; the dataset is one huge object that is never read. */
class SimStore implements ObjectStore {
  private readonly docs = new Map<string, { body: Uint8Array; etag: string }>();
  constructor(private readonly dataset: ObjectInfo) {}
  async head(bucket: string, key: string) {
    if (key === this.dataset.key) return this.dataset;
    throw new NotFoundError(`no ${bucket}/${key}`);
  }
  async list() {
    return [];
  }
  async listPrefixes() {
    return { prefixes: [] };
  }
  async *readRange(): AsyncIterable<Uint8Array> {}
  async getBytes(_bucket: string, key: string) {
    const doc = this.docs.get(key);
    if (doc === undefined) throw new NotFoundError(`no ${key}`);
    return doc;
  }
  async put(
    _bucket: string,
    key: string,
    body: string | Uint8Array,
    options: { ifMatch?: string } = {},
  ) {
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    if (options.ifMatch !== undefined && this.docs.get(key)?.etag !== options.ifMatch) {
      throw new PreconditionFailedError(key);
    }
    const etag = `"${createHash('md5').update(bytes).digest('hex')}"`;
    this.docs.set(key, { body: bytes, etag });
    return { etag };
  }
  async upload() {
    return { etag: '""', size: 0 };
  }
  async compose() {
    return { etag: '""', size: 0 };
  }
}

/** A seeded standard normal (Box-Muller over mulberry32). */
function normal(seed: number) {
  const uniform = mulberry32(seed);
  // 1 - u keeps the logarithm's argument in (0, 1].
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** AWS's concurrency model, scaled in time. */
class SimulatedLambda implements Invoker {
  active = 0;
  idle = 0;
  throttles = 0;
  coldStarts = 0;
  private tokens = MODEL.newSandboxesPer10s;
  private readonly refill: ReturnType<typeof setInterval>;
  constructor(private readonly durationOf: (index: number) => number) {
    // 1,000 new sandboxes per 10 s, refilled continuously (every 10 ms of model time).
    this.refill = setInterval(() => {
      this.tokens = Math.min(
        MODEL.newSandboxesPer10s,
        this.tokens + MODEL.newSandboxesPer10s / 1000,
      );
    }, 10 / SCALE);
  }
  stop() {
    clearInterval(this.refill);
  }
  async invoke<T>(functionName: string, payload: unknown): Promise<T> {
    if (functionName !== 'worker') return null as T; // the reducer is not part of this model
    if (this.active >= MODEL.accountConcurrency) {
      this.throttles += 1;
      throw new ThrottledError(functionName);
    }
    let latency = MODEL.warmLatencyMs;
    if (this.idle > 0) this.idle -= 1;
    else if (this.tokens >= 1) {
      this.tokens -= 1;
      this.coldStarts += 1;
      latency = MODEL.coldStartMs;
    } else {
      this.throttles += 1;
      throw new ThrottledError(functionName);
    }
    this.active += 1;
    const task = payload as ChunkTask;
    await sleep((latency + this.durationOf(task.index)) / SCALE);
    this.active -= 1;
    this.idle += 1;
    return {
      index: task.index,
      recordsIn: 1,
      recordsOut: 1,
      badRecords: 0,
      bytesRead: 0,
      durationMs: 0,
    } as T;
  }
  async invokeEvent() {}
}

/** Runs the benchmark. */
export async function run(chunks = 100_000): Promise<Report> {
  const draw = normal(42);
  const durations = Float64Array.from(
    { length: chunks },
    () => MODEL.medianDurationMs * Math.exp(MODEL.sigma * draw()),
  );
  const totalWork = durations.reduce((a, b) => a + b, 0);
  const dataset: ObjectInfo = {
    bucket: 'sim',
    key: 'datasets/huge.jsonl',
    size: chunks * 1024 * 1024,
    etag: '"sim"',
  };
  const store = new SimStore(dataset);
  const lambda = new SimulatedLambda((i) => durations[i] as number);
  const jobId = 'zzzzsimulation01';
  const request: JobRequest = {
    jobId,
    job: 'by-field',
    input: 's3://sim/datasets/huge.jsonl',
    params: {},
    chunks,
    concurrency: MODEL.accountConcurrency,
    onBadRecord: 'fail',
    createdAt: systemClock.iso(),
  };
  await writeJson(store, 'sim', jobKeys(jobId).job, request);
  const status: JobStatus = {
    jobId,
    job: 'by-field',
    status: 'QUEUED',
    input: request.input,
    createdAt: request.createdAt,
    chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
    records: 0,
    bytes: 0,
  };
  await writeJson(store, 'sim', jobKeys(jobId).status, status);

  globalThis.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 20);
  const started = performance.now();
  const final = await coordinateJob(jobId, {
    store,
    invoker: lambda,
    jobs,
    clock: systemClock,
    bucket: 'sim',
    workerFunction: 'worker',
    reducerFunction: 'reducer',
    coordinatorFunction: 'coordinator',
    workerTimeoutMs: 900_000,
    statusIntervalMs: 500 / SCALE,
    sleep: (millis) => sleep(millis / SCALE),
  });
  const makespan = (performance.now() - started) * SCALE; // in model time
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  lambda.stop();
  // Lower bound: the work spread perfectly over 1,000 sandboxes, plus one cold start and the
  // longest chunk's tail (no schedule can end before its longest chunk).
  const lowerBound =
    Math.max(totalWork / MODEL.accountConcurrency, Math.max(...durations)) + MODEL.coldStartMs;
  return {
    name: 'simulate',
    title: `4. Scale simulation: ${rate(chunks)} chunks, real coordinator, simulated Lambda (time scaled ÷${SCALE}; figures in model time)`,
    columns: ['measure', 'value'],
    rows: [
      ['chunks succeeded', rate(final.chunks.succeeded)],
      ['makespan (model s)', (makespan / 1000).toFixed(1)],
      ['lower bound (model s)', (lowerBound / 1000).toFixed(1)],
      ['throttles (429)', rate(lambda.throttles)],
      ['cold starts', rate(lambda.coldStarts)],
      ['coordinator peak RSS (MB)', Math.round(peakRss / 1e6)],
      ['RSS growth during the job (MB)', Math.round((peakRss - rssBefore) / 1e6)],
    ],
    figures: {
      'makespan / lower bound (target ≤ 1.05)': Number((makespan / lowerBound).toFixed(3)),
      'coordinator peak RSS MB (target ≤ 256)': Math.round(peakRss / 1e6),
      'wall ms': ms(makespan / SCALE),
    },
    notes: [
      `model: ${JSON.stringify(MODEL)}`,
      'the coordinator runs unchanged; its backoff sleeps and status interval are scaled with the model',
    ],
  };
}

await runIfMain(import.meta.url, run);
