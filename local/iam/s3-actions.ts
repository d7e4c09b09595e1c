/**
 * Which IAM action and resource an S3 REST request needs, as S3's authorization documents them
 * ("Actions, resources, and condition keys for Amazon S3"): object requests act on the object's
 * ARN, bucket requests on the bucket's, and a copy also reads its source.
 */
import type { AuthorizationRequest } from './policy.ts';

/** The parts of a request the mapping reads. */
export interface S3Request {
  method: string;
  bucket: string;
  key: string;
  query: URLSearchParams;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

const objectArn = (bucket: string, key: string) => `arn:aws:s3:::${bucket}/${key}`;
const bucketArn = (bucket: string) => `arn:aws:s3:::${bucket}`;

function header(headers: S3Request['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The copy source of UploadPartCopy / CopyObject, as the object GET it implies. */
function copySource(raw: string): AuthorizationRequest | undefined {
  let source: string;
  try {
    source = decodeURIComponent(raw).replace(/^\//, '');
  } catch {
    return undefined;
  }
  const [path = '', query = ''] = source.split('?');
  const slash = path.indexOf('/');
  if (slash < 0) return undefined;
  const versioned = new URLSearchParams(query).has('versionId');
  return {
    action: versioned ? 's3:GetObjectVersion' : 's3:GetObject',
    resource: objectArn(path.slice(0, slash), path.slice(slash + 1)),
  };
}

/** What a bucket-level request needs (ListObjects, HeadBucket, ListMultipartUploads, …). */
function bucketRequest(r: S3Request): AuthorizationRequest[] {
  const resource = bucketArn(r.bucket);
  const method = r.method.toUpperCase();
  if (method === 'GET' || method === 'HEAD') {
    if (r.query.has('uploads')) return [{ action: 's3:ListBucketMultipartUploads', resource }];
    if (r.query.has('versions')) return [{ action: 's3:ListBucketVersions', resource }];
    if (r.query.has('location')) return [{ action: 's3:GetBucketLocation', resource }];
    const context: Record<string, string | undefined> = {};
    for (const key of ['prefix', 'delimiter', 'max-keys']) {
      const value = r.query.get(key);
      if (value !== null) context[`s3:${key}`] = value;
    }
    return [{ action: 's3:ListBucket', resource, context }];
  }
  if (method === 'POST' && r.query.has('delete')) {
    // DeleteObjects names its keys in the body; every key of the bucket is what it may touch.
    return [{ action: 's3:DeleteObject', resource: objectArn(r.bucket, '*') }];
  }
  if (method === 'PUT') return [{ action: 's3:CreateBucket', resource }];
  if (method === 'DELETE') return [{ action: 's3:DeleteBucket', resource }];
  return [{ action: `s3:${method}Bucket`, resource }];
}

/** The authorizations one S3 request needs, all of which must allow it. */
export function s3Authorizations(r: S3Request): AuthorizationRequest[] {
  if (r.key === '') return bucketRequest(r);
  const resource = objectArn(r.bucket, r.key);
  const method = r.method.toUpperCase();
  const versioned = r.query.has('versionId');
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (r.query.has('uploadId')) return [{ action: 's3:ListMultipartUploadParts', resource }];
      if (r.query.has('tagging')) return [{ action: 's3:GetObjectTagging', resource }];
      if (r.query.has('acl')) return [{ action: 's3:GetObjectAcl', resource }];
      return [{ action: versioned ? 's3:GetObjectVersion' : 's3:GetObject', resource }];
    case 'PUT': {
      if (r.query.has('tagging')) return [{ action: 's3:PutObjectTagging', resource }];
      if (r.query.has('acl')) return [{ action: 's3:PutObjectAcl', resource }];
      const put: AuthorizationRequest[] = [{ action: 's3:PutObject', resource }];
      const source = header(r.headers, 'x-amz-copy-source');
      if (source !== undefined) {
        const read = copySource(source);
        // An unreadable copy source names nothing the caller may read.
        put.push(read ?? { action: 's3:GetObject', resource: 'arn:aws:s3:::unparsable-source' });
      }
      return put;
    }
    case 'POST':
      if (r.query.has('select')) return [{ action: 's3:GetObject', resource }];
      // CreateMultipartUpload (?uploads) and CompleteMultipartUpload (?uploadId) are writes.
      return [{ action: 's3:PutObject', resource }];
    case 'DELETE':
      if (r.query.has('uploadId')) return [{ action: 's3:AbortMultipartUpload', resource }];
      return [{ action: versioned ? 's3:DeleteObjectVersion' : 's3:DeleteObject', resource }];
    default:
      return [{ action: `s3:${method}Object`, resource }];
  }
}
