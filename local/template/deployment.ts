/**
 * A synthesized CloudFormation template read as the local runtime needs it: fanout's five
 * functions (found by their `fanout:function` metadata) with their timeout, memory,
 * environment, reserved concurrency and role; each role's identity policies; the coordinator's
 * asynchronous-invocation settings and failure destination; the schedules; and which service
 * principals may invoke which function. Intrinsic functions are resolved against local names:
 * the bucket is the local bucket, functions are `fanout-{role}`, the account is 000000000000.
 *
 * Pure: a template in, a plain description out, so a test can feed it any template.
 */
import { ValidationError } from '#core/base/errors.ts';
import type { PolicyDocument } from '../iam/policy.ts';

/** fanout's functions, by their role. */
export const FUNCTION_ROLES = ['api', 'coordinator', 'worker', 'reducer', 'sweeper'] as const;
export type FunctionRole = (typeof FUNCTION_ROLES)[number];

/** The metadata key FanoutFunction puts on each function (infra/constructs/fanout-function.ts). */
export const FUNCTION_METADATA_KEY = 'fanout:function';

/** A template the local runtime cannot run, with what was wrong and what was expected. */
export class TemplateError extends ValidationError {}

/** One function as the template configures it. */
export interface TemplateFunction {
  role: FunctionRole;
  logicalId: string;
  /** Its local name, `fanout-{role}`. */
  name: string;
  arn: string;
  timeoutSeconds: number;
  memoryMb: number;
  environment: Record<string, string>;
  reservedConcurrency?: number;
  /** The execution role's ARN, and the identity policies attached to it. */
  roleArn: string;
  policies: PolicyDocument[];
  /** Managed policies the template names but does not hold (their permissions are unknown). */
  unknownManagedPolicies: string[];
  /** Asynchronous invocations: retries, event age, and the failure destination's ARN. */
  async: { retryAttempts: number; maxEventAgeSeconds: number; onFailure?: string };
}

/** What the local runtime runs from a template. */
export interface Deployment {
  region: string;
  account: string;
  /** The job bucket (FANOUT_BUCKET of the functions). */
  bucket: string;
  functions: Record<FunctionRole, TemplateFunction>;
  /** Scheduled rules: which function each invokes, and how often. */
  schedules: { target: FunctionRole; everySeconds: number }[];
  /** Resource-based permissions: which service principal may invoke which function. */
  servicePermissions: { principal: string; target: FunctionRole }[];
}

/** A CloudFormation template, loosely typed. */
export interface Template {
  Resources?: Record<
    string,
    { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }
  >;
}

/** Names the local runtime gives: the bucket, and the account and region of ARNs. */
export interface LocalNames {
  bucket: string;
  /** @default 000000000000 */
  account?: string;
  /** @default the region the template's ARNs name, else us-east-1 */
  region?: string;
}

/**
 * AWS managed policies whose content is known. AWSLambdaBasicExecutionRole allows only the
 * function's own logs, which the local runtime does not authorize (logs go to the console).
 */
const KNOWN_MANAGED: Record<string, PolicyDocument> = {
  'service-role/AWSLambdaBasicExecutionRole': {
    Statement: [
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: '*',
      },
    ],
  },
};

const REGION_IN_ARN = /arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-gov)?-[a-z]+-\d):/;

type Resources = NonNullable<Template['Resources']>;

/** Reads a template as the local runtime runs it. Throws TemplateError saying what is missing. */
export function readDeployment(template: Template, names: LocalNames): Deployment {
  const resources = template.Resources;
  if (resources === undefined || typeof resources !== 'object') {
    throw new TemplateError('the template has no Resources; expected a synthesized CDK template');
  }
  const byRole = fanoutFunctions(resources);
  const region = names.region ?? REGION_IN_ARN.exec(JSON.stringify(template))?.[1] ?? 'us-east-1';
  const refs = new Intrinsics(resources, byRole, {
    bucket: names.bucket,
    region,
    account: names.account ?? '000000000000',
  });
  const functions = {} as Record<FunctionRole, TemplateFunction>;
  for (const [role, id] of byRole) functions[role] = functionOf(role, id, resources, refs);
  const schedules: Deployment['schedules'] = [];
  const servicePermissions: Deployment['servicePermissions'] = [];
  for (const r of Object.values(resources)) {
    const p = r.Properties ?? {};
    if (r.Type === 'AWS::Lambda::EventInvokeConfig') {
      const role = refs.functionRole(p.FunctionName);
      if (role !== undefined) functions[role].async = asyncConfig(p, refs);
    }
    if (r.Type === 'AWS::Events::Rule' && typeof p.ScheduleExpression === 'string') {
      const every = rateSeconds(p.ScheduleExpression);
      for (const target of (p.Targets as { Arn: unknown }[] | undefined) ?? []) {
        const role = refs.functionRole(target.Arn);
        if (role !== undefined && every !== undefined) {
          schedules.push({ target: role, everySeconds: every });
        }
      }
    }
    if (r.Type === 'AWS::Lambda::Permission' && p.Action === 'lambda:InvokeFunction') {
      const role = refs.functionRole(p.FunctionName);
      if (role !== undefined && typeof p.Principal === 'string') {
        servicePermissions.push({ principal: p.Principal, target: role });
      }
    }
  }
  const bucket = functions.api.environment.FANOUT_BUCKET;
  if (bucket === undefined) {
    throw new TemplateError(
      'the api function has no FANOUT_BUCKET variable; expected the job bucket',
    );
  }
  return {
    region,
    account: refs.account,
    bucket,
    functions,
    schedules,
    servicePermissions,
  };
}

