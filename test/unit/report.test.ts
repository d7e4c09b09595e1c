/**
 * The job report's pure parts: every attempt becomes one bar of the right kind, and text from a
 * job (names, inputs, error messages) cannot inject markup into the page.
 */
import { describe, expect, it } from 'vitest';
import type { ChunkOutcome, JobStatus, Manifest } from '#core/model/documents.ts';
import { attemptBars, renderReport } from '#core/report/report.ts';

const status: JobStatus = {
  jobId: 'zzzz0000report01',
  job: 'by-field',
  status: 'FAILED',
  input: 's3://b/datasets/<script>alert(1)</script>.jsonl',
  createdAt: '2026-12-02T10:00:00.000Z',
  startedAt: '2026-12-02T10:00:00.100Z',
  chunks: { total: 2, pending: 0, running: 0, succeeded: 1, failed: 1 },
  records: 10,
  bytes: 100,
  error: { code: 'CHUNK_FAILED', name: 'FanoutError', message: 'bad <b>record</b>' },
};
const t = Date.parse('2026-12-02T10:00:00.100Z');
const manifest = {
  chunks: [
    {
      index: 0,
      object: 0,
      start: 0,
      end: 50,
      attempts: 2,
      failures: [{ attempt: 1, dispatchedAt: t, endedAt: t + 20, error: 'boom' }],
    },
    {
      index: 1,
      object: 0,
      start: 50,
      end: 100,
      attempts: 3,
      failures: [
        { attempt: 1, dispatchedAt: t, endedAt: t + 5, throttled: true },
        {
          attempt: 1,
          dispatchedAt: t + 10,
          endedAt: t + 30,
          error: '<img src=x onerror=alert(1)>',
        },
      ],
      failed: true,
    },
  ],
  params: {},
  concurrency: 2,
} as unknown as Manifest;
const outcome = {
  index: 0,
  attempt: 2,
  bytes: 50,
  objects: 1,
  recordsIn: 10,
  recordsOut: 10,
  badRecords: { count: 0, samples: [] },
  bytesRead: 60,
  durationMs: 40,
  output: { kind: 'acc', value: {} },
  run: {
    startedAt: t + 25,
    endedAt: t + 65,
    coldStart: true,
    sandbox: 'abc',
    billedMs: 300,
    memoryMb: 1769,
  },
} as ChunkOutcome;

