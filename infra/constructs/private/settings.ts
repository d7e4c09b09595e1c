/**
 * The props checked and turned into settings: input prefixes, the three timeouts (which must fit
 * together, shared/core/base/limits.ts), the concurrency limits, and the backup policy as the
 * coordinator's variables. A prop that cannot work fails synthesis, naming it.
 */
import { Duration } from 'aws-cdk-lib';
import {
  COORDINATOR_SOCKETS,
  defaultReducerTimeoutMs,
  timeoutProblems,
} from '../../../shared/core/base/limits.ts';
import { checkSpeculation } from '../../../shared/core/run/speculation.ts';
import type { FanoutServiceProps } from '../fanout-service.ts';

/** The input prefixes: each ends with / and lies outside jobs/. */
export function checkPrefixes(prefixes: readonly string[]): void {
  for (const p of prefixes) {
    if (!/^[^*?]+\/$/.test(p) || p.startsWith('jobs/')) {
      throw new Error(
        `allowedInputPrefixes: ${JSON.stringify(p)} must end with / and lie outside jobs/`,
      );
    }
  }
}

/** The coordinator's FANOUT_SPECULATION* variables for what the prop sets (functions/config.ts). */
export function speculationEnv(
  speculation: FanoutServiceProps['speculation'],
): Record<string, string> {
  const env: Record<string, string> = {};
  if (speculation === undefined) return env;
  checkSpeculation(speculation, (key) => `speculation.${key}`);
  if (speculation.enabled !== undefined)
    env.FANOUT_SPECULATION = speculation.enabled ? 'on' : 'off';
  if (speculation.factor !== undefined) env.FANOUT_SPECULATION_FACTOR = String(speculation.factor);
  if (speculation.floorMs !== undefined) {
    env.FANOUT_SPECULATION_FLOOR_MS = String(speculation.floorMs);
  }
  if (speculation.maxExtra !== undefined) {
    env.FANOUT_SPECULATION_MAX_EXTRA = String(speculation.maxExtra);
  }
  return env;
}

/** The three timeouts, from the props, checked together (shared/core/base/limits.ts). */
export function checkTimeouts(props: FanoutServiceProps) {
  const coordinator = props.coordinatorTimeout ?? Duration.minutes(15);
  const worker = props.workerTimeout ?? Duration.minutes(5);
  const reducer =
    props.reducerTimeout ?? Duration.millis(defaultReducerTimeoutMs(coordinator.toMilliseconds()));
  const names = {
    coordinatorMs: 'coordinatorTimeout',
    workerMs: 'workerTimeout',
    reducerMs:
      props.reducerTimeout === undefined ? 'reducerTimeout (its default)' : 'reducerTimeout',
  } as const;
  const problems = timeoutProblems(
    {
      coordinatorMs: coordinator.toMilliseconds(),
      workerMs: worker.toMilliseconds(),
      reducerMs: reducer.toMilliseconds(),
    },
    (key) => names[key],
  );
  if (problems.length > 0) throw new Error(`FanoutService: ${problems.join('; ')}`);
  return { coordinator, worker, reducer };
}

/** The concurrency props: positive, default within max, max within the coordinator's sockets. */
export function checkConcurrency(defaultConcurrency: number, maxConcurrency: number): void {
  const most = COORDINATOR_SOCKETS.invocations;
  if (!(Number.isInteger(maxConcurrency) && maxConcurrency >= 1 && maxConcurrency <= most)) {
    throw new Error(
      `FanoutService: maxConcurrency must be an integer from 1 to ${most} (the coordinator holds a socket per chunk in flight, and a Lambda environment has 1,024 file descriptors); got ${maxConcurrency}`,
    );
  }
  if (!(Number.isInteger(defaultConcurrency) && defaultConcurrency >= 1)) {
    throw new Error(
      `FanoutService: defaultConcurrency must be a positive integer; got ${defaultConcurrency}`,
    );
  }
  if (defaultConcurrency > maxConcurrency) {
    throw new Error(
      `FanoutService: defaultConcurrency (${defaultConcurrency}) must not exceed maxConcurrency (${maxConcurrency})`,
    );
  }
}
