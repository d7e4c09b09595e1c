/**
 * Powertools in the functions, on the local runtime with their logs shown (FANOUT_LOGS=1, fanout
 * dev): every worker line is JSON carrying the job id, chunk, attempt and the request id, and
 * metrics go out in CloudWatch's embedded metric format (namespace fanout).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalRuntime, startRuntime } from '#local/runtime.ts';
import { runJob } from '../../cli/run.ts';

const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
const lines: { fn: string; text: string }[] = [];
let runtime: LocalRuntime;

beforeAll(async () => {
  runtime = await startRuntime({
    log: (fn, text) => {
      for (const line of text.split('\n')) if (line.trim() !== '') lines.push({ fn, text: line });
    },
  });
});
afterAll(() => runtime?.close());

describe('logs and metrics', () => {
  it('logs JSON with jobId, chunk, attempt and request id, and emits EMF metrics', async () => {
    const result = await runJob(runtime, {
      job: 'by-field',
      input: 'examples/scientists.jsonl',
      chunks: 3,
      stderr: quiet,
    });
    const worker = lines
      .filter((l) => l.fn === runtime.functions.worker && l.text.startsWith('{'))
      .map((l) => JSON.parse(l.text) as Record<string, unknown>);
    // by-field is keyed: the worker function also runs its partition tasks, whose lines name
    // the partition instead of a chunk.
    const logs = worker.filter((l) => l.message !== undefined && l.partition === undefined);
    expect(logs.length).toBeGreaterThanOrEqual(3);
    for (const line of logs) {
      expect(line).toMatchObject({
        level: 'INFO',
        service: 'fanout',
        jobId: result.jobId,
        chunk: expect.any(Number),
        attempt: 1,
        function_request_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      });
    }
    const partitions = worker.filter((l) => l.message === 'partition done');
    expect(partitions).toHaveLength(result.status.partitions?.total ?? 0);
    for (const line of partitions) {
      expect(line).toMatchObject({
        jobId: result.jobId,
        partition: expect.any(Number),
        attempt: 1,
      });
    }
    const emf = worker.filter((l) => l._aws !== undefined);
    expect(emf.length).toBeGreaterThanOrEqual(3);
    expect(JSON.stringify(emf[0])).toContain('"Namespace":"fanout"');
    expect(emf[0]).toMatchObject({ ChunksSucceeded: 1, function: 'worker' });
    // The coordinator logs and flushes its metrics after the reducer has marked the job
    // SUCCEEDED (which is when runJob returns): wait for its lines.
    for (let i = 0; i < 100; i++) {
      if (
        lines.some(
          (l) => l.fn === runtime.functions.coordinator && l.text.includes('JobsSucceeded'),
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const coordinator = lines
      .filter((l) => l.fn === runtime.functions.coordinator && l.text.startsWith('{'))
      .map((l) => JSON.parse(l.text) as Record<string, unknown>);
    expect(coordinator.find((l) => l.message === 'job ended')).toMatchObject({
      jobId: result.jobId,
      status: 'SUCCEEDED',
    });
    expect(coordinator.some((l) => l._aws !== undefined && l.JobsSucceeded === 1)).toBe(true);
  });
});
