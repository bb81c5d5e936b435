// The properties deploy/README.md promises, checked on the synthesized templates of the committed
// environments: Object Lock, MFA, encryption, alarms, least privilege, queue and table shapes, the
// servers' environment. Removing any of them from lib/ fails one of these tests.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { CfnElement, Stack } from "aws-cdk-lib";
import { Match } from "aws-cdk-lib/assertions";
import { IConstruct } from "constructs";
import { ALARMS } from "../lib/observability";
import { MANAGED_RULE_GROUPS } from "../lib/edge-stack";
import { SERVER_VARIABLES } from "../lib/variables";
import { allows, DEPLOY_DIR, ofType, refersTo, Statement, statementsOfRole, synth, Synthesized } from "./helpers";

const ENVIRONMENTS = ["staging", "production"];

function idOf(_s: Synthesized, construct: IConstruct): string {
  const resource = (construct.node.defaultChild ?? construct) as CfnElement;
  return Stack.of(construct).getLogicalId(resource);
}

function roleStatements(s: Synthesized, kind: keyof Synthesized["main"]["services"]["tasks"]): Statement[] {
  return statementsOfRole(s, idOf(s, s.main.services.tasks[kind].role));
}

for (const env of ENVIRONMENTS) {
  describe(`${env}: buckets`, () => {
    const s = synth(env);
    const buckets = [
      [s.main.data.statementsBucket, s.config.statementRetentionDays, "statements"],
      [s.main.data.auditBucket, s.config.auditRetentionDays, "audit"],
    ] as const;
    for (const [bucket, days, what] of buckets) {
      it(`${what}: Object Lock COMPLIANCE for ${days} days, versioned, KMS, private, TLS only`, () => {
        const props = s.resources[idOf(s, bucket)].Properties;
        assert.equal(props.ObjectLockEnabled, true);
        assert.deepEqual(props.ObjectLockConfiguration, {
          ObjectLockEnabled: "Enabled",
          Rule: { DefaultRetention: { Mode: "COMPLIANCE", Days: days } },
        });
        assert.equal(props.VersioningConfiguration.Status, "Enabled");
        const sse = props.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault;
        assert.equal(sse.SSEAlgorithm, "aws:kms");
        assert.ok(refersTo(sse.KMSMasterKeyID, idOf(s, s.main.data.key)), "encrypted with the environment's key");
        assert.deepEqual(props.PublicAccessBlockConfiguration, {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        });
        const policy = ofType(s, "AWS::S3::BucketPolicy").find(([, p]) => refersTo(p.Properties.Bucket, idOf(s, bucket)));
        assert.ok(policy, "has a bucket policy");
        const statements = policy[1].Properties.PolicyDocument.Statement as any[];
        assert.ok(
          statements.some((st) => st.Effect === "Deny" && st.Condition?.Bool?.["aws:SecureTransport"] === "false"),
          "denies requests without TLS",
        );
        const noDeletes = statements.find((st) => st.Sid === "NoTaskDeletes");
        assert.ok(noDeletes && noDeletes.Effect === "Deny");
        assert.ok(noDeletes.Action.includes("s3:DeleteObject") && noDeletes.Action.includes("s3:DeleteObjectVersion"));
        for (const task of Object.values(s.main.services.tasks)) {
          assert.ok(refersTo(noDeletes.Condition, idOf(s, task.role)), "every task role is denied deletes");
        }
      });
    }
    it("statements: the bucket policy denies reading them to every task role but the API's and the job's", () => {
      const policy = ofType(s, "AWS::S3::BucketPolicy").find(([, p]) =>
        refersTo(p.Properties.Bucket, idOf(s, s.main.data.statementsBucket)),
      )!;
      const deny = (policy[1].Properties.PolicyDocument.Statement as any[]).find((st) => st.Sid === "OnlyApiAndJobReadStatements");
      assert.ok(deny && deny.Effect === "Deny" && deny.Action.includes("s3:GetObject"));
      const { api, worker, notifications, statements, migrate } = s.main.services.tasks;
      for (const denied of [worker, notifications, migrate]) assert.ok(refersTo(deny.Condition, idOf(s, denied.role)));
      for (const allowed of [api, statements]) assert.ok(!refersTo(deny.Condition, idOf(s, allowed.role)));
    });
  });

  describe(`${env}: least privilege`, () => {
    const s = synth(env);
    const statementsId = idOf(s, s.main.data.statementsBucket);
    const auditId = idOf(s, s.main.data.auditBucket);
    it("the worker, notifications and migrate cannot read statements", () => {
      for (const kind of ["worker", "notifications", "migrate"] as const) {
        const st = roleStatements(s, kind);
        assert.equal(allows(st, "s3:GetObject", statementsId), false, `${kind} must not read statements`);
        assert.equal(allows(st, "s3:GetObjectVersion", statementsId), false, kind);
      }
    });
    it("no task role can delete from the buckets or change their lock", () => {
      for (const kind of Object.keys(s.main.services.tasks) as (keyof typeof s.main.services.tasks)[]) {
        const st = roleStatements(s, kind);
        for (const action of ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutBucketObjectLockConfiguration", "s3:PutBucketPolicy"]) {
          for (const bucket of [statementsId, auditId]) {
            assert.equal(allows(st, action, bucket), false, `${kind} must not ${action}`);
          }
        }
      }
    });
    it("the API reads statements (to pre-sign links) but does not write them", () => {
      const st = roleStatements(s, "api");
      assert.ok(allows(st, "s3:GetObject", statementsId));
      assert.equal(allows(st, "s3:PutObject", statementsId), false);
    });
    it("the statements job writes statements with retention", () => {
      const st = roleStatements(s, "statements");
      assert.ok(allows(st, "s3:PutObject", statementsId));
      assert.ok(allows(st, "s3:PutObjectRetention", statementsId));
    });
    it("every process that seals audit segments may put them, with retention", () => {
      for (const kind of ["api", "worker", "notifications", "statements"] as const) {
        const st = roleStatements(s, kind);
        assert.ok(allows(st, "s3:PutObject", auditId), `${kind} puts audit segments`);
        assert.ok(allows(st, "s3:PutObjectRetention", auditId), kind);
      }
      assert.equal(allows(roleStatements(s, "migrate"), "s3:PutObject", auditId), false);
    });
    it("queues: the API sends transfers but does not consume; the worker consumes; notifications only theirs; the relay and the statements job publish events", () => {
      const transfers = idOf(s, s.main.data.transferQueue);
      const notificationsQueue = idOf(s, s.main.data.notificationsQueue);
      assert.ok(allows(roleStatements(s, "api"), "sqs:SendMessage", transfers));
      assert.equal(allows(roleStatements(s, "api"), "sqs:ReceiveMessage", transfers), false);
      assert.equal(allows(roleStatements(s, "api"), "sqs:DeleteMessage", transfers), false);
      assert.ok(allows(roleStatements(s, "worker"), "sqs:ReceiveMessage", transfers));
      assert.ok(allows(roleStatements(s, "worker"), "sqs:DeleteMessage", transfers));
      assert.ok(allows(roleStatements(s, "notifications"), "sqs:ReceiveMessage", notificationsQueue));
      assert.equal(allows(roleStatements(s, "notifications"), "sqs:ReceiveMessage", transfers), false);
      const topic = idOf(s, s.main.data.eventsTopic);
      assert.ok(allows(roleStatements(s, "worker"), "sns:Publish", topic), "the outbox relay");
      // The statements job publishes StatementReady events, run by the API's admin route or the monthly task.
      assert.ok(allows(roleStatements(s, "api"), "sns:Publish", topic));
      assert.ok(allows(roleStatements(s, "statements"), "sns:Publish", topic));
      assert.equal(allows(roleStatements(s, "notifications"), "sns:Publish", topic), false);
      assert.equal(allows(roleStatements(s, "migrate"), "sns:Publish", topic), false);
    });
    it("no task role is allowed everything, or any action on every resource of a data service", () => {
      for (const kind of Object.keys(s.main.services.tasks) as (keyof typeof s.main.services.tasks)[]) {
        for (const st of roleStatements(s, kind)) {
          assert.ok(!st.Action.some((a) => a === "*" || /^(s3|sqs|sns|dynamodb|kms|secretsmanager):\*$/.test(a)), `${kind}: ${st.Action}`);
          assert.notEqual(JSON.stringify(st.Resource), '"*"', `${kind}: ${st.Action} on *`);
        }
      }
    });
  });

  describe(`${env}: encryption`, () => {
    const s = synth(env);
    it("queues and topics use the customer key", () => {
      const key = idOf(s, s.main.data.key);
      for (const [id, q] of ofType(s, "AWS::SQS::Queue")) assert.ok(refersTo(q.Properties.KmsMasterKeyId, key), id);
      for (const [id, t] of ofType(s, "AWS::SNS::Topic")) assert.ok(refersTo(t.Properties.KmsMasterKeyId, key), id);
    });
    it("the table, the database, the cache, the secrets and every log group are encrypted", () => {
      const key = idOf(s, s.main.data.key);
      s.template.hasResourceProperties("AWS::DynamoDB::Table", {
        SSESpecification: { SSEEnabled: true, SSEType: "KMS", KMSMasterKeyId: Match.anyValue() },
      });
      s.template.hasResourceProperties("AWS::RDS::DBCluster", { StorageEncrypted: true, KmsKeyId: Match.anyValue() });
      s.template.hasResourceProperties("AWS::ElastiCache::ReplicationGroup", {
        TransitEncryptionEnabled: true,
        TransitEncryptionMode: "required",
        AtRestEncryptionEnabled: true,
        AuthToken: Match.anyValue(),
      });
      for (const [id, secret] of ofType(s, "AWS::SecretsManager::Secret")) assert.ok(refersTo(secret.Properties.KmsKeyId, key), id);
      for (const [id, group] of ofType(s, "AWS::Logs::LogGroup")) assert.ok(group.Properties.KmsKeyId, `${id} has no KMS key`);
      for (const [id, bucket] of ofType(s, "AWS::S3::Bucket")) assert.ok(bucket.Properties.BucketEncryption, `${id} unencrypted`);
      s.template.hasResourceProperties("AWS::KMS::Key", { EnableKeyRotation: true });
    });
    it("the database and the cache take TLS only, and connection URLs say so", () => {
      s.template.hasResourceProperties("AWS::RDS::DBProxy", { RequireTLS: true, EngineFamily: "POSTGRESQL" });
      s.template.hasResourceProperties("AWS::RDS::DBClusterParameterGroup", { Parameters: Match.objectLike({ "rds.force_ssl": "1" }) });
      const url = (construct: IConstruct) => JSON.stringify(s.resources[idOf(s, construct)].Properties.SecretString);
      assert.match(url(s.main.data.databaseUrl), /postgres:\/\/bank:.*\{\{resolve:secretsmanager:.*sslmode=require/);
      assert.match(url(s.main.data.databaseReaderUrl), /sslmode=require/);
      assert.match(url(s.main.data.redisUrl), /rediss:\/\/:.*\{\{resolve:secretsmanager:/);
    });
  });

  describe(`${env}: queues, topic, table, database`, () => {
    const s = synth(env);
    it("transfers: FIFO with a FIFO dead-letter queue after 10 receives", () => {
      const q = s.resources[idOf(s, s.main.data.transferQueue)].Properties;
      assert.equal(q.FifoQueue, true);
      assert.match(q.QueueName, /\.fifo$/);
      assert.equal(q.RedrivePolicy.maxReceiveCount, 10);
      assert.ok(refersTo(q.RedrivePolicy.deadLetterTargetArn, idOf(s, s.main.data.transferDlq)));
      assert.equal(s.resources[idOf(s, s.main.data.transferDlq)].Properties.FifoQueue, true);
    });
    it("events: an SNS FIFO topic with the notifications FIFO queue subscribed, raw delivery", () => {
      assert.equal(s.resources[idOf(s, s.main.data.eventsTopic)].Properties.FifoTopic, true);
      assert.equal(s.resources[idOf(s, s.main.data.notificationsQueue)].Properties.FifoQueue, true);
      s.template.hasResourceProperties("AWS::SNS::Subscription", {
        Protocol: "sqs",
        RawMessageDelivery: true,
        TopicArn: { Ref: idOf(s, s.main.data.eventsTopic) },
        Endpoint: { "Fn::GetAtt": [idOf(s, s.main.data.notificationsQueue), "Arn"] },
      });
    });
    it("idempotency table: the shape bank-aws checks (pk, in_flight and by_expiry, TTL on ttl)", () => {
      const t = s.resources[idOf(s, s.main.data.table)].Properties;
      assert.deepEqual(t.KeySchema, [{ AttributeName: "pk", KeyType: "HASH" }]);
      const attrs = Object.fromEntries(t.AttributeDefinitions.map((a: any) => [a.AttributeName, a.AttributeType]));
      assert.deepEqual(attrs, { pk: "S", shard: "S", in_flight_order: "S", expires_at: "N" });
      const indexes = Object.fromEntries(t.GlobalSecondaryIndexes.map((i: any) => [i.IndexName, i]));
      assert.deepEqual(indexes.in_flight.KeySchema, [{ AttributeName: "shard", KeyType: "HASH" }, { AttributeName: "in_flight_order", KeyType: "RANGE" }]);
      assert.equal(indexes.in_flight.Projection.ProjectionType, "ALL");
      assert.deepEqual(indexes.by_expiry.KeySchema, [{ AttributeName: "shard", KeyType: "HASH" }, { AttributeName: "expires_at", KeyType: "RANGE" }]);
      assert.equal(indexes.by_expiry.Projection.ProjectionType, "KEYS_ONLY");
      assert.deepEqual(t.TimeToLiveSpecification, { AttributeName: "ttl", Enabled: true });
      assert.equal(t.BillingMode, "PAY_PER_REQUEST");
      assert.equal(t.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
    });
    it("Aurora PostgreSQL 15: a writer and a reader, RDS Proxy with a read-only endpoint", () => {
      s.template.hasResourceProperties("AWS::RDS::DBCluster", { Engine: "aurora-postgresql", EngineVersion: Match.stringLikeRegexp("^15\\.") });
      s.template.resourceCountIs("AWS::RDS::DBInstance", 2);
      s.template.hasResourceProperties("AWS::RDS::DBProxyEndpoint", { TargetRole: "READ_ONLY" });
    });
  });

  describe(`${env}: alarms`, () => {
    const s = synth(env);
    // The operators' alarms (named bank-ENV-…); the autoscaling step alarms are checked below.
    const alarms = ofType(s, "AWS::CloudWatch::Alarm")
      .map(([, a]) => a.Properties)
      .filter((a) => typeof a.AlarmName === "string" && a.AlarmName.startsWith(`bank-${env}-`));
    const byMetric = (name: string) =>
      alarms.filter((a) => a.MetricName === name || JSON.stringify(a.Metrics ?? []).includes(`"${name}"`));
    it("every alarm notifies the alarm topic", () => {
      const topic = idOf(s, s.main.observability.alarmTopic);
      assert.ok(alarms.length >= 9);
      for (const a of alarms) assert.ok(refersTo(a.AlarmActions, topic), a.AlarmName);
    });
    it("API p95 latency and 5xx rate", () => {
      const latency = byMetric("TargetResponseTime");
      assert.equal(latency.length, 1);
      assert.equal(latency[0].ExtendedStatistic, "p95");
      assert.equal(latency[0].Threshold, ALARMS.apiLatencyP95Seconds);
      const errors = byMetric("HTTPCode_Target_5XX_Count");
      assert.equal(errors.length, 1);
      assert.ok(JSON.stringify(errors[0].Metrics).includes("RequestCount"), "a rate, not a count");
      assert.equal(errors[0].Threshold, ALARMS.api5xxPercent);
    });
    it("transfer queue depth and oldest message age, dead letters", () => {
      const transfers = idOf(s, s.main.data.transferQueue);
      const depth = byMetric("ApproximateNumberOfMessagesVisible").filter((a) => refersTo(a.Dimensions, transfers));
      assert.equal(depth.length, 1);
      const age = byMetric("ApproximateAgeOfOldestMessage").filter((a) => refersTo(a.Dimensions, transfers));
      assert.equal(age.length, 1);
      assert.equal(age[0].Threshold, ALARMS.transferOldestAgeSeconds);
      for (const dlq of [s.main.data.transferDlq, s.main.data.notificationsDlq]) {
        const dead = byMetric("ApproximateNumberOfMessagesVisible").filter((a) => refersTo(a.Dimensions, idOf(s, dlq)));
        assert.equal(dead.length, 1);
        assert.equal(dead[0].Threshold, 0, "one dead letter is an alarm");
        assert.equal(dead[0].ComparisonOperator, "GreaterThanThreshold");
      }
    });
    it("deploy/README.md says what each alarm means and what to do", () => {
      const readme = fs.readFileSync(path.join(DEPLOY_DIR, "README.md"), "utf8");
      for (const a of alarms) {
        const suffix = String(a.AlarmName).slice(`bank-${env}-`.length);
        assert.ok(readme.includes(`| \`${suffix}\` |`), `README has no row for alarm ${suffix}`);
      }
    });
    it("Aurora replica lag of every reader, and the statements job", () => {
      const lag = byMetric("AuroraReplicaLag");
      assert.equal(lag.length, s.main.data.readerInstanceIds.length);
      assert.equal(lag[0].Threshold, ALARMS.replicaLagMs);
      assert.equal(byMetric("ExecutionsFailed").length, 1);
    });
  });

  describe(`${env}: entry path, users, schedule, audit trail`, () => {
    const s = synth(env);
    it("Cognito requires MFA, TOTP only, and API Gateway checks its JWTs on every route", () => {
      s.template.hasResourceProperties("AWS::Cognito::UserPool", { MfaConfiguration: "ON", EnabledMfas: ["SOFTWARE_TOKEN_MFA"] });
      s.template.hasResourceProperties("AWS::ApiGatewayV2::Authorizer", { AuthorizerType: "JWT" });
      for (const [id, route] of ofType(s, "AWS::ApiGatewayV2::Route")) assert.equal(route.Properties.AuthorizationType, "JWT", id);
      s.template.hasResourceProperties("AWS::Cognito::UserPoolClient", { GenerateSecret: false, PreventUserExistenceErrors: "ENABLED" });
    });
    it("CloudFront (HTTPS only) with the edge stack's WAF: a per-IP rate rule and the managed rules", () => {
      s.template.hasResourceProperties("AWS::CloudFront::Distribution", {
        DistributionConfig: Match.objectLike({
          WebACLId: Match.anyValue(),
          DefaultCacheBehavior: Match.objectLike({ ViewerProtocolPolicy: "https-only" }),
        }),
      });
      const acl = s.edgeTemplate.toJSON().Resources;
      const webAcl = Object.values(acl as Record<string, any>).find((r) => r.Type === "AWS::WAFv2::WebACL").Properties;
      assert.equal(webAcl.Scope, "CLOUDFRONT");
      const rate = webAcl.Rules.find((r: any) => r.Statement.RateBasedStatement);
      assert.equal(rate.Statement.RateBasedStatement.Limit, s.config.wafRateLimitPer5Min);
      assert.deepEqual(rate.Action, { Block: {} });
      const managed = webAcl.Rules.map((r: any) => r.Statement.ManagedRuleGroupStatement?.Name).filter(Boolean);
      assert.deepEqual(managed, [...MANAGED_RULE_GROUPS]);
      s.edgeTemplate.resourceCountIs("AWS::WAFv2::LoggingConfiguration", 1);
    });
    it("the ALB is internal, checks /health/ready, and never serves /metrics", () => {
      s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::LoadBalancer", { Scheme: "internal" });
      s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::TargetGroup", { HealthCheckPath: "/health/ready" });
      s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::ListenerRule", {
        Conditions: [{ Field: "path-pattern", PathPatternConfig: { Values: ["/metrics", "/metrics/*"] } }],
        Actions: [Match.objectLike({ Type: "fixed-response" })],
      });
    });
    it("the worker scales on the transfer queue's depth and oldest message age", () => {
      const transfers = idOf(s, s.main.data.transferQueue);
      const policyIds = ofType(s, "AWS::ApplicationAutoScaling::ScalingPolicy").map(([id]) => id);
      const alarmsOnQueue = ofType(s, "AWS::CloudWatch::Alarm")
        .map(([, a]) => a.Properties)
        .filter((a) => refersTo(a.Dimensions, transfers) && policyIds.some((id) => refersTo(a.AlarmActions, id)));
      const names = new Set(alarmsOnQueue.map((a) => a.MetricName));
      assert.ok(names.has("ApproximateNumberOfMessagesVisible") && names.has("ApproximateAgeOfOldestMessage"), [...names].join());
    });
    it("a monthly schedule runs `statements --period` for the month that ended (or the input's period)", () => {
      s.template.hasResourceProperties("AWS::Events::Rule", { ScheduleExpression: "cron(0 2 1 * ? *)" });
      const machine = ofType(s, "AWS::StepFunctions::StateMachine")[0][1].Properties;
      const asl = JSON.stringify(machine.DefinitionString);
      assert.ok(asl.includes("ecs:runTask.sync"));
      assert.ok(asl.includes('\\"statements\\",\\"--period\\"'), asl.slice(0, 300));
      assert.ok(asl.includes("$states.input.period") && asl.includes("[Y0001]-[M01]"));
    });
    it("CloudTrail: multi-region, validated, and object-level events of the statements and audit buckets", () => {
      s.template.hasResourceProperties("AWS::CloudTrail::Trail", {
        IsMultiRegionTrail: true,
        EnableLogFileValidation: true,
        KMSKeyId: Match.anyValue(),
        EventSelectors: Match.arrayWith([Match.objectLike({ DataResources: [Match.objectLike({ Type: "AWS::S3::Object" })] })]),
      });
    });
    it("the only Lambda functions are the CDK's custom-resource providers (see .checkov.yaml)", () => {
      const stacks = [s.template, s.edgeTemplate].map((t) => t.toJSON().Resources as Record<string, any>);
      for (const resources of stacks) {
        for (const [id, r] of Object.entries(resources)) {
          if (r.Type === "AWS::Lambda::Function") assert.match(id, /^Custom(CrossRegionExport(Reader|Writer)|VpcRestrictDefaultSG)CustomResourceProviderHandler/);
        }
      }
    });
  });

  describe(`${env}: the servers' environment`, () => {
    const s = synth(env);
    const names = new Set(SERVER_VARIABLES.map((v) => v.name));
    const containers = Object.entries(s.main.services.tasks).map(([kind, task]) => {
      const def = s.resources[idOf(s, task.taskDefinition)].Properties;
      return [kind, def.ContainerDefinitions[0], def] as const;
    });
    it("uses only the server's variables", () => {
      for (const [kind, c] of containers) {
        for (const e of c.Environment ?? []) assert.ok(names.has(e.Name), `${kind}: ${e.Name}`);
        for (const e of c.Secrets ?? []) assert.ok(names.has(e.Name), `${kind}: secret ${e.Name}`);
      }
    });
    it("every process runs the aws backend with every store named, and its secrets from Secrets Manager", () => {
      for (const [kind, c] of containers) {
        const env = Object.fromEntries((c.Environment ?? []).map((e: any) => [e.Name, e.Value]));
        assert.equal(env.BANK_BACKEND, "aws", kind);
        for (const required of ["AWS_REGION", "BANK_IDEMPOTENCY_TABLE", "BANK_TRANSFER_QUEUE", "BANK_EVENTS_TOPIC", "BANK_SUBSCRIPTION_QUEUE_PREFIX", "BANK_STATEMENTS_BUCKET", "BANK_AUDIT_BUCKET", "BANK_AUDIT_ORIGIN"]) {
          assert.ok(env[required] !== undefined, `${kind}: ${required}`);
        }
        assert.equal(env.BANK_AUTH_MODE, "external", kind);
        assert.match(JSON.stringify(env.BANK_JWKS_URL), /cognito-idp.*well-known\/jwks\.json/);
        const secrets = (c.Secrets ?? []).map((e: any) => e.Name).sort();
        assert.deepEqual(
          secrets.filter((n: string) => n !== "BANK_WEBHOOK_SECRET"),
          ["BANK_AUDIT_SIGNING_KEY", "BANK_DATABASE_READER_URL", "BANK_DATABASE_URL", "BANK_REDIS_URL"],
          kind,
        );
        for (const e of c.Environment ?? []) assert.ok(!/URL$/.test(e.Name) || !/:\/\/[^/]*:[^/]*@/.test(JSON.stringify(e.Value)), `${kind}: no password in ${e.Name}`);
        assert.equal(String(env.BANK_STATEMENT_RETENTION_DAYS), String(s.config.statementRetentionDays));
        assert.equal(String(env.BANK_AUDIT_RETENTION_DAYS), String(s.config.auditRetentionDays));
      }
    });
    it("containers: read-only root, non-root user, the process kind as the command", () => {
      for (const [kind, c] of containers) {
        assert.equal(c.ReadonlyRootFilesystem, true, kind);
        assert.equal(c.User, "65532:65532", kind);
        assert.deepEqual(c.Command, [kind], kind);
        assert.match(JSON.stringify(c.Image), /test-tag/);
      }
      const api = containers.find(([kind]) => kind === "api")![1];
      assert.deepEqual(api.HealthCheck.Command, ["CMD", "/usr/local/bin/bank-healthcheck"]);
    });
  });
}

describe("builtin auth mode", () => {
  const s = synth("staging", { authMode: "builtin" });
  it("no user pool, routes pass to the server, which gets the JWT signing key", () => {
    s.template.resourceCountIs("AWS::Cognito::UserPool", 0);
    for (const [, route] of ofType(s, "AWS::ApiGatewayV2::Route")) assert.equal(route.Properties.AuthorizationType, "NONE");
    const api = s.resources[Stack.of(s.main).getLogicalId(s.main.services.tasks.api.taskDefinition.node.defaultChild as CfnElement)];
    const c = api.Properties.ContainerDefinitions[0];
    assert.ok(c.Secrets.some((e: any) => e.Name === "BANK_JWT_SIGNING_KEY"));
    assert.ok(c.Environment.some((e: any) => e.Name === "BANK_AUTH_MODE" && e.Value === "builtin"));
  });
});

describe("production keeps data", () => {
  const s = synth("production");
  it("deletion protection on the table and the database; buckets retained", () => {
    s.template.hasResourceProperties("AWS::DynamoDB::Table", { DeletionProtectionEnabled: true });
    s.template.hasResourceProperties("AWS::RDS::DBCluster", { DeletionProtection: true });
    for (const [id, bucket] of ofType(s, "AWS::S3::Bucket")) {
      assert.equal((bucket as any).DeletionPolicy, "Retain", id);
    }
  });
  it("webhooks: URL in the environment of notifications, secret from Secrets Manager", () => {
    const def = s.resources[Stack.of(s.main).getLogicalId(s.main.services.tasks.notifications.taskDefinition.node.defaultChild as CfnElement)];
    const c = def.Properties.ContainerDefinitions[0];
    assert.ok(c.Environment.some((e: any) => e.Name === "BANK_WEBHOOK_URL"));
    assert.ok(c.Secrets.some((e: any) => e.Name === "BANK_WEBHOOK_SECRET"));
  });
});
