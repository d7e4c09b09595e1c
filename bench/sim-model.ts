/**
 * The Lambda and S3 model the scale simulation (bench 4) runs the real coordinator against:
 * virtual time, a store that counts requests, and AWS's concurrency limits.
 */
import { createHash } from 'node:crypto';
import { NotFoundError, PreconditionFailedError, ThrottledError } from '#core/base/errors.ts';
import type { Clock, Invoker, ObjectInfo, ObjectStore } from '#core/base/ports.ts';
import { mulberry32 } from '#core/base/random.ts';
import type {
  ChunkTask,
  JobRequest,
  JobStatus,
  PartitionSummary,
  PartitionTask,
} from '#core/model/documents.ts';
import type { AnyJob } from '#core/model/job.ts';
import { jobKeys } from '#core/model/keys.ts';
import { writeJson } from '#core/model/status.ts';
import { coordinateJob } from '#core/run/coordinator.ts';
import { SEGMENT_PARALLELISM } from '#core/run/worker.ts';

/**
 * AWS's model. Chunk durations are log-normal: BENCH_SIM_MEDIAN_MS and BENCH_SIM_SIGMA configure
 * the distribution (sigma 0 makes every chunk take the median).
 */
export const MODEL = {
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
export class VirtualTime {
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
export interface Requests {
  get: number;
  put: number;
  list: number;
  head: number;
}

/**
 * A store for the job's documents; the dataset's objects exist only as listing entries (their
 * bytes are never read: the simulated workers model their reads). Counts every request.
 */
export class SimStore implements ObjectStore {
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
  /** Bytes of every document held: what the simulated S3 keeps in the process's memory. */
  docBytes(): number {
    let bytes = 0;
    for (const doc of this.docs.values()) bytes += doc.body.length;
    return bytes;
  }
  /** A document's bytes without counting a request (what the model looks at). */
  peek(key: string): Uint8Array | undefined {
    return this.docs.get(key)?.body;
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
export function normal(seed: number) {
  const uniform = mulberry32(seed);
  // 1 - u keeps the logarithm's argument in (0, 1].
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** AWS's concurrency model, in virtual time. */
export class SimulatedLambda implements Invoker {
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
    if ((payload as { kind?: string }).kind === 'partition') {
      return (await this.partition(payload as PartitionTask, latency)) as T;
    }
    const task = payload as ChunkTask;
    const nominal = this.durationOf(task);
    const duration = nominal * this.slowdown();
    this.durations[task.index] ??= nominal;
    const requests = this.requestsOf?.(task) ?? { get: task.segments.length, put: 1 };
    this.workerRequests.get += requests.get;
    this.workerRequests.put += requests.put;
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
  /** A partition task (a keyed or sorted job's): its model, its requests, and its outcome. */
  private async partition(task: PartitionTask, latency: number): Promise<PartitionSummary> {
    const model = this.partitions;
    if (model === undefined) throw new Error('this scenario has no partition tasks');
    const { durationMs, get, put } = model.run(task, this.time.now + latency);
    this.partitionDurations[task.index] ??= durationMs;
    this.partitionRequests.get += get;
    this.partitionRequests.put += put;
    await this.time.sleep(latency + durationMs);
    this.active -= 1;
    this.idle += 1;
    model.written(task);
    return { index: task.index, keys: 1, bytesRead: 0, durationMs: 0 };
  }
  /** What a chunk task asks of S3. @default a GET per segment, a PUT for the outcome */
  requestsOf?: (task: ChunkTask) => { get: number; put: number };
  /** The partition tasks' model: a task's duration from when it starts, and its requests. */
  partitions?: {
    run(task: PartitionTask, startsAt: number): { durationMs: number; get: number; put: number };
    written(task: PartitionTask): void;
  };
  /** Each partition task's modelled duration, by index (its first invocation's). */
  readonly partitionDurations: number[] = [];
  readonly partitionRequests = { get: 0, put: 0 };
  /** Writes what the worker would have written (its outcome), when the reducer is to run. */
  written?: (task: ChunkTask) => void;
  async invokeEvent() {}
}

/** Writes a submitted job as the api would: its request, and its status QUEUED. */
export async function seedJob(store: SimStore, request: JobRequest): Promise<void> {
  await writeJson(store, 'sim', jobKeys(request.jobId).job, request);
  const status: JobStatus = {
    jobId: request.jobId,
    job: request.job,
    status: 'QUEUED',
    input: request.input,
    createdAt: request.createdAt,
    chunks: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0 },
    records: 0,
    bytes: 0,
  };
  await writeJson(store, 'sim', jobKeys(request.jobId).status, status);
}

/** The real coordinator, driving a job against the simulated store and Lambda in virtual time. */
export function simulatedCoordinator(
  jobId: string,
  sim: {
    store: SimStore;
    lambda: SimulatedLambda;
    time: VirtualTime;
    jobs: ReadonlyMap<string, AnyJob>;
    speculation: boolean;
  },
): Promise<JobStatus> {
  return sim.time.run(
    coordinateJob(jobId, {
      store: sim.store,
      invoker: sim.lambda,
      jobs: sim.jobs,
      clock: sim.time.clock,
      bucket: 'sim',
      workerFunction: 'worker',
      reducerFunction: 'reducer',
      coordinatorFunction: 'coordinator',
      workerTimeoutMs: 900_000,
      sleep: sim.time.sleep,
      tick: sim.time.sleep,
      every: sim.time.every,
      random: mulberry32(7),
      speculation: { enabled: sim.speculation },
    }),
  );
}
