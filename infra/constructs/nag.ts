import { Aspects, type IAspect, Stack, Validations } from 'aws-cdk-lib';
import { CfnPolicy } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/**
 * A CloudFormation value as cdk-nag names it in a finding id (`<Logical.Arn>/jobs/*`): joins
 * concatenated, GetAtt as `<Resource.Attribute>`, Ref as `<Name>`.
 */
function flatten(value: unknown): string {
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/}/g, '>');
  const v = value as Record<string, unknown>;
  if (v?.['Fn::Join']) {
    const [delimiter, items] = v['Fn::Join'] as [string, unknown[]];
    return items.map(flatten).join(delimiter);
  }
  if (v?.['Fn::GetAtt']) {
    const [resource, attribute] = v['Fn::GetAtt'] as [unknown, unknown];
    return `<${flatten(resource)}.${flatten(attribute)}>`;
  }
  if (v?.Ref !== undefined) return `<${flatten(v.Ref)}>`;
  return JSON.stringify(value);
}

/**
 * Acknowledges cdk-nag's wildcard findings (AwsSolutions-IAM5) for exactly the given resources in
 * the policies under `scope` (a function's role), with the reason. cdk-nag 3 names each finding
 * by its resource as CloudFormation renders it (logical ids that depend on where the construct
 * sits in the user's app), so the names are worked out when the aspect visits the policy. A
 * wildcard that is not listed still fails synthesis: a new one must be added here on purpose.
 */
export function acknowledgeWildcards(
  scope: IConstruct,
  resources: readonly string[],
  reason: string,
): void {
  const aspect: IAspect = {
    visit(node) {
      if (!(node instanceof CfnPolicy)) return;
      for (const resource of resources) {
        Validations.of(node).acknowledge({
          id: `AwsSolutions-IAM5[Resource::${flatten(Stack.of(node).resolve(resource))}]`,
          reason,
        });
      }
    },
  };
  Aspects.of(scope).add(aspect);
}
