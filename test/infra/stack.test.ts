/**
 * The CDK stack, synthesised (bundling skipped) and asserted: functions, bucket, least-privilege
 * IAM, the HTTP API's authorization, logging and throttling, and cdk-nag with zero findings.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { ROUTES } from '#core/api/api.ts';
import { handOverMs } from '#core/base/limits.ts';
import { FanoutService, type FanoutServiceProps } from '../../infra/constructs/fanout-service.ts';
import { FanoutStack } from '../../infra/stack.ts';
import { HTTP_API_LOG_VARIABLES } from '../fixtures/http-api-log-variables.ts';

const newApp = () => new App({ context: { 'aws:cdk:bundling-stacks': [] } });

function synth() {
  const app = newApp();
  const stack = new FanoutStack(app, 'Test', {
    env: { account: '111111111111', region: 'eu-west-1' },
  });
  const template = Template.fromStack(stack);
  return { app, stack, template };
}

const { template } = synth();

/**
 * A fresh app with cdk-nag's AwsSolutions checks, synthesised once (its aspects acknowledge,
 * then the plugin validates: an unacknowledged error fails the synthesis), and every finding
 * that remains afterwards, warnings included, as `rule path`.
 */
function nag(change?: (stack: FanoutStack) => void): string[] {
  const app = newApp();
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const stack = new FanoutStack(app, 'Nag', {
    env: { account: '111111111111', region: 'eu-west-1' },
  });
  change?.(stack);
  app.synth();
  return new AwsSolutionsChecks(app)
    .validateScope(app)
    .violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} ${r.constructPath}`));
}
const json = JSON.stringify(template.toJSON());

/** Active tracing's grant, the one statement allowed a `*` resource (X-Ray has no others). */
const isXray = (st: { Action: unknown }) =>
  JSON.stringify([st.Action].flat().sort()) ===
  JSON.stringify(['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);

/** The statements of the policy attached to the role of the function whose id starts with `name`. */
function statementsOf(name: string) {
  const policies = template.findResources('AWS::IAM::Policy');
  const entry = Object.entries(policies).find(([id]) =>
    id.startsWith(`Fanout${name}FunctionServiceRoleDefaultPolicy`),
  );
  expect(entry, `policy of ${name}`).toBeDefined();
  return (
    entry![1] as {
      Properties: {
        PolicyDocument: {
          Statement: { Action: string | string[]; Resource: unknown; Condition?: unknown }[];
        };
      };
    }
  ).Properties.PolicyDocument.Statement.filter((st) => !isXray(st));
}

/** Resource suffixes of a statement (`/jobs/*\/parts/*`), or the function it names. */
function resources(statement: { Resource: unknown }): string[] {
  return [statement.Resource].flat().map((r) => {
    const text = JSON.stringify(r);
    const key = /"(\/[^"]*)"\]\]\}$/.exec(text)?.[1];
    if (key) return key;
    const fn = /"(Fanout\w+?Function)[0-9A-F]{8}"/.exec(text)?.[1];
    return fn ? `${fn}${text.includes(':*') ? ':*' : ''}` : text;
  });
}

/** The alarms of a template: the metric each watches (plain, or a labelled metric stat). */
function alarmsOf(t: Template) {
  return (
    Object.values(t.findResources('AWS::CloudWatch::Alarm')) as {
      Properties: {
        MetricName?: string;
        Namespace?: string;
        Threshold: number;
        Metrics?: { MetricStat: { Metric: { MetricName: string; Namespace: string } } }[];
      };
    }[]
  ).map(({ Properties: p }) => ({
    metric: p.MetricName ?? p.Metrics?.[0]?.MetricStat.Metric.MetricName,
    namespace: p.Namespace ?? p.Metrics?.[0]?.MetricStat.Metric.Namespace,
    threshold: p.Threshold,
  }));
}

const actionsOf = (statements: { Action: string | string[] }[]) =>
  statements.flatMap((s) => [s.Action].flat());

