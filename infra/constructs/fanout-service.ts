import { CfnOutput, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  type HttpMethod,
  HttpStage,
  LogGroupLogDestination,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { EventBus, type IEventBus, Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { Grant, type IGrantable, Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { EventInvokeConfig, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { FilterPattern, LogGroup, MetricFilter, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, type IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ROUTES } from '../../shared/core/api/api.ts';
import {
  COORDINATOR_SOCKETS,
  defaultReducerTimeoutMs,
  timeoutProblems,
} from '../../shared/core/base/limits.ts';
import { DEPLOYED_MEMORY_MB } from '../../shared/core/cost/cost.ts';
import { JOB_EVENT_DETAIL_TYPE, JOB_EVENT_SOURCE } from '../../shared/core/model/events.ts';
import { checkSpeculation } from '../../shared/core/run/speculation.ts';
import { FanoutFunction } from './fanout-function.ts';
import { acknowledgeWildcards } from './nag.ts';

/** Props of {@link FanoutService}. All optional. */
export interface FanoutServiceProps {
  /**
   * Your job registry: a module that exports `jobs` (`createRegistry([...])`, as jobs/index.ts
   * does), bundled into the functions instead of the built-in jobs. Relative paths are from the
   * current directory (where `cdk` runs). @default the built-in jobs (jobs/index.ts)
   */
  readonly jobs?: string;
  /** An existing bucket for datasets/ and jobs/. @default a new versioned, encrypted bucket */
  readonly bucket?: IBucket;
  /** Key prefixes of the bucket that jobs may read and uploads may write. @default ['datasets/'] */
  readonly allowedInputPrefixes?: string[];
  /** Days after which jobs/ objects expire (new buckets only; datasets/ never expire). @default 30 */
  readonly jobRetentionDays?: number;
  /** Worker memory in MB; 1769 MB is one full vCPU, where S3 throughput per function levels off. @default 1769 */
  readonly workerMemoryMb?: number;
  /**
   * Worker timeout; a chunk must finish inside it. With its margins it must fit in half the
   * coordinator's timeout (checked at synthesis): a coordinator run dispatches until one worker
   * timeout is left, then hands over to a continuation. @default Duration.minutes(5)
   */
  readonly workerTimeout?: Duration;
  /**
   * Coordinator timeout: how long one coordinator run dispatches before a continuation takes
   * over (a job may span many runs). At most 15 minutes. @default Duration.minutes(15)
   */
  readonly coordinatorTimeout?: Duration;
  /**
   * Reducer timeout. The coordinator waits for the reducer, so with its margins it must fit in
   * the coordinator's timeout (checked at synthesis). @default a third of `coordinatorTimeout`
   */
  readonly reducerTimeout?: Duration;
  /** Reserved concurrency of the worker function. @default none (the account's pool) */
  readonly workerReservedConcurrency?: number;
  /**
   * Reserved concurrency of the control-plane functions, so that a large job's workers cannot
   * throttle them. Lambda keeps 100 of an account's concurrency unreserved, so reservations
   * fail to deploy on accounts with a low quota (new accounts have one): set them once
   * `aws lambda get-account-settings` shows room. @default none (the account's pool)
   */
  readonly reservedConcurrency?: {
    readonly api?: number;
    readonly coordinator?: number;
    readonly reducer?: number;
    readonly sweeper?: number;
  };
  /** Chunks in flight when a request names none. @default 100 */
  readonly defaultConcurrency?: number;
  /**
   * The most chunks in flight a request may ask for. At most 900: the coordinator holds a
   * socket per invocation in flight, and a Lambda environment has 1,024 file descriptors.
   * @default 900
   */
  readonly maxConcurrency?: number;
  /** Coordinator memory in MB. @default 1024 */
  readonly coordinatorMemoryMb?: number;
  /** Reducer memory in MB. @default 1769 */
  readonly reducerMemoryMb?: number;
  /** Retention of the functions' and the API's logs. @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /** The functions' log level (Powertools: DEBUG, INFO, WARN, ERROR, SILENT). @default INFO */
  readonly logLevel?: string;
  /**
   * How often the sweeper looks for jobs whose coordinator was lost (and resumes them).
   * @default Duration.minutes(1)
   */
  readonly sweepInterval?: Duration;
  /** Resumes of a job whose coordinator keeps getting lost, before it FAILS. @default 3 */
  readonly maxResumes?: number;
  /**
   * Backup attempts for straggling chunks: `enabled: false` turns them off for jobs that do not
   * ask (a job's `speculation: false` always does); a chunk straggles past `factor` × the median
   * time of finished chunks of its size and `floorMs`; at most `maxExtra` × the chunks get one
   * (at least 4). @default enabled, factor 3, floorMs 1000, maxExtra 0.05
   */
  readonly speculation?: {
    readonly enabled?: boolean;
    readonly factor?: number;
    readonly floorMs?: number;
    readonly maxExtra?: number;
  };
  /**
   * Where job state changes are published (`source: "fanout"`,
   * `detail-type: "Fanout Job Status Change"`). @default the account's default event bus
   */
  readonly eventBus?: IEventBus;
  /** A CloudWatch dashboard of jobs, chunks, errors, throttles, durations and concurrency. @default true */
  readonly dashboard?: boolean;
  /**
   * CloudWatch alarms, each on unless turned off (they have no actions: add yours to `alarms`).
   * @default all on
   */
  readonly alarms?: {
    /** A function reported an error (any of the five), in 5 minutes. */
    readonly functionErrors?: boolean;
    /** The worker was throttled 100 times or more in 5 minutes. */
    readonly throttles?: boolean;
    /** A job ended FAILED. */
    readonly jobsFailed?: boolean;
    /** The sweeper resumed a job whose coordinator was lost. */
    readonly jobsStuck?: boolean;
    /** The coordinator's failure destination received a failed event. */
    readonly coordinatorFailures?: boolean;
  };
  /** Steady-state requests per second the API accepts. @default 50 */
  readonly apiRateLimit?: number;
  /** Burst of requests the API accepts. @default 100 */
  readonly apiBurstLimit?: number;
}

/**
 * fanout as one construct: a bucket, the api / coordinator / worker / reducer functions with
 * least-privilege permissions, and an HTTP API with IAM authorization on every route.
 *
 * @example
 * const fanout = new FanoutService(this, 'Fanout', { workerMemoryMb: 3008 });
 * fanout.grantSubmit(myRole);
 */
export class FanoutService extends Construct {
  readonly bucket: IBucket;
  readonly api: HttpApi;
  /** The bus job state changes are published on. */
  readonly eventBus: IEventBus;
  /** The dashboard, unless turned off. */
  readonly dashboard?: Dashboard;
  /** The alarms that are on, by name, to attach actions to. */
  readonly alarms: Record<string, Alarm> = {};
  /** The API's base URL. */
  readonly apiUrl: string;
  readonly functions: {
    api: IFunction;
    coordinator: IFunction;
    worker: IFunction;
    reducer: IFunction;
    sweeper: IFunction;
  };

  constructor(scope: Construct, id: string, props: FanoutServiceProps = {}) {
    super(scope, id);
    const prefixes = props.allowedInputPrefixes ?? ['datasets/'];
    for (const p of prefixes) {
      if (!/^[^*?]+\/$/.test(p) || p.startsWith('jobs/')) {
        throw new Error(
          `allowedInputPrefixes: ${JSON.stringify(p)} must end with / and lie outside jobs/`,
        );
      }
    }
    const timeouts = checkTimeouts(props);
    const maxConcurrency = props.maxConcurrency ?? COORDINATOR_SOCKETS.invocations;
    checkConcurrency(props.defaultConcurrency ?? 100, maxConcurrency);
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    this.bucket = props.bucket ?? this.createBucket(props.jobRetentionDays ?? 30);
    const bucket = this.bucket;
    const jobs = (suffix: string) => bucket.arnForObjects(`jobs/*/${suffix}`);
    const inputs = prefixes.map((p) => bucket.arnForObjects(`${p}*`));

    const common = {
      logRetention,
      ...(props.logLevel !== undefined && { logLevel: props.logLevel }),
      ...(props.jobs !== undefined && { jobs: props.jobs }),
    };
    const reserved = (n: number | undefined) =>
      n === undefined ? {} : { reservedConcurrentExecutions: n };
    const worker = new FanoutFunction(this, 'Worker', {
      ...common,
      handler: 'worker',
      memorySize: props.workerMemoryMb ?? DEPLOYED_MEMORY_MB.worker,
      timeout: timeouts.worker,
      ...(props.workerReservedConcurrency !== undefined && {
        reservedConcurrentExecutions: props.workerReservedConcurrency,
      }),
      environment: { FANOUT_BUCKET: bucket.bucketName },
    }).function;
    const reducer = new FanoutFunction(this, 'Reducer', {
      ...common,
      handler: 'reducer',
      memorySize: props.reducerMemoryMb ?? 1769,
      timeout: timeouts.reducer,
      ...reserved(props.reservedConcurrency?.reducer),
      environment: {
        FANOUT_BUCKET: bucket.bucketName,
        FANOUT_REDUCER_TIMEOUT_SECONDS: String(timeouts.reducer.toSeconds()),
      },
    }).function;
    const coordinator = new FanoutFunction(this, 'Coordinator', {
      ...common,
      handler: 'coordinator',
      memorySize: props.coordinatorMemoryMb ?? 1024,
      timeout: timeouts.coordinator,
      ...reserved(props.reservedConcurrency?.coordinator),
      environment: {
        FANOUT_BUCKET: bucket.bucketName,
        FANOUT_WORKER_TIMEOUT_SECONDS: String(timeouts.worker.toSeconds()),
        FANOUT_REDUCER_TIMEOUT_SECONDS: String(timeouts.reducer.toSeconds()),
        FANOUT_WORKER_FUNCTION: worker.functionName,
        FANOUT_REDUCER_FUNCTION: reducer.functionName,
        // For the job's cost estimate: the workers' memory, and the functions' architecture.
        FANOUT_WORKER_MEMORY_MB: String(props.workerMemoryMb ?? DEPLOYED_MEMORY_MB.worker),
        FANOUT_ARCHITECTURE: 'arm64',
        ...speculationEnv(props.speculation),
      },
    }).function;
    const api = new FanoutFunction(this, 'Api', {
      ...common,
      handler: 'api',
      memorySize: 512,
      timeout: Duration.seconds(29),
      ...reserved(props.reservedConcurrency?.api),
      environment: {
        FANOUT_BUCKET: bucket.bucketName,
        FANOUT_COORDINATOR_FUNCTION: coordinator.functionName,
        FANOUT_ALLOWED_INPUTS: prefixes.map((p) => `s3://${bucket.bucketName}/${p}`).join(','),
        FANOUT_DEFAULT_CONCURRENCY: String(props.defaultConcurrency ?? 100),
        FANOUT_MAX_CONCURRENCY: String(maxConcurrency),
      },
    }).function;
    // Crash-only jobs (shared/core/run/sweep.ts): the sweeper resumes a job whose coordinator is
    // gone, on a schedule and as the coordinator's on-failure destination.
    const sweeperFunction = new FanoutFunction(this, 'Sweeper', {
      ...common,
      handler: 'sweeper',
      memorySize: 256,
      timeout: Duration.minutes(1),
      ...reserved(props.reservedConcurrency?.sweeper),
      environment: {
        FANOUT_BUCKET: bucket.bucketName,
        FANOUT_COORDINATOR_FUNCTION: coordinator.functionName,
        FANOUT_MAX_RESUMES: String(props.maxResumes ?? 3),
      },
    });
    const sweeper = sweeperFunction.function;
    const sweeperLogs = sweeperFunction.logGroup;
    // Lambda retries a failed coordinator event twice, keeps it at most an hour (while the
    // coordinator is throttled), then hands the record to the sweeper, which resumes the job or
    // fails it with the reason. The destination is given by ARN, and its invoke permission sits
    // in a policy of its own, so the coordinator does not depend on the sweeper that depends on
    // it (as LambdaDestination's grant in the default policy would make it).
    new EventInvokeConfig(this, 'CoordinatorAsyncInvoke', {
      function: coordinator,
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
      onFailure: { bind: () => ({ destination: sweeper.functionArn }) },
    });
    new Policy(this, 'CoordinatorFailureDestination', {
      statements: [
        new PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: [sweeper.functionArn],
        }),
      ],
    }).attachToRole(coordinator.role!);
    new Rule(this, 'SweepSchedule', {
      description: 'fanout: resume jobs whose coordinator was lost',
      schedule: Schedule.rate(props.sweepInterval ?? Duration.minutes(1)),
      targets: [new LambdaFunction(sweeper, { retryAttempts: 0 })],
    });
    this.functions = { api, coordinator, worker, reducer, sweeper };

    // Least privilege, by S3 prefix (ARCHITECTURE.md "S3 layout").
    const allow = (fn: IFunction, actions: string[], resources: string[]) =>
      fn.addToRolePolicy(new PolicyStatement({ actions, resources }));
    const listUnder = (fn: IFunction, under: string[]) =>
      fn.addToRolePolicy(
        new PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': under } },
        }),
      );
    const read = ['s3:GetObject', 's3:GetObjectVersion'];
    const inputPrefixes = prefixes.map((p) => `${p}*`);
    // Listing is granted wherever a role must tell a missing key from a refused one: without
    // s3:ListBucket S3 answers 403, not 404, for a key that does not exist (S3's GetObject).
    allow(worker, read, inputs);
    allow(worker, ['s3:PutObject', 's3:AbortMultipartUpload'], [jobs('parts/*'), jobs('chunks/*')]);
    // An attempt that lost to a backup removes its own part (shared/core/run/worker.ts).
    allow(worker, ['s3:DeleteObject'], [jobs('parts/*')]);
    listUnder(worker, inputPrefixes);
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
    listUnder(coordinator, [...inputPrefixes, 'jobs/*']);
    allow(reducer, read, [
      jobs('manifest.json'),
      jobs('chunks/*'),
      jobs('parts/*'),
      jobs('merged/*'),
      jobs('status.json'),
    ]);
    allow(
      reducer,
      ['s3:PutObject', 's3:AbortMultipartUpload'],
      [jobs('result.json'), jobs('result.jsonl'), jobs('status.json'), jobs('merged/*')],
    );
    listUnder(reducer, ['jobs/*']);
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
    allow(sweeper, ['s3:GetObject'], [jobs('status.json')]);
    allow(sweeper, ['s3:PutObject'], [jobs('status.json')]);
    allow(sweeper, ['s3:DeleteObject'], [bucket.arnForObjects('active/*')]);
    listUnder(sweeper, ['active/*', 'jobs/*']);
    coordinator.grantInvoke(sweeper);
    listUnder(api, [...inputPrefixes, 'jobs/*']);
    worker.grantInvoke(coordinator);
    // A long job continues in a new coordinator invocation. The statement lives in its own
    // policy: in the role's default policy it would make the function depend on itself.
    new Policy(this, 'CoordinatorContinues', {
      statements: [
        new PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: [coordinator.functionArn],
        }),
      ],
    }).attachToRole(coordinator.role!);
    // Likewise a reducer with a large fan-in merges groups of parts in its own invocations.
    new Policy(this, 'ReducerFansOut', {
      statements: [
        new PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: [reducer.functionArn],
        }),
      ],
    }).attachToRole(reducer.role!);
    reducer.grantInvoke(coordinator);
    coordinator.grantInvoke(api);

    // Job events: every function that changes a job's state publishes to the bus.
    this.eventBus = props.eventBus ?? EventBus.fromEventBusName(this, 'Events', 'default');
    for (const fn of [api, coordinator, reducer, sweeper]) {
      this.eventBus.grantPutEventsTo(fn);
      fn.addEnvironment('FANOUT_EVENT_BUS', this.eventBus.eventBusName);
    }
    this.observe(props, { api, coordinator, worker, reducer, sweeper }, sweeperLogs);

    // The HTTP API: IAM (SigV4) authorization on every route, access logs, throttling.
    const integration = new HttpLambdaIntegration('Integration', api);
    this.api = new HttpApi(this, 'HttpApi', {
      description: 'fanout: submit jobs, follow them, fetch results',
      defaultAuthorizer: new HttpIamAuthorizer(),
      createDefaultStage: false,
    });
    for (const route of ROUTES) {
      this.api.addRoutes({ path: route.path, methods: [route.method as HttpMethod], integration });
    }
    const accessLogs = new LogGroup(this, 'ApiAccessLogs', {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const stage = new HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      autoDeploy: true,
      throttle: { rateLimit: props.apiRateLimit ?? 50, burstLimit: props.apiBurstLimit ?? 100 },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.custom(JSON.stringify(HTTP_API_ACCESS_LOG)),
      },
    });
    this.apiUrl = stage.url;

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
      [worker, [...inputs, ...objects('parts/*', 'chunks/*')]],
      [
        reducer,
        objects(
          'manifest.json',
          'chunks/*',
          'parts/*',
          'merged/*',
          'status.json',
          'result.json',
          'result.jsonl',
        ),
      ],
      [
        coordinator,
        [
          ...inputs,
          ...objects('job.json', 'status.json', 'manifest.json', 'chunks/*'),
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
    new CfnOutput(this, 'ApiUrl', {
      value: this.apiUrl,
      description: 'fanout HTTP API (SigV4): export FANOUT_API_URL=…',
    });
    new CfnOutput(this, 'BucketName', {
      value: bucket.bucketName,
      description: 'datasets/ and jobs/',
    });
    void Stack.of(this);
  }

  /** The dashboard and the alarms (see the props). */
  private observe(
    props: FanoutServiceProps,
    fns: Record<'api' | 'coordinator' | 'worker' | 'reducer' | 'sweeper', IFunction>,
    sweeperLogs: LogGroup,
  ): void {
    const jobRule = (id: string, status: string) =>
      new Rule(this, id, {
        description: `fanout: jobs that end ${status} (counted; add a target to act on them)`,
        eventBus: this.eventBus,
        eventPattern: {
          source: [JOB_EVENT_SOURCE],
          detailType: [JOB_EVENT_DETAIL_TYPE],
          detail: { status: [status] },
        },
      });
    const ended = (rule: Rule, label: string) =>
      new Metric({
        namespace: 'AWS/Events',
        metricName: 'MatchedEvents',
        dimensionsMap: { RuleName: rule.ruleName },
        statistic: 'Sum',
        label,
      });
    const succeeded = ended(jobRule('JobsSucceeded', 'SUCCEEDED'), 'jobs succeeded');
    const failed = ended(jobRule('JobsFailed', 'FAILED'), 'jobs failed');
    const counted = (id: string, message: string, metricName: string) => {
      new MetricFilter(this, id, {
        logGroup: sweeperLogs,
        filterPattern: FilterPattern.stringValue('$.message', '=', message),
        metricNamespace: 'fanout',
        metricName,
        metricValue: '1',
      });
      return new Metric({ namespace: 'fanout', metricName, statistic: 'Sum' });
    };
    const resumed = counted('JobsResumedFilter', 'job resumed', 'JobsResumed');
    const destination = counted(
      'CoordinatorFailureFilter',
      'coordinator failure record',
      'CoordinatorFailureRecords',
    );
    const each = (metric: (fn: IFunction) => IMetric) => Object.values(fns).map(metric);

    if (props.dashboard ?? true) {
      const widget = (title: string, left: IMetric[]) =>
        new GraphWidget({ title, left, width: 8, height: 6 });
      (this as { dashboard?: Dashboard }).dashboard = new Dashboard(this, 'Dashboard', {
        widgets: [
          [
            widget('Jobs', [succeeded, failed, resumed]),
            widget('Chunks (worker invocations)', [
              fns.worker.metricInvocations({ label: 'chunk attempts' }),
            ]),
            widget(
              'Errors',
              each((fn) => fn.metricErrors()),
            ),
          ],
          [
            widget(
              'Throttles',
              each((fn) => fn.metricThrottles()),
            ),
            widget('Duration', [
              fns.worker.metricDuration({ statistic: 'p50', label: 'worker p50' }),
              fns.worker.metricDuration({ statistic: 'p99', label: 'worker p99' }),
              fns.coordinator.metricDuration({ statistic: 'Maximum', label: 'coordinator max' }),
            ]),
            widget('Concurrency', [
              fns.worker.metric('ConcurrentExecutions', { statistic: 'Maximum' }),
            ]),
          ],
        ],
      });
    }

    const on = props.alarms ?? {};
    const alarm = (id: string, metric: IMetric, threshold: number, description: string) => {
      this.alarms[id] = new Alarm(this, `${id}Alarm`, {
        alarmDescription: `fanout: ${description}`,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
    };
    if (on.functionErrors ?? true) {
      for (const [name, fn] of Object.entries(fns)) {
        alarm(
          `${name[0]?.toUpperCase()}${name.slice(1)}Errors`,
          fn.metricErrors(),
          1,
          `the ${name} function reported errors`,
        );
      }
    }
    if (on.throttles ?? true) {
      alarm(
        'WorkerThrottles',
        fns.worker.metricThrottles(),
        100,
        'workers throttled 100+ times in 5 minutes',
      );
    }
    if (on.jobsFailed ?? true) alarm('JobsFailed', failed, 1, 'a job ended FAILED');
    if (on.jobsStuck ?? true) {
      alarm('JobsStuck', resumed, 1, "a job's coordinator was lost and the sweeper resumed it");
    }
    if (on.coordinatorFailures ?? true) {
      alarm(
        'CoordinatorFailures',
        destination,
        1,
        "the coordinator's failure destination received an event that failed every attempt",
      );
    }
  }

  /** Lets `grantee` call every route of the API (execute-api:Invoke). */
  grantSubmit(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [
        Stack.of(this).formatArn({
          service: 'execute-api',
          resource: this.api.apiId,
          resourceName: '*/*/*',
        }),
      ],
    });
  }

  private createBucket(jobRetentionDays: number): Bucket {
    const common = {
      versioned: true,
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
    };
    const accessLogs = new Bucket(this, 'AccessLogs', {
      ...common,
      lifecycleRules: [
        { expiration: Duration.days(90), noncurrentVersionExpiration: Duration.days(1) },
      ],
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the access log bucket; logging it to itself would loop',
    });
    return new Bucket(this, 'Bucket', {
      ...common,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'bucket/',
      lifecycleRules: [
        // Job outputs are reproducible from their datasets; datasets/ never expire by default.
        {
          prefix: 'jobs/',
          expiration: Duration.days(jobRetentionDays),
          noncurrentVersionExpiration: Duration.days(1),
        },
        { abortIncompleteMultipartUploadAfter: Duration.days(2) },
      ],
    });
  }
}

