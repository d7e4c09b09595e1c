/**
 * The invocation gate: every attempt of every task invokes the function through it. It counts
 * the invocations in flight, bills each one, and holds the throttle ceiling.
 *
 * Invocations in flight may exceed the lanes by the backup budget: backups run beside the lanes
 * (a job whose every lane holds a straggler still gets them), and an attempt that lost runs on
 * (Lambda cannot stop it) while its lane moves on. A throttle while over the lanes says the
 * function is full: the ceiling drops to what it took (an "own throttle"), and dispatches wait
 * for one of the job's own invocations to end instead of backing off blindly.
 */
import { ThrottledError } from '../../base/errors.ts';
import type { Clock, Invoker } from '../../base/ports.ts';
import type { Billing } from './billing.ts';
import type { AttemptLedger } from './ledger.ts';
import type { AttemptPayload, TaskResult } from './task.ts';

/** An invocation in flight. */
interface Call<P> {
  started: number;
  /** Billed already (it lost and outlived the run). */
  billed: boolean;
  payload: P;
  backup: boolean;
}

/** What the gate needs. */
export interface GateDeps {
  invoker: Invoker;
  clock: Clock;
  functionName: string;
  /** How long an invocation may stay unanswered: the function's timeout and a margin. */
  deadlineMs: number;
  billing: Billing;
  ledger: AttemptLedger;
  /**
   * Keep the invocations in flight, to bill the ones still running when the run ends: only
   * backup races leave attempts running, so without backups nothing is kept per invocation.
   */
  track: boolean;
}

/** Invokes, counts, bills, and holds the ceiling. */
export class InvocationGate<P extends AttemptPayload, R extends TaskResult> {
  /** Invocations in flight. */
  invocations = 0;
  /** The most invocations in flight; set with the lanes, lowered by own throttles. */
  ceiling = Number.POSITIVE_INFINITY;
  private lanes = 0;
  private readonly waiters: (() => void)[] = [];
  /** Throttles that the job's own invocations over its lanes caused. */
  private readonly ownThrottles = new WeakSet<object>();
  private readonly calls = new Set<Call<P>>();

  constructor(private readonly deps: GateDeps) {}

  /** The run's lanes, and the ceiling they and the backups may reach. */
  open(lanes: number, ceiling: number): void {
    this.lanes = lanes;
    this.ceiling = ceiling;
  }

  /** True when `error` is a throttle the job's own invocations caused. */
  isOwnThrottle(error: unknown): boolean {
    return this.ownThrottles.has(error as object);
  }

  /** Waits for a slot under the ceiling (first come, first served). */
  async acquire(): Promise<void> {
    while (this.invocations >= this.ceiling) {
      let resolve: () => void = () => undefined;
      const slot = new Promise<void>((r) => {
        resolve = r;
      });
      this.waiters.push(resolve);
      await slot;
    }
  }

  /**
   * A slot `acquire` gave goes unused (the task ended meanwhile). Each invocation's end wakes
   * one waiter, so once waiters outnumber the invocations in flight, one would wait for an end
   * that never comes (a hung run): it is woken now. Only then: while ends are still to come,
   * waking one early would let it race the lanes for a slot, and throttle more.
   */
  unused(): void {
    if (this.waiters.length > this.invocations) this.waiters.shift()?.();
  }

  /** One invocation, counted for the ceiling and billed for the cost. */
  async invoke(payload: P, backup = false): Promise<R> {
    const { deps } = this;
    const call: Call<P> = { started: deps.clock.now(), billed: false, payload, backup };
    this.invocations += 1;
    const load = this.invocations;
    if (deps.track) this.calls.add(call);
    try {
      const result = await deps.invoker.invoke<R>(deps.functionName, payload, {
        timeoutMs: deps.deadlineMs,
      });
      if (!call.billed) {
        deps.billing.charge(call.started, result.usage);
        if (result.duplicate === true) {
          deps.ledger.lost(payload.index, payload, backup, Date.parse(deps.clock.iso()));
        }
      }
      return result;
    } catch (error) {
      if (error instanceof ThrottledError && load > this.lanes) {
        this.ceiling = Math.max(this.lanes, Math.min(this.ceiling, load - 1));
        this.ownThrottles.add(error);
      }
      // A failed invocation is billed for as long as it ran; a throttled one is not.
      if (!call.billed && !(error instanceof ThrottledError)) deps.billing.charge(call.started);
      throw error;
    } finally {
      this.invocations -= 1;
      this.calls.delete(call);
      this.waiters.shift()?.();
    }
  }

  /**
   * The run ends while attempts still run (every task has ended: they lost): they are not
   * waited for, and are billed for their time so far.
   */
  settleLosers(): void {
    for (const call of this.calls) {
      call.billed = true;
      this.deps.ledger.lost(call.payload.index, call.payload, call.backup);
      this.deps.billing.charge(call.started);
    }
  }
}
