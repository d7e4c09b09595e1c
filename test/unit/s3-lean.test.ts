/**
 * Lean requests (shared/adapters/s3-lean.ts) must address an object exactly as the SDK does, or
 * S3 would answer SignatureDoesNotMatch or NoSuchKey for keys the SDK reads fine. The SDK's own
 * request for each key is captured (no network) and compared with the lean one; the worker's
 * addressing from the environment (lean-store.ts) is compared with S3's own endpoint rules.
 */
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { envTargets } from '#adapters/lean-store.ts';
import { createS3Client } from '#adapters/s3-clients.ts';
import { clientTargets, objectPath } from '#adapters/s3-lean.ts';

/** The path the SDK sends for a GetObject of `key`. */
async function sdkPath(client: S3Client, bucket: string, key: string): Promise<string> {
  let path = '';
  client.middlewareStack.add(
    (_next) => async (args) => {
      path = (args.request as { path: string }).path;
      throw new Error('captured');
    },
    { step: 'finalizeRequest', name: 'capture', override: true },
  );
  await client.send(new GetObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
  return path;
}

const credentials = { accessKeyId: 'AKID', secretAccessKey: 'SECRET' };
const tricky = [
  'plain.jsonl',
  'dir/sub/file name with spaces.csv',
  "it's (really) *odd*!.txt",
  'plus+and=equals&amp;?q.txt',
  'unicode/é ü 日本.jsonl',
  'percent%20literal.txt',
  'tilde~dash-dot._underscore',
];

describe('objectPath', () => {
  for (const [label, client, base] of [
    [
      'path-style (a custom endpoint)',
      new S3Client({
        endpoint: 'http://127.0.0.1:4569',
        forcePathStyle: true,
        region: 'us-east-1',
        credentials,
      }),
      new URL('http://127.0.0.1:4569/fanout-local'),
    ],
    [
      'virtual-hosted (AWS)',
      new S3Client({ region: 'eu-west-1', credentials }),
      new URL('https://fanout-local.s3.eu-west-1.amazonaws.com/'),
    ],
  ] as const) {
    it(`matches the SDK's path for awkward keys, ${label}`, async () => {
      for (const key of tricky) {
        expect(objectPath(base, key), key).toBe(await sdkPath(client, 'fanout-local', key));
      }
    });

    it(`property: matches the SDK's path for any key, ${label}`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc
            .string({ unit: 'grapheme', minLength: 1, maxLength: 30 })
            .filter((k) => !k.startsWith('/')),
          async (key) => {
            expect(objectPath(base, key)).toBe(await sdkPath(client, 'fanout-local', key));
          },
        ),
        { numRuns: 100 },
      );
    });
  }
});

describe('envTargets (the worker’s lean addressing)', () => {
  const env = { AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'SECRET' };

  /** What S3's own endpoint rules (an S3 client's) give for a bucket. */
  async function sdkTarget(client: S3Client, bucket: string) {
    const target = await clientTargets(client)(bucket);
    return target && { url: String(target.url), path: objectPath(target.url, 'k/x.json') };
  }

  it('addresses a DNS-label bucket in a commercial region as S3’s rules do', async () => {
    const regions = ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-2', 'ap-southeast-4'];
    const buckets = ['fanout-data', 'abc', 'a1-b2-c3', 'x'.repeat(63)];
    for (const region of regions) {
      const client = new S3Client({ region, credentials });
      const lean = envTargets({ ...env, AWS_REGION: region });
      for (const bucket of buckets) {
        const target = await lean?.(bucket);
        expect(
          target && { url: String(target.url), path: objectPath(target.url, 'k/x.json') },
          `${bucket} in ${region}`,
        ).toEqual(await sdkTarget(client, bucket));
      }
    }
  });

  it('addresses a custom endpoint path-style, as the handlers’ S3 client does', async () => {
    const endpoint = 'http://127.0.0.1:4569';
    const client = createS3Client({ endpoint });
    const target = await envTargets({ ...env, AWS_ENDPOINT_URL_S3: endpoint })?.('fanout-local');
    expect(target && String(target.url)).toBe((await sdkTarget(client, 'fanout-local'))?.url);
  });

  it('signs as S3 for the bucket’s region, with the session token when there is one', async () => {
    const target = await envTargets({
      ...env,
      AWS_SESSION_TOKEN: 'TOKEN',
      AWS_REGION: 'eu-west-1',
    })?.('fanout-data');
    const signed = await target?.signer.sign({
      method: 'GET',
      protocol: 'https:',
      hostname: 'fanout-data.s3.eu-west-1.amazonaws.com',
      path: '/k',
      query: {},
      headers: { host: 'fanout-data.s3.eu-west-1.amazonaws.com' },
    });
    expect(signed?.headers.authorization).toMatch(
      /Credential=AKID\/\d{8}\/eu-west-1\/s3\/aws4_request/,
    );
    expect(signed?.headers['x-amz-security-token']).toBe('TOKEN');
  });

  it('leaves to the SDK what it does not address: other partitions, dots, FIPS, dual-stack', async () => {
    for (const [extra, bucket] of [
      [{ AWS_REGION: 'cn-north-1' }, 'fanout-data'],
      [{ AWS_REGION: 'us-gov-west-1' }, 'fanout-data'],
      [{ AWS_REGION: 'us-east-1' }, 'fanout.data'],
      [{ AWS_REGION: 'us-east-1' }, 'Fanout-Data'],
      [{ AWS_REGION: 'us-east-1', AWS_USE_FIPS_ENDPOINT: 'true' }, 'fanout-data'],
      [{ AWS_REGION: 'us-east-1', AWS_USE_DUALSTACK_ENDPOINT: 'true' }, 'fanout-data'],
      [{}, 'fanout-data'],
    ] as const) {
      expect(await envTargets({ ...env, ...extra })?.(bucket), JSON.stringify(extra)).toBe(
        undefined,
      );
    }
  });

  it('is no lean path at all without credentials in the environment', () => {
    expect(envTargets({ AWS_REGION: 'us-east-1' })).toBeUndefined();
    expect(envTargets({ AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKID' })).toBeUndefined();
  });
});
