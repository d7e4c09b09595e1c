/**
 * Benchmark 5, reduce: the real reducer (reduceJob) merging 10,000 by-field accumulators, and
 * concatenating 10,000 small map-only outputs in order, from an in-memory store — the merge and
 * concatenation cost alone; against S3 each chunk's outcome is a GET (16 in flight).
 */

import { systemClock } from '#core/base/ports.ts';
import type { ChunkOutcome, JobStatus, Manifest } from '#core/model/documents.ts';
import { jobKeys } from '#core/model/keys.ts';
import { writeJson } from '#core/model/status.ts';
import { reduceJob } from '#core/reduce/reducer.ts';
import { jobs } from '#jobs/index.ts';
import { MemoryStore } from '../test/fixtures/memory-store.ts';
import { FIELDS } from './gen.ts';
import { ms, type Report, rate, runIfMain } from './report.ts';

async function prepare(parts: number, mapOnly: boolean) {
  // Reads come in 64 KiB pieces, as from a socket (the test default of 7 bytes would measure
  // the fixture, not the reducer).
  const store = new MemoryStore({ pieceBytes: 64 * 1024 });
  const jobId = mapOnly ? 'zzzzreducemaponly' : 'zzzzreducebyfield';
  const keys = jobKeys(jobId);
  const manifest: Manifest = {
    jobId,
    job: mapOnly ? 'scientists' : 'by-field',
    params: { year: 2017 },
    format: 'jsonl',
    onBadRecord: 'fail',
    mapOnly,
    concurrency: 1000,
    recordSplit: false,
    objects: [{ bucket: 'b', key: 'datasets/x', size: parts, etag: '"x"', gzip: false }],
    chunks: Array.from({ length: parts }, (_, i) => ({
      index: i,
      object: 0,
      start: i,
      end: i + 1,
      attempts: 1,
    })),
  };
  await writeJson(store, 'b', keys.manifest, manifest);
  const status: JobStatus = {
    jobId,
    job: manifest.job,
    status: 'RUNNING',
    input: 's3://b/datasets/x',
    createdAt: systemClock.iso(),
    chunks: { total: parts, pending: 0, running: 0, succeeded: parts, failed: 0 },
    records: 0,
    bytes: 0,
  };
  await writeJson(store, 'b', keys.status, status);
  const line = '{"name":"Ada Lovelace","age":202}\n';
  for (let i = 0; i < parts; i++) {
    // A map-only chunk's small output and a reduce's accumulator both travel in the outcome.
    const output: ChunkOutcome['output'] = mapOnly
      ? { kind: 'inline', text: line.repeat(20) }
      : {
          kind: 'acc',
          value: Object.fromEntries(
            FIELDS.map((f, k) => [f, { count: 100 + k, nobels: 10, ageSum: 20_000 + i }]),
          ),
        };
    const outcome: ChunkOutcome = {
      index: i,
      attempt: 1,
      bytes: 1,
      objects: 1,
      recordsIn: 20,
      recordsOut: 20,
      badRecords: { count: 0, samples: [] },
      bytesRead: 1,
      durationMs: 1,
      output,
    };
    await writeJson(store, 'b', keys.outcome(i), outcome);
  }
  return { store, jobId };
}

/** Runs the benchmark. */
export async function run(parts = 10_000): Promise<Report> {
  const rows: (string | number)[][] = [];
  const figures: Record<string, number> = {};
  for (const mapOnly of [false, true]) {
    const { store, jobId } = await prepare(parts, mapOnly);
    const started = performance.now();
    const status = await reduceJob(jobId, { store, jobs, clock: systemClock, bucket: 'b' });
    const elapsed = performance.now() - started;
    const label = mapOnly ? 'map-only concatenation' : 'by-field merge';
    rows.push([label, ms(elapsed), rate(parts / (elapsed / 1000)), status.result?.bytes ?? 0]);
    figures[`${label} ms${mapOnly ? '' : ' (target ≤ 2000)'}`] = ms(elapsed);
  }
  return {
    name: 'reduce',
    title: `5. Reduce: ${rate(parts)} parts through the real reducer (in-memory store)`,
    columns: ['reduce', 'ms', 'parts/s', 'result bytes'],
    rows,
    figures,
    notes: [
      "in-memory store: the reducer's own cost; on S3 every part is also a GET, 16 in flight",
    ],
  };
}

await runIfMain(import.meta.url, run);
