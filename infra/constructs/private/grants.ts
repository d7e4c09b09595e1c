/**
 * Least privilege, role by role and S3 prefix by prefix (docs/ARCHITECTURE.md, "S3 layout"),
 * and the cdk-nag acknowledgements of exactly the wildcards that needs. The local runtime
 * enforces these same policies from the synthesized template.
 */
import { Validations } from 'aws-cdk-lib';
import { Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledgeWildcards } from '../nag.ts';
import type { Functions } from './functions.ts';

/** Grants each function what it needs of the bucket and of the other functions. */
export function grantLeastPrivilege(
  scope: Construct,
  fns: Functions,
  bucket: IBucket,
  prefixes: readonly string[],
): void {
  const { api, coordinator, worker, reducer, sweeper } = fns;
  // Least privilege, by S3 prefix (ARCHITECTURE.md "S3 layout"), role by role.
  const g = s3Grants(bucket, prefixes);
  grantWorker(g, worker);
  grantCoordinator(g, coordinator);
  grantReducer(g, reducer);
  grantApi(g, api);
  grantSweeper(g, sweeper);
  coordinator.grantInvoke(sweeper);
  worker.grantInvoke(coordinator);
  // A long job continues in a new coordinator invocation. The statement lives in its own
  // policy: in the role's default policy it would make the function depend on itself.
  new Policy(scope, 'CoordinatorContinues', {
    statements: [
      new PolicyStatement({
        actions: ['lambda:InvokeFunction'],
        resources: [coordinator.functionArn],
      }),
    ],
  }).attachToRole(coordinator.role!);
  // Likewise a reducer with a large fan-in merges groups of parts in its own invocations.
  new Policy(scope, 'ReducerFansOut', {
    statements: [
      new PolicyStatement({
        actions: ['lambda:InvokeFunction'],
        resources: [reducer.functionArn],
      }),
    ],
  }).attachToRole(reducer.role!);
  reducer.grantInvoke(coordinator);
  coordinator.grantInvoke(api);
}

/** What every role's S3 grants are made of: the bucket's prefixes, and the two statement kinds. */
interface S3Grants {
  bucket: IBucket;
  /** Objects of every job: `jobs/{any job id}/{suffix}`. */
  jobs: (suffix: string) => string;
  /** The allowed input prefixes' objects, and the prefixes as listing patterns. */
  inputs: string[];
  inputPrefixes: string[];
  read: string[];
  allow: (fn: IFunction, actions: string[], resources: string[]) => void;
  /**
   * Listing, granted wherever a role must tell a missing key from a refused one: without
   * s3:ListBucket S3 answers 403, not 404, for a key that does not exist (S3's GetObject).
   */
  listUnder: (fn: IFunction, under: string[]) => void;
}

function s3Grants(bucket: IBucket, prefixes: readonly string[]): S3Grants {
  return {
    bucket,
    jobs: (suffix) => bucket.arnForObjects(`jobs/*/${suffix}`),
    inputs: prefixes.map((p) => bucket.arnForObjects(`${p}*`)),
    inputPrefixes: prefixes.map((p) => `${p}*`),
    read: ['s3:GetObject', 's3:GetObjectVersion'],
    allow: (fn, actions, resources) =>
      fn.addToRolePolicy(new PolicyStatement({ actions, resources })),
    listUnder: (fn, under) =>
      fn.addToRolePolicy(
        new PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': under } },
        }),
      ),
  };
}

