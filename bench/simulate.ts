/**
 * Benchmark 4, scale: the real coordinator (coordinateJob: its listing, planner, lanes, retries
 * and status writer) against a simulated Lambda that follows AWS's model: account concurrency
 * 1,000; new sandboxes limited to 1,000 per 10 s; cold start ~250 ms; warm invoke latency ~15 ms;
 * 429 TooManyRequestsException past either limit. Two datasets, each in its own process so each
 * peak RSS is its own:
 *
 * - `chunks`: one huge object cut into 100,000 chunks whose durations are log-normal (median
 *   1 s, σ 0.5);
 * - `objects`: 100,000 small objects (10 KiB each) under a prefix, listed page by page and packed
 *   by the default plan; a chunk's duration follows from what it reads (a GET per object, 8 in
 *   flight, each a log-normal first-byte latency plus transfer time, then parsing and the
 *   outcome's PUT), and the real reducer reads the outcomes afterwards.
 *
 * Time is virtual (see VirtualTime), and the report says so. Reports the makespan against the
 * model's lower bound and against an ideal dispatcher, invocations, S3 requests by kind,
 * throttles and the coordinator's peak RSS.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NotFoundError, PreconditionFailedError, ThrottledError } from '#core/base/errors.ts';
import type { Invoker, ObjectInfo, ObjectStore } from '#core/base/ports.ts';
import { type Clock, systemClock } from '#core/base/ports.ts';
import { mulberry32 } from '#core/base/random.ts';
import { segmentBytes } from '#core/data/plan.ts';
import type { ChunkOutcome, ChunkTask, JobRequest, JobStatus } from '#core/model/documents.ts';
import { createRegistry } from '#core/model/job.ts';
import { jobKeys } from '#core/model/keys.ts';
import { writeJson } from '#core/model/status.ts';
import { reduceJob } from '#core/reduce/reducer.ts';
import { coordinateJob } from '#core/run/coordinator.ts';
import { SEGMENT_PARALLELISM } from '#core/run/worker.ts';
import { byField } from '#jobs/by-field.ts';
import { bundleFunctions } from '#local/bundle.ts';
import { ms, type Report, rate, root, runIfMain } from './report.ts';

/**
 * The job the simulation runs: by-field as a one-accumulator reduce (without its key), the
 * shape these scenarios model: map chunks, then one reducer reading their outcomes. A keyed
 * job's shuffle is not in this model.
 */
const { key: _key, ...oneAccumulator } = byField;
const jobs = createRegistry([oneAccumulator]);

/**
 * AWS's model. Chunk durations are log-normal: BENCH_SIM_MEDIAN_MS and BENCH_SIM_SIGMA configure
 * the distribution (sigma 0 makes every chunk take the median).
 */
const MODEL = {
  accountConcurrency: 1000,
  newSandboxesPer10s: 1000,
  coldStartMs: 250,
  warmLatencyMs: 15,
  medianDurationMs: Number(process.env.BENCH_SIM_MEDIAN_MS ?? 1000),
  sigma: Number(process.env.BENCH_SIM_SIGMA ?? 0.5),
  /** A small GET's first-byte latency: log-normal, this median, σ 0.5. */
  getLatencyMs: 20,
  /** Transfer from S3 and parsing, per worker (one vCPU). */
  transferMBps: 90,
  parseMBps: 100,
  /** GETs a worker keeps in flight (SEGMENT_PARALLELISM). */
  getsInFlight: SEGMENT_PARALLELISM,
  putLatencyMs: 30,
  /**
   * The straggler scenarios: a chunk's duration grows with its bytes (a fixed part, then the
   * median per MiB: a 1 MiB chunk takes the median), times its log-normal draw; and this share
   * of invocations (not chunks: a backup is a new draw) runs this many times slower.
   */
  fixedMs: 50,
  slowShare: 0.01,
  slowFactor: 10,
};

