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
 * cdk-nag 3 acknowledges wildcard findings (AwsSolutions-IAM5) one resource at a time, by a
 * name derived from logical ids that depend on where the construct sits in the user's app. This
 * aspect acknowledges exactly the wildcard resources of the policies under a scope, with the
 * reason, once their names are known; any other wildcard still fails synthesis.
 */
export function acknowledgeWildcardResources(scope: IConstruct, reason: string): void {
  const aspect: IAspect = {
    visit(node) {
      if (!(node instanceof CfnPolicy)) return;
      const document = Stack.of(node).resolve(node.policyDocument) as {
        Statement: { Resource?: unknown }[];
      };
      for (const statement of document.Statement) {
        for (const resource of [statement.Resource ?? []].flat()) {
          const name = flatten(resource);
          if (name.includes('*')) {
            Validations.of(node).acknowledge({
              id: `AwsSolutions-IAM5[Resource::${name}]`,
              reason,
            });
          }
        }
      }
    },
  };
  Aspects.of(scope).add(aspect);
}