describe('FanoutStack', () => {
  it('passes cdk-nag AwsSolutions with every finding acknowledged', () => {
    expect(nag()).toEqual([]);
  });

  it('fails synthesis on a wildcard that is not on the list', () => {
    expect(() =>
      nag((stack) =>
        stack.service.functions.coordinator.addToRolePolicy(
          new PolicyStatement({
            actions: ['s3:GetObject'],
            resources: [stack.service.bucket.arnForObjects('*')],
          }),
        ),
      ),
    ).toThrow(/AwsSolutions-IAM5\[Resource::<FanoutBucket\w+\.Arn>\/\*\]/);
  });

  it('creates five Node.js 24 ARM64 functions with source maps and log retention', () => {
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      { Runtime: 'nodejs24.x', Architectures: ['arm64'] },
      5,
    );
    template.allResourcesProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          NODE_OPTIONS: '--enable-source-maps',
          FANOUT_BUCKET: Match.anyValue(),
        }),
      },
      LoggingConfig: Match.objectLike({ LogGroup: Match.anyValue() }),
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 1769,
      Timeout: 300,
      Environment: {
        Variables: { FANOUT_BUCKET: Match.anyValue(), NODE_OPTIONS: Match.anyValue() },
      },
    });
  });

  it('gives the functions timeouts that fit together, and tells the coordinator both waits', () => {
    const timeoutOf = (name: string) => {
      const entry = Object.entries(template.findResources('AWS::Lambda::Function')).find(([id]) =>
        id.startsWith(`Fanout${name}Function`),
      );
      expect(entry, name).toBeDefined();
      return (entry![1] as { Properties: { Timeout: number; Environment: { Variables: object } } })
        .Properties;
    };
    expect(timeoutOf('Coordinator').Timeout).toBe(900);
    expect(timeoutOf('Worker').Timeout).toBe(300);
    expect(timeoutOf('Reducer').Timeout).toBe(300);
    expect(timeoutOf('Coordinator').Environment.Variables).toMatchObject({
      FANOUT_WORKER_TIMEOUT_SECONDS: '300',
      FANOUT_REDUCER_TIMEOUT_SECONDS: '300',
    });
    expect(timeoutOf('Reducer').Environment.Variables).toMatchObject({
      FANOUT_REDUCER_TIMEOUT_SECONDS: '300',
    });
    // What the coordinator does with them: a run dispatches for at least half its time.
    const ms = (s: number) => s * 1000;
    expect(handOverMs(ms(timeoutOf('Worker').Timeout))).toBeLessThanOrEqual(
      ms(timeoutOf('Coordinator').Timeout) / 2,
    );
  });

  it('refuses a worker timeout that does not fit in the coordinator timeout, naming both props', () => {
    const synthWith = (service: FanoutServiceProps) => () =>
      new FanoutStack(newApp(), 'Timeouts', { service });
    // The old defaults: 900 s workers under a 900 s coordinator handed over at once.
    expect(synthWith({ workerTimeout: Duration.minutes(15) })).toThrow(
      /workerTimeout \(900 s\) does not fit in coordinatorTimeout \(900 s\).*raise coordinatorTimeout to at least/,
    );
    expect(
      synthWith({ coordinatorTimeout: Duration.seconds(60), workerTimeout: Duration.seconds(30) }),
    ).toThrow(/workerTimeout \(30 s\) does not fit in coordinatorTimeout \(60 s\)/);
    expect(
      synthWith({ coordinatorTimeout: Duration.minutes(5), reducerTimeout: Duration.minutes(5) }),
    ).toThrow(/reducerTimeout \(300 s\) does not fit in coordinatorTimeout \(300 s\)/);
    expect(synthWith({ coordinatorTimeout: Duration.minutes(16) })).toThrow(
      /coordinatorTimeout must be between 1 s and 900 s; got 960 s/,
    );
    expect(synthWith({ maxConcurrency: 1000 })).toThrow(
      /maxConcurrency must be an integer from 1 to 900.*1,024 file descriptors.*got 1000/,
    );
  });

  it('takes the timeouts from CDK context for a deploy rehearsal', () => {
    const app = new App({
      context: {
        'aws:cdk:bundling-stacks': [],
        'fanout:workerTimeoutSeconds': '5',
        'fanout:coordinatorTimeoutSeconds': '30',
      },
    });
    const t = Template.fromStack(new FanoutStack(app, 'Rehearsal'));
    const timeouts = Object.entries(t.findResources('AWS::Lambda::Function'))
      .map(([id, r]) => [/^Fanout(\w+?)Function/.exec(id)?.[1], r.Properties.Timeout])
      .sort();
    expect(timeouts).toEqual([
      ['Api', 29],
      ['Coordinator', 30],
      ['Reducer', 10],
      ['Sweeper', 60],
      ['Worker', 5],
    ]);
    expect(
      () =>
        new FanoutStack(
          new App({ context: { 'fanout:workerTimeoutSeconds': '2.5' } }),
          'BadRehearsal',
        ),
    ).toThrow(/context fanout:workerTimeoutSeconds must be a whole number of seconds/);
  });

  it('reserves concurrency for the control plane only when asked', () => {
    expect(json).not.toContain('ReservedConcurrentExecutions');
    const stack = new Stack(newApp(), 'Reserved');
    new FanoutService(stack, 'Fanout', {
      reservedConcurrency: { api: 5, coordinator: 10, reducer: 4, sweeper: 1 },
    });
    const reserved = Object.entries(
      Template.fromStack(stack).findResources('AWS::Lambda::Function'),
    )
      .map(([id, r]) => [
        /^Fanout(\w+?)Function/.exec(id)?.[1],
        r.Properties.ReservedConcurrentExecutions,
      ])
      .sort();
    expect(reserved).toEqual([
      ['Api', 5],
      ['Coordinator', 10],
      ['Reducer', 4],
      ['Sweeper', 1],
      ['Worker', undefined],
    ]);
  });

  it('traces every function with X-Ray and configures Powertools logs and metrics', () => {
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      {
        TracingConfig: { Mode: 'Active' },
        Environment: {
          Variables: Match.objectLike({
            POWERTOOLS_SERVICE_NAME: 'fanout',
            POWERTOOLS_METRICS_NAMESPACE: 'fanout',
            POWERTOOLS_LOG_LEVEL: 'INFO',
            // The tracer is made at init, before Lambda sets a trace id: the stack says so.
            POWERTOOLS_TRACE_ENABLED: 'true',
          }),
        },
      },
      5,
    );
    const xray = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
      JSON.stringify(p).includes('xray:PutTraceSegments'),
    );
    expect(xray).toHaveLength(5);
  });

  it("gives the coordinator the worker code's identity once bundled, which cache entries are addressed by", () => {
    const envOf = (t: Template, logicalId: string) => {
      const fns = t.findResources('AWS::Lambda::Function') as Record<
        string,
        { Properties: { Environment?: { Variables?: Record<string, unknown> } } }
      >;
      const [, fn] = Object.entries(fns).find(([id]) => id.includes(logicalId)) ?? [];
      return fn?.Properties.Environment?.Variables ?? {};
    };
    // Skipped bundling: no identity, so no job reuses work (nothing is deployed from it).
    expect(envOf(template, 'Coordinator').FANOUT_CODE_ID).toBeUndefined();
    const outdir = mkdtempSync(join(tmpdir(), 'cdk-'));
    try {
      const bundled = Template.fromStack(
        new FanoutStack(new App({ outdir }), 'B', {
          env: { account: '111111111111', region: 'eu-west-1' },
        }),
      );
      expect(envOf(bundled, 'Coordinator').FANOUT_CODE_ID).toMatch(/^[0-9a-f]{32}$/);
      expect(envOf(bundled, 'Worker').FANOUT_CODE_ID).toBeUndefined();
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });

  it('keeps a versioned, encrypted, private, SSL-only bucket whose jobs/ expire', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
        ],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'jobs/', ExpirationInDays: 30 }),
          // Work kept for reuse expires too (cacheRetentionDays).
          Match.objectLike({ Prefix: 'cache/', ExpirationInDays: 30 }),
        ]),
      },
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'bucket/' }),
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
    // No rule expires datasets/.
    const buckets = Object.values(template.findResources('AWS::S3::Bucket')) as {
      Properties: { LifecycleConfiguration?: { Rules: { Prefix?: string }[] } };
    }[];
    expect(
      buckets
        .flatMap((b) => b.Properties.LifecycleConfiguration?.Rules ?? [])
        .some((r) => r.Prefix?.startsWith('datasets')),
    ).toBe(false);
  });

  it("grants the worker only reads of datasets/ and outcomes, writes of its parts and outcomes, removal of a losing part, and a keyed job's shuffle", () => {
    const statements = statementsOf('Worker');
    expect(
      statements.map((s) => [actionsOf([s]).sort(), resources(s).sort(), s.Condition ?? null]),
    ).toEqual([
      [['s3:GetObject', 's3:GetObjectVersion'], ['/datasets/*'], null],
      [['s3:AbortMultipartUpload', 's3:PutObject'], ['/jobs/*/chunks/*', '/jobs/*/parts/*'], null],
      [['s3:DeleteObject'], ['/jobs/*/parts/*'], null],
      // The outcome that beat its create-only write: its own (a retried PUT) or another's.
      [['s3:GetObject'], ['/jobs/*/chunks/*'], null],
      // A vanished input is a 404 (DatasetChangedError), not a 403, only with listing.
      [
        ['s3:ListBucket'],
        [expect.stringContaining('FanoutBucket')],
        { StringLike: { 's3:prefix': ['datasets/*'] } },
      ],
      // A keyed job's shuffle (docs/SHUFFLE.md): a map attempt's runs, a partition's part and
      // outcome, each removed by the attempt that lost; a partition reads every map's runs.
      [
        ['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:PutObject'],
        ['/jobs/*/reduced/*', '/jobs/*/shuffle/*'],
        null,
      ],
      [['s3:PutObject'], ['/jobs/*/partitions/*'], null],
      [['s3:GetObject'], ['/jobs/*/partitions/*', '/jobs/*/shuffle/*'], null],
      [
        ['s3:ListBucket'],
        [expect.stringContaining('FanoutBucket')],
        { StringLike: { 's3:prefix': ['jobs/*/shuffle/*', 'jobs/*/partitions/*'] } },
      ],
      // Reuse (docs/ARCHITECTURE.md): the entries it was told of, and those it keeps; a missing
      // entry is a 404 only with listing.
      [['s3:GetObject', 's3:PutObject'], ['/cache/*'], null],
      [
        ['s3:ListBucket'],
        [expect.stringContaining('FanoutBucket')],
        { StringLike: { 's3:prefix': ['cache/*'] } },
      ],
    ]);
  });

  it('lets the coordinator invoke the worker and reducer only, and write status and manifest', () => {
    const statements = statementsOf('Coordinator');
    const invoke = statements.filter((s) => actionsOf([s]).includes('lambda:InvokeFunction'));
    expect(invoke.flatMap(resources).sort()).toEqual([
      'FanoutReducerFunction',
      'FanoutReducerFunction:*',
      'FanoutWorkerFunction',
      'FanoutWorkerFunction:*',
    ]);
    const writes = statements.filter((s) => actionsOf([s]).includes('s3:PutObject'));
    // The outcome (and runs or part) of a chunk it makes from the cache, with no worker.
    expect(writes.flatMap(resources).sort()).toEqual([
      '/cache/*/index/*',
      '/cache/objects/*',
      '/jobs/*/chunks/*',
      '/jobs/*/manifest.json',
      '/jobs/*/parts/*',
      '/jobs/*/shuffle/*',
      '/jobs/*/status.json',
    ]);
    // A continuation, a resume or a redrive reads the manifest and the finished outcomes.
    const reads = statements.filter((s) => actionsOf([s]).includes('s3:GetObject'));
    expect(reads.flatMap(resources).sort()).toEqual([
      '/cache/*',
      '/datasets/*',
      '/jobs/*/chunks/*',
      '/jobs/*/job.json',
      '/jobs/*/manifest.json',
      '/jobs/*/status.json',
    ]);
    const list = statements.find((s) => actionsOf([s]).includes('s3:ListBucket'));
    expect(list?.Condition).toEqual({
      StringLike: { 's3:prefix': ['datasets/*', 'jobs/*', 'cache/*'] },
    });
  });

  it('lets the reducer read job objects and write only the result, status and group merges', () => {
    const writes = statementsOf('Reducer').filter((s) => actionsOf([s]).includes('s3:PutObject'));
    expect(writes.flatMap(resources).sort()).toEqual([
      '/jobs/*/merged/*',
      '/jobs/*/result.json',
      '/jobs/*/result.jsonl',
      '/jobs/*/status.json',
    ]);
    expect(actionsOf(statementsOf('Reducer'))).not.toContain('lambda:InvokeFunction');
    const list = statementsOf('Reducer').find((s) => actionsOf([s]).includes('s3:ListBucket'));
    expect(list?.Condition).toEqual({ StringLike: { 's3:prefix': ['jobs/*'] } });
  });

  it('lets the api write job.json and status, read status and results, invoke the coordinator only', () => {
    const statements = statementsOf('Api');
    const writes = statements.filter((s) => actionsOf([s]).includes('s3:PutObject'));
    expect(writes.flatMap(resources).sort()).toEqual([
      '/active/*',
      '/datasets/*',
      '/jobs/*/job.json',
      '/jobs/*/report.html',
      '/jobs/*/status.json',
      '/tokens/*',
    ]);
    const invoke = statements.filter((s) => actionsOf([s]).includes('lambda:InvokeFunction'));
    expect(invoke.flatMap(resources).sort()).toEqual([
      'FanoutCoordinatorFunction',
      'FanoutCoordinatorFunction:*',
    ]);
    // GET /jobs/{unknown} is a 404 only where the api may list jobs/ (else S3 answers 403).
    const list = statements.find((s) => actionsOf([s]).includes('s3:ListBucket'));
    expect(list?.Condition).toEqual({ StringLike: { 's3:prefix': ['datasets/*', 'jobs/*'] } });
  });

  it("retries the coordinator's async events twice for at most an hour, then hands them to the sweeper", () => {
    const configs = template.findResources('AWS::Lambda::EventInvokeConfig');
    expect(Object.keys(configs)).toHaveLength(1);
    const config = Object.values(configs)[0] as {
      Properties: {
        FunctionName: unknown;
        MaximumRetryAttempts: number;
        MaximumEventAgeInSeconds: number;
        DestinationConfig: { OnFailure: { Destination: unknown } };
      };
    };
    expect(config.Properties.MaximumRetryAttempts).toBe(2);
    expect(config.Properties.MaximumEventAgeInSeconds).toBe(3600);
    expect(JSON.stringify(config.Properties.FunctionName)).toMatch(/FanoutCoordinatorFunction/);
    expect(JSON.stringify(config.Properties.DestinationConfig.OnFailure.Destination)).toMatch(
      /FanoutSweeperFunction\w+","Arn"/,
    );
    // The coordinator may invoke its destination, through a policy of its own (no cycle).
    const policies = template.findResources('AWS::IAM::Policy');
    const destination = Object.entries(policies).find(([id]) =>
      id.startsWith('FanoutCoordinatorFailureDestination'),
    );
    expect(JSON.stringify(destination?.[1])).toMatch(
      /"Action":"lambda:InvokeFunction","Effect":"Allow","Resource":\{"Fn::GetAtt":\["FanoutSweeperFunction\w+","Arn"\]\}/,
    );
  });

  it('runs the sweeper every minute, with no retry of a missed sweep', () => {
    const rules = (
      Object.values(template.findResources('AWS::Events::Rule')) as {
        Properties: {
          ScheduleExpression?: string;
          Targets: { Arn: unknown; RetryPolicy?: unknown }[];
        };
      }[]
    ).filter((r) => r.Properties.ScheduleExpression !== undefined);
    expect(rules).toHaveLength(1);
    expect(rules[0]!.Properties.ScheduleExpression).toBe('rate(1 minute)');
    expect(rules[0]!.Properties.Targets).toHaveLength(1);
    expect(JSON.stringify(rules[0]!.Properties.Targets[0]!.Arn)).toMatch(/FanoutSweeperFunction/);
    expect(rules[0]!.Properties.Targets[0]!.RetryPolicy).toEqual({ MaximumRetryAttempts: 0 });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [Match.stringLikeRegexp('FanoutSweeperFunction'), 'Arn'] },
    });
  });

  it('lets the sweeper list active/, read and write status, delete markers and invoke the coordinator, nothing else', () => {
    const statements = statementsOf('Sweeper');
    expect(
      statements.map((s) => [actionsOf([s]).sort(), resources(s).sort(), s.Condition ?? null]),
    ).toEqual([
      [['s3:GetObject'], ['/jobs/*/status.json'], null],
      [['s3:PutObject'], ['/jobs/*/status.json'], null],
      [['s3:DeleteObject'], ['/active/*'], null],
      [
        ['s3:ListBucket'],
        [expect.stringContaining('FanoutBucket')],
        { StringLike: { 's3:prefix': ['active/*', 'jobs/*'] } },
      ],
      [
        ['lambda:InvokeFunction'],
        ['FanoutCoordinatorFunction', 'FanoutCoordinatorFunction:*'],
        null,
      ],
      [['events:PutEvents'], [expect.stringContaining('event-bus/default')], null],
    ]);
  });

  it('lets every function that changes a job state publish to the default bus, and tells it which', () => {
    for (const name of ['Api', 'Coordinator', 'Reducer', 'Sweeper']) {
      const put = statementsOf(name).filter((s) => actionsOf([s]).includes('events:PutEvents'));
      expect(put.flatMap(resources), name).toEqual([expect.stringContaining(':event-bus/default')]);
    }
    expect(actionsOf(statementsOf('Worker'))).not.toContain('events:PutEvents');
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      { Environment: { Variables: Match.objectLike({ FANOUT_EVENT_BUS: 'default' }) } },
      4,
    );
  });

  it('counts jobs that end SUCCEEDED and FAILED with rules on the job events', () => {
    for (const status of ['SUCCEEDED', 'FAILED']) {
      template.hasResourceProperties('AWS::Events::Rule', {
        EventPattern: {
          source: ['fanout'],
          'detail-type': ['Fanout Job Status Change'],
          detail: { status: [status] },
        },
      });
    }
  });

  it('draws a dashboard of jobs, chunks, errors, throttles, duration and concurrency', () => {
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    const body = JSON.stringify(dashboards[0]);
    for (const title of [
      'Jobs',
      'Chunks (worker invocations)',
      'Errors',
      'Throttles',
      'Duration',
      'Concurrency',
    ]) {
      expect(body).toContain(`\\"title\\":\\"${title}\\"`);
    }
    for (const metric of ['MatchedEvents', 'JobsResumed']) expect(body).toContain(metric);
    // The Lambda metrics by namespace and name: their bare names are also widget titles.
    for (const metric of ['Invocations', 'Errors', 'Throttles', 'Duration']) {
      expect(body).toContain(`\\"AWS/Lambda\\",\\"${metric}\\"`);
    }
    expect(body).toContain('ConcurrentExecutions');
  });

  it('alarms on function errors, throttles, failed and stuck jobs, and the failure destination', () => {
    const alarms = alarmsOf(template);
    const byMetric = (metric: string, namespace: string) =>
      alarms.filter((a) => a.metric === metric && a.namespace === namespace);
    expect(byMetric('Errors', 'AWS/Lambda')).toHaveLength(5); // one per function
    expect(byMetric('Throttles', 'AWS/Lambda').map((a) => a.threshold)).toEqual([100]);
    expect(byMetric('MatchedEvents', 'AWS/Events')).toHaveLength(1); // jobs FAILED
    expect(byMetric('JobsResumed', 'fanout')).toHaveLength(1);
    expect(byMetric('CoordinatorFailureRecords', 'fanout')).toHaveLength(1);
    expect(alarms).toHaveLength(9);
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ $.message = "coordinator failure record" }',
      MetricTransformations: [Match.objectLike({ MetricName: 'CoordinatorFailureRecords' })],
    });
  });

  it('lets only the coordinator and the reducer invoke themselves (continuations, tree reduce)', () => {
    const policies = template.findResources('AWS::IAM::Policy');
    const self = (name: string) => {
      const entry = Object.entries(policies).find(([id]) => id.startsWith(`Fanout${name}`));
      expect(entry, name).toBeDefined();
      const statements = (
        entry![1] as {
          Properties: { PolicyDocument: { Statement: { Action: string; Resource: unknown }[] } };
        }
      ).Properties.PolicyDocument.Statement;
      return statements.map((st) => [st.Action, JSON.stringify(st.Resource)]);
    };
    expect(self('CoordinatorContinues')).toEqual([
      ['lambda:InvokeFunction', expect.stringMatching(/FanoutCoordinatorFunction\w+","Arn"/)],
    ]);
    expect(self('ReducerFansOut')).toEqual([
      ['lambda:InvokeFunction', expect.stringMatching(/FanoutReducerFunction\w+","Arn"/)],
    ]);
  });

  it('allows no "*" resource and no "*" action in any IAM policy', () => {
    const policies = Object.values(template.findResources('AWS::IAM::Policy')) as {
      Properties: {
        PolicyDocument: { Statement: { Effect: string; Action: unknown; Resource: unknown }[] };
      };
    }[];
    const allows = policies
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .filter((s) => s.Effect === 'Allow' && !isXray(s));
    expect(allows.length).toBeGreaterThan(10);
    for (const statement of allows) {
      expect([statement.Resource].flat()).not.toContain('*');
      for (const action of [statement.Action].flat() as string[])
        expect(action).not.toMatch(/(^|:)\*$/);
    }
    expect(json).toContain('aws:SecureTransport'); // the only s3:* is the bucket policy's Deny
  });

  it('puts AWS_IAM authorization on every route of the HTTP API', () => {
    const routes = Object.values(template.findResources('AWS::ApiGatewayV2::Route')) as {
      Properties: { RouteKey: string; AuthorizationType: string };
    }[];
    expect(routes.map((r) => r.Properties.RouteKey).sort()).toEqual(
      ROUTES.map((r) => `${r.method} ${r.path}`).sort(),
    );
    for (const route of routes) expect(route.Properties.AuthorizationType).toBe('AWS_IAM');
  });

  it('logs API access and throttles it', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      AccessLogSettings: {
        DestinationArn: Match.anyValue(),
        Format: Match.stringLikeRegexp('requestId'),
      },
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
    });
  });

  it('logs API access in HTTP API variables only', () => {
    const stages = Object.values(template.findResources('AWS::ApiGatewayV2::Stage')) as {
      Properties: { AccessLogSettings: { Format: string } };
    }[];
    expect(stages).toHaveLength(1);
    const format = stages[0]!.Properties.AccessLogSettings.Format;
    const used = [...format.matchAll(/\$context\.[A-Za-z0-9_.]+/g)].map((m) => m[0]);
    expect(used.length).toBeGreaterThan(5);
    expect(used.filter((v) => !HTTP_API_LOG_VARIABLES.has(v))).toEqual([]);
    // Each line is JSON once API Gateway has put its values in.
    expect(() => JSON.parse(format.replace(/\$context\.[A-Za-z0-9_.]+/g, 'x'))).not.toThrow();
  });

  it('outputs the API URL and the bucket', () => {
    template.hasOutput('*', { Description: Match.stringLikeRegexp('FANOUT_API_URL') });
    template.hasOutput('*', { Description: 'datasets/ and jobs/' });
  });
});