/**
 * Virtual time: a discrete-event clock. `sleep` registers a wake-up; `run` repeatedly lets every
 * ready callback and promise settle (two macrotask turns: the coordinator and the store here
 * only chain promises, so the program is then blocked on virtual sleeps alone) and then jumps to
 * the earliest wake-up. Makespans are therefore exact model time, however fast or slow the CPU
 * that runs the coordinator — time compressed as far as it goes, with none of the timer rounding
 * or event-loop lag that a scaled real-time run adds to every chunk.
 */
class VirtualTime {
  now = 0;
  private seq = 0;
  // A binary min-heap of wake-ups ordered by time, then by registration order.
  private readonly heap: { at: number; seq: number; wake: () => void }[] = [];

  sleep = (millis: number): Promise<void> =>
    new Promise<void>((wake) =>
      this.push({ at: this.now + Math.max(0, millis), seq: this.seq++, wake }),
    );

  readonly clock: Clock = { now: () => this.now, iso: () => new Date(this.now).toISOString() };

  /** A periodic timer on this clock (the coordinator's heartbeat and progress writes). */
  every = (millis: number, callback: () => void) => {
    let stopped = false;
    const loop = async () => {
      while (!stopped) {
        await this.sleep(millis);
        if (!stopped) callback();
      }
    };
    void loop();
    return {
      stop: () => {
        stopped = true;
      },
    };
  };

