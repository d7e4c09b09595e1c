/**
 * Presigned URLs never outlive the credentials that sign them: a URL signed with a session's
 * credentials stops working when the session ends, whatever X-Amz-Expires says.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3ObjectStore } from '#adapters/s3-store.ts';

const storeWith = (expiration?: Date) =>
  new S3ObjectStore(
    new S3Client({
      region: 'us-east-1',
      credentials: async () => ({
        accessKeyId: 'ASIAEXAMPLE',
        secretAccessKey: 'secret',
        sessionToken: 'token',
        ...(expiration !== undefined && { expiration }),
      }),
    }),
  );
const expiresOf = (url: string) => Number(new URL(url).searchParams.get('X-Amz-Expires'));

describe('presigned URLs', () => {
  it('ask for what they are given while the credentials last longer', async () => {
    const store = storeWith(new Date(Date.now() + 3600_000));
    expect(expiresOf(await store.presignGet('b', 'k', 300))).toBe(300);
    expect(expiresOf(await store.presignUploadPart('b', 'k', 'u', 1, 900))).toBe(900);
    expect(expiresOf(await storeWith().presignPut('b', 'k', 900))).toBe(900);
  });

  it('end before the session that signs them does', async () => {
    const store = storeWith(new Date(Date.now() + 120_000));
    for (const url of [
      await store.presignGet('b', 'k', 300),
      await store.presignPut('b', 'k', 900),
      await store.presignUploadPart('b', 'k', 'u', 1, 900),
    ]) {
      expect(expiresOf(url)).toBeGreaterThan(60);
      expect(expiresOf(url)).toBeLessThanOrEqual(90);
    }
  });
});