/** The coordinator's FANOUT_SPECULATION* variables for what the prop sets (functions/config.ts). */
function speculationEnv(speculation: FanoutServiceProps['speculation']): Record<string, string> {
  const env: Record<string, string> = {};
  if (speculation === undefined) return env;
  checkSpeculation(speculation, (key) => `speculation.${key}`);
  if (speculation.enabled !== undefined)
    env.FANOUT_SPECULATION = speculation.enabled ? 'on' : 'off';
  if (speculation.factor !== undefined) env.FANOUT_SPECULATION_FACTOR = String(speculation.factor);
  if (speculation.floorMs !== undefined) {
    env.FANOUT_SPECULATION_FLOOR_MS = String(speculation.floorMs);
  }
  if (speculation.maxExtra !== undefined) {
    env.FANOUT_SPECULATION_MAX_EXTRA = String(speculation.maxExtra);
  }
  return env;
}

/**
 * The API's access log, one JSON line per request, in HTTP API variables only: the REST API's
 * standard fields (`AccessLogFormat.jsonWithStandardFields`) name `$context.resourcePath`, which
 * HTTP APIs do not have.
 */
export const HTTP_API_ACCESS_LOG = {
  requestId: '$context.requestId',
  ip: '$context.identity.sourceIp',
  caller: '$context.identity.caller',
  userArn: '$context.identity.userArn',
  requestTime: '$context.requestTime',
  httpMethod: '$context.httpMethod',
  routeKey: '$context.routeKey',
  path: '$context.path',
  status: '$context.status',
  protocol: '$context.protocol',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  integrationLatency: '$context.integrationLatency',
  integrationStatus: '$context.integrationStatus',
  integrationError: '$context.integrationErrorMessage',
  error: '$context.error.message',
} as const;

