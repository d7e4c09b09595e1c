/**
 * The job bucket, when the user gives none: versioned, encrypted, private, TLS only, its access
 * logged to a bucket of its own; jobs/ and cache/ expire, datasets/ never does.
 */
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { BlockPublicAccess, Bucket, BucketEncryption } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';

/** Creates the job bucket and its access-log bucket in `scope`. */
export function createBucket(
  scope: Construct,
  retention: { jobRetentionDays: number; cacheRetentionDays: number },
): Bucket {
  const common = {
    versioned: true,
    encryption: BucketEncryption.S3_MANAGED,
    blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
    enforceSSL: true,
    removalPolicy: RemovalPolicy.RETAIN,
  };
  const accessLogs = new Bucket(scope, 'AccessLogs', {
    ...common,
    lifecycleRules: [
      { expiration: Duration.days(90), noncurrentVersionExpiration: Duration.days(1) },
    ],
  });
  Validations.of(accessLogs).acknowledge({
    id: 'AwsSolutions-S1',
    reason: 'This is the access log bucket; logging it to itself would loop',
  });
  return new Bucket(scope, 'Bucket', {
    ...common,
    serverAccessLogsBucket: accessLogs,
    serverAccessLogsPrefix: 'bucket/',
    lifecycleRules: [
      // Job outputs are reproducible from their datasets; datasets/ never expire by default.
      {
        prefix: 'jobs/',
        expiration: Duration.days(retention.jobRetentionDays),
        noncurrentVersionExpiration: Duration.days(1),
      },
      // Work kept for reuse (shared/core/run/cache.ts): a later job recomputes what expired.
      {
        prefix: 'cache/',
        expiration: Duration.days(retention.cacheRetentionDays),
        noncurrentVersionExpiration: Duration.days(1),
      },
      // A clientToken names its job for a day (shared/core/run/submit.ts); then it goes.
      {
        prefix: 'tokens/',
        expiration: Duration.days(2),
        noncurrentVersionExpiration: Duration.days(1),
      },
      { abortIncompleteMultipartUploadAfter: Duration.days(2) },
    ],
  });
}
