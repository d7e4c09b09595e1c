/**
 * Bench 4's shuffle scenarios: a 1 TiB keyed group-by and a 1 TiB sort, both stages run by the
 * real coordinator (its planner, its partition planning from what the map outputs report, the
 * engine's lanes for chunks and partitions) against the Lambda model of sim-model.ts, and an S3
 * model with request rates per prefix. What the tasks do is modelled (times from bytes and
 * rates); what they report is synthesised as a worker would write it (a map output's bucket
 * offsets, a sorted run's samples), so the coordinator plans the partitions it would plan.
 */

import { systemClock } from '#core/base/ports.ts';
import { mulberry32 } from '#core/base/random.ts';
import type {
  ChunkOutcome,
  ChunkOutput,
  ChunkTask,
  JobRequest,
  PartitionTask,
  SortSample,
} from '#core/model/documents.ts';
import { createRegistry, defineJob } from '#core/model/job.ts';
import { jobKeys, SHUFFLE_PREFIXES } from '#core/model/keys.ts';
import { SORT_WINDOW_BYTES } from '#core/run/sort-partition.ts';
import { sampleStep } from '#core/shuffle/order.ts';
import {
  MODEL,
  normal,
  type Requests,
  SimStore,
  SimulatedLambda,
  seedJob,
  simulatedCoordinator,
  VirtualTime,
} from './sim-model.ts';

/** The shuffle's model, on top of MODEL's Lambda and S3 latencies. */
export const SHUFFLE_MODEL = {
  inputBytes: 2 ** 40,
  /** Map chunks: 256 MiB each, the planner's largest. */
  chunks: 4096,
  recordBytes: 100,
  /** The worker's memory (the deployed default: one vCPU). */
  workerMemoryMb: 1769,
  /** One worker's rates: S3 reads and writes, parsing, sorting a chunk, merging runs. */
  readMBps: 90,
  writeMBps: 90,
  parseMBps: 100,
  sortMBps: 60,
  mergeMBps: 80,
  /** S3's request rates per prefix, and the prefixes a job's shuffle objects use. */
  getsPerPrefix: 5500,
  putsPerPrefix: 3500,
  prefixes: SHUFFLE_PREFIXES,
  /** A streamed upload's part size (S3ObjectStore): each part is a PUT. */
  uploadPartBytes: 8 * 1024 * 1024,
  /** The group-by: distinct keys, and a run line's bytes (key and accumulator). */
  groupKeys: 1e8,
  runLineBytes: 40,
  /** The reducer's final assembly: UploadPartCopy requests in flight, and each one's rate. */
  copiesInFlight: 16,
  copyMBps: 100,
};

const M = SHUFFLE_MODEL;
const MB = 1e6;

/** A shuffle scenario's figures (plain data: it crosses a process boundary as JSON). */
export interface ShuffleResult {
  dataset: string;
  chunks: number;
  partitions: number;
  invocations: number;
  makespanMs: number;
  lowerBoundMs: number;
  bound: string;
  throttles: number;
  requests: { coordinator: Requests; map: Requests; partitions: Requests; reducer: Requests };
  lambdaGbSeconds: number;
  usdPerTb: number;
  usdParts: { lambda: number; get: number; put: number };
  peakRssMb: number;
  /** What the simulated S3 held in the same process at the end (its documents), in MB. */
  storeMb: number;
  /** The process's peak V8 heap (the coordinator's objects, and the simulated S3's), in MB. */
  peakHeapMb: number;
  wallMs: number;
}

const noRequests = (): Requests => ({ get: 0, put: 0, list: 0, head: 0 });

/** PUTs of a streamed upload of `bytes`: its parts, then CreateMultipartUpload and Complete. */
const uploadPuts = (bytes: number) =>
  bytes <= M.uploadPartBytes ? 1 : Math.ceil(bytes / M.uploadPartBytes) + 2;

/**
 * S3's per-prefix request rates, in virtual time: a burst of requests spread evenly over the
 * prefixes is served at each prefix's rate after the requests before it.
 */
