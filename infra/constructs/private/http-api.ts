/**
 * The HTTP API: IAM (SigV4) authorization on every route of the api function, access logs in
 * HTTP API variables, and throttling.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  type HttpMethod,
  HttpStage,
  LogGroupLogDestination,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { ROUTES } from '../../../shared/core/api/api.ts';
import type { FanoutServiceProps } from '../fanout-service.ts';

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

/** Creates the HTTP API in front of the api function; returns it and its URL. */
export function createHttpApi(
  scope: Construct,
  api: IFunction,
  props: FanoutServiceProps,
  logRetention: RetentionDays,
): { httpApi: HttpApi; url: string } {
  // The HTTP API: IAM (SigV4) authorization on every route, access logs, throttling.
  const integration = new HttpLambdaIntegration('Integration', api);
  const httpApi = new HttpApi(scope, 'HttpApi', {
    description: 'fanout: submit jobs, follow them, fetch results',
    defaultAuthorizer: new HttpIamAuthorizer(),
    createDefaultStage: false,
  });
  for (const route of ROUTES) {
    httpApi.addRoutes({ path: route.path, methods: [route.method as HttpMethod], integration });
  }
  const accessLogs = new LogGroup(scope, 'ApiAccessLogs', {
    retention: logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const stage = new HttpStage(scope, 'DefaultStage', {
    httpApi,
    autoDeploy: true,
    throttle: { rateLimit: props.apiRateLimit ?? 50, burstLimit: props.apiBurstLimit ?? 100 },
    accessLogSettings: {
      destination: new LogGroupLogDestination(accessLogs),
      format: AccessLogFormat.custom(JSON.stringify(HTTP_API_ACCESS_LOG)),
    },
  });

  return { httpApi, url: stage.url };
}
