/**
 * The job report: one self-contained HTML page (inline SVG and CSS, no script, no fetch), so it
 * opens offline and straight from S3. It shows a timeline (a row per sandbox, a bar per attempt,
 * coloured by outcome), concurrency and throughput over time, a histogram of chunk durations,
 * the slowest chunks, every error, the cost and the job's parameters. Hand-drawn SVG: five
 * simple charts do not earn a charting library's weight in every report.
 */

import { orderedMap } from '../base/parallel.ts';
import type { ObjectStore } from '../base/ports.ts';
import {
  type ChunkOutcome,
  chunkPlace,
  describePlace,
  type FailedAttempt,
  type FunctionRun,
  type JobRequest,
  type JobStatus,
  type Manifest,
  type ManifestChunk,
  type PartitionOutcome,
  type TaskRecord,
} from '../model/documents.ts';
import { jobKeys } from '../model/keys.ts';
import { readJson } from '../model/status.ts';

/** What a report is made of. */
export interface ReportInput {
  status: JobStatus;
  request?: JobRequest;
  manifest?: Manifest;
  /** By chunk index; undefined for a chunk without an outcome. */
  outcomes: (ChunkOutcome | undefined)[];
  /** A keyed job's partition outcomes, by index; undefined for one without an outcome. */
  partitions?: (PartitionOutcome | undefined)[];
}

/** One bar of the timeline. */
export interface AttemptBar {
  chunk: number;
  attempt: number;
  start: number;
  end: number;
  sandbox: string;
  kind: 'ok' | 'cold' | 'retried' | 'backup' | 'lost' | 'failed' | 'throttled' | 'split' | 'reused';
  label: string;
}

/**
 * Reads what a report needs: status (unless the caller has just read it), request, manifest and
 * every outcome (16 at a time).
 */
export async function loadReport(
  store: ObjectStore,
  bucket: string,
  jobId: string,
  known?: JobStatus,
): Promise<ReportInput> {
  const keys = jobKeys(jobId);
  const optional = <T>(key: string) =>
    readJson<T>(store, bucket, key).then(
      (r) => r.value,
      () => undefined,
    );
  const [status, request, manifest] = await Promise.all([
    known ?? readJson<JobStatus>(store, bucket, keys.status).then((r) => r.value),
    optional<JobRequest>(keys.job),
    optional<Manifest>(keys.manifest),
  ]);
  const count = manifest?.chunks.length ?? 0;
  const outcomes: (ChunkOutcome | undefined)[] = [];
  for await (const o of orderedMap(count, 16, (i) => optional<ChunkOutcome>(keys.outcome(i)))) {
    outcomes.push(o);
  }
  const partitions: (PartitionOutcome | undefined)[] = [];
  const reading = manifest?.partitions?.length ?? 0;
  for await (const p of orderedMap(reading, 16, (r) =>
    optional<PartitionOutcome>(keys.partitionOutcome(r)),
  )) {
    partitions.push(p);
  }
  return {
    status,
    outcomes,
    ...(reading > 0 && { partitions }),
    ...(request && { request }),
    ...(manifest && { manifest }),
  };
}

/**
 * Every attempt with its times: successful ones from outcomes, the others from the manifest. An
 * attempt that lost a backup race and still ran when the coordinator stopped is drawn to the
 * job's end.
 */