class PrefixRates {
  private readonly free: number[];
  constructor(private readonly perSecond: number) {
    this.free = new Array<number>(M.prefixes).fill(0);
  }
  /** When the last of `requests` issued at `at` is served (ms). */
  serve(at: number, requests: number): number {
    let last = at;
    for (let p = 0; p < this.free.length; p++) {
      const share = Math.ceil(requests / this.free.length);
      const start = Math.max(at, this.free[p]!);
      this.free[p] = start + (share * 1000) / this.perSecond;
      last = Math.max(last, this.free[p]!);
    }
    return last;
  }
}

/** Runs one shuffle scenario: 'groupby' or 'sort'. */
export async function simulateShuffle(kind: 'groupby' | 'sort'): Promise<ShuffleResult> {
  const sorting = kind === 'sort';
  const chunkBytes = M.inputBytes / M.chunks;
  const records = chunkBytes / M.recordBytes;
  // What a chunk's map writes: a sort's every output (its key and record), a group-by's combined
  // keys (a chunk of 2.7M records over 1e8 keys combines few of them).
  const distinct = M.groupKeys * (1 - Math.exp(-records / M.groupKeys));
  const shuffleBytes = sorting ? chunkBytes * 1.1 : distinct * M.runLineBytes;
  const draw = normal(42);
  const noise = () => Math.exp(0.1 * draw());
  const store = new SimStore({
    bucket: 'sim',
    key: 'datasets/terabyte.jsonl',
    size: M.inputBytes,
    etag: '"sim"',
  });
  const time = new VirtualTime();
  const gets = new PrefixRates(M.getsPerPrefix);
  const puts = new PrefixRates(M.putsPerPrefix);
  const mapDurations: number[] = [];
  const lambda = new SimulatedLambda(time, (task) => {
    // Read the chunk (one streamed GET), parse it, sort or combine it, PUT the run object.
    const ms =
      MODEL.getLatencyMs +
      (chunkBytes / (M.readMBps * MB) + chunkBytes / (M.parseMBps * MB)) * 1000 +
      (sorting ? (chunkBytes / (M.sortMBps * MB)) * 1000 : 0) +
      MODEL.putLatencyMs +
      (shuffleBytes / (M.writeMBps * MB)) * 1000 +
      MODEL.putLatencyMs;
    const duration = ms * noise();
    mapDurations[task.index] ??= duration;
    return duration;
  });
  // One GET for the chunk; a PUT for its run object and one for its outcome.
  lambda.requestsOf = () => ({ get: 1, put: 2 });
  const jobId = 'zzzzsimulation02';
  const keys = jobKeys(jobId);
  const random = mulberry32(11);
  lambda.written = (task: ChunkTask) =>
    store.seed(keys.outcome(task.index), mapOutcome(task, sorting, shuffleBytes, random));
  const partitionRequests = noRequests();
  // What a partition writes: a sort's range, its share of the order (a range reads a little more
  // than it keeps: the lines at its slices' edges); a group-by's finished values, half its runs.
  let ranges: number | undefined;
  const writtenBy = (bytes: number) => {
    if (!sorting) return bytes / 2;
    if (ranges === undefined) {
      const manifest = JSON.parse(
        new TextDecoder().decode(store.peek(keys.manifest) ?? new Uint8Array()),
      ) as { partitions?: unknown[] };
      ranges = manifest.partitions?.length ?? 1;
    }
    return (M.chunks * shuffleBytes) / 1.1 / ranges;
  };
  lambda.partitions = {
    run(task: PartitionTask, startsAt: number) {
      const bytes = task.sources.reduce((sum, s) => sum + s.end - s.start, 0);
      const requests = sorting
        ? task.sources.reduce((sum, s) => sum + Math.ceil((s.end - s.start) / SORT_WINDOW_BYTES), 0)
        : task.sources.length;
      // The GETs, MODEL.getsInFlight at a time, each a first-byte latency, or S3's rates.
      const latencyBound = (requests * MODEL.getLatencyMs) / MODEL.getsInFlight;
      const rateBound = gets.serve(startsAt, requests) - startsAt;
      const written = writtenBy(bytes);
      const putCount = uploadPuts(written) + 1;
      const putBound = puts.serve(startsAt, putCount) - startsAt;
      const durationMs =
        Math.max(latencyBound, rateBound) +
        (bytes / (M.readMBps * MB) + bytes / (M.mergeMBps * MB)) * 1000 +
        Math.max(putBound, (written / (M.writeMBps * MB)) * 1000) +
        MODEL.putLatencyMs;
      partitionRequests.get += requests;
      partitionRequests.put += putCount;
      return { durationMs, get: requests, put: putCount };
    },
    written(task: PartitionTask) {
      const bytes = task.sources.reduce((sum, s) => sum + s.end - s.start, 0);
      const written = Math.round(writtenBy(bytes));
      store.seed(keys.partitionOutcome(task.index), {
        index: task.index,
        attempt: task.attempt,
        part: { key: keys.partitionPart(task.index, task.attempt), bytes: written, etag: '"p"' },
        first: task.first,
        end: task.end,
        keys: 0,
        bytesRead: bytes,
        durationMs: 0,
      });
    },
  };
  // The reducer: a sort's parts composed by S3 (UploadPartCopy, a few in flight); a group-by's
  // parts merged by key into one object, streamed through the reducer.
  const reducer = noRequests();
  let assemblyMs = 0;
  let resultBytes = 0;
  lambda.onReduce = async () => {
    const manifest = JSON.parse(
      new TextDecoder().decode(store.peek(keys.manifest) ?? new Uint8Array()),
    ) as { partitions?: unknown[] };
    const parts = manifest.partitions?.length ?? 0;
    resultBytes = sorting ? M.inputBytes : M.groupKeys * M.runLineBytes;
    assemblyMs = sorting
      ? Math.ceil(parts / M.copiesInFlight) * ((resultBytes / parts / (M.copyMBps * MB)) * 1000)
      : (resultBytes / (M.readMBps * MB) + resultBytes / (M.mergeMBps * MB)) * 1000;
    reducer.get += sorting ? 0 : parts * Math.ceil(resultBytes / parts / (64 * 1024));
    reducer.put += sorting ? parts + 2 : uploadPuts(resultBytes);
    await time.sleep(assemblyMs);
  };
  const job = sorting
    ? defineJob({ name: 'sim-sort', format: 'jsonl', map: (r) => r, orderBy: () => 0 })
    : defineJob({
        name: 'sim-groupby',
        format: 'jsonl',
        map: (r) => r,
        key: () => '',
        reduce: {
          init: () => 0,
          add: (n: number) => n + 1,
          merge: (a: number, b: number) => a + b,
        },
      });
  const request: JobRequest = {
    jobId,
    job: job.name,
    input: 's3://sim/datasets/terabyte.jsonl',
    params: {},
    chunks: M.chunks,
    concurrency: MODEL.accountConcurrency,
    onBadRecord: 'fail',
    // Backups would add attempts of their own: the request count is the plan's.
    speculation: false,
    createdAt: systemClock.iso(),
  };
  await seedJob(store, request);
  const before = { ...store.requests };
  let peakRss = process.memoryUsage().rss;
  let peakHeap = process.memoryUsage().heapUsed;
  const sampler = setInterval(() => {
    const now = process.memoryUsage();
    peakRss = Math.max(peakRss, now.rss);
    peakHeap = Math.max(peakHeap, now.heapUsed);
  }, 20);
  const started = performance.now();
  const final = await simulatedCoordinator(jobId, {
    store,
    lambda,
    time,
    jobs: createRegistry([job]),
    speculation: false,
  });
  clearInterval(sampler);
  const wallMs = performance.now() - started;
  const coordinator: Requests = {
    get: store.requests.get - before.get,
    put: store.requests.put - before.put,
    list: store.requests.list - before.list,
    head: store.requests.head - before.head,
  };
  const partitionDurations = lambda.partitionDurations;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const lanes = MODEL.accountConcurrency;
  const reduceGets = partitionRequests.get;
  // The bound: each stage's work spread over every sandbox (or its longest task), the reduce
  // stage's GETs at S3's rates over the prefixes, and the reducer's assembly after it.
  const mapBound = Math.max(sum(mapDurations) / lanes, Math.max(...mapDurations));
  const reduceWork = Math.max(sum(partitionDurations) / lanes, Math.max(...partitionDurations));
  const reduceRate = (reduceGets / (M.getsPerPrefix * M.prefixes)) * 1000;
  const lowerBoundMs = MODEL.coldStartMs + mapBound + Math.max(reduceWork, reduceRate) + assemblyMs;
  const map = { get: lambda.workerRequests.get, put: lambda.workerRequests.put, list: 0, head: 0 };
  const gbSeconds =
    ((sum(mapDurations) + sum(partitionDurations) + assemblyMs) / 1000) * (M.workerMemoryMb / 1024);
  const totalGets = coordinator.get + map.get + partitionRequests.get + reducer.get;
  const totalPuts = coordinator.put + map.put + partitionRequests.put + reducer.put;
  const usdParts = {
    lambda: gbSeconds * 0.0000133334 + lambda.invocations * 0.0000002,
    get: (totalGets * 0.0004) / 1000,
    put: (totalPuts * 0.005) / 1000,
  };
  const tb = M.inputBytes / 2 ** 40;
  return {
    dataset: sorting ? '1 TiB sort' : '1 TiB group-by (1e8 keys)',
    chunks: final.chunks.total,
    partitions: final.partitions?.total ?? 0,
    invocations: lambda.invocations,
    makespanMs: time.now,
    lowerBoundMs,
    bound: reduceRate > reduceWork ? 'S3 GET rate per prefix' : 'Lambda concurrency',
    throttles: lambda.throttles,
    requests: {
      coordinator,
      map,
      partitions: { ...partitionRequests, list: 0, head: 0 },
      reducer,
    },
    lambdaGbSeconds: Math.round(gbSeconds),
    usdPerTb: (usdParts.lambda + usdParts.get + usdParts.put) / tb,
    usdParts,
    peakRssMb: Math.round(peakRss / 1e6),
    storeMb: Math.round(store.docBytes() / 1e6),
    peakHeapMb: Math.round(peakHeap / 1e6),
    wallMs: Math.round(wallMs),
  };
}

