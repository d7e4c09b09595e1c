import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve } from 'node:path';
import { AssetHashType, DockerImage, Duration, RemovalPolicy } from 'aws-cdk-lib';
import {
  Architecture,
  type CfnFunction,
  Code,
  Function as LambdaFunction,
  Runtime,
  Tracing,
} from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { bundleOptions } from '../../local/bundle.ts';
import { registryBuildOptions } from '../../local/job-path.ts';
// The package root, found by its package.json rather than `../..`, so the construct also
// synthesizes from a bundle (the local runtime's template cache runs one).
import { repoRoot } from '../../local/paths.ts';

/** Props of {@link FanoutFunction}. */
export interface FanoutFunctionProps {
  /** The handler's directory under functions/, e.g. `worker`. */
  readonly handler: 'api' | 'coordinator' | 'worker' | 'reducer' | 'sweeper';
  /** @default 1024 */
  readonly memorySize?: number;
  /** @default Duration.minutes(15) */
  readonly timeout?: Duration;
  /** @default no reserved concurrency (the account's pool) */
  readonly reservedConcurrentExecutions?: number;
  /** @default {} */
  readonly environment?: Record<string, string>;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /** Powertools log level (DEBUG, INFO, WARN, ERROR, SILENT). @default INFO */
  readonly logLevel?: string;
  /**
   * A job registry module (exports `jobs`, as jobs/index.ts does) to bundle instead of the
   * built-in one. @default jobs/index.ts
   */
  readonly jobs?: string;
}

/**
 * Every fanout Lambda, with our defaults: Node.js 24 on ARM64 (cheaper per GB-second, and the
 * functions are plain JS), an ESM bundle built by the installed esbuild with the same options as
 * the local runtime's bundles (split into chunks, which NodejsFunction's single output file
 * cannot hold: see {@link functionCode}), source maps, and a log group with retention.
 *
 * @example
 * new FanoutFunction(this, 'Worker', { handler: 'worker', memorySize: 1769 });
 */
export class FanoutFunction extends Construct {
  /** The metadata key that names a function's role in its template (the local runtime reads it). */
  static readonly METADATA_KEY = 'fanout:function';
  /** The function. */
  readonly function: LambdaFunction;
  /** Its log group (metric filters read it). */
  readonly logGroup: LogGroup;
  /**
   * A hash of its bundle, once bundled (synthesis may skip bundling): the identity of the code
   * that cache entries are addressed by. Undefined when the stack was not bundled.
   */
  readonly codeId: string | undefined;

  constructor(scope: Construct, id: string, props: FanoutFunctionProps) {
    super(scope, id);
    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.logGroup = logGroup;
    const entry = resolve(repoRoot, `functions/${props.handler}/index.ts`);
    const jobs = props.jobs === undefined ? undefined : resolve(props.jobs);
    const bundleKey = `${entry}\0${jobs ?? ''}`;
    this.function = new LambdaFunction(this, 'Function', {
      code: functionCode(entry, jobs, (id) => bundledCodeIds.set(bundleKey, id)),
      handler: 'index.handler',
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 1024,
      timeout: props.timeout ?? Duration.minutes(15),
      ...(props.reservedConcurrentExecutions !== undefined && {
        reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      }),
      logGroup,
      // X-Ray traces (Powertools Tracer adds subsegments and annotations), and Powertools'
      // logs (JSON, level from POWERTOOLS_LOG_LEVEL) and metrics (EMF, namespace fanout).
      tracing: Tracing.ACTIVE,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: 'fanout',
        POWERTOOLS_METRICS_NAMESPACE: 'fanout',
        POWERTOOLS_LOG_LEVEL: props.logLevel ?? 'INFO',
        // Active tracing is on: the tracer is made at init, before Lambda sets a trace id for
        // the first invocation (functions/observability.ts reads this, not _X_AMZN_TRACE_ID).
        POWERTOOLS_TRACE_ENABLED: 'true',
        ...props.environment,
      },
    });
    // The asset is bundled as the function binds its code, above (or was earlier in this
    // process: CDK stages an asset once, and does not bundle it again).
    this.codeId = bundledCodeIds.get(bundleKey);
    // Which fanout function this is, whatever its logical id: `fanout dev --template` runs each
    // with the configuration and role the template gives it.
    (this.function.node.defaultChild as CfnFunction).addMetadata(
      FanoutFunction.METADATA_KEY,
      props.handler,
    );
  }
}

/** Each bundle's identity, by entry and registry, once bundled in this process. */
const bundledCodeIds = new Map<string, string>();

/**
 * A function's code: its bundle, built by the installed esbuild (no Docker) with the local
 * runtime's options (local/bundle.ts), for Node.js 24: an `index.mjs` and the chunks it loads
 * when it needs them. `jobs`: a registry in place of jobs/index.ts, as a job run by path is
 * built locally (local/job-path.ts), with `fanout` as the public job API. The asset is hashed
 * by its output, as NodejsFunction's is.
 */
function functionCode(
  entry: string,
  jobs: string | undefined,
  onBundled: (codeId: string) => void,
): Code {
  return Code.fromAsset(repoRoot, {
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      // Never pulled: the local build below always runs (and throws if esbuild fails).
      image: DockerImage.fromRegistry('fanout/local-bundling-only'),
      local: {
        tryBundle(outputDir) {
          // Loaded only when a stack is bundled: synthesis without assets never needs it.
          const { buildSync } = createRequire(import.meta.url)(
            'esbuild',
          ) as typeof import('esbuild');
          buildSync({
            ...bundleOptions,
            ...(jobs !== undefined && registryBuildOptions(jobs)),
            entryPoints: { index: entry },
            outdir: outputDir,
            outExtension: { '.js': '.mjs' },
            chunkNames: 'chunks/[name]-[hash]',
            target: 'node24',
            absWorkingDir: repoRoot,
            logLevel: 'error',
          });
          onBundled(hashTree(outputDir));
          return true;
        },
      },
    },
  });
}

/** A hash of every file under `dir` (names and contents, in name order): a bundle's identity. */
function hashTree(dir: string): string {
  const hash = createHash('sha256');
  const files = (
    readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[]
  )
    .filter((f) => f.isFile())
    .map((f) => join(f.parentPath, f.name))
    .sort();
  for (const file of files) hash.update(relative(dir, file)).update(readFileSync(file));
  return hash.digest('hex').slice(0, 32);
}
