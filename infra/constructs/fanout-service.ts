import { CfnOutput, type Duration, Fn, Lazy, Stack } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import type { Alarm, Dashboard } from 'aws-cdk-lib/aws-cloudwatch';
import { EventBus, type IEventBus } from 'aws-cdk-lib/aws-events';
import { Grant, type IGrantable, type IRole } from 'aws-cdk-lib/aws-iam';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { COORDINATOR_SOCKETS } from '../../shared/core/base/limits.ts';
import { createBucket } from './private/bucket.ts';
import { createFunctions, type Functions } from './private/functions.ts';
import { acknowledgeFindings, grantLeastPrivilege } from './private/grants.ts';
import { createHttpApi } from './private/http-api.ts';
import { observe } from './private/observe.ts';
import { checkConcurrency, checkPrefixes, checkTimeouts } from './private/settings.ts';

/**
 * fanout's public construct: the props a user sets, and the service they get. The wiring lives
 * in ./private/ (as aws-cdk's lib/private): the functions, their grants, the HTTP API, the
 * dashboard and alarms, the bucket, and the checks of the props.
 */

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
  /**
   * Days after which the work kept for reuse (`cache/`) expires (new buckets only; on a bucket of
   * your own, add such a rule yourself). A job reuses an entry that has not expired, so a dataset
   * rerun within this many days of a run skips its unchanged pieces (docs/ARCHITECTURE.md,
   * "Reuse"). @default 30
   */
  readonly cacheRetentionDays?: number;
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
  /**
   * Confine each caller (but admins) to a folder of its own under each allowed input prefix:
   * `datasets/{account}-{user|role}-{name}/` (an assumed role's sessions share its folder). Its
   * jobs may read only there, and its uploads go there. @default false
   */
  readonly inputPrefixPerPrincipal?: boolean;
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
  readonly alarms: Record<string, Alarm>;
  /** The API's base URL. */
  readonly apiUrl: string;
  /** The five functions, by role. */
  readonly functions: Functions;
  /** The role ARNs `grantAdmin` was given, for the api function's FANOUT_ADMIN_ARNS. */
  private readonly admins: string[] = [];

  constructor(scope: Construct, id: string, props: FanoutServiceProps = {}) {
    super(scope, id);
    const prefixes = props.allowedInputPrefixes ?? ['datasets/'];
    checkPrefixes(prefixes);
    const timeouts = checkTimeouts(props);
    const maxConcurrency = props.maxConcurrency ?? COORDINATOR_SOCKETS.invocations;
    checkConcurrency(props.defaultConcurrency ?? 100, maxConcurrency);
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    this.bucket =
      props.bucket ??
      createBucket(this, {
        jobRetentionDays: props.jobRetentionDays ?? 30,
        cacheRetentionDays: props.cacheRetentionDays ?? 30,
      });
    const { functions, sweeperLogs } = createFunctions(this, props, {
      bucket: this.bucket,
      prefixes,
      timeouts,
      maxConcurrency,
      common: {
        logRetention,
        ...(props.logLevel !== undefined && { logLevel: props.logLevel }),
        ...(props.jobs !== undefined && { jobs: props.jobs }),
      },
    });
    this.functions = functions;
    grantLeastPrivilege(this, functions, this.bucket, prefixes);

    // Job events: every function that changes a job's state publishes to the bus.
    this.eventBus = props.eventBus ?? EventBus.fromEventBusName(this, 'Events', 'default');
    const { api, coordinator, reducer, sweeper } = functions;
    for (const fn of [api, coordinator, reducer, sweeper]) {
      this.eventBus.grantPutEventsTo(fn);
      fn.addEnvironment('FANOUT_EVENT_BUS', this.eventBus.eventBusName);
    }
    if (props.inputPrefixPerPrincipal === true) {
      api.addEnvironment('FANOUT_INPUT_PREFIX_PER_PRINCIPAL', '1');
    }
    const shown = observe(this, props, functions, sweeperLogs, this.eventBus);
    if (shown.dashboard !== undefined) this.dashboard = shown.dashboard;
    this.alarms = shown.alarms;

    const { httpApi, url } = createHttpApi(this, api, props, logRetention);
    this.api = httpApi;
    this.apiUrl = url;
    acknowledgeFindings(functions, this.bucket, prefixes);
    new CfnOutput(this, 'ApiUrl', {
      value: this.apiUrl,
      description: 'fanout HTTP API (SigV4): export FANOUT_API_URL=…',
    });
    new CfnOutput(this, 'BucketName', {
      value: this.bucket.bucketName,
      description: 'datasets/ and jobs/',
    });
  }

  /**
   * Lets `grantee` submit jobs and see and manage its own (execute-api:Invoke on every route):
   * the api function answers another caller's job 404, as if it did not exist, and lists only
   * the caller's own jobs (`owner` in job.json and the status; README, "Security").
   */
  grantSubmit(grantee: IGrantable): Grant {
    return this.grantInvoke(grantee);
  }

  /**
   * Lets `role` see and manage every job, as well as submit its own: `grantSubmit`, and the
   * role's ARN in the api function's FANOUT_ADMIN_ARNS, read at each cold start (an assumed
   * session of the role counts). A list made at synthesis rather than a principal tag: it is
   * visible in the template, reviewed with the stack, and needs no tagging discipline; a role
   * made outside this app can be given as `Role.fromRoleArn`. A narrower `grantRead(role,
   * { owner })` is not built yet.
   */
  grantAdmin(role: IRole): Grant {
    if (this.admins.length === 0) {
      // Every admin grantAdmin names, however often it is called: the list is read at synthesis.
      this.functions.api.addEnvironment(
        'FANOUT_ADMIN_ARNS',
        Lazy.string({ produce: () => Fn.join(',', this.admins) }),
      );
    }
    this.admins.push(role.roleArn);
    return this.grantInvoke(role);
  }

  private grantInvoke(grantee: IGrantable): Grant {
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
}
