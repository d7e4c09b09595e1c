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
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { systemClock } from '#core/base/ports.ts';
import { mulberry32 } from '#core/base/random.ts';
import { segmentBytes } from '#core/data/plan.ts';
import type { ChunkOutcome, ChunkTask, JobRequest } from '#core/model/documents.ts';
import { createRegistry } from '#core/model/job.ts';
import { jobKeys } from '#core/model/keys.ts';
import { reduceJob } from '#core/reduce/reducer.ts';
import { byField } from '#jobs/by-field.ts';
import { bundleFunctions } from '#local/bundle.ts';
import { ms, type Report, rate, root, runIfMain } from './report.ts';
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
import { SHUFFLE_MODEL, type ShuffleResult, simulateShuffle } from './sim-shuffle.ts';

/**
 * The job the simulation runs: by-field as a one-accumulator reduce (without its key), the
 * shape these scenarios model: map chunks, then one reducer reading their outcomes. A keyed
 * job's shuffle is not in this model.
 */
const { key: _key, ...oneAccumulator } = byField;
const jobs = createRegistry([oneAccumulator]);

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
  await seedJob(store, request);
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
  // Backups only where the scenario is about them, so the other figures compare with earlier
  // runs.
  const final = await simulatedCoordinator(jobId, { store, lambda, time, jobs, speculation });
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
async function inChild<T = ScenarioResult>(scenario: Scenario | ShuffleScenario): Promise<T> {
  const { simulate } = await bundleFunctions({ simulate: fileURLToPath(import.meta.url) });
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', simulate as string, '--scenario', scenario],
    { cwd: root, maxBuffer: 1 << 22 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as T;
}

/** The shuffle scenarios (bench/sim-shuffle.ts), each in a process of its own too. */
const SHUFFLE_SCENARIOS = ['shuffle-groupby', 'shuffle-sort'] as const;
type ShuffleScenario = (typeof SHUFFLE_SCENARIOS)[number];

/** CloudSort's record: Exoshuffle on EC2, 2022, in dollars per TB sorted. */
const CLOUDSORT_USD_PER_TB = 0.97;

/** The shuffle scenarios' figures and notes, for bench 4's report. */
function shuffleFigures(results: ShuffleResult[]) {
  const figures: Record<string, string | number> = {};
  for (const r of results) {
    const all = (k: 'get' | 'put') =>
      r.requests.coordinator[k] +
      r.requests.map[k] +
      r.requests.partitions[k] +
      r.requests.reducer[k];
    figures[`${r.dataset}: makespan (model s)`] = Number((r.makespanMs / 1000).toFixed(1));
    figures[`${r.dataset}: makespan / bound (target ≤ 1.3)`] = Number(
      (r.makespanMs / r.lowerBoundMs).toFixed(4),
    );
    figures[`${r.dataset}: chunks / partitions / invocations`] =
      `${rate(r.chunks)} / ${rate(r.partitions)} / ${rate(r.invocations)}`;
    figures[`${r.dataset}: requests (GET, PUT)`] =
      `coordinator ${rate(r.requests.coordinator.get)}, ${rate(r.requests.coordinator.put)} (+${rate(r.requests.coordinator.list)} LIST); map ${rate(r.requests.map.get)}, ${rate(r.requests.map.put)}; partitions ${rate(r.requests.partitions.get)}, ${rate(r.requests.partitions.put)}; reducer ${rate(r.requests.reducer.get)}, ${rate(r.requests.reducer.put)}; all ${rate(all('get'))}, ${rate(all('put'))}`;
    figures[`${r.dataset}: $ per TB (goal ≤ 2; CloudSort record ${CLOUDSORT_USD_PER_TB})`] =
      `${r.usdPerTb.toFixed(2)} (Lambda ${r.usdParts.lambda.toFixed(2)}, GET ${r.usdParts.get.toFixed(2)}, PUT ${r.usdParts.put.toFixed(2)}; ${rate(r.lambdaGbSeconds)} GB-s)`;
    figures[`${r.dataset}: bound set by`] = r.bound;
    figures[`${r.dataset}: peak RSS / peak heap / simulated S3's documents (MB)`] =
      `${r.peakRssMb} / ${r.peakHeapMb} / ${r.storeMb}`;
  }
  return figures;
}

/** Runs the benchmark: both datasets, each in its own process. */
export async function run(): Promise<Report> {
  const results: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) results.push(await inChild(scenario));
  const shuffles: ShuffleResult[] = [];
  for (const scenario of SHUFFLE_SCENARIOS) shuffles.push(await inChild<ShuffleResult>(scenario));
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
      ...shuffleFigures(shuffles),
    },
    notes: [
      `model: ${JSON.stringify(MODEL)}`,
      'lower bound: every invocation occupies a sandbox for its latency plus its duration, at most 1,000 at once, and each sandbox pays one cold start; no schedule ends before its longest chunk either',
      'ideal first-free dispatcher: the same chunks, in order, each handed to the first sandbox to come free, with no dispatch cost — what a perfect coordinator that cannot know durations in advance achieves',
      "S3 requests: the coordinator's and the reducer's are counted as they happen (the reducer runs for real on the small objects only); the workers' are counted from their tasks: one GET per segment, one PUT for the outcome",
      "virtual time charges nothing for the coordinator's CPU; bench 3 measures that",
      `stragglers: ${rate(Number(process.env.BENCH_SIM_STRAGGLER_CHUNKS ?? 20_000))} chunks of 1 MiB asked for; a chunk takes ${MODEL.fixedMs} ms plus the rest of the median per MiB, times its log-normal draw, and ${MODEL.slowShare * 100}% of invocations run ${MODEL.slowFactor}x slower; their lower bound and ideal dispatcher use each chunk's duration had it not run slow (what backups can recover), so a run with backups can come close to it and one without cannot`,
      `shuffle: ${JSON.stringify(SHUFFLE_MODEL)}; both stages run by the real coordinator; a task's time is modelled from its bytes and these rates, its GETs served at S3's rate per prefix over the prefixes the shuffle objects use; the bound is each stage's work over 1,000 sandboxes (or its longest task, or its GETs at S3's rates), plus the reducer's assembly, plus a cold start; the price is Lambda GB-s and requests and S3 GETs and PUTs at us-east-1 arm64 list prices (LIST and the coordinator's own time left out)`,
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
  if ((SHUFFLE_SCENARIOS as readonly string[]).includes(name as string)) {
    const kind = name === 'shuffle-sort' ? 'sort' : 'groupby';
    process.stdout.write(`${JSON.stringify(await simulateShuffle(kind))}\n`);
    process.exit(0);
  }
  if (!(SCENARIOS as readonly string[]).includes(name as string)) {
    throw new Error(`unknown scenario ${name}`);
  }
  process.stdout.write(`${JSON.stringify(await simulate(name as Scenario))}\n`);
} else {
  await runIfMain(import.meta.url, run);
}
