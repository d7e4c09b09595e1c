/**
 * The cost model against a job computed by hand (docs/COST.md walks through the same numbers),
 * and the cost that finished and failed jobs carry in their status.
 */
import { describe, expect, it } from 'vitest';
import { addUsage, estimateCost, invocationUsage, noUsage, PRICE_TABLE } from '#core/cost/cost.ts';

describe('the cost model', () => {
  it('prices a job computed by hand', () => {
    // Four workers of 1.5 s at 1,769 MB, a coordinator of 10 s at 1,024 MB, a reducer of 0.5 s
    // at 1,769 MB while the coordinator waits 0.5 s more; 120 GETs, 15 PUTs, 2 LISTs, 1 API call.
    const usage = addUsage(
      ...Array.from({ length: 4 }, () => invocationUsage(1500, 1769)),
      invocationUsage(10_000, 1024, { get: 100, put: 10, list: 2 }),
      invocationUsage(500, 1769, { get: 20, put: 5, list: 0 }),
      { ...noUsage(), lambdaGbSeconds: 0.5 * (1024 / 1024) },
      { ...noUsage(), apiRequests: 1 },
    );
    // 4 × 1.5 × 1769/1024 + 10 + 0.5 × 1769/1024 + 0.5 = 21.72900390625 GB-s
    expect(usage.lambdaGbSeconds).toBeCloseTo(21.72900390625, 10);
    const cost = estimateCost(usage, { region: 'us-east-1', architecture: 'arm64' });
    // 21.729 × 0.0000133334 + 6 × 0.2e-6 + 120 × 0.4e-6 + 17 × 5e-6 + 1 × 1e-6 = 0.000424922
    expect(cost).toEqual({
      lambdaGbSeconds: 21.729,
      lambdaRequests: 6,
      s3Requests: { get: 120, put: 15, list: 2 },
      apiRequests: 1,
      usd: 0.000424922,
      prices: 'us-east-1 arm64 list prices checked 2026-12-02',
    });
  });

  it('bills a duration rounded up to the millisecond, and x86 at its own price', () => {
    expect(invocationUsage(0.2, 1024).lambdaGbSeconds).toBe(0.001);
    const arm = estimateCost(invocationUsage(1000, 1024), {
      region: 'us-east-1',
      architecture: 'arm64',
    });
    const x86 = estimateCost(invocationUsage(1000, 1024), {
      region: 'us-east-1',
      architecture: 'x86_64',
    });
    expect(x86.usd).toBeGreaterThan(arm.usd);
    expect(x86.usd).toBeCloseTo(0.0000166667 + 0.2e-6, 12);
  });

  it('names the entry it used, also for a region without one', () => {
    const cost = estimateCost(noUsage(), { region: 'eu-central-1', architecture: 'arm64' });
    expect(cost.prices).toBe(
      'us-east-1 arm64 list prices checked 2026-12-02 (no prices for eu-central-1)',
    );
    expect(PRICE_TABLE.every((p) => /^\d{4}-\d{2}-\d{2}$/.test(p.checked))).toBe(true);
  });
});
