// The edge stack: the WAF web ACL in front of CloudFront. A CLOUDFRONT-scoped web ACL can only be
// created in us-east-1, so it lives in its own stack there whatever the main stack's region; the
// main stack reads its ARN through a cross-region reference.

import { ArnFormat, RemovalPolicy, Stack, StackProps } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as logs from "aws-cdk-lib/aws-logs";
import * as wafv2 from "aws-cdk-lib/aws-wafv2";
import { Construct } from "constructs";
import { EnvironmentConfig } from "./config";

/** AWS managed rule groups the web ACL runs, in priority order after the rate rule. */
export const MANAGED_RULE_GROUPS = [
  "AWSManagedRulesAmazonIpReputationList",
  "AWSManagedRulesCommonRuleSet",
  "AWSManagedRulesKnownBadInputsRuleSet",
  "AWSManagedRulesSQLiRuleSet",
] as const;

export interface EdgeStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/** WAF for the CloudFront distribution: a per-IP rate rule and AWS managed rules, logged. */
export class EdgeStack extends Stack {
  /** ARN of the web ACL, for the distribution. */
  readonly webAclArn: string;

  constructor(scope: Construct, id: string, props: EdgeStackProps) {
    super(scope, id, props);
    const { config } = props;

    const rules: wafv2.CfnWebACL.RuleProperty[] = [
      {
        name: "rate-per-ip",
        priority: 0,
        action: { block: {} },
        statement: {
          rateBasedStatement: { aggregateKeyType: "IP", limit: config.wafRateLimitPer5Min, evaluationWindowSec: 300 },
        },
        visibilityConfig: visibility("rate-per-ip"),
      },
      ...MANAGED_RULE_GROUPS.map((group, i) => ({
        name: group,
        priority: i + 1,
        overrideAction: { none: {} },
        statement: { managedRuleGroupStatement: { vendorName: "AWS", name: group } },
        visibilityConfig: visibility(group),
      })),
    ];
    const acl = new wafv2.CfnWebACL(this, "WebAcl", {
      name: `bank-${config.name}-edge`,
      scope: "CLOUDFRONT",
      defaultAction: { allow: {} },
      rules,
      visibilityConfig: visibility(`bank-${config.name}-edge`),
    });
    this.webAclArn = acl.attrArn;

    // WAF logs: the log group's name must start with aws-waf-logs-.
    const logsKey = new kms.Key(this, "LogsKey", {
      alias: `alias/bank-${config.name}-edge-logs`,
      description: `bank ${config.name}: WAF logs`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    logsKey.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal(`logs.${this.region}.amazonaws.com`)],
        actions: ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources: ["*"],
        conditions: {
          ArnLike: { "kms:EncryptionContext:aws:logs:arn": `arn:${this.partition}:logs:${this.region}:${this.account}:*` },
        },
      }),
    );
    const wafLogs = new logs.LogGroup(this, "WafLogs", {
      encryptionKey: logsKey,
      logGroupName: `aws-waf-logs-bank-${config.name}`,
      retention: logs.RetentionDays.ONE_YEAR,
      removalPolicy: config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    new wafv2.CfnLoggingConfiguration(this, "WafLogging", {
      resourceArn: acl.attrArn,
      logDestinationConfigs: [
        Stack.of(this).formatArn({
          service: "logs",
          resource: "log-group",
          resourceName: wafLogs.logGroupName,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
      ],
      // Never log credentials.
      redactedFields: [{ singleHeader: { Name: "authorization" } }, { singleHeader: { Name: "cookie" } }],
    });
  }
}

function visibility(metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty {
  return { cloudWatchMetricsEnabled: true, metricName, sampledRequestsEnabled: true };
}
