/** The lane pool: the "process pool" that runs the tasks left, with ramp-up and stop rules. */
import { describe, expect, it } from 'vitest';
import { FunctionError } from '#core/base/errors.ts';
import { LanePool, type LaneSettings } from '#core/run/engine/lanes.ts';
import { TaskRunner } from '#core/run/engine/runner.ts';
import { contextOf, kindOf, ManualClock, ScriptedInvoker, settle } from '../../fixtures/engine.ts';

/** A pool over `n` tasks; `status.check` runs `beforeDispatch`. */
function poolOf(
  n: number,
  invoker: ScriptedInvoker,
  settings: Partial<LaneSettings> = {},
  options: { clock?: ManualClock; beforeDispatch?: () => void } = {},
) {
  const ctx = contextOf(kindOf(n), invoker, { clock: options.clock, lanes: settings.lanes ?? 3 });
  // No lanes test retries: a retry wait that never ends shows up as a test that fails, where a
  // zero-length one used by mistake would spin.
  ctx.sleep = () => new Promise(() => undefined);
  const status = {
    checks: 0,
    touched: 0,
    async check() {
      this.checks += 1;
      options.beforeDispatch?.();
    },
    touch() {
      this.touched += 1;
    },
    grow() {},
  };
  const todo = Array.from({ length: n }, (_, i) => i);
  const pool = new LanePool(ctx, todo, new TaskRunner(ctx, undefined), status, undefined, {
    lanes: 3,
    initial: 3,
    rampMs: 250,
    tolerated: 0,
    sleep: async () => undefined,
    shortOfTime: () => false,
    ...settings,
  });
  return { ctx, pool, status };
}

describe('LanePool', () => {
  it('runs every task once, at most one per lane at a time, checking status before each', async () => {
    const invoker = new ScriptedInvoker((_p, n) => ({ records: n }));
    const { ctx, pool, status } = poolOf(10, invoker);
    await pool.run();
    expect(invoker.calls.map((c) => c.payload.index).sort((a, b) => a - b)).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
    ]);
    expect(invoker.maxInFlight).toBeLessThanOrEqual(3);
    expect(ctx.counts).toMatchObject({ succeeded: 10, running: 0, failed: 0 });
    expect(ctx.counters.dispatched).toBe(10);
    // A read before every dispatch (and one by each lane that then found nothing left).
    expect(status.checks).toBeGreaterThanOrEqual(10);
    expect(status.touched).toBe(10);
  });

  it('opens the other lanes once a task has run `rampMs` while tasks wait', async () => {
    const clock = new ManualClock();
    const invoker = new ScriptedInvoker(() => 'hold');
    const ramp: (() => void)[] = [];
    const sleep = () => new Promise<void>((resolve) => ramp.push(resolve));
    const { pool } = poolOf(6, invoker, { lanes: 4, initial: 1, sleep }, { clock });
    const run = pool.run();
    await settle();
    expect(invoker.inFlight).toBe(1);
    clock.t = 249; // the first task has not yet run rampMs: still one lane
    ramp.shift()?.();
    await settle();
    expect(invoker.inFlight).toBe(1);
    clock.t = 250;
    ramp.shift()?.();
    await settle();
    expect(invoker.inFlight).toBe(4);
    // Answer whatever is in flight until the pool has run all six.
    for (let round = 0; round < 10 && invoker.inFlight > 0; round++) {
      for (const call of invoker.calls.splice(0)) call.answer({ records: 1 });
      await settle();
    }
    await run;
  });

  it('never opens more lanes for tasks that finish within `rampMs`', async () => {
    const invoker = new ScriptedInvoker(() => ({ records: 1 }));
    let ramps = 0;
    const sleep = async () => {
      ramps += 1;
    };
    const { pool } = poolOf(20, invoker, { lanes: 4, initial: 1, sleep });
    await pool.run();
    expect(invoker.maxInFlight).toBe(1);
    expect(ramps).toBeGreaterThan(0);
  });

  it('ramps up on its own wait, never on the retry wait', async () => {
    const invoker = new ScriptedInvoker(() => ({ records: 1 }));
    const waits = { ramp: 0, retry: 0 };
    const sleep = async () => {
      waits.ramp += 1;
    };
    const { ctx, pool } = poolOf(5, invoker, { lanes: 2, initial: 1, sleep });
    // A retry wait that never ends: a ramp that waited on it would never open a lane (and a
    // zero-length one, as tests stub it, would spin).
    ctx.sleep = () => {
      waits.retry += 1;
      return new Promise(() => undefined);
    };
    await pool.run();
    expect(ctx.counts.succeeded).toBe(5);
    expect(waits.retry).toBe(0);
    expect(waits.ramp).toBeGreaterThan(0);
  });

  it('stops dispatching once failures pass the tolerance, keeping the lowest index', async () => {
    const bad = new Set([3, 5]);
    const invoker = new ScriptedInvoker((p) =>
      bad.has(p.index)
        ? new FunctionError('worker', 'BadRecordError', `task ${p.index}`)
        : { records: 1 },
    );
    const { ctx, pool } = poolOf(40, invoker, { lanes: 1, tolerated: 1 });
    await pool.run();
    expect(ctx.stop.reason).toBe('failed');
    expect(ctx.counts.failed).toBe(2);
    expect(ctx.counters.dispatched).toBe(6); // tasks 0–5: the second failure stopped the run
    expect(pool.failure?.index).toBe(3);
    expect(ctx.kind.records[5]?.failed).toBe(true);
  });

  it('tolerates failures up to the tolerance and runs the rest', async () => {
    const invoker = new ScriptedInvoker((p) =>
      p.index === 2 ? new FunctionError('worker', 'BadRecordError', 'x') : { records: 1 },
    );
    const { ctx, pool } = poolOf(8, invoker, { tolerated: 1 });
    await pool.run();
    expect(ctx.stop.stopped).toBe(false);
    expect(ctx.counts).toMatchObject({ succeeded: 7, failed: 1 });
  });

  it('hands over when time runs short, leaving the rest undispatched', async () => {
    const invoker = new ScriptedInvoker(() => ({ records: 1 }));
    let left = 4;
    const { ctx, pool } = poolOf(10, invoker, { lanes: 1, shortOfTime: () => left-- <= 0 });
    await pool.run();
    expect(ctx.stop.reason).toBe('continue');
    expect(ctx.counters.dispatched).toBe(4);
  });

  it('dispatches nothing after a cancel that the read before dispatch hears', async () => {
    const invoker = new ScriptedInvoker(() => ({ records: 1 }));
    let checks = 0;
    const ctxRef: { stop?: { request(r: 'cancelled'): void } } = {};
    const { ctx, pool } = poolOf(
      10,
      invoker,
      { lanes: 1 },
      {
        beforeDispatch: () => {
          if (++checks === 3) ctxRef.stop?.request('cancelled');
        },
      },
    );
    ctxRef.stop = ctx.stop;
    await pool.run();
    expect(ctx.stop.reason).toBe('cancelled');
    expect(invoker.calls).toHaveLength(2);
  });
});
