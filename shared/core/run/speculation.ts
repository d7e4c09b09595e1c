/**
 * Stragglers: when a running chunk has taken far longer than finished chunks of its size, it
 * gets a backup attempt (MapReduce's backup tasks). This module decides *when*; the coordinator
 * runs the backup in the next free slot, and the worker's create-only outcome decides which
 * attempt counts.
 *
 * "Of its size" is measured per byte: the running median of finished chunks' milliseconds per
 * byte, times the chunk's bytes. A plan's chunks are mostly one size, but a guided tail's are
 * smaller, and a fixed limit would back up none of them (or every big one).
 */

import { ValidationError } from '../base/errors.ts';

/** How eagerly stragglers are backed up. */
export interface SpeculationOptions {
  /** @default true */
  enabled?: boolean;
  /** A chunk straggles past `factor` × the median time of finished chunks of its size. @default 3 */
  factor?: number;
  /** …and never before it has run this long: short chunks vary too much. @default 1000 */
  floorMs?: number;
  /**
   * At most this fraction of the job's chunks get a backup (a cap: what is spent is what
   * straggles), and at least {@link MIN_BACKUPS}. @default 0.05
   */
  maxExtra?: number;
}

/** What {@link SpeculationOptions} default to (docs/PERFORMANCE.md measures them). */
export const SPECULATION_DEFAULTS = { factor: 3, floorMs: 1000, maxExtra: 0.05 } as const;

/** The least each setting may be: a factor below 1 would back up chunks faster than median. */
const LEAST = { factor: 1, floorMs: 1, maxExtra: 0 } as const;

/**
 * Checks speculation settings, wherever they come from (the core, the FanoutService prop, the
 * coordinator's environment); throws ValidationError naming each through `nameOf`.
 */
export function checkSpeculation(
  options: Pick<SpeculationOptions, keyof typeof LEAST>,
  nameOf: (key: keyof typeof LEAST) => string = (key) => `speculation ${key}`,
): void {
  for (const key of Object.keys(LEAST) as (keyof typeof LEAST)[]) {
    const value = options[key];
    if (value !== undefined && !(Number.isFinite(value) && value >= LEAST[key])) {
      throw new ValidationError(`${nameOf(key)} must be a number ≥ ${LEAST[key]}; got ${value}`);
    }
  }
}

/**
 * Backups any job may start, however few its chunks: a stall is no less likely in a small job,
 * and 5% of 40 chunks would be 2.
 */
export const MIN_BACKUPS = 4;

/** Finished chunks needed before anything counts as straggling. */
const MIN_FINISHED = 3;

/**
 * The running median of finished chunks' time per byte, and the backup budget. The median is
 * recomputed only once the sample has grown by a sixteenth: at 100,000 chunks a sort per look
 * would cost the coordinator more than the stragglers do.
 */
export class StragglerWatch {
  readonly factor: number;
  readonly floorMs: number;
  /** Backups this job may start. */
  readonly maxBackups: number;
  /**
   * Backups taken from the budget: queued or started. One that is no longer needed when its
   * slot comes is given back; a throttled one is queued again and keeps its place.
   */
  backups = 0;
  private readonly rates: number[] = [];
  private median = Number.NaN;
  private sampled = 0;

  constructor(chunks: number, options: SpeculationOptions = {}) {
    this.factor = options.factor ?? SPECULATION_DEFAULTS.factor;
    this.floorMs = options.floorMs ?? SPECULATION_DEFAULTS.floorMs;
    const maxExtra = options.maxExtra ?? SPECULATION_DEFAULTS.maxExtra;
    checkSpeculation({ factor: this.factor, floorMs: this.floorMs, maxExtra });
    this.maxBackups = Math.max(MIN_BACKUPS, Math.ceil(chunks * maxExtra));
  }

  /** A chunk's first success: its time per byte joins the median. */
  finished(durationMs: number, bytes: number): void {
    this.rates.push(durationMs / Math.max(1, bytes));
  }

  /** True while backups are left in the budget. */
  get canBackUp(): boolean {
    return this.backups < this.maxBackups;
  }

  /**
   * How long a chunk of `bytes` may run before it straggles, or undefined while too few chunks
   * have finished to say.
   */
  limitMs(bytes: number): number | undefined {
    const n = this.rates.length;
    if (n < MIN_FINISHED) return undefined;
    if (n >= this.sampled + Math.max(1, this.sampled >> 4)) {
      this.median = medianOf(this.rates);
      this.sampled = n;
    }
    return Math.max(this.floorMs, this.factor * this.median * Math.max(1, bytes));
  }
}

/** The median of a sample (the upper one of an even count), leaving the sample as it was. */
export function medianOf(values: readonly number[]): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[sorted.length >> 1] as number;
}
