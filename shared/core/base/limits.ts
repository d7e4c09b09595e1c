/**
 * Lambda's limits that fanout's design must respect, in one place: the file descriptors of an
 * execution environment, and how the functions' timeouts must fit into one another.
 *
 * Timeouts. A coordinator run dispatches chunks
 * until one worker timeout (an in-flight chunk may take that long) and its margins are left,
 * then hands over to a continuation; it waits for the reducer only when the reducer's timeout
 * and margins fit in what it has left. The same arithmetic bounds the waits at run time and is
 * checked when the stack is synthesized, so that a deployment whose timeouts cannot work is
 * refused before it is deployed.
 */

/** Lambda's longest function timeout. */
export const MAX_FUNCTION_TIMEOUT_MS = 900_000;

/**
 * A Lambda execution environment has 1,024 file descriptors (Lambda quotas). The coordinator
 * holds one socket per worker invocation in flight (a synchronous invoke waits on its own
 * connection), plus its S3 sockets; the rest is kept for the runtime, logs and files.
 */
export const COORDINATOR_SOCKETS = {
  /** Worker invocations in flight, backups included: the most concurrency a job may ask. */
  invocations: 900,
  /** S3 sockets: the SDK client's and the lean GETs', half each. */
  s3: 64,
} as const;

/**
 * Extra time past a function's timeout before an unanswered synchronous invocation counts as
 * timed out: half the timeout, between 1 s and 30 s (network and queueing, not work).
 */
export function invocationMarginMs(timeoutMs: number): number {
  return Math.min(30_000, Math.max(1_000, timeoutMs / 2));
}

/**
 * The time a coordinator must have left to wait for one invocation of a function with this
 * timeout: the timeout, its margin, and time to write the manifest and invoke a continuation
 * (5 s, or the timeout itself when shorter).
 */
export function handOverMs(timeoutMs: number): number {
  return timeoutMs + invocationMarginMs(timeoutMs) + Math.min(5_000, timeoutMs);
}

/**
 * What a continuation spends before it can reduce (reading the status and every chunk's
 * outcome): a tenth of the coordinator's timeout, and at least 5 s.
 */
export function continuationStartMs(coordinatorTimeoutMs: number): number {
  return Math.max(5_000, coordinatorTimeoutMs / 10);
}

/** The three timeouts that must fit together, in milliseconds. */
export interface FunctionTimeouts {
  coordinatorMs: number;
  workerMs: number;
  reducerMs: number;
}

/**
 * The reducer's timeout when none is given: a third of the coordinator's, so that a
 * continuation that starts only to reduce always has time to wait for it.
 */
export function defaultReducerTimeoutMs(coordinatorTimeoutMs: number): number {
  return Math.floor(coordinatorTimeoutMs / 3 / 1000) * 1000;
}

/**
 * Why these timeouts cannot work together, one sentence per problem naming the settings through
 * `nameOf` (construct props at synthesis, variables at run time); empty when they fit.
 *
 * - Each is between 1 s and Lambda's 15 minutes.
 * - The worker's timeout and its margins ({@link handOverMs}) fit in half the coordinator's:
 *   otherwise a coordinator run would hand over after its first dispatch, and a job would
 *   take one coordinator invocation per chunk.
 * - The reducer's timeout and its margins fit in what a continuation has left once it has read
 *   the job ({@link continuationStartMs}): otherwise no coordinator run could wait for it.
 */
export function timeoutProblems(
  t: FunctionTimeouts,
  nameOf: (setting: keyof FunctionTimeouts) => string,
): string[] {
  const problems: string[] = [];
  const s = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;
  for (const key of ['coordinatorMs', 'workerMs', 'reducerMs'] as const) {
    const ms = t[key];
    if (!(Number.isFinite(ms) && ms >= 1000 && ms <= MAX_FUNCTION_TIMEOUT_MS)) {
      problems.push(`${nameOf(key)} must be between 1 s and 900 s; got ${s(ms)}`);
    }
  }
  if (problems.length > 0) return problems;
  const workerNeeds = handOverMs(t.workerMs);
  if (workerNeeds > t.coordinatorMs / 2) {
    problems.push(
      `${nameOf('workerMs')} (${s(t.workerMs)}) does not fit in ${nameOf('coordinatorMs')} (${s(t.coordinatorMs)}): a coordinator run hands over to a continuation once ${s(workerNeeds)} are left (one worker timeout, its ${s(invocationMarginMs(t.workerMs))} margin and ${s(workerNeeds - t.workerMs - invocationMarginMs(t.workerMs))} to hand over), and that must be at most half its timeout so that it dispatches for the other half; raise ${nameOf('coordinatorMs')} to at least ${s(Math.ceil((2 * workerNeeds) / 1000) * 1000)} or lower ${nameOf('workerMs')}`,
    );
  }
  const reducerNeeds = handOverMs(t.reducerMs) + continuationStartMs(t.coordinatorMs);
  if (reducerNeeds > t.coordinatorMs) {
    problems.push(
      `${nameOf('reducerMs')} (${s(t.reducerMs)}) does not fit in ${nameOf('coordinatorMs')} (${s(t.coordinatorMs)}): the coordinator waits for the reducer, which needs ${s(handOverMs(t.reducerMs))} with its margins, after ${s(continuationStartMs(t.coordinatorMs))} spent reading the job; lower ${nameOf('reducerMs')} or raise ${nameOf('coordinatorMs')}`,
    );
  }
  return problems;
}
