/**
 * The local runtime's IAM evaluation (local/iam/policy.ts): actions, ARNs, conditions, explicit
 * deny, and the S3 request → action mapping (local/iam/s3-actions.ts).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Policy, UnsupportedPolicyError } from '#local/iam/policy.ts';
import { s3Authorizations } from '#local/iam/s3-actions.ts';

const bucket = 'arn:aws:s3:::fanout-local';

/** The coordinator's statements as the template gives them (resolved). */
const coordinator = new Policy([
  {
    Statement: [
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:GetObjectVersion'],
        Resource: [`${bucket}/datasets/*`, `${bucket}/jobs/*/status.json`],
      },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: bucket,
        Condition: { StringLike: { 's3:prefix': ['datasets/*', 'jobs/*'] } },
      },
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: [
          'arn:aws:lambda:us-east-1:000000000000:function:fanout-worker',
          'arn:aws:lambda:us-east-1:000000000000:function:fanout-worker:*',
        ],
      },
    ],
  },
]);

describe('Policy', () => {
  it('allows what a statement grants and nothing else', () => {
    const get = (key: string) =>
      coordinator.evaluate({ action: 's3:GetObject', resource: `${bucket}/${key}` });
    expect(get('datasets/a/b.jsonl')).toBe('allow');
    expect(get('jobs/abc/status.json')).toBe('allow');
    expect(get('jobs/abc/manifest.json')).toBe('implicit-deny');
    expect(get('other/x')).toBe('implicit-deny');
    // Actions match without regard to case; ARNs with it.
    expect(coordinator.allows({ action: 'S3:getobject', resource: `${bucket}/datasets/x` })).toBe(
      true,
    );
    expect(coordinator.allows({ action: 's3:GetObject', resource: `${bucket}/DATASETS/x` })).toBe(
      false,
    );
    expect(coordinator.allows({ action: 's3:PutObject', resource: `${bucket}/datasets/x` })).toBe(
      false,
    );
  });

  it('checks s3:prefix on listings, and a listing without a prefix does not match a condition', () => {
    const list = (prefix?: string) =>
      coordinator.allows({
        action: 's3:ListBucket',
        resource: bucket,
        context: prefix === undefined ? {} : { 's3:prefix': prefix },
      });
    expect(list('jobs/abc/chunks/')).toBe(true);
    expect(list('datasets/')).toBe(true);
    expect(list('active/')).toBe(false);
    expect(list()).toBe(false);
  });

  it('matches function ARNs segment by segment, qualifiers included', () => {
    const invoke = (resource: string) =>
      coordinator.allows({ action: 'lambda:InvokeFunction', resource });
    const worker = 'arn:aws:lambda:us-east-1:000000000000:function:fanout-worker';
    expect(invoke(worker)).toBe(true);
    expect(invoke(`${worker}:$LATEST`)).toBe(true);
    expect(invoke('arn:aws:lambda:us-east-1:000000000000:function:fanout-reducer')).toBe(false);
    // `*` in the resource part does not reach back into the account or region.
    const wide = new Policy([
      {
        Statement: {
          Effect: 'Allow',
          Action: 'lambda:*',
          Resource: 'arn:aws:lambda:*:1:function:*',
        },
      },
    ]);
    expect(wide.allows({ action: 'lambda:InvokeFunction', resource: `${worker}` })).toBe(false);
    expect(
      wide.allows({
        action: 'lambda:InvokeFunction',
        resource: 'arn:aws:lambda:eu-west-1:1:function:x:1',
      }),
    ).toBe(true);
  });

  it('lets an explicit deny win over any allow', () => {
    const policy = new Policy([
      { Statement: { Effect: 'Allow', Action: 's3:*', Resource: `${bucket}/*` } },
      {
        Statement: {
          Effect: 'Deny',
          Action: 's3:DeleteObject',
          Resource: `${bucket}/datasets/*`,
        },
      },
    ]);
    expect(policy.evaluate({ action: 's3:DeleteObject', resource: `${bucket}/datasets/x` })).toBe(
      'explicit-deny',
    );
    expect(policy.evaluate({ action: 's3:DeleteObject', resource: `${bucket}/jobs/x` })).toBe(
      'allow',
    );
  });

  it('evaluates NotAction, NotResource, negated and IfExists conditions', () => {
    const policy = new Policy([
      {
        Statement: [
          { Effect: 'Allow', NotAction: 's3:Delete*', Resource: `${bucket}/*` },
          { Effect: 'Allow', Action: 's3:DeleteObject', NotResource: `${bucket}/keep/*` },
          {
            Effect: 'Allow',
            Action: 's3:ListBucket',
            Resource: bucket,
            Condition: {
              StringNotLike: { 's3:prefix': 'secret/*' },
              NumericLessThanEqualsIfExists: { 's3:max-keys': '100' },
            },
          },
        ],
      },
    ]);
    expect(policy.allows({ action: 's3:GetObject', resource: `${bucket}/a` })).toBe(true);
    expect(policy.allows({ action: 's3:DeleteObject', resource: `${bucket}/keep/a` })).toBe(false);
    expect(policy.allows({ action: 's3:DeleteObject', resource: `${bucket}/tmp/a` })).toBe(true);
    const list = (context: Record<string, string>) =>
      policy.allows({ action: 's3:ListBucket', resource: bucket, context });
    expect(list({ 's3:prefix': 'public/' })).toBe(true);
    expect(list({ 's3:prefix': 'secret/x' })).toBe(false);
    expect(list({ 's3:prefix': 'public/', 's3:max-keys': '1000' })).toBe(false);
    expect(list({})).toBe(true); // a negated operator holds without the key; IfExists too
  });

  it('refuses what it cannot evaluate, saying what', () => {
    expect(
      () =>
        new Policy([
          {
            Statement: {
              Effect: 'Allow',
              Action: 's3:GetObject',
              Resource: `${bucket}/\${aws:username}/*`,
            },
          },
        ]),
    ).toThrow(UnsupportedPolicyError);
    expect(
      () =>
        new Policy([
          {
            Statement: {
              Effect: 'Allow',
              Action: 's3:GetObject',
              Resource: '*',
              Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } },
            },
          },
        ]),
    ).toThrow(/IpAddress is not one the local runtime evaluates/);
  });

  it('never allows what no statement names (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{1,8}\/[a-z./]{0,20}$/), (key) => {
        const allowed = coordinator.allows({
          action: 's3:GetObject',
          resource: `${bucket}/${key}`,
        });
        const expected = key.startsWith('datasets/') || /^jobs\/.*\/status\.json$/.test(key);
        expect(allowed).toBe(expected);
      }),
    );
  });
});

