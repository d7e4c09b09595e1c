/**
 * What the service shows of itself: rules that count jobs by how they end, metric filters on
 * the sweeper's log, a dashboard, and alarms (each switched off by a prop; none has actions).
 */
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { type IEventBus, Rule } from 'aws-cdk-lib/aws-events';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { FilterPattern, type LogGroup, MetricFilter } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { JOB_EVENT_DETAIL_TYPE, JOB_EVENT_SOURCE } from '../../../shared/core/model/events.ts';
import type { FanoutServiceProps } from '../fanout-service.ts';
import type { Functions } from './functions.ts';

/** Creates the rules, filters, dashboard and alarms; returns the dashboard and the alarms. */
export function observe(
  scope: Construct,
  props: FanoutServiceProps,
  fns: Functions,
  sweeperLogs: LogGroup,
  eventBus: IEventBus,
): { dashboard: Dashboard | undefined; alarms: Record<string, Alarm> } {
  let dashboard: Dashboard | undefined;
  const alarms: Record<string, Alarm> = {};
  const jobRule = (id: string, status: string) =>
    new Rule(scope, id, {
      description: `fanout: jobs that end ${status} (counted; add a target to act on them)`,
      eventBus,
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
    new MetricFilter(scope, id, {
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
    dashboard = new Dashboard(scope, 'Dashboard', {
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
    alarms[id] = new Alarm(scope, `${id}Alarm`, {
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
  return { dashboard, alarms };
}
