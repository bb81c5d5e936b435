// Justified exceptions to the policy scan (checkov, scripts/deploy-check.sh). Each is recorded on
// the resource it concerns as CloudFormation metadata, which checkov reads, so the reason sits in
// the template next to the resource and a new finding anywhere else still fails CI.

import { CfnResource } from "aws-cdk-lib";
import { IConstruct } from "constructs";

/** One skipped check and why. */
export interface Justification {
  readonly id: string;
  readonly comment: string;
}

/** Records `justifications` on the CloudFormation resource of `construct`. */
export function justify(construct: IConstruct, ...justifications: Justification[]): void {
  const resource = construct instanceof CfnResource ? construct : (construct.node.defaultChild as CfnResource | undefined);
  if (!resource) {
    throw new Error(`${construct.node.path}: no CloudFormation resource to justify a policy finding on`);
  }
  const existing = (resource.getMetadata("checkov") as { skip?: Justification[] } | undefined)?.skip ?? [];
  resource.addMetadata("checkov", { skip: [...existing, ...justifications] });
}
