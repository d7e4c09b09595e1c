// The part of s3rver 3.7.1 (a Koa app, untyped) the local S3 server uses.
declare module 's3rver' {
  import type { Server } from 'node:http';

  interface KoaContext {
    method: string;
    path: string;
    query: Record<string, string | undefined>;
    querystring: string;
    headers: Record<string, string | string[] | undefined>;
    req: NodeJS.ReadableStream & { headers: Record<string, string | string[] | undefined> };
    res: import('node:http').ServerResponse;
    status: number;
    body: unknown;
    type: string;
    set(name: string, value: string): void;
    store: S3rverStore;
  }

  interface S3rverStore {
    getMetadata(bucket: string, key: string): Promise<Record<string, string>>;
    listObjects(
      bucket: string,
      options: { prefix?: string; delimiter?: string; maxKeys?: number; startAfter?: string },
    ): Promise<{
      objects: {
        key: string;
        size: number;
        lastModifiedDate: Date;
        metadata: Record<string, string>;
      }[];
      commonPrefixes: string[];
      isTruncated: boolean;
    }>;
    getBucket(bucket: string): Promise<unknown>;
    /** Writes an object's metadata JSON (allowed headers, x-amz-meta-*) and its MD5 file. */
    putMetadata(
      bucket: string,
      key: string,
      metadata: Record<string, string>,
      md5: string,
    ): Promise<void>;
    getResourcePath(bucket: string, key: string, resource: string): string;
    putPart(
      bucket: string,
      uploadId: string,
      partNumber: number,
      content: NodeJS.ReadableStream,
    ): Promise<{ md5: string; size: number }>;
  }

  type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void> | void;

  class S3rver {
    constructor(options: {
      address?: string;
      port?: number;
      silent?: boolean;
      directory?: string;
      configureBuckets?: { name: string }[];
      vhostBuckets?: boolean;
      allowMismatchedSignatures?: boolean;
    });
    middleware: Middleware[];
    store: S3rverStore;
    httpServer?: Server;
    run(): Promise<{ address: string; port: number }>;
    close(): Promise<void>;
    on(event: 'error', listener: (error: Error) => void): this;
  }
  export default S3rver;
}

// s3rver's account registry: its SigV4 check only asks that the access key id be registered.
declare module 's3rver/lib/models/account.js' {
  interface AWSAccount {
    createKeyPair(accessKeyId: string, secretAccessKey: string): void;
  }
  const account: { DUMMY_ACCOUNT: AWSAccount; registry: Map<string, AWSAccount> };
  export default account;
}