describe('the job report', () => {
  it('draws one bar per attempt, of the right kind', () => {
    const bars = attemptBars({ status, manifest, outcomes: [outcome, undefined] });
    expect(bars.map((b) => [b.chunk, b.attempt, b.kind])).toEqual([
      [0, 1, 'failed'],
      [0, 2, 'retried'],
      [1, 1, 'throttled'],
      [1, 1, 'failed'],
    ]);
    const runs = [
      {
        role: 'coordinator' as const,
        epoch: 1,
        startedAt: new Date(t - 50).toISOString(),
        endedAt: new Date(t + 90).toISOString(),
        billedMs: 140,
        memoryMb: 1024,
      },
      {
        role: 'reducer' as const,
        startedAt: new Date(t + 70).toISOString(),
        endedAt: new Date(t + 90).toISOString(),
        billedMs: 20,
        memoryMb: 1769,
      },
    ];
    const html = renderReport({
      status: { ...status, runs },
      manifest,
      outcomes: [outcome, undefined],
    });
    expect(html.match(/<rect class="attempt /g)).toHaveLength(4);
    // The coordinator and reducer runs get rows of their own, not counted as attempts.
    expect(html.match(/<rect class="run run-(coordinator|reducer)"/g)).toHaveLength(2);
    expect(html).toContain('>coordinator</text>');
    expect(html).toContain('coordinator (epoch 1): 140 ms at 1024 MB');
  });

  it('draws a chunk made from the cache with no worker in a colour and row of its own', () => {
    const reused = {
      ...outcome,
      attempt: 1,
      run: undefined,
      reused: { segments: 7, chunk: true, startedAt: t + 5, endedAt: t + 9 },
    } as ChunkOutcome;
    const partly = { ...outcome, reused: { segments: 3 } } as ChunkOutcome;
    const input = { status, manifest: { ...manifest, chunks: [] } as unknown as Manifest };
    const both = {
      ...input,
      manifest: {
        ...manifest,
        chunks: manifest.chunks.map((c) => ({ ...c, failures: [], failed: false })),
      } as Manifest,
      outcomes: [reused, partly],
    };
    const bars = attemptBars(both);
    expect(bars.map((b) => [b.chunk, b.kind, b.sandbox])).toEqual([
      [0, 'reused', 'from the cache (no worker)'],
      [1, 'retried', 'abc'],
    ]);
    expect(bars[1]?.label).toContain('3 pieces from the cache');
    expect(renderReport(both)).toContain('attempt attempt-reused');
  });

  it('draws a backup that won, and the original it beat, still running at the end', () => {
    const raced = {
      ...manifest,
      chunks: [
        {
          ...manifest.chunks[0]!,
          failures: [],
          backups: 1,
          backupWon: true,
          lost: [{ attempt: 1, dispatchedAt: t }],
        },
      ],
    } as Manifest;
    const finishedAt = new Date(t + 500).toISOString();
    const input = { status: { ...status, finishedAt }, manifest: raced, outcomes: [outcome] };
    const bars = attemptBars(input);
    expect(bars.map((b) => [b.attempt, b.kind, b.end - t])).toEqual([
      [1, 'lost', 500], // drawn to the job's end: it had not ended when the coordinator stopped
      [2, 'backup', 65],
    ]);
    const html = renderReport(input);
    expect(html).toContain('1 backup attempts for straggling chunks, 1 of them won');
    expect(html).toMatch(/attempt 1: lost, another attempt&#39;s outcome was written first/);
  });

  it("shows a sorted job's ranges: each one's first key, records and bytes written", () => {
    const sorted = {
      ...manifest,
      sorted: {},
      partitions: [
        {
          index: 0,
          attempts: 1,
          first: 0,
          end: 1,
          range: { to: { key: 'hot', chunk: 2, pos: 9 } },
        },
        {
          index: 1,
          attempts: 1,
          first: 1,
          end: 2,
          range: { from: { key: 'hot', chunk: 2, pos: 9 } },
        },
      ],
    };
    const part = (index: number, bytes: number) => ({
      index,
      attempt: 1,
      part: { key: `p${index}`, bytes, etag: 'e' },
      first: index,
      end: index + 1,
      keys: 1000,
      bytesRead: bytes + 100,
      durationMs: 5,
    });
    const html = renderReport({
      status,
      manifest: sorted,
      outcomes: [outcome, undefined],
      partitions: [part(0, 1_500_000), part(1, 2_000_000)],
    });
    expect(html).toContain('2 partition tasks of the sort (ranges of the order).');
    expect(html).toContain('<th>from key</th><th>records</th><th>MB read</th><th>MB written</th>');
    expect(html).toContain('<tr><td>0</td><td>start</td><td>1,000</td><td>1.50</td><td>1.50</td>');
    expect(html).toContain(
      '<tr><td>1</td><td>&quot;hot&quot;</td><td>1,000</td><td>2.00</td><td>2.00</td>',
    );
  });

  it("shows a keyed job's partitions: buckets, keys, bytes, time, and their errors", () => {
    const partitioned = {
      ...manifest,
      keyed: { buckets: 4 },
      partitions: [
        { index: 0, attempts: 1, first: 0, end: 2 },
        {
          index: 1,
          attempts: 2,
          first: 2,
          end: 4,
          failures: [{ attempt: 1, dispatchedAt: t, endedAt: t + 5, error: 'boom' }],
        },
      ],
    };
    const html = renderReport({
      status,
      manifest: partitioned,
      outcomes: [outcome, undefined],
      partitions: [
        {
          index: 0,
          attempt: 1,
          part: { key: 'p0', bytes: 10, etag: 'e' },
          first: 0,
          end: 2,
          keys: 1234,
          bytesRead: 2_500_000,
          durationMs: 321,
        },
        undefined,
      ],
    });
    expect(html).toContain(
      '2 partition tasks of the keyed shuffle. Shuffled bytes per partition: 2.50–2.50 MB.',
    );
    expect(html).toContain(
      '<tr><td>0</td><td>0–1</td><td>1,234</td><td>2.50</td><td>0.00</td><td>321</td><td>1</td></tr>',
    );
    expect(html).toContain(
      '<td>2–3</td><td></td><td></td><td></td><td></td><td>not done (2 attempts)</td>',
    );
    expect(html).toContain('partition 1 attempt 1: boom');
    expect(renderReport({ status, manifest, outcomes: [outcome, undefined] })).not.toContain(
      'Partitions',
    );
  });

  it('escapes what a job wrote, so nothing runs in the page', () => {
    const html = renderReport({ status, manifest, outcomes: [outcome, undefined] });
    expect(html).not.toMatch(/<script|<img|<b>/);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('not estimated (the job has not ended)');
  });
});
