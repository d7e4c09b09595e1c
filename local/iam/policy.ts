/**
 * IAM policy evaluation for the local runtime: the identity policies of a role, as the
 * synthesized template gives them, decide every request a function makes, as IAM would. An
 * explicit Deny wins; otherwise an Allow whose action, resource and conditions all match is
 * needed; otherwise the request is implicitly denied.
 *
 * What is evaluated: `Action` / `NotAction` (case-insensitive, `*` and `?`), `Resource` /
 * `NotResource` (ARNs matched segment by segment, the resource part as one segment, so `*`
 * spans `/` but not the service's colons), and the condition operators IAM documents for
 * strings, ARNs, booleans, numbers and `Null`, with `IfExists` and the `ForAnyValue:` /
 * `ForAllValues:` set qualifiers. A policy that uses anything else (policy variables, an
 * unknown operator) is refused when it is loaded: the local runtime would rather say it cannot
 * enforce a policy than enforce it wrongly.
 */

/** One statement of an identity policy, as in a template. */
export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, unknown>>;
}

/** A policy document. */
export interface PolicyDocument {
  Version?: string;
  Statement: PolicyStatement | PolicyStatement[];
}

/** One request as IAM sees it: the action, the resource's ARN, and the condition keys. */
export interface AuthorizationRequest {
  action: string;
  resource: string;
  /** Condition keys of the request (`s3:prefix`, …); an absent key is `undefined`. */
  context?: Readonly<Record<string, string | undefined>>;
}

/** The outcome of an evaluation. */
export type Decision = 'allow' | 'explicit-deny' | 'implicit-deny';

/** A policy the local runtime cannot enforce faithfully. */
export class UnsupportedPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedPolicyError';
  }
}

type Matcher = (value: string) => boolean;

interface CompiledStatement {
  allow: boolean;
  action: Matcher;
  resource: Matcher;
  conditions: ((context: Readonly<Record<string, string | undefined>>) => boolean)[];
}

const list = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** A glob with IAM's `*` (any run of characters) and `?` (one character) as a RegExp. */
function globRegExp(glob: string, flags = ''): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\*?]/g, (c) =>
    c === '*' ? '.*' : c === '?' ? '.' : `\\${c}`,
  );
  return new RegExp(`^${body}$`, flags);
}

/**
 * An ARN pattern as a matcher: the first five colon-separated segments (`arn`, partition,
 * service, region, account) each on their own, the rest (the resource, which may hold colons,
 * as `function:name:qualifier` does) as one. `*` alone matches every resource.
 */
function arnMatcher(pattern: string): Matcher {
  if (pattern === '*') return () => true;
  const head = pattern.split(':').slice(0, 5);
  const rest = pattern.split(':').slice(5).join(':');
  if (head.length < 5) {
    const whole = globRegExp(pattern);
    return (value) => whole.test(value);
  }
  const heads = head.map((h) => globRegExp(h));
  const tail = globRegExp(rest);
  return (value) => {
    const parts = value.split(':');
    if (parts.length < 6) return false;
    for (let i = 0; i < 5; i++) if (!heads[i]!.test(parts[i]!)) return false;
    return tail.test(parts.slice(5).join(':'));
  };
}

function anyOf(patterns: string[], make: (p: string) => Matcher): Matcher {
  const matchers = patterns.map(make);
  return (value) => matchers.some((m) => m(value));
}

function assertNoVariables(values: string[], where: string): void {
  const variable = values.find((v) => v.includes('${'));
  if (variable !== undefined) {
    throw new UnsupportedPolicyError(
      `${where} ${JSON.stringify(variable)} uses a policy variable, which the local runtime does not evaluate`,
    );
  }
}

/** The string comparisons of each operator family, before negation and qualifiers. */
const COMPARE: Record<string, (expected: string) => Matcher> = {
  StringEquals: (e) => (v) => v === e,
  StringEqualsIgnoreCase: (e) => (v) => v.toLowerCase() === e.toLowerCase(),
  StringLike: (e) => {
    const re = globRegExp(e);
    return (v) => re.test(v);
  },
  ArnEquals: (e) => arnMatcher(e),
  ArnLike: (e) => arnMatcher(e),
  Bool: (e) => (v) => v.toLowerCase() === e.toLowerCase(),
  NumericEquals: (e) => (v) => Number(v) === Number(e),
  NumericLessThan: (e) => (v) => Number(v) < Number(e),
  NumericLessThanEquals: (e) => (v) => Number(v) <= Number(e),
  NumericGreaterThan: (e) => (v) => Number(v) > Number(e),
  NumericGreaterThanEquals: (e) => (v) => Number(v) >= Number(e),
};