export function attemptBars(input: ReportInput): AttemptBar[] {
  const bars: AttemptBar[] = [];
  const jobEnd = Date.parse(input.status.finishedAt ?? '') || Date.now();
  for (const chunk of input.manifest?.chunks ?? []) {
    for (const l of chunk.lost ?? []) {
      bars.push({
        chunk: chunk.index,
        attempt: l.attempt,
        start: l.dispatchedAt,
        end: Math.max(l.endedAt ?? jobEnd, l.dispatchedAt + 1),
        sandbox: 'lost attempts',
        kind: 'lost',
        label: `chunk ${chunk.index} attempt ${l.attempt}${l.backup ? ' (backup)' : ''}: lost, another attempt's outcome was written first${l.endedAt === undefined ? '; still running when the job ended' : ''}`,
      });
    }
    // A split chunk's last failed attempt is the one that ran out of memory or time.
    const splitBy = chunk.split === undefined ? undefined : lastFailure(chunk);
    for (const f of chunk.failures ?? []) {
      const split = f === splitBy;
      bars.push({
        chunk: chunk.index,
        attempt: f.attempt,
        start: f.dispatchedAt,
        end: Math.max(f.endedAt, f.dispatchedAt + 1),
        sandbox: f.throttled
          ? 'throttled (no sandbox)'
          : split
            ? 'split (out of memory or time)'
            : 'failed attempts',
        kind: f.throttled ? 'throttled' : split ? 'split' : 'failed',
        label: `chunk ${chunk.index} attempt ${f.attempt}: ${f.throttled ? 'throttled' : (f.error ?? 'failed')}${split ? `; split into chunks ${chunk.split?.join(' and ')}` : ''}`,
      });
    }
    const run = input.outcomes[chunk.index]?.run;
    const outcome = input.outcomes[chunk.index];
    const reused = outcome?.reused;
    if (outcome !== undefined && reused?.startedAt !== undefined) {
      bars.push({
        chunk: chunk.index,
        attempt: outcome.attempt,
        start: reused.startedAt,
        end: Math.max(reused.endedAt ?? reused.startedAt, reused.startedAt + 1),
        sandbox: 'from the cache (no worker)',
        kind: 'reused',
        label: `chunk ${chunk.index}: made from the cache by the coordinator, no worker: ${reused.segments} pieces, ${outcome.recordsIn} records`,
      });
    }
    if (outcome !== undefined && run !== undefined) {
      bars.push({
        chunk: chunk.index,
        attempt: outcome.attempt,
        start: run.startedAt,
        end: Math.max(run.endedAt, run.startedAt + 1),
        sandbox: run.sandbox,
        kind:
          chunk.backupWon === true
            ? 'backup'
            : outcome.attempt > 1
              ? 'retried'
              : run.coldStart
                ? 'cold'
                : 'ok',
        label: `chunk ${chunk.index} attempt ${outcome.attempt}${chunk.backupWon === true ? ' (backup, won)' : ''}: ${outcome.durationMs} ms, ${outcome.recordsIn} records${reused === undefined || reused.segments === 0 ? '' : `, ${reused.segments} pieces from the cache`}${run.coldStart ? ', cold start' : ''}${run.dispatchedAt === undefined ? '' : `, queued ${run.startedAt - run.dispatchedAt} ms`}`,
      });
    }
  }
  return bars;
}

/** A task's last attempt that failed (not throttled). */
function lastFailure(record: TaskRecord): FailedAttempt | undefined {
  return (record.failures ?? []).filter((f) => !f.throttled).at(-1);
}

const COLOURS: Record<AttemptBar['kind'], string> = {
  ok: '#3b8f3b',
  cold: '#2b6cb0',
  retried: '#d69e2e',
  backup: '#0f9e9e',
  lost: '#a0aec0',
  failed: '#c53030',
  throttled: '#805ad5',
  split: '#dd6b20',
  reused: '#d53f8c',
};

const esc = (text: unknown) =>
  String(text).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const W = 960;

/** A timeline: one row per sandbox, one bar per attempt. */
/** A coordinator's or reducer's run on the timeline, in ms since the epoch. */
type RunSpan = Pick<FunctionRun, 'role' | 'epoch' | 'memoryMb'> & { start: number; end: number };

/** A run's time in ms: an ISO time, or ms as statuses before ISO times recorded them. */
const msOf = (time: string | number) => (typeof time === 'number' ? time : Date.parse(time));

function timeline(bars: AttemptBar[], runs: RunSpan[], t0: number, span: number): string {
  const rows = [
    ...runs.map((r) => r.role),
    ...bars.sort((a, b) => a.start - b.start).map((b) => b.sandbox),
  ].filter((r, i, all) => all.indexOf(r) === i);
  const rowH = 16;
  const left = 150;
  const x = (t: number) => left + ((t - t0) / span) * (W - left - 10);
  const height = rows.length * rowH + 30;
  const body = bars
    .map((b) => {
      const y = rows.indexOf(b.sandbox) * rowH + 4;
      return `<rect class="attempt attempt-${b.kind}" data-chunk="${b.chunk}" data-attempt="${b.attempt}" x="${x(b.start).toFixed(1)}" y="${y}" width="${Math.max(1, x(b.end) - x(b.start)).toFixed(1)}" height="${rowH - 4}" fill="${COLOURS[b.kind]}"><title>${esc(b.label)}</title></rect>`;
    })
    .join('');
  // The coordinator and reducer runs, in their own rows above the sandboxes.
  const functionRuns = runs
    .map((r) => {
      const y = rows.indexOf(r.role) * rowH + 4;
      const label = `${r.role}${r.epoch === undefined ? '' : ` (epoch ${r.epoch})`}: ${fmt(r.end - r.start)} ms at ${r.memoryMb} MB`;
      return `<rect class="run run-${r.role}" x="${x(r.start).toFixed(1)}" y="${y}" width="${Math.max(1, x(r.end) - x(r.start)).toFixed(1)}" height="${rowH - 4}" fill="#a0aec0"><title>${esc(label)}</title></rect>`;
    })
    .join('');
  const labels = rows
    .map((r, i) => `<text x="4" y="${i * rowH + 15}" class="axis">${esc(r)}</text>`)
    .join('');
  return `<svg class="chart timeline" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}">${labels}${functionRuns}${body}${axis(left, height - 12, span)}</svg>`;
}

