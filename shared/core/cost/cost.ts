/**
 * What a job costs on AWS: its usage (Lambda GB-seconds and requests, S3 requests by price
 * class, API requests), measured as the job runs, priced from a dated table of list prices. The
 * table is data: a new price or region is a new entry, and every estimate names the entry it
 * used. Locally the functions run with the deployed defaults' memory and architecture, so a
 * local job reports what the same job would cost deployed.
 */

/** Resources a job used. */
export interface Usage {
  /** Billed duration × configured memory, summed over every invocation. */
  lambdaGbSeconds: number;
  /** Invocations (billed requests; throttled ones are not billed). */
  lambdaRequests: number;
  /** S3 requests by price class: GET (and HEAD), PUT (and POST, COPY), LIST. */
  s3Requests: { get: number; put: number; list: number };
  /** HTTP API requests that belong to the job (its submission). */
  apiRequests: number;
}

/** A job's cost estimate: its usage, the total in US dollars, and the prices used. */
export interface Cost extends Usage {
  usd: number;
  /** Which price table entry: region, architecture and the date the prices were checked. */
  prices: string;
}

/** List prices of one region and architecture, in US dollars. */
export interface PriceEntry {
  region: string;
  architecture: 'arm64' | 'x86_64';
  /** When these prices were checked against the AWS pricing pages. */
  checked: string;
  lambdaGbSecond: number;
  lambdaRequest: number;
  s3Get: number;
  s3Put: number;
  s3List: number;
  /** HTTP API (API Gateway v2), first 300 million requests a month. */
  apiRequest: number;
}

/**
 * On-demand list prices (aws.amazon.com/lambda/pricing, /s3/pricing, /api-gateway/pricing;
 * Lambda's first tier, S3 Standard), without free tiers or savings plans. Keep them current by
 * adding an entry with a new `checked` date.
 */
export const PRICE_TABLE: readonly PriceEntry[] = [
  {
    region: 'us-east-1',
    architecture: 'arm64',
    checked: '2026-12-02',
    lambdaGbSecond: 0.0000133334,
    lambdaRequest: 0.2 / 1e6,
    s3Get: 0.0004 / 1000,
    s3Put: 0.005 / 1000,
    s3List: 0.005 / 1000,
    apiRequest: 1.0 / 1e6,
  },
  {
    region: 'us-east-1',
    architecture: 'x86_64',
    checked: '2026-12-02',
    lambdaGbSecond: 0.0000166667,
    lambdaRequest: 0.2 / 1e6,
    s3Get: 0.0004 / 1000,
    s3Put: 0.005 / 1000,
    s3List: 0.005 / 1000,
    apiRequest: 1.0 / 1e6,
  },
];

/** Where a job is priced when nothing else is said: the deployed default. */
export const DEFAULT_PRICING = { region: 'us-east-1', architecture: 'arm64' } as const;

/** Memory of the deployed functions by default (infra FanoutService), in MB. */
export const DEPLOYED_MEMORY_MB = { worker: 1769, coordinator: 1024, reducer: 1769, api: 512 };

/** No usage. */
export const noUsage = (): Usage => ({
  lambdaGbSeconds: 0,
  lambdaRequests: 0,
  s3Requests: { get: 0, put: 0, list: 0 },
  apiRequests: 0,
});

/** The sum of usages. */
export function addUsage(...usages: (Usage | undefined)[]): Usage {
  const total = noUsage();
  for (const u of usages) {
    if (u === undefined) continue;
    total.lambdaGbSeconds += u.lambdaGbSeconds;
    total.lambdaRequests += u.lambdaRequests;
    total.s3Requests.get += u.s3Requests.get;
    total.s3Requests.put += u.s3Requests.put;
    total.s3Requests.list += u.s3Requests.list;
    total.apiRequests += u.apiRequests;
  }
  return total;
}

/**
 * One invocation: Lambda bills its duration rounded up to the millisecond, times its memory
 * (GB = MB / 1024), plus the request.
 */
export function invocationUsage(
  durationMs: number,
  memoryMb: number,
  s3Requests: Usage['s3Requests'] = { get: 0, put: 0, list: 0 },
): Usage {
  return {
    lambdaGbSeconds: (Math.ceil(Math.max(0, durationMs)) / 1000) * (memoryMb / 1024),
    lambdaRequests: 1,
    s3Requests: { ...s3Requests },
    apiRequests: 0,
  };
}

/** The price entry for a region and architecture; us-east-1's when the region has none. */
function priceEntry(region: string, architecture: 'arm64' | 'x86_64'): PriceEntry {
  const exact = PRICE_TABLE.find((p) => p.region === region && p.architecture === architecture);
  return (
    exact ??
    (PRICE_TABLE.find(
      (p) => p.region === 'us-east-1' && p.architecture === architecture,
    ) as PriceEntry)
  );
}

/** Prices a usage. The result names the price entry (and says so when it is another region's). */
export function estimateCost(
  usage: Usage,
  where: { region: string; architecture: 'arm64' | 'x86_64' },
): Cost {
  const p = priceEntry(where.region, where.architecture);
  const usd =
    usage.lambdaGbSeconds * p.lambdaGbSecond +
    usage.lambdaRequests * p.lambdaRequest +
    usage.s3Requests.get * p.s3Get +
    usage.s3Requests.put * p.s3Put +
    usage.s3Requests.list * p.s3List +
    usage.apiRequests * p.apiRequest;
  const other = p.region === where.region ? '' : ` (no prices for ${where.region})`;
  const total = addUsage(usage);
  return {
    ...total,
    lambdaGbSeconds: Number(total.lambdaGbSeconds.toPrecision(6)),
    usd: Number(usd.toPrecision(6)),
    prices: `${p.region} ${p.architecture} list prices checked ${p.checked}${other}`,
  };
}