function grantWorker(
  { allow, listUnder, jobs, inputs, inputPrefixes, read, bucket }: S3Grants,
  worker: IFunction,
): void {
  allow(worker, read, inputs);
  allow(worker, ['s3:PutObject', 's3:AbortMultipartUpload'], [jobs('parts/*'), jobs('chunks/*')]);
  // An attempt that lost to a backup removes its own part; it reads the outcome that beat its
  // create-only write, which may be its own (a retried PUT whose first try landed), by attempt
  // number (shared/core/run/worker.ts).
  allow(worker, ['s3:DeleteObject'], [jobs('parts/*')]);
  allow(worker, ['s3:GetObject'], [jobs('chunks/*')]);
  listUnder(worker, inputPrefixes);
  // A keyed job (docs/SHUFFLE.md): a map attempt writes its runs; a partition task reads every
  // map attempt's runs, writes its part and its outcome create-only, reads the outcome that beat
  // it, and removes its part when it lost. Either removes its own object when it lost.
  allow(
    worker,
    ['s3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'],
    [jobs('shuffle/*'), jobs('reduced/*')],
  );
  allow(worker, ['s3:PutObject'], [jobs('partitions/*')]);
  allow(worker, ['s3:GetObject'], [jobs('shuffle/*'), jobs('partitions/*')]);
  listUnder(worker, ['jobs/*/shuffle/*', 'jobs/*/partitions/*']);
  // Reuse (docs/ARCHITECTURE.md): a worker reads the packs its pieces were placed in, and
  // keeps the pieces it reads in a pack of its own; a missing pack must answer 404, not 403.
  allow(worker, ['s3:GetObject', 's3:PutObject'], [bucket.arnForObjects('cache/*')]);
  listUnder(worker, ['cache/*']);
}

function grantCoordinator(
  { allow, listUnder, jobs, inputs, inputPrefixes, read, bucket }: S3Grants,
  coordinator: IFunction,
): void {
  // Reuse: the coordinator reads the newest index, and makes the outcome of a chunk whose every
  // piece was kept itself, as a worker would: its runs or part, and its outcome, create-only (an
  // outcome that lost removes its runs or part).
  allow(coordinator, ['s3:GetObject'], [bucket.arnForObjects('cache/*')]);
  // What it saw of each input object that spans cells (its version, CRC and the older versions
  // it extends by appending), and the job's index of where each piece lies, for the next job
  // (shared/core/run/cache.ts).
  allow(
    coordinator,
    ['s3:PutObject'],
    [bucket.arnForObjects('cache/objects/*'), bucket.arnForObjects('cache/*/index/*')],
  );
  allow(
    coordinator,
    ['s3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'],
    [jobs('parts/*'), jobs('shuffle/*')],
  );
  allow(coordinator, ['s3:PutObject'], [jobs('chunks/*')]);
  // A continuation, a resume and a redrive read the manifest and the outcomes of the chunks
  // that are done (shared/core/run/coordinator.ts), and list them.
  allow(coordinator, read, [
    ...inputs,
    jobs('job.json'),
    jobs('status.json'),
    jobs('manifest.json'),
    jobs('chunks/*'),
  ]);
  allow(coordinator, ['s3:PutObject'], [jobs('status.json'), jobs('manifest.json')]);
  listUnder(coordinator, [...inputPrefixes, 'jobs/*', 'cache/*']);
}

function grantReducer({ allow, listUnder, jobs, read }: S3Grants, reducer: IFunction): void {
  allow(reducer, read, [
    jobs('manifest.json'),
    jobs('chunks/*'),
    jobs('parts/*'),
    jobs('partitions/*'),
    jobs('reduced/*'),
    // A keyed job whose shuffle is small has no partitions: the reducer merges the map runs.
    jobs('shuffle/*'),
    jobs('merged/*'),
    jobs('status.json'),
  ]);
  allow(
    reducer,
    ['s3:PutObject', 's3:AbortMultipartUpload'],
    [jobs('result.json'), jobs('result.jsonl'), jobs('status.json'), jobs('merged/*')],
  );
  listUnder(reducer, ['jobs/*']);
}

function grantApi(
  { allow, listUnder, jobs, inputs, inputPrefixes, read, bucket }: S3Grants,
  api: IFunction,
): void {
  allow(api, read, [
    ...inputs,
    jobs('job.json'),
    jobs('status.json'),
    jobs('manifest.json'),
    jobs('chunks/*'),
    jobs('result.json'),
    jobs('result.jsonl'),
    jobs('report.html'),
  ]);
  allow(
    api,
    ['s3:PutObject'],
    [
      jobs('job.json'),
      jobs('status.json'),
      jobs('report.html'),
      bucket.arnForObjects('active/*'),
      ...inputs,
    ],
  );
  // A submission's clientToken: claimed create-only, read when it was claimed before
  // (shared/core/run/submit.ts), so a retried POST /jobs returns the same job.
  allow(api, ['s3:GetObject', 's3:PutObject'], [bucket.arnForObjects('tokens/*')]);
  listUnder(api, [...inputPrefixes, 'jobs/*']);
}