describe('FanoutService', () => {
  it('uses an existing bucket, custom prefixes and limits, and grants submit', () => {
    const stack = new Stack(newApp(), 'Custom');
    const bucket = new Bucket(stack, 'Mine');
    const service = new FanoutService(stack, 'Fanout', {
      bucket,
      allowedInputPrefixes: ['inputs/'],
      workerMemoryMb: 3008,
      workerReservedConcurrency: 50,
      maxConcurrency: 200,
      speculation: { factor: 4, floorMs: 2000 },
    });
    const role = new Role(stack, 'Client', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
    });
    service.grantSubmit(role);
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::S3::Bucket', 1);
    t.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 3008,
      ReservedConcurrentExecutions: 50,
    });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          FANOUT_MAX_CONCURRENCY: '200',
          FANOUT_ALLOWED_INPUTS: Match.anyValue(),
        }),
      },
    });
    // The backup policy goes to the coordinator; what the prop leaves out stays the default.
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          FANOUT_REDUCER_FUNCTION: Match.anyValue(),
          FANOUT_SPECULATION_FACTOR: '4',
          FANOUT_SPECULATION_FLOOR_MS: '2000',
          FANOUT_SPECULATION_MAX_EXTRA: Match.absent(),
          FANOUT_SPECULATION: Match.absent(),
        }),
      },
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [Match.objectLike({ Action: 'execute-api:Invoke', Effect: 'Allow' })],
      },
      Roles: [{ Ref: Match.stringLikeRegexp('Client') }],
    });
    expect(JSON.stringify(t.toJSON())).toContain('/inputs/*');
  });

  it('gives grantSubmit roles the API and grantAdmin roles the API and the api function’s admin list, and nothing else', () => {
    const app = newApp();
    const stack = new Stack(app, 'Grants', {
      env: { account: '111122223333', region: 'us-east-1' },
    });
    const service = new FanoutService(stack, 'Fanout', { inputPrefixPerPrincipal: true });
    const user = new Role(stack, 'Analyst', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
    });
    const ops = Role.fromRoleArn(stack, 'Ops', 'arn:aws:iam::111122223333:role/ops/FanoutAdmin');
    service.grantSubmit(user);
    service.grantAdmin(ops);
    const t = Template.fromStack(stack);
    const apiFn = Object.values(t.findResources('AWS::Lambda::Function')).find(
      (r) =>
        r.Properties?.Environment?.Variables?.FANOUT_COORDINATOR_FUNCTION !== undefined &&
        r.Properties?.Environment?.Variables?.FANOUT_ALLOWED_INPUTS !== undefined,
    );
    // The admin list holds the admin role alone: a submitter is not an admin.
    expect(apiFn?.Properties.Environment.Variables.FANOUT_ADMIN_ARNS).toBe(
      'arn:aws:iam::111122223333:role/ops/FanoutAdmin',
    );
    expect(apiFn?.Properties.Environment.Variables.FANOUT_INPUT_PREFIX_PER_PRINCIPAL).toBe('1');
    // The submitter's grant: execute-api:Invoke on the API's routes, and only that.
    t.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('Analyst') }],
      PolicyDocument: {
        Statement: [Match.objectLike({ Action: 'execute-api:Invoke', Effect: 'Allow' })],
      },
    });
  });

  it('bundles a custom job registry instead of the built-in jobs', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'fanout-cdk-'));
    try {
      // Bundling on (esbuild, no Docker) for this stack only: the assets are what deploys.
      const app = new App({
        outdir,
        context: { 'aws:cdk:bundling-stacks': ['Custom*'], 'aws:cdk:enable-asset-metadata': true },
      });
      const stack = new Stack(app, 'CustomJobs');
      new FanoutService(stack, 'Fanout', { jobs: 'test/fixtures/custom-registry.ts' });
      const custom = Template.fromStack(stack);
      const bundleOf = (t: Template, name: string) => {
        const fn = Object.entries(t.findResources('AWS::Lambda::Function')).find(([id]) =>
          id.startsWith(`Fanout${name}Function`),
        )?.[1] as { Metadata: { 'aws:asset:path': string } };
        // The entry and its chunks: the bundle is split (the job registry may sit in a chunk).
        const asset = join(outdir, fn.Metadata['aws:asset:path']);
        return readdirSync(asset, { recursive: true, encoding: 'utf8' })
          .filter((file) => file.endsWith('.mjs'))
          .map((file) => readFileSync(join(asset, file), 'utf8'))
          .join('\n');
      };
      for (const name of ['Worker', 'Coordinator', 'Reducer', 'Api']) {
        const bundle = bundleOf(custom, name);
        expect(bundle, name).toContain('a custom registry fixture');
        expect(bundle, name).not.toContain('count scientists, Nobel laureates');
      }
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  }, 120_000);

  it('leaves out the dashboard and each alarm when told to', () => {
    const stack = new Stack(newApp(), 'Quiet');
    new FanoutService(stack, 'Fanout', {
      dashboard: false,
      alarms: { functionErrors: false, throttles: false, jobsStuck: false },
    });
    const quiet = Template.fromStack(stack);
    quiet.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    expect(
      alarmsOf(quiet)
        .map((a) => a.metric)
        .sort(),
    ).toEqual(['CoordinatorFailureRecords', 'MatchedEvents']);
  });

  it('refuses input prefixes inside jobs/ or without a trailing slash, and a backup factor below 1', () => {
    const stack = new Stack(newApp(), 'Bad');
    expect(() => new FanoutService(stack, 'A', { allowedInputPrefixes: ['jobs/'] })).toThrow(
      /outside jobs/,
    );
    expect(() => new FanoutService(stack, 'B', { allowedInputPrefixes: ['data'] })).toThrow(
      /must end with \//,
    );
    expect(() => new FanoutService(stack, 'C', { speculation: { factor: 0.5 } })).toThrow(
      /speculation.factor must be a number ≥ 1; got 0.5/,
    );
  });
});