/** fanout's functions by role, from their metadata: each exactly once. */
function fanoutFunctions(resources: Resources): Map<FunctionRole, string> {
  const byRole = new Map<FunctionRole, string>();
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const role = r.Metadata?.[FUNCTION_METADATA_KEY] as FunctionRole | undefined;
    if (role === undefined || !FUNCTION_ROLES.includes(role)) continue;
    if (byRole.has(role)) {
      throw new TemplateError(
        `the template holds more than one fanout ${role} function (${byRole.get(role)} and ${id}); give a template with one FanoutService`,
      );
    }
    byRole.set(role, id);
  }
  const missing = FUNCTION_ROLES.filter((role) => !byRole.has(role));
  if (missing.length > 0) {
    throw new TemplateError(
      `the template has no fanout ${missing.join(', ')} function (a Lambda function with Metadata "${FUNCTION_METADATA_KEY}"); synthesize a stack with a FanoutService of this version of fanout`,
    );
  }
  return byRole;
}

/**
 * CloudFormation's intrinsic functions, resolved against local names: the job bucket is the
 * local bucket (other buckets get names of their own, so no ARN of one matches the other),
 * fanout's functions are `fanout-{role}`, roles keep their logical ids.
 */
class Intrinsics {
  readonly account: string;
  private readonly region: string;
  private readonly bucket: string;
  private readonly roleOfId: Map<string, FunctionRole>;
  private readonly jobBucketId: string | undefined;

  constructor(
    private readonly resources: Resources,
    byRole: Map<FunctionRole, string>,
    names: { bucket: string; region: string; account: string },
  ) {
    this.account = names.account;
    this.region = names.region;
    this.bucket = names.bucket;
    this.roleOfId = new Map([...byRole].map(([role, id]) => [id, role]));
    // The job bucket: what FANOUT_BUCKET names (a Ref to a bucket of the template, or a name).
    const apiEnv = resources[byRole.get('api')!]?.Properties?.Environment as
      | { Variables?: Record<string, unknown> }
      | undefined;
    const named = apiEnv?.Variables?.FANOUT_BUCKET as { Ref?: string } | string | undefined;
    const buckets = Object.keys(resources).filter(
      (id) => resources[id]!.Type === 'AWS::S3::Bucket',
    );
    this.jobBucketId =
      typeof named === 'object' && named?.Ref !== undefined
        ? named.Ref
        : buckets.length === 1
          ? buckets[0]
          : undefined;
  }

  functionName(id: string): string {
    return `fanout-${this.roleOfId.get(id) ?? id}`;
  }

  functionArn(id: string): string {
    return `arn:aws:lambda:${this.region}:${this.account}:function:${this.functionName(id)}`;
  }

  /** Which fanout function a name, an ARN or an intrinsic that resolves to one names. */
  functionRole(value: unknown): FunctionRole | undefined {
    const text = String(this.resolve(value));
    const name = text.startsWith('arn:') ? text.split(':')[6] : text;
    return FUNCTION_ROLES.find((role) => `fanout-${role}` === name);
  }

  resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    if (value === null || typeof value !== 'object') return value;
    const v = value as Record<string, unknown>;
    if ('Ref' in v) return this.ref(String(v.Ref));
    if ('Fn::GetAtt' in v) {
      const [id, attribute] = v['Fn::GetAtt'] as [string, string];
      return this.getAtt(id, attribute);
    }
    if ('Fn::Join' in v) {
      const [delimiter, items] = v['Fn::Join'] as [string, unknown[]];
      return (this.resolve(items) as unknown[]).map(String).join(delimiter);
    }
    if ('Fn::Sub' in v) return this.sub(v['Fn::Sub']);
    if ('Fn::Select' in v) {
      const [index, items] = v['Fn::Select'] as [number, unknown];
      return (this.resolve(items) as unknown[])[Number(index)];
    }
    if ('Fn::Split' in v) {
      const [delimiter, text] = v['Fn::Split'] as [string, unknown];
      return String(this.resolve(text)).split(delimiter);
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.resolve(x)]));
  }

  private sub(spec: unknown): string {
    const [text, vars] = Array.isArray(spec)
      ? (spec as [string, Record<string, unknown>])
      : [String(spec), {}];
    return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (name in vars) return String(this.resolve(vars[name]));
      const [id = '', attribute] = name.split('.');
      return String(attribute === undefined ? this.ref(id) : this.getAtt(id, attribute));
    });
  }

  private bucketName(id: string): string {
    return id === this.jobBucketId
      ? this.bucket
      : `${this.bucket}-${id.toLowerCase()}`.slice(0, 63);
  }

  private ref(id: string): unknown {
    const pseudo: Record<string, unknown> = {
      'AWS::Partition': 'aws',
      'AWS::Region': this.region,
      'AWS::AccountId': this.account,
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::StackName': 'local',
      'AWS::NoValue': undefined,
    };
    if (id in pseudo) return pseudo[id];
    const type = this.resources[id]?.Type;
    if (type === 'AWS::S3::Bucket') return this.bucketName(id);
    if (type === 'AWS::Lambda::Function') return this.functionName(id);
    return id;
  }

  getAtt(id: string, attribute: string): unknown {
    const type = this.resources[id]?.Type;
    if (attribute === 'Arn') {
      if (type === 'AWS::S3::Bucket') return `arn:aws:s3:::${this.bucketName(id)}`;
      if (type === 'AWS::Lambda::Function') return this.functionArn(id);
      if (type === 'AWS::IAM::Role') return `arn:aws:iam::${this.account}:role/${id}`;
      if (type === 'AWS::Events::Rule') {
        return `arn:aws:events:${this.region}:${this.account}:rule/${id}`;
      }
    }
    // Nothing the local runtime evaluates needs other attributes; a value that matches nothing.
    return `unresolved:${id}.${attribute}`;
  }
}