/** The three timeouts, from the props, checked together (shared/core/base/limits.ts). */
function checkTimeouts(props: FanoutServiceProps) {
  const coordinator = props.coordinatorTimeout ?? Duration.minutes(15);
  const worker = props.workerTimeout ?? Duration.minutes(5);
  const reducer =
    props.reducerTimeout ?? Duration.millis(defaultReducerTimeoutMs(coordinator.toMilliseconds()));
  const names = {
    coordinatorMs: 'coordinatorTimeout',
    workerMs: 'workerTimeout',
    reducerMs:
      props.reducerTimeout === undefined ? 'reducerTimeout (its default)' : 'reducerTimeout',
  } as const;
  const problems = timeoutProblems(
    {
      coordinatorMs: coordinator.toMilliseconds(),
      workerMs: worker.toMilliseconds(),
      reducerMs: reducer.toMilliseconds(),
    },
    (key) => names[key],
  );
  if (problems.length > 0) throw new Error(`FanoutService: ${problems.join('; ')}`);
  return { coordinator, worker, reducer };
}

/** The concurrency props: positive, default within max, max within the coordinator's sockets. */
function checkConcurrency(defaultConcurrency: number, maxConcurrency: number): void {
  const most = COORDINATOR_SOCKETS.invocations;
  if (!(Number.isInteger(maxConcurrency) && maxConcurrency >= 1 && maxConcurrency <= most)) {
    throw new Error(
      `FanoutService: maxConcurrency must be an integer from 1 to ${most} (the coordinator holds a socket per chunk in flight, and a Lambda environment has 1,024 file descriptors); got ${maxConcurrency}`,
    );
  }
  if (!(Number.isInteger(defaultConcurrency) && defaultConcurrency >= 1)) {
    throw new Error(
      `FanoutService: defaultConcurrency must be a positive integer; got ${defaultConcurrency}`,
    );
  }
  if (defaultConcurrency > maxConcurrency) {
    throw new Error(
      `FanoutService: defaultConcurrency (${defaultConcurrency}) must not exceed maxConcurrency (${maxConcurrency})`,
    );
  }
}