  /** Advances time until `until` settles; returns its value. */
  async run<T>(until: Promise<T>): Promise<T> {
    let settled = false;
    const result = until.finally(() => {
      settled = true;
    });
    const turn = () => new Promise<void>((r) => setImmediate(r));
    while (!settled) {
      await turn();
      await turn();
      if (settled) break;
      const first = this.heap[0];
      if (first === undefined) {
        // Blocked on something real (none is expected here): let real time pass.
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      this.now = first.at;
      while (this.heap.length > 0 && (this.heap[0] as { at: number }).at === this.now) {
        this.pop().wake();
      }
    }
    return result;
  }

  private less(a: number, b: number) {
    const x = this.heap[a]!;
    const y = this.heap[b]!;
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
  private swap(a: number, b: number) {
    const t = this.heap[a]!;
    this.heap[a] = this.heap[b]!;
    this.heap[b] = t;
  }
  private push(item: { at: number; seq: number; wake: () => void }) {
    this.heap.push(item);
    for (let i = this.heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  private pop() {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.heap.length && this.less(l, m)) m = l;
        if (r < this.heap.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** S3 requests by kind, as S3 bills them. */
interface Requests {
  get: number;
  put: number;
  list: number;
  head: number;
}

/**
 * A store for the job's documents; the dataset's objects exist only as listing entries (their
 * bytes are never read: the simulated workers model their reads). Counts every request.
 */
class SimStore implements ObjectStore {
  private readonly docs = new Map<string, { body: Uint8Array; etag: string }>();
  readonly requests: Requests = { get: 0, put: 0, list: 0, head: 0 };
  constructor(
    /** The dataset: one object's info, or a prefix of `count` objects of `size` bytes. */
    private readonly dataset: ObjectInfo | { prefix: string; count: number; size: number },
  ) {}
  async head(bucket: string, key: string) {
    this.requests.head += 1;
    if ('key' in this.dataset && key === this.dataset.key) return this.dataset;
    throw new NotFoundError(`no ${bucket}/${key}`);
  }
  async list(bucket: string, prefix: string) {
    const out: ObjectInfo[] = [];
    const { dataset } = this;
    const count = 'count' in dataset && prefix === dataset.prefix ? dataset.count : 0;
    // ListObjectsV2 pages of 1,000 keys, as S3ObjectStore.list asks for.
    this.requests.list += Math.max(1, Math.ceil(count / 1000));
    for (let i = 0; i < count; i++) {
      const key = `${prefix}part-${String(i).padStart(6, '0')}.jsonl`;
      out.push({ bucket, key, size: (dataset as { size: number }).size, etag: `"e${i}"` });
    }
    return out;
  }
  async listPrefixes() {
    this.requests.list += 1;
    return { prefixes: [] };
  }
  readRange(): AsyncIterable<Uint8Array> {
    throw new Error(
      'the simulation never reads dataset bytes: simulated workers model their reads',
    );
  }
  async delete(_bucket: string, key: string) {
    this.docs.delete(key);
  }

  /**
   * What a GET or PUT of status.json takes, in virtual time: the coordinator reads it before
   * every dispatch (to see a cancel), so its latency is on the dispatch path. Other documents
   * are free, as before. Unset: free.
   */
  latency?: { sleep: (ms: number) => Promise<void>; getMs: number; putMs: number };

  async getBytes(_bucket: string, key: string) {
    this.requests.get += 1;
    if (this.latency && key.endsWith('status.json')) await this.latency.sleep(this.latency.getMs);
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
    this.requests.put += 1;
    if (this.latency && key.endsWith('status.json')) await this.latency.sleep(this.latency.putMs);
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    if (options.ifMatch !== undefined && this.docs.get(key)?.etag !== options.ifMatch) {
      throw new PreconditionFailedError(key);
    }
    const etag = `"${createHash('md5').update(bytes).digest('hex')}"`;
    this.docs.set(key, { body: bytes, etag });
    return { etag };
  }
  /** Stores a document without counting a request (what a simulated worker wrote). */
  seed(key: string, value: unknown) {
    const body = new TextEncoder().encode(JSON.stringify(value));
    this.docs.set(key, { body, etag: `"${createHash('md5').update(body).digest('hex')}"` });
  }
  async upload() {
    this.requests.put += 1;
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

/** AWS's concurrency model, in virtual time. */
class SimulatedLambda implements Invoker {
  active = 0;
  idle = 0;
  throttles = 0;
  coldStarts = 0;
  invocations = 0;
  /** What the workers would have asked of S3: a GET per segment, a PUT per outcome. */
  readonly workerRequests = { get: 0, put: 0 };
  /**
   * Each chunk's modelled duration, by index, for the bounds: its first invocation's, had that
   * not run slow (a backup's duration is extra work; a slow invocation is what backups avoid).
   */
  readonly durations: number[] = [];
  /** Called once when the coordinator invokes the reducer. */
  onReduce?: (jobId: string) => Promise<void>;
  private tokens = MODEL.newSandboxesPer10s;
  private refilledAt = 0;
  constructor(
    private readonly time: VirtualTime,
    /** An invocation's duration had it not run slow. */
    private readonly durationOf: (task: ChunkTask) => number,
    /** How many times slower this invocation runs (1 for most). */
    private readonly slowdown: () => number = () => 1,
  ) {}
  /** New-sandbox tokens: 1,000 per 10 s, refilled continuously, at most 1,000 saved. */
  private refill() {
    const elapsed = this.time.now - this.refilledAt;
    this.refilledAt = this.time.now;
    this.tokens = Math.min(
      MODEL.newSandboxesPer10s,
      this.tokens + (elapsed * MODEL.newSandboxesPer10s) / 10_000,
    );
  }
  async invoke<T>(functionName: string, payload: unknown): Promise<T> {
    if (functionName === 'reducer') {
      // The reducer's time is not part of the makespan; its requests are counted.
      await this.onReduce?.((payload as { jobId: string }).jobId);
      return null as T;
    }
    if (this.active >= MODEL.accountConcurrency) {
      this.throttles += 1;
      throw new ThrottledError(functionName);
    }
    this.refill();
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
    this.invocations += 1;
    this.active += 1;
    const task = payload as ChunkTask;
    const nominal = this.durationOf(task);
    const duration = nominal * this.slowdown();
    this.durations[task.index] ??= nominal;
    this.workerRequests.get += task.segments.length;
    this.workerRequests.put += 1;
    await this.time.sleep(latency + duration);
    this.active -= 1;
    this.idle += 1;
    this.written?.(task);
    return {
      index: task.index,
      recordsIn: 1,
      recordsOut: 1,
      badRecords: 0,
      bytesRead: 0,
      durationMs: 0,
    } as T;
  }
  /** Writes what the worker would have written (its outcome), when the reducer is to run. */
  written?: (task: ChunkTask) => void;
  async invokeEvent() {}
}

/**
 * A chunk's duration from what it reads: its segments' GETs, `getsInFlight` at a time (each a
 * log-normal first-byte latency plus its transfer), then parsing every byte, then the outcome's
 * PUT.
 */
function readingDuration(task: ChunkTask, draw: () => number): number {
  const lanes = new Float64Array(MODEL.getsInFlight);
  let bytes = 0;
  for (const segment of task.segments) {
    const size = segment.end - segment.start;
    bytes += size;
    let lane = 0;
    for (let l = 1; l < lanes.length; l++) if (lanes[l]! < lanes[lane]!) lane = l;
    lanes[lane] =
      lanes[lane]! +
      MODEL.getLatencyMs * Math.exp(0.5 * draw()) +
      (size / (MODEL.transferMBps * 1e6)) * 1000;
  }
  const fetched = lanes.reduce((a, b) => Math.max(a, b), 0);
  return fetched + (bytes / (MODEL.parseMBps * 1e6)) * 1000 + MODEL.putLatencyMs;
}

/** What one scenario measured (plain data: it crosses a process boundary as JSON). */
interface ScenarioResult {
  dataset: string;
  chunks: number;
  succeeded: number;
  invocations: number;
  makespanMs: number;
  lowerBoundMs: number;
  greedyMs: number;
  throttles: number;
  coldStarts: number;
  requests: { coordinator: Requests; workers: { get: number; put: number }; reducer?: Requests };
  peakRssMb: number;
  rssGrowthMb: number;
  wallMs: number;
  cpuPerChunkUs: number;
}

/** Runs one dataset through the real coordinator in virtual time. */
const SCENARIOS = [
  'chunks',
  'objects',
  'stragglers',
  'stragglers-speculation',
  'stragglers-guided',
  'stragglers-both',
] as const;
type Scenario = (typeof SCENARIOS)[number];

async function simulate(scenario: Scenario): Promise<ScenarioResult> {
  const stragglers = scenario.startsWith('stragglers');
  const speculation = scenario === 'stragglers-speculation' || scenario === 'stragglers-both';
  const guidedTail = scenario === 'stragglers-guided' || scenario === 'stragglers-both';
  const chunks = stragglers
    ? Number(process.env.BENCH_SIM_STRAGGLER_CHUNKS ?? 20_000)
    : Number(process.env.BENCH_SIM_CHUNKS ?? 100_000);
  const objects = Number(process.env.BENCH_SIM_OBJECTS ?? 100_000);
  const objectBytes = 10 * 1024;
  const draw = normal(42);
  const slow = mulberry32(7);
  const store = new SimStore(
    scenario !== 'objects'
      ? { bucket: 'sim', key: 'datasets/huge.jsonl', size: chunks * 1024 * 1024, etag: '"sim"' }
      : { prefix: 'datasets/small/', count: objects, size: objectBytes },
  );
  const time = new VirtualTime();
  // Each chunk's log-normal draw, by index (a guided tail adds up to 2.8 x concurrency chunks).
  const drawn = Float64Array.from(
    { length: scenario === 'objects' ? 0 : chunks + 3 * MODEL.accountConcurrency },
    () => Math.exp(MODEL.sigma * draw()),
  );
  const noiseOf = (index: number) => drawn[index] as number;
  const perByte = (MODEL.medianDurationMs - MODEL.fixedMs) / (1024 * 1024);
  const lambda = new SimulatedLambda(
    time,
    (task) => {
      if (scenario === 'objects') return readingDuration(task, draw);
      if (!stragglers) return MODEL.medianDurationMs * noiseOf(task.index);
      const bytes = task.segments.reduce((sum, g) => sum + g.end - g.start, 0);
      return (MODEL.fixedMs + perByte * bytes) * noiseOf(task.index);
    },
    stragglers ? () => (slow() < MODEL.slowShare ? MODEL.slowFactor : 1) : undefined,
  );
  const jobId = 'zzzzsimulation01';
  const request: JobRequest = {
    jobId,
    job: 'by-field',
    input: scenario !== 'objects' ? 's3://sim/datasets/huge.jsonl' : 's3://sim/datasets/small/',
    params: {},
    // The small objects get the default plan; the huge object is cut into `chunks`.
    ...(scenario !== 'objects' && { chunks }),
    ...(guidedTail && { guidedTail: true }),
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
  let reducer: Requests | undefined;
  if (scenario === 'objects') {
    // The workers' outcomes (what the reducer reads), written without counting: the workers'
    // requests are counted from their tasks.
    lambda.written = (task) => store.seed(jobKeys(jobId).outcome(task.index), outcomeOf(task));
    lambda.onReduce = async (id) => {
      const before = { ...store.requests };
      await reduceJob(id, { store, jobs, clock: time.clock, bucket: 'sim' });
      reducer = {
        get: store.requests.get - before.get,
        put: store.requests.put - before.put,
        list: store.requests.list - before.list,
        head: store.requests.head - before.head,
      };
    };
  }
  const before = { ...store.requests };
  // BENCH_SIM_STATUS_LATENCY=1: the job's status reads and writes take S3's time from here on
  // (the pre-dispatch cancel check among them). Off by default, so the figures compare with the
  // earlier ones, where the coordinator's own S3 requests were free.
  if (process.env.BENCH_SIM_STATUS_LATENCY === '1') {
    store.latency = { sleep: time.sleep, getMs: MODEL.getLatencyMs, putMs: MODEL.putLatencyMs };
  }

  globalThis.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 20);
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const final = await time.run(
    coordinateJob(jobId, {
      store,
      invoker: lambda,
      jobs,
      clock: time.clock,
      bucket: 'sim',
      workerFunction: 'worker',
      reducerFunction: 'reducer',
      coordinatorFunction: 'coordinator',
      workerTimeoutMs: 900_000,
      sleep: time.sleep,
      tick: time.sleep,
      every: time.every,
      random: mulberry32(7),
      // Backups only where the scenario is about them, so the other figures compare with
      // earlier runs.
      speculation: { enabled: speculation },
    }),
  );
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const makespan = time.now; // model milliseconds since the job began
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const durations = Float64Array.from(lambda.durations);
  const all = { ...store.requests };
  const coordinator: Requests = {
    get: all.get - before.get - (reducer?.get ?? 0),
    put: all.put - before.put - (reducer?.put ?? 0),
    list: all.list - before.list - (reducer?.list ?? 0),
    head: all.head - before.head - (reducer?.head ?? 0),
  };
  return {
    dataset:
      scenario === 'objects'
        ? `${rate(objects)} objects of ${objectBytes / 1024} KiB`
        : stragglers
          ? `${rate(chunks)} chunks, 1% slow: ${
              speculation
                ? guidedTail
                  ? 'backups + guided tail'
                  : 'backups'
                : guidedTail
                  ? 'guided tail'
                  : 'neither'
            }`
          : `one object cut into ${rate(chunks)} chunks`,
    chunks: final.chunks.total,
    succeeded: final.chunks.succeeded,
    invocations: lambda.invocations,
    makespanMs: makespan,
    lowerBoundMs: modelLowerBound(durations),
    greedyMs: greedyMakespan(durations),
    throttles: lambda.throttles,
    coldStarts: lambda.coldStarts,
    requests: { coordinator, workers: lambda.workerRequests, ...(reducer && { reducer }) },
    peakRssMb: Math.round(peakRss / 1e6),
    rssGrowthMb: Math.round((peakRss - rssBefore) / 1e6),
    wallMs: ms(wallMs),
    cpuPerChunkUs: Math.round((cpu.user + cpu.system) / Math.max(1, final.chunks.total)),
  };
}

/** The outcome a by-field worker writes for a chunk, as the reducer reads it. */
function outcomeOf(task: ChunkTask): ChunkOutcome {
  return {
    index: task.index,
    attempt: task.attempt,
    bytes: segmentBytes(task.segments),
    objects: task.segments.length,
    recordsIn: 0,
    recordsOut: 0,
    badRecords: { count: 0, samples: [] },
    bytesRead: 0,
    durationMs: 0,
    output: { kind: 'acc', value: {} },
  };
}

/**
 * Runs one scenario in a child process of its own, so its peak RSS is its own, from an esbuild
 * bundle of this module, as the coordinator runs on Lambda: under tsx's loader the same code
 * measured 60–80 MB more (the loader's own memory, and more garbage from its transform).
 */
async function inChild(scenario: Scenario): Promise<ScenarioResult> {
  const { simulate } = await bundleFunctions({ simulate: fileURLToPath(import.meta.url) });
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', simulate as string, '--scenario', scenario],
    { cwd: root, maxBuffer: 1 << 22 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as ScenarioResult;
}

/** Runs the benchmark: both datasets, each in its own process. */
export async function run(): Promise<Report> {
  const results: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) results.push(await inChild(scenario));
  const [huge, small, neither, backups, guided, both] = results as [
    ScenarioResult,
    ScenarioResult,
    ScenarioResult,
    ScenarioResult,
    ScenarioResult,
    ScenarioResult,
  ];
  const row = (name: string, value: (r: ScenarioResult) => string | number) => [
    name,
    ...results.map(value),
  ];
  const requests = (r: Requests | { get: number; put: number } | undefined) =>
    r === undefined
      ? 'not run'
      : `${rate(r.get)} GET, ${rate(r.put)} PUT${'list' in r ? `, ${rate(r.list)} LIST, ${rate(r.head)} HEAD` : ''}`;
  const ratio = (r: ScenarioResult) => r.makespanMs / r.lowerBoundMs;
  const cut = (r: ScenarioResult, base: ScenarioResult) =>
    `${((1 - r.makespanMs / base.makespanMs) * 100).toFixed(1)}%`;
  const extra = (r: ScenarioResult) =>
    `${(((r.invocations - r.chunks) / r.chunks) * 100).toFixed(2)}%`;
  return {
    name: 'simulate',
    title:
      '4. Scale simulation: real coordinator, simulated Lambda (virtual time; figures in model time)',
    columns: ['measure', ...results.map((r) => r.dataset)],
    rows: [
      row('chunks (invocations)', (r) => `${rate(r.chunks)} (${rate(r.invocations)})`),
      row('makespan (model s)', (r) => (r.makespanMs / 1000).toFixed(2)),
      row('lower bound (model s)', (r) => (r.lowerBoundMs / 1000).toFixed(2)),
      row('makespan / lower bound', (r) => ratio(r).toFixed(4)),
      row('ideal first-free dispatcher (model s)', (r) => (r.greedyMs / 1000).toFixed(2)),
      row('throttles (429) / cold starts', (r) => `${rate(r.throttles)} / ${rate(r.coldStarts)}`),
      row('S3 requests: coordinator', (r) => requests(r.requests.coordinator)),
      row('S3 requests: workers', (r) => requests(r.requests.workers)),
      row('S3 requests: reducer', (r) => requests(r.requests.reducer)),
      row('coordinator peak RSS (MB)', (r) => r.peakRssMb),
      row('RSS growth during the job (MB)', (r) => r.rssGrowthMb),
      row('wall time (ms)', (r) => r.wallMs),
      row('CPU per chunk, coordinator + simulator (µs)', (r) => r.cpuPerChunkUs),
    ],
    figures: {
      'chunks: makespan / lower bound': Number(ratio(huge).toFixed(4)),
      'chunks: makespan / ideal first-free dispatcher': Number(
        (huge.makespanMs / huge.greedyMs).toFixed(4),
      ),
      'chunks: coordinator peak RSS MB (target ≤ 256)': huge.peakRssMb,
      'objects: invocations (target ≤ 1,000)': small.invocations,
      'objects: makespan / lower bound (target ≤ 1.10)': Number(ratio(small).toFixed(4)),
      'objects: coordinator peak RSS MB (target ≤ 256)': small.peakRssMb,
      'stragglers: makespan / lower bound, neither': Number(ratio(neither).toFixed(4)),
      'stragglers: makespan / lower bound, backups': Number(ratio(backups).toFixed(4)),
      'stragglers: makespan / lower bound, guided tail': Number(ratio(guided).toFixed(4)),
      'stragglers: makespan / lower bound, both': Number(ratio(both).toFixed(4)),
      'stragglers: makespan cut by backups (target ≥ 30%)': cut(backups, neither),
      'stragglers: makespan cut by the guided tail': cut(guided, neither),
      'stragglers: makespan cut by both': cut(both, neither),
      'stragglers: extra invocations, backups (target ≤ 5%)': extra(backups),
      'stragglers: extra invocations, both': extra(both),
      'stragglers: chunks added by the guided tail': `${rate(guided.chunks - neither.chunks)}`,
    },
    notes: [
      `model: ${JSON.stringify(MODEL)}`,
      'lower bound: every invocation occupies a sandbox for its latency plus its duration, at most 1,000 at once, and each sandbox pays one cold start; no schedule ends before its longest chunk either',
      'ideal first-free dispatcher: the same chunks, in order, each handed to the first sandbox to come free, with no dispatch cost — what a perfect coordinator that cannot know durations in advance achieves',
      "S3 requests: the coordinator's and the reducer's are counted as they happen (the reducer runs for real on the small objects only); the workers' are counted from their tasks: one GET per segment, one PUT for the outcome",
      "virtual time charges nothing for the coordinator's CPU; bench 3 measures that",
      `stragglers: ${rate(Number(process.env.BENCH_SIM_STRAGGLER_CHUNKS ?? 20_000))} chunks of 1 MiB asked for; a chunk takes ${MODEL.fixedMs} ms plus the rest of the median per MiB, times its log-normal draw, and ${MODEL.slowShare * 100}% of invocations run ${MODEL.slowFactor}x slower; their lower bound and ideal dispatcher use each chunk's duration had it not run slow (what backups can recover), so a run with backups can come close to it and one without cannot`,
      process.env.BENCH_SIM_STATUS_LATENCY === '1'
        ? "status.json reads and writes take the model's S3 latency (BENCH_SIM_STATUS_LATENCY=1)"
        : 'status.json reads and writes are free here, so each pre-dispatch cancel check is a read of its own; at S3 latency lanes share reads (BENCH_SIM_STATUS_LATENCY=1)',
    ],
  };
}

/**
 * The model's lower bound on the makespan of any schedule: the busy time of all invocations
 * (duration plus warm latency each, plus the extra of a cold start per sandbox) spread evenly
 * over the account's 1,000 sandboxes — using fewer only raises it — or the longest chunk with a
 * cold start, whichever is larger.
 */
function modelLowerBound(durations: Float64Array): number {
  const work = durations.reduce((a, b) => a + b, 0) + durations.length * MODEL.warmLatencyMs;
  const coldExtra = MODEL.coldStartMs - MODEL.warmLatencyMs;
  return Math.max(
    work / MODEL.accountConcurrency + coldExtra,
    Math.max(...durations) + MODEL.coldStartMs,
  );
}

/**
 * The makespan of handing each chunk, in order, to the first sandbox to come free (cold for its
 * first chunk, warm after), with no dispatch cost: a min-heap of 1,000 sandboxes' free times.
 */
function greedyMakespan(durations: Float64Array): number {
  const lanes = MODEL.accountConcurrency;
  const heap = new Float64Array(Math.min(lanes, durations.length));
  let size = 0;
  for (const d of durations) {
    if (size < heap.length) {
      heap[size] = MODEL.coldStartMs + d;
      for (let i = size++; i > 0 && heap[(i - 1) >> 1]! > heap[i]!; i = (i - 1) >> 1) {
        [heap[i], heap[(i - 1) >> 1]] = [heap[(i - 1) >> 1]!, heap[i]!];
      }
      continue;
    }
    heap[0] = heap[0]! + MODEL.warmLatencyMs + d; // the earliest free lane takes the chunk
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && heap[l]! < heap[m]!) m = l;
      if (r < size && heap[r]! < heap[m]!) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
  return heap.reduce((a, b) => Math.max(a, b), 0);
}

const scenario = process.argv.indexOf('--scenario');
if (scenario > 0) {
  const name = process.argv[scenario + 1];
  if (!(SCENARIOS as readonly string[]).includes(name as string)) {
    throw new Error(`unknown scenario ${name}`);
  }
  process.stdout.write(`${JSON.stringify(await simulate(name as Scenario))}\n`);
} else {
  await runIfMain(import.meta.url, run);
}