/** Negated operators: true where the positive one is false, and where the key is absent. */
const NEGATED: Record<string, string> = {
  StringNotEquals: 'StringEquals',
  StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
  StringNotLike: 'StringLike',
  ArnNotEquals: 'ArnEquals',
  ArnNotLike: 'ArnLike',
  NumericNotEquals: 'NumericEquals',
};

/** One condition operator block (`{ "StringLike": { "s3:prefix": [...] } }`) as predicates. */
function compileCondition(
  operator: string,
  keys: Record<string, unknown>,
): ((context: Readonly<Record<string, string | undefined>>) => boolean)[] {
  const qualifier = /^(ForAnyValue|ForAllValues):/.exec(operator)?.[1];
  let name = qualifier === undefined ? operator : operator.slice(qualifier.length + 1);
  const ifExists = name.endsWith('IfExists');
  if (ifExists) name = name.slice(0, -'IfExists'.length);
  const predicates: ((context: Readonly<Record<string, string | undefined>>) => boolean)[] = [];
  for (const [key, raw] of Object.entries(keys)) {
    const expected = (Array.isArray(raw) ? raw : [raw]).map(String);
    assertNoVariables(expected, `condition ${operator} ${key}`);
    if (name === 'Null') {
      // `Null: true` holds when the key is absent; `false` when it is present.
      const wantAbsent = expected.some((e) => e.toLowerCase() === 'true');
      predicates.push((context) => (context[key] === undefined) === wantAbsent);
      continue;
    }
    const positive = NEGATED[name] ?? name;
    const compare = COMPARE[positive];
    if (compare === undefined) {
      throw new UnsupportedPolicyError(
        `condition operator ${operator} is not one the local runtime evaluates (strings, ARNs, Bool, numbers, Null, with IfExists and ForAnyValue/ForAllValues)`,
      );
    }
    const matchers = expected.map(compare);
    const negated = NEGATED[name] !== undefined;
    predicates.push((context) => {
      const value = context[key];
      // Every key here is single-valued: a set qualifier sees a set of one, or of none.
      if (value === undefined) return ifExists || negated || qualifier === 'ForAllValues';
      const hit = matchers.some((m) => m(value));
      return negated ? !hit : hit;
    });
  }
  return predicates;
}

/** `Action` / `NotAction` (or `Resource` / `NotResource`): a match, or its negation. */
function elementMatcher(
  patterns: string[],
  notPatterns: string[],
  make: (pattern: string) => Matcher,
): Matcher {
  if (notPatterns.length === 0) return anyOf(patterns, make);
  const excluded = anyOf(notPatterns, make);
  return (value) => !excluded(value);
}

function compileStatement(st: PolicyStatement): CompiledStatement {
  if (st.Effect !== 'Allow' && st.Effect !== 'Deny') {
    throw new UnsupportedPolicyError(`statement Effect must be Allow or Deny; got ${st.Effect}`);
  }
  const actions = list(st.Action);
  const notActions = list(st.NotAction);
  const resources = list(st.Resource);
  const notResources = list(st.NotResource);
  assertNoVariables([...resources, ...notResources], 'resource');
  const actionOf = (p: string) => {
    const re = globRegExp(p, 'i');
    return (v: string) => re.test(v);
  };
  const action = elementMatcher(actions, notActions, actionOf);
  const resource = elementMatcher(resources, notResources, arnMatcher);
  const conditions = Object.entries(st.Condition ?? {}).flatMap(([op, keys]) =>
    compileCondition(op, keys),
  );
  return { allow: st.Effect === 'Allow', action, resource, conditions };
}

/** The identity policies of one principal, compiled once, evaluated per request. */
export class Policy {
  private readonly statements: CompiledStatement[];

  /** @throws UnsupportedPolicyError for a policy the local runtime cannot evaluate. */
  constructor(documents: readonly PolicyDocument[]) {
    this.statements = documents.flatMap((d) => [d.Statement].flat().map(compileStatement));
  }

  /** IAM's decision for one request. */
  evaluate(request: AuthorizationRequest): Decision {
    const context = request.context ?? {};
    let allowed = false;
    for (const st of this.statements) {
      if (!st.action(request.action) || !st.resource(request.resource)) continue;
      if (!st.conditions.every((holds) => holds(context))) continue;
      if (!st.allow) return 'explicit-deny';
      allowed = true;
    }
    return allowed ? 'allow' : 'implicit-deny';
  }

  /** True when {@link evaluate} allows. */
  allows(request: AuthorizationRequest): boolean {
    return this.evaluate(request) === 'allow';
  }
}
