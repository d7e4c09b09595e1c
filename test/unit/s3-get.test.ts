/**
 * The lean GET (shared/adapters/s3-get.ts) must address an object exactly as the SDK does, or
 * S3 would answer SignatureDoesNotMatch or NoSuchKey for keys the SDK reads fine. The SDK's own
 * request for each key is captured (no network) and compared with the lean one.
 */
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { objectPath } from '#adapters/s3-get.ts';

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