function axis(left: number, y: number, span: number): string {
  return [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const xPos = left + f * (W - left - 10);
      return `<text x="${xPos.toFixed(0)}" y="${y + 10}" class="axis" text-anchor="middle">${fmt((f * span) / 1000, 2)} s</text>`;
    })
    .join('');
}

/** A step line of values sampled at `n` points over the span. */
function series(values: number[], label: string, unit: string, span: number): string {
  const h = 120;
  const left = 150;
  const max = Math.max(1, ...values);
  const step = (W - left - 10) / values.length;
  const bars = values
    .map(
      (v, i) =>
        `<rect x="${(left + i * step).toFixed(1)}" y="${(h - (v / max) * (h - 10)).toFixed(1)}" width="${Math.max(1, step - 1).toFixed(1)}" height="${((v / max) * (h - 10)).toFixed(1)}" fill="#4a5568"><title>${fmt(v, 1)} ${unit}</title></rect>`,
    )
    .join('');
  return `<svg class="chart" width="${W}" height="${h + 24}" viewBox="0 0 ${W} ${h + 24}"><text x="4" y="14" class="axis">${esc(label)}</text><text x="4" y="30" class="axis">max ${fmt(max, 1)} ${unit}</text>${bars}${axis(left, h + 2, span)}</svg>`;
}

