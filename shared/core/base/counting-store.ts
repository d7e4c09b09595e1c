/**
 * An ObjectStore that counts the requests it sends, by S3 price class, for the cost estimate.
 * Counts are what the calls imply: a ranged read, a HEAD or a GET is one GET; a write one PUT
 * (a multipart upload at least three: create, a part, complete); a listing one LIST per 1,000
 * keys it returned.
 */
import type { Usage } from '../cost/cost.ts';
import type { ObjectStore } from './ports.ts';

/** Wraps `store`; `requests` grows as it is used. */
export function countingStore(store: ObjectStore): {
  store: ObjectStore;
  requests: Usage['s3Requests'];
} {
  const requests = { get: 0, put: 0, list: 0 };
  const counted: ObjectStore = {
    head: (bucket, key, options) => {
      requests.get += 1;
      return store.head(bucket, key, options);
    },
    list: async (bucket, prefix) => {
      const objects = await store.list(bucket, prefix);
      requests.list += Math.max(1, Math.ceil(objects.length / 1000));
      return objects;
    },
    listPrefixes: (bucket, prefix, options) => {
      requests.list += 1;
      return store.listPrefixes(bucket, prefix, options);
    },
    readRange: (object, start, end) => {
      requests.get += 1;
      return store.readRange(object, start, end);
    },
    getBytes: (bucket, key) => {
      requests.get += 1;
      return store.getBytes(bucket, key);
    },
    // DELETE requests are free on S3: not counted.
    delete: (bucket, key) => store.delete(bucket, key),
    put: (bucket, key, body, options) => {
      requests.put += 1;
      return store.put(bucket, key, body, options);
    },
    compose: (bucket, key, sources, options) => {
      requests.put += 2 + sources.length; // create, one copy per source, complete
      return store.compose(bucket, key, sources, options);
    },
    upload: async (bucket, key, body, options) => {
      const result = await store.upload(bucket, key, body, options);
      // One streaming PUT, or create + parts (8 MiB) + complete.
      const parts = Math.ceil(result.size / (8 * 1024 * 1024));
      requests.put += parts <= 1 || options?.contentLength !== undefined ? 1 : parts + 2;
      return result;
    },
  };
  return { store: counted, requests };
}
