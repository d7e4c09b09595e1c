/**
 * Fault injection for the local runtime: `--chaos worker-error=0.1,worker-timeout=0.02,
 * throttle=0.05,s3-slowdown=0.02,coordinator-crash=0.5 --seed N` makes that fraction of worker
 * invocations throw, hang past the timeout or answer 429, that fraction of S3 requests answer
 * 503 SlowDown, and that fraction of the coordinator's asynchronous invocations crash before
 * they do anything (as an out-of-memory kill would); worker-slow=P stalls that fraction of worker
 * invocations for 10 s before they do any work (a straggler). The draws come from one seeded generator
 * per kind, so a seed gives the same sequence of faults.
 */
import { ValidationError } from '#core/base/errors.ts';
import { mulberry32 } from '#core/base/random.ts';

/** Fractions (0..1) of each fault. */
export interface ChaosSpec {
  workerError: number;
  workerTimeout: number;
  throttle: number;
  s3Slowdown: number;
  coordinatorCrash: number;
  workerSlow: number;
}

const KEYS: Record<string, keyof ChaosSpec> = {
  'worker-error': 'workerError',
  'worker-timeout': 'workerTimeout',
  throttle: 'throttle',
  's3-slowdown': 's3Slowdown',
  'coordinator-crash': 'coordinatorCrash',
  'worker-slow': 'workerSlow',
};

/** Parses `worker-error=0.1,throttle=0.05`. Throws ValidationError naming what is wrong. */
export function parseChaos(text: string): ChaosSpec {
  const spec: ChaosSpec = {
    workerError: 0,
    workerTimeout: 0,
    throttle: 0,
    s3Slowdown: 0,
    coordinatorCrash: 0,
    workerSlow: 0,
  };
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name = '', value = ''] = part.split('=');
    const key = KEYS[name];
    const fraction = Number(value);
    if (key === undefined) {
      throw new ValidationError(
        `--chaos: unknown fault ${JSON.stringify(name)}; expected one of: ${Object.keys(KEYS).join(', ')}`,
      );
    }
    if (value === '' || !(fraction >= 0 && fraction <= 1)) {
      throw new ValidationError(
        `--chaos: ${name} must be a fraction from 0 to 1; got ${JSON.stringify(value)}`,
      );
    }
    spec[key] = fraction;
  }
  return spec;
}

/** The fault hooks of the Lambda and S3 servers for a spec and seed. */
export function chaosFaults(
  spec: ChaosSpec,
  seed: number,
  functions: { worker: string; coordinator: string },
) {
  const lambdaDraw = mulberry32(seed);
  const s3Draw = mulberry32(seed ^ 0x5bd1e995);
  const crashDraw = mulberry32(seed ^ 0x27d4eb2f);
  const slowDraw = mulberry32(seed ^ 0x165667b1);
  return {
    lambda(
      functionName: string,
      invocationType: string,
    ): 'error' | 'timeout' | 'throttle' | 'slow' | undefined {
      if (functionName === functions.coordinator && invocationType === 'Event') {
        return spec.coordinatorCrash > 0 && crashDraw() < spec.coordinatorCrash
          ? 'error'
          : undefined;
      }
      if (functionName !== functions.worker || invocationType !== 'RequestResponse') {
        return undefined;
      }
      // A stall draws from its own sequence, so adding it leaves the other faults' draws as they were.
      if (spec.workerSlow > 0 && slowDraw() < spec.workerSlow) return 'slow';
      const r = lambdaDraw();
      if (r < spec.throttle) return 'throttle';
      if (r < spec.throttle + spec.workerError) return 'error';
      if (r < spec.throttle + spec.workerError + spec.workerTimeout) return 'timeout';
      return undefined;
    },
    s3(): 'slowdown' | undefined {
      return s3Draw() < spec.s3Slowdown ? 'slowdown' : undefined;
    },
  };
}
