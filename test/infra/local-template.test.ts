/**
 * The synthesized template as the local runtime reads it (local/template/deployment.ts): every
 * function with its configuration and role, every policy resolved to local ARNs, the failure
 * destination, the schedule and the service permissions; and clear errors for templates it
 * cannot run.
 */
import { App, Stack } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { Policy } from '#local/iam/policy.ts';
import { readDeployment, type Template } from '#local/template/deployment.ts';
import { FanoutService } from '../../infra/constructs/fanout-service.ts';
import { synthTemplate } from '../../infra/synth.ts';

const template = synthTemplate() as Template;
const deployment = readDeployment(template, { bucket: 'fanout-local' });

describe('readDeployment', () => {
  it('finds the five functions with their timeouts, memory and environment', () => {
    const { functions } = deployment;
    expect(
      Object.values(functions)
        .map((f) => [f.role, f.name, f.timeoutSeconds, f.memoryMb])
        .sort(),
    ).toEqual([
      ['api', 'fanout-api', 29, 512],
      ['coordinator', 'fanout-coordinator', 900, 1024],
      ['reducer', 'fanout-reducer', 300, 1769],
      ['sweeper', 'fanout-sweeper', 60, 256],
      ['worker', 'fanout-worker', 300, 1769],
    ]);
    expect(deployment.bucket).toBe('fanout-local');
    expect(functions.coordinator.environment).toMatchObject({
      FANOUT_BUCKET: 'fanout-local',
      FANOUT_WORKER_FUNCTION: 'fanout-worker',
      FANOUT_REDUCER_FUNCTION: 'fanout-reducer',
      FANOUT_WORKER_TIMEOUT_SECONDS: '300',
      FANOUT_EVENT_BUS: 'default',
    });
    expect(functions.api.environment.FANOUT_ALLOWED_INPUTS).toBe('s3://fanout-local/datasets/');
  });

  it("resolves every role's policies to local ARNs", () => {
    const text = JSON.stringify(Object.values(deployment.functions).map((f) => f.policies));
    expect(text).not.toMatch(/unresolved:|Fn::|"Ref"/);
    const coordinator = new Policy(deployment.functions.coordinator.policies);
    expect(
      coordinator.allows({
        action: 's3:GetObject',
        resource: 'arn:aws:s3:::fanout-local/jobs/abc/manifest.json',
      }),
    ).toBe(true);
    expect(
      coordinator.allows({
        action: 'lambda:InvokeFunction',
        resource: deployment.functions.worker.arn,
      }),
    ).toBe(true);
    expect(
      coordinator.allows({
        action: 'lambda:InvokeFunction',
        resource: deployment.functions.api.arn,
      }),
    ).toBe(false);
    const worker = new Policy(deployment.functions.worker.policies);
    expect(
      worker.allows({
        action: 's3:DeleteObject',
        resource: 'arn:aws:s3:::fanout-local/jobs/abc/parts/3.2.jsonl',
      }),
    ).toBe(true);
    expect(
      worker.allows({
        action: 's3:DeleteObject',
        resource: 'arn:aws:s3:::fanout-local/jobs/abc/chunks/3.json',
      }),
    ).toBe(false);
  });

  it("reads the coordinator's async settings, the sweep schedule and who may invoke what", () => {
    expect(deployment.functions.coordinator.async).toEqual({
      retryAttempts: 2,
      maxEventAgeSeconds: 3600,
      onFailure: deployment.functions.sweeper.arn,
    });
    expect(deployment.schedules).toEqual([{ target: 'sweeper', everySeconds: 60 }]);
    expect(deployment.servicePermissions).toContainEqual({
      principal: 'apigateway.amazonaws.com',
      target: 'api',
    });
    expect(deployment.servicePermissions).toContainEqual({
      principal: 'events.amazonaws.com',
      target: 'sweeper',
    });
    expect(
      deployment.servicePermissions.filter((p) => p.target !== 'api' && p.target !== 'sweeper'),
    ).toEqual([]);
  });

  it('takes the rehearsal timeouts from context', () => {
    const rehearsal = readDeployment(
      synthTemplate({
        'fanout:workerTimeoutSeconds': '5',
        'fanout:coordinatorTimeoutSeconds': '30',
      }) as Template,
      { bucket: 'b' },
    );
    expect(rehearsal.functions.worker.timeoutSeconds).toBe(5);
    expect(rehearsal.functions.coordinator.timeoutSeconds).toBe(30);
    expect(rehearsal.functions.coordinator.environment.FANOUT_WORKER_TIMEOUT_SECONDS).toBe('5');
  });

  it('refuses a template it cannot run, saying what it expected', () => {
    expect(() => readDeployment({}, { bucket: 'b' })).toThrow(/no Resources/);
    const bare = structuredClone(template);
    for (const r of Object.values(bare.Resources ?? {})) delete r.Metadata;
    expect(() => readDeployment(bare, { bucket: 'b' })).toThrow(
      /no fanout api, coordinator, worker, reducer, sweeper function .*Metadata "fanout:function"/,
    );
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const twice = new Stack(app, 'Twice');
    new FanoutService(twice, 'One');
    new FanoutService(twice, 'Two');
    expect(() =>
      readDeployment(app.synth().getStackByName('Twice').template as Template, { bucket: 'b' }),
    ).toThrow(/more than one fanout \w+ function/);
  });
});
