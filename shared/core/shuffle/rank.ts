/**
 * A keyed job's result ranked by value (`rank`, shared/core/model/job.ts): entries arrive in key
 * order and leave in rank order (ascending, ties by key). A partition task ranks its own keys,
 * holding its entries (their key and value as JSON; with `top`, at most about twice the first
 * N at any time); the reducer merges the ranked parts by rank as they stream.
 */
import { ValidationError } from '../base/errors.ts';
import { type AnyJob, jobCode, jobCodeError } from '../model/job.ts';

/** An entry with its rank. */
export interface Ranked {
  rank: number;
  key: string;
  keyJson: string;
  valueJson: string;
}

/** Ascending rank, ties by key in JavaScript string order (UTF-16 code units). */
export function compareRanked(a: Ranked, b: Ranked): number {
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * A keyed job's ranking: a partition task ranks its own keys (and keeps its first `top`), and
 * the reducer merges the partitions' ranked parts by rank, so no process holds every key.
 */
export class Ranking {
  private entries: (Ranked & { seq: number })[] = [];
  private seq = 0;

  private constructor(
    private readonly job: string,
    private readonly by: (value: unknown, key: string) => number,
    /** How many entries the result keeps: all when undefined. */
    readonly top: number | undefined,
  ) {}

  /** The job's ranking for these params, or undefined when its result stays in key order. */
  static of(job: AnyJob, params: unknown): Ranking | undefined {
    const rank = job.rank;
    if (rank === undefined) return undefined;
    const top = rank.top === undefined ? undefined : jobCode('rank.top', () => rank.top?.(params));
    if (top !== undefined && !(Number.isInteger(top) && top >= 0)) {
      throw new ValidationError(
        `job ${job.name}: rank.top(params) returned ${JSON.stringify(top)}; expected a non-negative integer or undefined`,
      );
    }
    return new Ranking(job.name, rank.by, top);
  }

  /** A key's rank, from its final value's JSON (checked: a number, not NaN). */
  rankOf(key: string, keyJson: string, valueJson: string): number {
    let rank: number;
    try {
      rank = this.by(JSON.parse(valueJson), key);
    } catch (error) {
      throw jobCodeError('rank.by', error);
    }
    if (typeof rank !== 'number' || Number.isNaN(rank)) {
      throw new ValidationError(
        `job ${this.job}: rank.by(value, key) returned ${typeof rank === 'number' ? 'NaN' : (JSON.stringify(rank) ?? typeof rank)} for key ${keyJson.slice(0, 200)}; expected a number`,
      );
    }
    return rank;
  }

  /** One entry, in ascending key order: its key, the key's JSON and its final value's JSON. */
  add(key: string, keyJson: string, valueJson: string): void {
    const rank = this.rankOf(key, keyJson, valueJson);
    this.entries.push({ rank, key, keyJson, valueJson, seq: this.seq++ });
    // Past twice the top, the entries that cannot make it are dropped: O(keys × log N) in all.
    if (this.top !== undefined && this.entries.length >= 2 * this.top + 1024) this.trim(this.top);
  }

  /** The entries in rank order (the first `top` of them), each once; the ranking is then empty. */
  *ranked(): Generator<[keyJson: string, valueJson: string]> {
    this.trim(this.top ?? this.entries.length);
    const entries = this.entries;
    this.entries = [];
    for (const entry of entries) yield [entry.keyJson, entry.valueJson];
  }

  private trim(top: number): void {
    // Entries come in key order, so their sequence breaks ties as their keys would, faster.
    this.entries.sort((a, b) => a.rank - b.rank || a.seq - b.seq);
    if (this.entries.length > top) this.entries.length = top;
  }
}
