/** The invocation gate: invocations in flight, the learned throttle ceiling, and billing. */
import { describe, expect, it } from 'vitest';
import { FunctionError, ThrottledError } from '#core/base/errors.ts';
import { contextOf, kindOf, ManualClock, ScriptedInvoker, settle } from '../../fixtures/engine.ts';

const payload = (index: number, attempt = 1) => ({ index, attempt, dispatchedAt: 0 });

describe('InvocationGate', () => {
  it('lowers the ceiling to what it took when the job throttles itself past its lanes', async () => {
    // Two lanes and two backups: the fourth invocation in flight is throttled.
    const invoker = new ScriptedInvoker((_p, n) =>
      n === 3 ? new ThrottledError('worker') : 'hold',
    );
    const { gate } = contextOf(kindOf(4), invoker, { lanes: 2, ceiling: 4 });
    const running = [0, 1, 2].map((i) => gate.invoke(payload(i)));
    const error = await gate.invoke(payload(3)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ThrottledError);
    expect(gate.isOwnThrottle(error)).toBe(true);
    expect(gate.ceiling).toBe(3);
    for (const call of invoker.calls.slice(0, 3)) call.answer({ records: 1 });
    await Promise.all(running);
    expect(gate.invocations).toBe(0);
  });

  it('never lowers the ceiling below the lanes, nor counts a throttle within them as its own', async () => {
    const invoker = new ScriptedInvoker(() => new ThrottledError('worker'));
    const { gate } = contextOf(kindOf(2), invoker, { lanes: 2, ceiling: 4 });
    const error = await gate.invoke(payload(0)).catch((e: unknown) => e);
    expect(gate.isOwnThrottle(error)).toBe(false);
    expect(gate.ceiling).toBe(4);
  });

  it('makes dispatches wait for a slot under the ceiling, first come first served', async () => {
    const invoker = new ScriptedInvoker(() => 'hold');
    const { gate } = contextOf(kindOf(3), invoker, { lanes: 1, ceiling: 1 });
    const first = gate.invoke(payload(0));
    const order: string[] = [];
    const a = gate.acquire().then(() => order.push('a'));
    const b = gate.acquire().then(() => order.push('b'));
    await settle();
    expect(order).toEqual([]);
    invoker.calls[0]?.answer({ records: 1 });
    await first;
    await a;
    await settle();
    // The slot went to the first waiter: the second waits for it to be used or given back.
    expect(order).toEqual(['a']);
    const second = gate.invoke(payload(1));
    invoker.calls[1]?.answer({ records: 1 });
    await second;
    await b;
    expect(order).toEqual(['a', 'b']);
  });

  it('passes a slot that goes unused to the next waiter', async () => {
    const invoker = new ScriptedInvoker(() => 'hold');
    const { gate } = contextOf(kindOf(3), invoker, { lanes: 1, ceiling: 1 });
    const first = gate.invoke(payload(0));
    const woken: string[] = [];
    const a = gate.acquire().then(() => woken.push('a'));
    const b = gate.acquire().then(() => woken.push('b'));
    invoker.calls[0]?.answer({ records: 1 });
    await first;
    await a;
    gate.unused(); // the task ended while it waited, and no end is left to wake the next
    await b;
    expect(woken).toEqual(['a', 'b']);
  });

  it('leaves a waiter to the end of an invocation in flight when one is to come', async () => {
    // Two slots, both taken, two waiting. One ends; its slot goes to `a`, which does not use it.
    // `b` is left to the other invocation's end: woken now, it would race new dispatches for
    // the slot, and a job at its learned ceiling throttles more (the simulation measures it).
    const invoker = new ScriptedInvoker(() => 'hold');
    const { gate } = contextOf(kindOf(4), invoker, { lanes: 2, ceiling: 2 });
    const running = [gate.invoke(payload(0)), gate.invoke(payload(1))];
    const woken: string[] = [];
    const a = gate.acquire().then(() => woken.push('a'));
    const b = gate.acquire().then(() => woken.push('b'));
    invoker.calls[0]?.answer({ records: 1 });
    await a;
    gate.unused();
    await settle();
    expect(woken).toEqual(['a']);
    invoker.calls[1]?.answer({ records: 1 });
    await Promise.all([...running, b]);
    expect(woken).toEqual(['a', 'b']);
  });

  it('bills a result by its report, a failure by its duration, and a throttle not at all', async () => {
    const clock = new ManualClock();
    const usage = {
      lambdaGbSeconds: 1,
      lambdaRequests: 1,
      s3Requests: { get: 0, put: 0, list: 0 },
      apiRequests: 0,
    };
    const answers = [
      { records: 1, usage },
      new FunctionError('worker', 'Error', 'x'),
      new ThrottledError('worker'),
    ];
    const invoker = new ScriptedInvoker((_p, n) => {
      clock.t += 2_000;
      return answers[n] as never;
    });
    const { gate, billing } = contextOf(kindOf(3), invoker, { clock });
    await gate.invoke(payload(0));
    await gate.invoke(payload(1)).catch(() => undefined);
    await gate.invoke(payload(2)).catch(() => undefined);
    // 1 GB-s reported, 2 s at 1 GB measured; the throttled invocation ran nothing.
    expect(billing.usage).toMatchObject({ lambdaGbSeconds: 3, lambdaRequests: 2 });
  });

  it('notes a duplicate result as a lost attempt', async () => {
    const invoker = new ScriptedInvoker(() => ({ records: 0, duplicate: true }));
    const ctx = contextOf(kindOf(1), invoker);
    await ctx.gate.invoke(payload(0, 2), true);
    expect(ctx.kind.records[0]?.lost).toMatchObject([{ attempt: 2, backup: true }]);
  });

  it('bills and notes the attempts still running when the run ends, once', async () => {
    const clock = new ManualClock();
    const invoker = new ScriptedInvoker(() => 'hold');
    const ctx = contextOf(kindOf(2), invoker, { clock, backups: true });
    const loser = ctx.gate.invoke(payload(1, 2), true);
    clock.t = 4_000;
    ctx.gate.settleLosers();
    expect(ctx.billing.usage).toMatchObject({ lambdaGbSeconds: 4, lambdaRequests: 1 });
    expect(ctx.kind.records[1]?.lost).toMatchObject([{ attempt: 2, backup: true }]);
    invoker.calls[0]?.answer({ records: 1, duplicate: true }); // it ends later: billed already
    await loser;
    expect(ctx.billing.usage).toMatchObject({ lambdaGbSeconds: 4, lambdaRequests: 1 });
    expect(ctx.kind.records[1]?.lost).toHaveLength(1);
  });
});
