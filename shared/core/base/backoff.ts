/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"), honouring a Retry-After: the one rule for every retry fanout makes, the
 * coordinator's of a task and the worker's of a GET.
 */

/** Options of {@link backoff}. */
export interface BackoffOptions {
  /** The first wait's ceiling. @default 100 */
  baseMs?: number;
  /** No wait is drawn above this. @default 10_000 */
  capMs?: number;
  /** What the server asked (Retry-After), as a floor. */
  retryAfterSeconds?: number;
}

/** The wait before retry number `attempt` (1 for the first retry), in milliseconds. */
export function backoff(
  attempt: number,
  random: () => number,
  options: BackoffOptions = {},
): number {
  const jittered =
    random() * Math.min(options.capMs ?? 10_000, (options.baseMs ?? 100) * 2 ** (attempt - 1));
  return Math.max(jittered, (options.retryAfterSeconds ?? 0) * 1000);
}