/**
 * The outcome a map attempt writes, as the coordinator reads it: a group-by's run object with
 * its bucket offsets (the bytes spread evenly over the buckets, as a stable hash spreads many
 * keys), or a sort's run with its samples (uniform keys: the run's quantiles).
 */
function mapOutcome(
  task: ChunkTask,
  sorting: boolean,
  bytes: number,
  random: () => number,
): ChunkOutcome {
  const key = jobKeys(task.jobId).runs(task.index, task.attempt);
  let output: ChunkOutput;
  if (sorting) {
    const step = sampleStep(bytes);
    const count = Math.ceil(bytes / step);
    const lines = Math.round(bytes / (M.recordBytes * 1.1));
    const quantiles = Array.from({ length: count }, () => random()).sort((a, b) => a - b);
    const samples: SortSample[] = quantiles.map((q, i) => ({
      key: q,
      pos: Math.floor((i * lines) / count),
      offset: i * step,
    }));
    output = { kind: 'sorted', key, bytes, etag: '"r"', lines, keys: 'number', samples };
  } else {
    const buckets = task.buckets ?? 256;
    const offsets = Array.from({ length: buckets + 1 }, (_, b) =>
      Math.round((b * bytes) / buckets),
    );
    output = { kind: 'runs', key, bytes, etag: '"r"', offsets, keys: 0 };
  }
  return {
    index: task.index,
    attempt: task.attempt,
    bytes: task.segments.reduce((sum, s) => sum + s.end - s.start, 0),
    objects: task.segments.length,
    recordsIn: 0,
    recordsOut: 0,
    badRecords: { count: 0, samples: [] },
    bytesRead: 0,
    durationMs: 0,
    output,
  };
}