describe('s3Authorizations', () => {
  const request = (method: string, key: string, query = '', headers: Record<string, string> = {}) =>
    s3Authorizations({ method, bucket: 'b', key, query: new URLSearchParams(query), headers });

  it('maps object requests to their actions on the object', () => {
    expect(request('GET', 'k/1')).toEqual([
      { action: 's3:GetObject', resource: 'arn:aws:s3:::b/k/1' },
    ]);
    expect(request('HEAD', 'k')).toEqual([
      { action: 's3:GetObject', resource: 'arn:aws:s3:::b/k' },
    ]);
    expect(request('GET', 'k', 'versionId=3')[0]?.action).toBe('s3:GetObjectVersion');
    expect(request('PUT', 'k')[0]?.action).toBe('s3:PutObject');
    expect(request('POST', 'k', 'uploads')[0]?.action).toBe('s3:PutObject');
    expect(request('PUT', 'k', 'partNumber=1&uploadId=u')[0]?.action).toBe('s3:PutObject');
    expect(request('DELETE', 'k', 'uploadId=u')[0]?.action).toBe('s3:AbortMultipartUpload');
    expect(request('DELETE', 'k')[0]?.action).toBe('s3:DeleteObject');
  });

  it('makes a copy read its source too', () => {
    expect(
      request('PUT', 'dst', 'partNumber=1&uploadId=u', {
        'x-amz-copy-source': '/src-b/a%20b?versionId=1',
      }),
    ).toEqual([
      { action: 's3:PutObject', resource: 'arn:aws:s3:::b/dst' },
      { action: 's3:GetObjectVersion', resource: 'arn:aws:s3:::src-b/a b' },
    ]);
  });

  it('maps a listing to s3:ListBucket on the bucket with its condition keys', () => {
    expect(request('GET', '', 'list-type=2&prefix=jobs%2Fx%2F&max-keys=1')).toEqual([
      {
        action: 's3:ListBucket',
        resource: 'arn:aws:s3:::b',
        context: { 's3:prefix': 'jobs/x/', 's3:max-keys': '1' },
      },
    ]);
  });
});