function grantSweeper({ allow, listUnder, jobs, bucket }: S3Grants, sweeper: IFunction): void {
  allow(sweeper, ['s3:GetObject'], [jobs('status.json')]);
  allow(sweeper, ['s3:PutObject'], [jobs('status.json')]);
  allow(sweeper, ['s3:DeleteObject'], [bucket.arnForObjects('active/*')]);
  listUnder(sweeper, ['active/*', 'jobs/*']);
}

/**
 * Acknowledges cdk-nag's findings that are deliberate: the managed policy that only writes the
 * functions' own logs, and every wildcard resource, role by role (any other fails synthesis).
 */
export function acknowledgeFindings(
  fns: Functions,
  bucket: IBucket,
  prefixes: readonly string[],
): void {
  const { api, coordinator, worker, reducer, sweeper } = fns;
  const jobs = (suffix: string) => bucket.arnForObjects(`jobs/*/${suffix}`);
  const inputs = prefixes.map((p) => bucket.arnForObjects(`${p}*`));
  for (const fn of [api, coordinator, worker, reducer, sweeper]) {
    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: "AWSLambdaBasicExecutionRole only allows writing the function's own logs",
    });
  }
  // Every wildcard resource, role by role: S3 key prefixes (job ids and chunk numbers exist
  // only at run time) and the versions of our own functions (grantInvoke's `Arn:*`). Any other
  // wildcard fails cdk-nag.
  const why =
    'Wildcards are confined to S3 key prefixes (datasets/*, jobs/*/parts/*, …) because job ids and chunk numbers exist only at run time, and to the versions of our own functions (Arn:*)';
  const objects = (...paths: string[]) => paths.map((p) => jobs(p));
  const versions = (fn: IFunction) => `${fn.functionArn}:*`;
  const active = bucket.arnForObjects('active/*');
  const wildcards: [IFunction, string[]][] = [
    [
      worker,
      [
        ...inputs,
        ...objects('parts/*', 'chunks/*', 'shuffle/*', 'reduced/*', 'partitions/*'),
        bucket.arnForObjects('cache/*'),
      ],
    ],
    [
      reducer,
      objects(
        'manifest.json',
        'chunks/*',
        'parts/*',
        'merged/*',
        'partitions/*',
        'reduced/*',
        'shuffle/*',
        'status.json',
        'result.json',
        'result.jsonl',
      ),
    ],
    [
      coordinator,
      [
        ...inputs,
        ...objects('job.json', 'status.json', 'manifest.json', 'chunks/*', 'parts/*', 'shuffle/*'),
        bucket.arnForObjects('cache/*'),
        bucket.arnForObjects('cache/objects/*'),
        bucket.arnForObjects('cache/*/index/*'),
        versions(worker),
        versions(reducer),
      ],
    ],
    [
      api,
      [
        ...inputs,
        ...objects(
          'job.json',
          'status.json',
          'manifest.json',
          'chunks/*',
          'result.json',
          'result.jsonl',
          'report.html',
        ),
        active,
        bucket.arnForObjects('tokens/*'),
        versions(coordinator),
      ],
    ],
    [sweeper, [...objects('status.json'), active, versions(coordinator)]],
  ];
  for (const [fn, resources] of wildcards) acknowledgeWildcards(fn.role!, resources, why);
  // Active tracing's grant: X-Ray's PutTraceSegments and PutTelemetryRecords have no
  // resource-level permissions. The infra test allows `*` for those two actions only.
  for (const fn of [worker, reducer, coordinator, api, sweeper]) {
    acknowledgeWildcards(
      fn.role!,
      ['*'],
      'X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions',
    );
  }
}
