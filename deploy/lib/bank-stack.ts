// The main stack of one environment: the network, the access-log bucket, and the data, services
// and observability constructs, plus the bucket policies that hold even against a mis-granted
// role (no process deletes from the Object Lock buckets; only the API and the statements job
// read statements).

import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from "aws-cdk-lib";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";
import { EnvironmentConfig } from "./config";
import { Data } from "./data";
import { Observability } from "./observability";
import { justify } from "./policy-scan";
import { Services } from "./services";

export interface BankStackProps extends StackProps {
  readonly config: EnvironmentConfig;
  /** ARN of the edge stack's web ACL. */
  readonly webAclArn: string;
}

/** The main stack of one environment (deploy/README.md, "Topology"). */
export class BankStack extends Stack {
  readonly data: Data;
  readonly services: Services;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: BankStackProps) {
    super(scope, id, props);
    const { config } = props;

    const vpc = new ec2.Vpc(this, "Vpc", {
      vpcName: `bank-${config.name}`,
      maxAzs: config.maxAzs,
      natGateways: config.maxAzs,
      subnetConfiguration: [
        { name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: "app", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        { name: "data", subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
      restrictDefaultSecurityGroup: true,
    });
    // Gateway endpoints keep S3 and DynamoDB traffic off the NAT gateways (and cheaper).
    vpc.addGatewayEndpoint("S3", { service: ec2.GatewayVpcEndpointAwsService.S3 });
    vpc.addGatewayEndpoint("DynamoDb", { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB });

    // Server access logs (buckets), ALB and CloudFront logs. S3-managed keys: log delivery
    // cannot write with a customer key. CloudFront's standard logs need ACLs.
    const accessLogs = new s3.Bucket(this, "AccessLogs", {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      enforceSSL: true,
      versioned: true,
      lifecycleRules: [{ expiration: Duration.days(400), noncurrentVersionExpiration: Duration.days(30) }],
      removalPolicy: config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
      autoDeleteObjects: false,
    });

    justify(accessLogs, {
      id: "CKV_AWS_18",
      comment: "the access-log bucket itself: logging it into itself would loop; CloudTrail records its API calls",
    });

    this.data = new Data(this, "Data", { config, vpc, accessLogsBucket: accessLogs });
    const flowLogs = new logs.LogGroup(this, "FlowLogs", {
      logGroupName: `/bank/${config.name}/vpc-flow-logs`,
      retention: logs.RetentionDays.ONE_YEAR,
      encryptionKey: this.data.key,
    });
    vpc.addFlowLog("FlowLog", { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs) });

    this.services = new Services(this, "Services", {
      config,
      vpc,
      data: this.data,
      accessLogsBucket: accessLogs,
      webAclArn: props.webAclArn,
    });
    this.observability = new Observability(this, "Observability", {
      config,
      data: this.data,
      services: this.services,
      accessLogsBucket: accessLogs,
    });

    // Defence in depth on the Object Lock buckets: deny by bucket policy what no task role may
    // do, whatever identity policy it is later given.
    const taskRoleArns = this.services.taskRoles.map((role) => role.roleArn);
    for (const bucket of [this.data.statementsBucket, this.data.auditBucket]) {
      bucket.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: "NoTaskDeletes",
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration"],
          resources: [bucket.bucketArn, bucket.arnForObjects("*")],
          conditions: { ArnEquals: { "aws:PrincipalArn": taskRoleArns } },
        }),
      );
    }
    const statementReaders = [this.services.tasks.api.role, this.services.tasks.statements.role].map((r) => r.roleArn);
    this.data.statementsBucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "OnlyApiAndJobReadStatements",
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ["s3:GetObject", "s3:GetObjectVersion"],
        resources: [this.data.statementsBucket.arnForObjects("*")],
        conditions: {
          ArnEquals: { "aws:PrincipalArn": taskRoleArns.filter((arn) => !statementReaders.includes(arn)) },
        },
      }),
    );

    new CfnOutput(this, "PublicUrl", { value: `https://${this.services.distribution.distributionDomainName}` });
    new CfnOutput(this, "ClusterName", { value: this.services.cluster.clusterName });
    new CfnOutput(this, "MigrateTaskDefinition", { value: this.services.tasks.migrate.taskDefinition.taskDefinitionArn });
    new CfnOutput(this, "AppSubnets", {
      value: vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }).subnetIds.join(","),
    });
    new CfnOutput(this, "TaskSecurityGroup", { value: this.data.clientSecurityGroup.securityGroupId });
    new CfnOutput(this, "SigningKeysSecret", { value: this.data.signingKeys.secretName });
    if (this.services.userPool && this.services.userPoolClient) {
      new CfnOutput(this, "UserPoolId", { value: this.services.userPool.userPoolId });
      new CfnOutput(this, "UserPoolClientId", { value: this.services.userPoolClient.userPoolClientId });
    }
  }
}
