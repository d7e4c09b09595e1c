/**
 * Logs, metrics and traces for the handlers, with Powertools for AWS Lambda: JSON logs that
 * carry the job id, chunk, attempt and request id on every line (level from
 * POWERTOOLS_LOG_LEVEL), metrics as CloudWatch embedded metric format (namespace `fanout`), and
 * X-Ray subsegments and annotations when tracing is on.
 *
 * The local runtime turns it off (FANOUT_OBSERVABILITY=off) unless the functions' logs are
 * shown (FANOUT_LOGS=1, fanout dev): Powertools is then not even imported, which keeps a
 * sandbox's start as fast as before. Tracing runs only where X-Ray does (the tracer is imported
 * only then).
 */
type Env = Record<string, string | undefined>;

/** Units the handlers use (Powertools' MetricUnit values). */
export type Unit = 'Count' | 'Bytes' | 'Milliseconds' | 'Count/Second' | 'Bytes/Second';

/** What a handler logs and measures with. */
export interface Observability {
  /** Keys added to every log line of this invocation (jobId, chunk, attempt). */
  appendKeys(keys: Record<string, unknown>): void;
  info(message: string, extra?: Record<string, unknown>): void;
  error(message: string, error: unknown): void;
  metric(name: string, unit: Unit, value: number): void;
  /** Runs one invocation: the request id on every line, a trace subsegment, metrics flushed. */
  invocation<T>(
    context: unknown,
    annotations: Record<string, string | number>,
    run: () => Promise<T>,
  ): Promise<T>;
  /** Instruments an AWS SDK v3 client for X-Ray (no-op without tracing). */
  captureClient<C>(client: C): C;
}

const off: Observability = {
  appendKeys: () => undefined,
  info: () => undefined,
  error: () => undefined,
  metric: () => undefined,
  invocation: (_context, _annotations, run) => run(),
  captureClient: (client) => client,
};

/** Observability for one function (`service`: its role), as the environment says. */
export async function observability(role: string, env: Env = process.env): Promise<Observability> {
  if (env.FANOUT_OBSERVABILITY === 'off') return off;
  const [{ Logger }, { Metrics }] = await Promise.all([
    import('@aws-lambda-powertools/logger'),
    import('@aws-lambda-powertools/metrics'),
  ]);
  const serviceName = env.POWERTOOLS_SERVICE_NAME ?? 'fanout';
  const logger = new Logger({ serviceName, persistentKeys: { function: role } });
  const metrics = new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? 'fanout',
    serviceName,
    defaultDimensions: { function: role },
  });
  // X-Ray only where it runs: the stack turns tracing on for functions with active tracing.
  // Lambda sets the trace id (_X_AMZN_TRACE_ID) per invocation, after this init has run, so it
  // cannot tell here; the tracer reads it for each invocation.
  const tracing = tracingEnabled(env);
  let measured = false;
  const tracer = tracing
    ? new (await import('@aws-lambda-powertools/tracer')).Tracer({ serviceName })
    : undefined;
  return {
    appendKeys: (keys) => logger.appendKeys(keys),
    info: (message, extra) => logger.info(message, extra ?? {}),
    error: (message, error) => logger.error(message, error as Error),
    metric: (name, unit, value) => {
      measured = true;
      metrics.addMetric(name, unit as never, value);
    },
    async invocation(context, annotations, run) {
      logger.resetKeys();
      logger.addContext(context as never);
      logger.appendKeys(annotations);
      const parent = tracer?.getSegment();
      const segment = parent?.addNewSubsegment(`## ${role}`);
      if (segment !== undefined) tracer?.setSegment(segment);
      for (const [k, v] of Object.entries(annotations)) tracer?.putAnnotation(k, v);
      try {
        return await run();
      } catch (error) {
        logger.error(`${role} failed`, error as Error);
        tracer?.addErrorAsMetadata(error as Error);
        throw error;
      } finally {
        segment?.close();
        if (parent !== undefined) tracer?.setSegment(parent);
        // Only an invocation that measured something publishes: Powertools warns on every
        // empty flush, which a sweep every few seconds would print again and again.
        if (measured) metrics.publishStoredMetrics();
        measured = false;
      }
    },
    captureClient: (client) => (tracer ? tracer.captureAWSv3Client(client as never) : client),
  };
}

/**
 * Whether this function traces with X-Ray: where the stack says so (POWERTOOLS_TRACE_ENABLED,
 * set with active tracing) inside Lambda (AWS_LAMBDA_FUNCTION_NAME). The local runtime turns it
 * off: it runs no X-Ray daemon.
 */
export function tracingEnabled(env: Env): boolean {
  return env.POWERTOOLS_TRACE_ENABLED === 'true' && env.AWS_LAMBDA_FUNCTION_NAME !== undefined;
}