/** Renders the report. */
export function renderReport(input: ReportInput): string {
  const { status, manifest, request } = input;
  const bars = attemptBars(input);
  const runs: RunSpan[] = (status.runs ?? []).map((r) => ({
    role: r.role,
    ...(r.epoch !== undefined && { epoch: r.epoch }),
    memoryMb: r.memoryMb,
    start: msOf(r.startedAt),
    end: msOf(r.endedAt),
  }));
  const t0 = Math.min(
    ...bars.map((b) => b.start),
    ...runs.map((r) => r.start),
    Date.parse(status.startedAt ?? status.createdAt),
  );
  const tEnd = Math.max(...bars.map((b) => b.end), ...runs.map((r) => r.end), t0 + 1);
  const span = tEnd - t0;
  const slots = 60;
  const slot = span / slots;
  const concurrency = Array.from({ length: slots }, (_, i) => {
    const at = t0 + (i + 0.5) * slot;
    return bars.filter((b) => b.kind !== 'throttled' && b.start <= at && at < b.end).length;
  });
  const throughput = new Array<number>(slots).fill(0);
  for (const b of bars) {
    // Only the attempt whose outcome counted read records for the job.
    const records =
      b.kind === 'failed' || b.kind === 'throttled' || b.kind === 'lost'
        ? 0
        : (input.outcomes[b.chunk]?.recordsIn ?? 0);
    for (let i = 0; i < slots; i++) {
      const from = Math.max(b.start, t0 + i * slot);
      const to = Math.min(b.end, t0 + (i + 1) * slot);
      if (to > from)
        throughput[i] =
          (throughput[i] as number) + (records * (to - from)) / (b.end - b.start) / (slot / 1000);
    }
  }
  const durations = input.outcomes.flatMap((o) => (o === undefined ? [] : [o.durationMs]));
  const maxD = Math.max(1, ...durations);
  const bins = 20;
  const histogram = new Array<number>(bins).fill(0);
  for (const d of durations) {
    const bin = Math.min(bins - 1, Math.floor((d / maxD) * bins));
    histogram[bin] = (histogram[bin] as number) + 1;
  }
  const slowest = input.outcomes
    .flatMap((o) => (o === undefined ? [] : [o]))
    .sort((a, b) => b.durationMs - a.durationMs)
    .slice(0, 10);
  const errors = [
    ...(manifest?.chunks ?? []).flatMap((c) =>
      (c.failures ?? [])
        .filter((f) => !f.throttled)
        .map((f) => `chunk ${c.index} attempt ${f.attempt}: ${f.error ?? 'failed'}`),
    ),
    ...(manifest?.partitions ?? []).flatMap((p) =>
      (p.failures ?? [])
        .filter((f) => !f.throttled)
        .map((f) => `partition ${p.index} attempt ${f.attempt}: ${f.error ?? 'failed'}`),
    ),
    ...(status.error ? [`job: ${status.error.code}: ${status.error.message}`] : []),
  ];
  const backups = (manifest?.chunks ?? []).reduce(
    (sum, c) => ({
      started: sum.started + (c.backups ?? 0),
      won: sum.won + (c.backupWon === true ? 1 : 0),
    }),
    { started: 0, won: 0 },
  );
  const cost = status.cost;
  const row = (k: string, v: unknown) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`;
  const legend = (Object.keys(COLOURS) as AttemptBar['kind'][])
    .map(
      (k) =>
        `<span class="key"><i style="background:${COLOURS[k]}"></i>${k === 'cold' ? 'cold start' : k}</span>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fanout job ${esc(status.jobId)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1a202c;max-width:${W + 40}px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0;vertical-align:top}
th{font-weight:600}.axis{font-size:11px;fill:#4a5568}.key{margin-right:14px}
.key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.status-SUCCEEDED{color:#276749}.status-FAILED{color:#c53030}.chart{display:block}
code{font-size:12px}
</style></head><body>
<h1>fanout job <code>${esc(status.jobId)}</code>: ${esc(status.job)} <span class="status-${esc(status.status)}">${esc(status.status)}</span></h1>
<p>${fmt(status.records)} records, ${fmt(status.bytes / 1e6, 1)} MB, ${status.chunks.total} chunks, ${bars.length} attempts over ${fmt(span / 1000, 2)} s${backups.started > 0 ? `; ${backups.started} backup attempts for straggling chunks, ${backups.won} of them won` : ''}.</p>
<h2>Timeline</h2><p>${legend}</p>
${timeline(bars, runs, t0, span)}
<h2>Concurrency</h2>
${series(concurrency, 'attempts running', 'running', span)}
<h2>Throughput</h2>
${series(throughput, 'records per second', 'records/s', span)}
<h2>Chunk durations</h2>
<svg class="chart histogram" width="${W}" height="144" viewBox="0 0 ${W} 144">${histogram
    .map((n, i) => {
      const max = Math.max(1, ...histogram);
      const w = (W - 160) / bins;
      return `<rect x="${(150 + i * w).toFixed(1)}" y="${(120 - (n / max) * 110).toFixed(1)}" width="${(w - 2).toFixed(1)}" height="${((n / max) * 110).toFixed(1)}" fill="#2b6cb0"><title>${n} chunks of ${fmt((i * maxD) / bins)}–${fmt(((i + 1) * maxD) / bins)} ms</title></rect>`;
    })
    .join(
      '',
    )}<text x="150" y="138" class="axis">0 ms</text><text x="${W - 10}" y="138" class="axis" text-anchor="end">${fmt(maxD)} ms</text></svg>
<h2>Slowest chunks</h2>
<table class="slowest"><tr><th>chunk</th><th>ms</th><th>records</th><th>MB</th><th>attempt</th></tr>${slowest
    .map(
      (o) =>
        `<tr><td>${o.index}</td><td>${fmt(o.durationMs)}</td><td>${fmt(o.recordsIn)}</td><td>${fmt(o.bytes / 1e6, 2)}</td><td>${o.attempt}</td></tr>`,
    )
    .join('')}</table>
${splitsSection(input)}${partitionsSection(input)}<h2>Errors</h2>
${errors.length === 0 ? '<p class="errors">none</p>' : `<ul class="errors">${errors.map((e) => `<li>${esc(e)}</li>`).join('')}</ul>`}
<h2>Cost</h2>
${
  cost === undefined
    ? '<p class="cost">not estimated (the job has not ended)</p>'
    : `<table class="cost">${row('total', `$${cost.usd}`)}${row('Lambda', `${fmt(cost.lambdaGbSeconds, 3)} GB-s, ${fmt(cost.lambdaRequests)} requests`)}${row('S3', `${fmt(cost.s3Requests.get)} GET, ${fmt(cost.s3Requests.put)} PUT, ${fmt(cost.s3Requests.list)} LIST`)}${row('API', `${fmt(cost.apiRequests)} requests`)}${row('prices', cost.prices)}</table>`
}
<h2>Parameters</h2>
<table class="params">${row('job', status.job)}${row('input', status.input)}${row('params', JSON.stringify(manifest?.params ?? request?.params ?? {}))}${row('concurrency', manifest?.concurrency ?? request?.concurrency ?? '')}${row('chunks', status.chunks.total)}${row('chunk size', manifest?.chunkSize ?? request?.chunkSize ?? 'default')}${row('on bad record', manifest?.onBadRecord ?? request?.onBadRecord ?? '')}${row('backups for stragglers', request?.speculation === false ? 'off' : 'on')}${row('guided tail', request?.guidedTail === true ? 'on' : 'off')}${row('created', status.createdAt)}${row('started', status.startedAt ?? '')}${row('finished', status.finishedAt ?? '')}${row('epoch / resumes / redrives', `${status.epoch ?? 0} / ${status.resumes ?? 0} / ${status.redrives ?? 0}`)}</table>
</body></html>
`;
}

/**
 * A keyed or sorted job's partitions: how the shuffled bytes and keys (a sort's records) fell to
 * each, which is what a skewed key would show, and each one's time and winning attempt. Empty
 * for other jobs, and for a small shuffle the reducer merged itself.
 */
/**
 * The chunks split after running out of memory or time: where each lay, why, and its parts
 * (which may be split in turn, each with a row of its own).
 */
function splitsSection(input: ReportInput): string {
  const manifest = input.manifest;
  if (manifest === undefined) return '';
  const chunkPlaceOf = (c: ManifestChunk) => esc(describePlace(chunkPlace(c, manifest.objects)));
  const bucketsOf = (p: { first: number; end: number }) => `buckets ${p.first}–${p.end - 1}`;
  const rows = [
    ...splitRows('chunk', manifest.chunks, chunkPlaceOf),
    ...splitRows('partition', manifest.partitions ?? [], bucketsOf),
  ];
  if (rows.length === 0) return '';
  return `<h2>Splits</h2>
<p class="splits">${rows.length} task(s) ran out of memory or time and were split in two instead of retried as they were.</p>
<table class="splits"><tr><th>task</th><th>what it read</th><th>why</th><th>into</th></tr>${rows.join('')}</table>
`;
}

/** A row per split task of one kind: where it lay, why it was split, and its parts. */
function splitRows<T extends TaskRecord>(
  kind: string,
  records: readonly T[],
  place: (record: T) => string,
): string[] {
  return records
    .filter((r) => r.split !== undefined)
    .map((r) => {
      const parts = (r.split ?? []).map((i) => {
        const part = records[i];
        return part === undefined ? `${i}` : `${kind} ${i} (${place(part)})`;
      });
      return `<tr><td>${kind} ${r.index}</td><td>${place(r)}</td><td>${esc(lastFailure(r)?.error ?? '')}</td><td>${parts.join('<br>')}</td></tr>`;
    });
}

function partitionsSection(input: ReportInput): string {
  const records = input.manifest?.partitions ?? [];
  if (records.length === 0) return '';
  const sorted = input.manifest?.sorted !== undefined;
  // A range's first key (its first 40 characters: a key may be 64 KiB long).
  const from = (p: (typeof records)[number]) => {
    if (p.range?.from === undefined) return 'start';
    const key = JSON.stringify(p.range.from.key);
    return esc(key.length > 40 ? `${key.slice(0, 40)}…` : key);
  };
  const rows = records.map((p) => {
    const o = input.partitions?.[p.index];
    return `<tr><td>${p.index}</td><td>${sorted ? from(p) : `${p.first}–${p.end - 1}`}</td><td>${o === undefined ? '' : fmt(o.keys)}</td><td>${o === undefined ? '' : fmt(o.bytesRead / 1e6, 2)}</td><td>${o === undefined ? '' : fmt(o.part.bytes / 1e6, 2)}</td><td>${o === undefined ? '' : fmt(o.durationMs)}</td><td>${o?.attempt ?? (p.split === undefined ? `not done (${p.attempts} attempts)` : `split into ${p.split.join(' and ')}`)}</td></tr>`;
  });
  const sizes = (input.partitions ?? []).flatMap((o) => (o === undefined ? [] : [o.bytesRead]));
  const spread =
    sizes.length === 0
      ? ''
      : ` Shuffled bytes per partition: ${fmt(Math.min(...sizes) / 1e6, 2)}–${fmt(Math.max(...sizes) / 1e6, 2)} MB.`;
  return `<h2>Partitions</h2>
<p class="partitions">${records.length} partition tasks of the ${sorted ? 'sort (ranges of the order)' : 'keyed shuffle'}.${spread}</p>
<table class="partitions"><tr><th>partition</th><th>${sorted ? 'from key' : 'buckets'}</th><th>${sorted ? 'records' : 'keys'}</th><th>MB read</th><th>MB written</th><th>ms</th><th>attempt</th></tr>${rows.join('')}</table>
`;
}