/** One function's configuration, and its role's policies. */
function functionOf(
  role: FunctionRole,
  id: string,
  resources: Resources,
  refs: Intrinsics,
): TemplateFunction {
  const p = resources[id]!.Properties ?? {};
  const roleRef = (p.Role as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt'];
  if (roleRef === undefined) {
    throw new TemplateError(
      `the ${role} function (${id}) has no Role of the template (Fn::GetAtt Role.Arn); the local runtime enforces that role, so it must be in the template`,
    );
  }
  const variables = (p.Environment as { Variables?: Record<string, unknown> } | undefined)
    ?.Variables;
  const environment: Record<string, string> = {};
  for (const [name, value] of Object.entries(variables ?? {})) {
    const resolved = refs.resolve(value);
    if (resolved !== undefined) environment[name] = String(resolved);
  }
  return {
    role,
    logicalId: id,
    name: refs.functionName(id),
    arn: refs.functionArn(id),
    timeoutSeconds: Number(p.Timeout ?? 3),
    memoryMb: Number(p.MemorySize ?? 128),
    environment,
    ...(p.ReservedConcurrentExecutions !== undefined && {
      reservedConcurrency: Number(p.ReservedConcurrentExecutions),
    }),
    roleArn: String(refs.getAtt(roleRef[0], 'Arn')),
    ...policiesOf(roleRef[0], resources, refs),
    // Lambda's defaults for asynchronous invocations, unless an EventInvokeConfig says more.
    async: { retryAttempts: 2, maxEventAgeSeconds: 21_600 },
  };
}

/** The identity policies of a role: inline, attached (Policy, ManagedPolicy), AWS managed. */
function policiesOf(roleId: string, resources: Resources, refs: Intrinsics) {
  const policies: PolicyDocument[] = [];
  const unknownManagedPolicies: string[] = [];
  const role = resources[roleId];
  for (const inline of (role?.Properties?.Policies as { PolicyDocument: unknown }[]) ?? []) {
    policies.push(refs.resolve(inline.PolicyDocument) as PolicyDocument);
  }
  for (const arn of (refs.resolve(role?.Properties?.ManagedPolicyArns) as string[]) ?? []) {
    const name = /:iam::aws:policy\/(.+)$/.exec(arn)?.[1];
    const known = name === undefined ? undefined : KNOWN_MANAGED[name];
    if (known === undefined) unknownManagedPolicies.push(arn);
    else policies.push(known);
  }
  for (const r of Object.values(resources)) {
    if (r.Type !== 'AWS::IAM::Policy' && r.Type !== 'AWS::IAM::ManagedPolicy') continue;
    const roles = (r.Properties?.Roles as { Ref?: string }[] | undefined) ?? [];
    if (!roles.some((x) => x.Ref === roleId)) continue;
    policies.push(refs.resolve(r.Properties?.PolicyDocument) as PolicyDocument);
  }
  return { policies, unknownManagedPolicies };
}

/** An EventInvokeConfig's retries, event age and failure destination. */
function asyncConfig(p: Record<string, unknown>, refs: Intrinsics): TemplateFunction['async'] {
  const destination = (p.DestinationConfig as { OnFailure?: { Destination?: unknown } })?.OnFailure
    ?.Destination;
  return {
    retryAttempts: Number(p.MaximumRetryAttempts ?? 2),
    maxEventAgeSeconds: Number(p.MaximumEventAgeInSeconds ?? 21_600),
    ...(destination !== undefined && { onFailure: String(refs.resolve(destination)) }),
  };
}

/** Seconds of a `rate(N unit)` schedule; undefined for cron expressions. */
function rateSeconds(expression: string): number | undefined {
  const m = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (m === null) return undefined;
  const unit = m[2]!.startsWith('minute') ? 60 : m[2]!.startsWith('hour') ? 3600 : 86_400;
  return Number(m[1]) * unit;
}
