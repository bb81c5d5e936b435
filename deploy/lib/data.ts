// The data layer of one environment: the customer-managed KMS key, the idempotency table, the
// transfer and notification queues and the events topic, the Object Lock buckets, Aurora
// PostgreSQL with RDS Proxy, ElastiCache Redis, and the Secrets Manager secrets whose values hold
// the connection URLs. Shapes that the server checks at start-up (the table's keys and indexes,
// FIFO queues, Object Lock) are taken from bank-aws; tests in test/ pin them.

import { CfnResource, Duration, Fn, RemovalPolicy, SecretValue, Stack } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as elasticache from "aws-cdk-lib/aws-elasticache";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as logs from "aws-cdk-lib/aws-logs";
import * as rds from "aws-cdk-lib/aws-rds";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { EnvironmentConfig } from "./config";

/** The database the server uses and the master user it connects as (it runs the migrations). */
export const DATABASE_NAME = "bank";
export const DATABASE_USER = "bank";
/** Receives of one transfer message before it moves to the dead-letter queue. */
export const TRANSFER_MAX_RECEIVE_COUNT = 10;
/** Receives of one notification message before it moves to its dead-letter queue. */
export const NOTIFICATION_MAX_RECEIVE_COUNT = 10;

export interface DataProps {
  readonly config: EnvironmentConfig;
  readonly vpc: ec2.IVpc;
  /** Server access logs of the buckets. */
  readonly accessLogsBucket: s3.IBucket;
}

/** Every stateful resource of the environment. */
export class Data extends Construct {
  readonly key: kms.Key;
  readonly table: dynamodb.Table;
  readonly transferQueue: sqs.Queue;
  readonly transferDlq: sqs.Queue;
  readonly eventsTopic: sns.Topic;
  readonly notificationsQueue: sqs.Queue;
  /** `BANK_SUBSCRIPTION_QUEUE_PREFIX`: the notifications queue is `<prefix>-notifications.fifo`. */
  readonly subscriptionQueuePrefix: string;
  readonly notificationsDlq: sqs.Queue;
  readonly statementsBucket: s3.Bucket;
  readonly auditBucket: s3.Bucket;
  readonly cluster: rds.DatabaseCluster;
  readonly proxy: rds.DatabaseProxy;
  /** Security group of the clients of the proxy and of Redis (every ECS task). */
  readonly clientSecurityGroup: ec2.SecurityGroup;
  readonly redis: elasticache.CfnReplicationGroup;
  /** `BANK_DATABASE_URL`: the proxy's read/write endpoint, with the password. */
  readonly databaseUrl: secretsmanager.Secret;
  /** `BANK_DATABASE_READER_URL`: the proxy's read-only endpoint (the readers), with the password. */
  readonly databaseReaderUrl: secretsmanager.Secret;
  /** `BANK_REDIS_URL`: `rediss://` with the auth token. */
  readonly redisUrl: secretsmanager.Secret;
  /** `BANK_AUDIT_SIGNING_KEY` and `BANK_JWT_SIGNING_KEY`, set from `bank-server keys` after the first deploy. */
  readonly signingKeys: secretsmanager.Secret;
  /** `BANK_WEBHOOK_SECRET`, when webhooks are configured. */
  readonly webhookSecret?: secretsmanager.Secret;
  /** Aurora reader instance identifiers (replica lag alarms). */
  readonly readerInstanceIds: string[];

  constructor(scope: Construct, id: string, props: DataProps) {
    super(scope, id);
    const { config, vpc } = props;
    const stack = Stack.of(this);
    const prefix = `bank-${config.name}`;
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    // One customer-managed key for the environment's data at rest, rotated yearly.
    this.key = new kms.Key(this, "Key", {
      alias: `alias/${prefix}`,
      description: `bank ${config.name}: data at rest (queues, topic, table, buckets, database, cache, secrets, logs)`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Services that encrypt with the key on the environment's behalf.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "CloudWatchLogs",
        principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
        actions: ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources: ["*"],
        conditions: {
          ArnLike: { "kms:EncryptionContext:aws:logs:arn": `arn:${stack.partition}:logs:${stack.region}:${stack.account}:*` },
        },
      }),
    );
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "CloudWatchAlarmsToEncryptedTopic",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": stack.account } },
      }),
    );
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "CloudTrail",
        principals: [new iam.ServicePrincipal("cloudtrail.amazonaws.com")],
        actions: ["kms:GenerateDataKey*", "kms:DescribeKey"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": stack.account } },
      }),
    );

    // --- Idempotency table: the shape bank-aws/src/dynamodb/table.rs creates and checks. ---
    this.table = new dynamodb.Table(this, "Idempotency", {
      tableName: `${prefix}-idempotency`,
      partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: "ttl",
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: config.retainData,
      removalPolicy,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: "in_flight",
      partitionKey: { name: "shard", type: dynamodb.AttributeType.STRING },
      sortKey: { name: "in_flight_order", type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: "by_expiry",
      partitionKey: { name: "shard", type: dynamodb.AttributeType.STRING },
      sortKey: { name: "expires_at", type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });

    // --- Queues and topic (FIFO throughout: transfers are ordered per source account). ---
    const fifoQueue = (queueId: string, queueName: string, extra: Partial<sqs.QueueProps> = {}) =>
      new sqs.Queue(this, queueId, {
        queueName,
        fifo: true,
        encryption: sqs.QueueEncryption.KMS,
        encryptionMasterKey: this.key,
        dataKeyReuse: Duration.minutes(5),
        enforceSSL: true,
        retentionPeriod: Duration.days(14),
        removalPolicy,
        ...extra,
      });
    this.transferDlq = fifoQueue("TransferDlq", `${prefix}-transfers-dlq.fifo`);
    this.transferQueue = fifoQueue("TransferQueue", `${prefix}-transfers.fifo`, {
      // Longer than a worker batch takes; the worker extends it for slow rails.
      visibilityTimeout: Duration.seconds(60),
      deadLetterQueue: { queue: this.transferDlq, maxReceiveCount: TRANSFER_MAX_RECEIVE_COUNT },
    });
    // The server names a subscription's queue <BANK_SUBSCRIPTION_QUEUE_PREFIX>-<name>.fifo and its
    // dead-letter queue <stem>-dlq.fifo.
    this.subscriptionQueuePrefix = `${prefix}-events`;
    this.notificationsDlq = fifoQueue("NotificationsDlq", `${this.subscriptionQueuePrefix}-notifications-dlq.fifo`);
    this.notificationsQueue = fifoQueue("NotificationsQueue", `${this.subscriptionQueuePrefix}-notifications.fifo`, {
      visibilityTimeout: Duration.seconds(60),
      deadLetterQueue: { queue: this.notificationsDlq, maxReceiveCount: NOTIFICATION_MAX_RECEIVE_COUNT },
    });
    this.eventsTopic = new sns.Topic(this, "EventsTopic", {
      topicName: `${prefix}-events`,
      fifo: true,
      masterKey: this.key,
      enforceSSL: true,
    });
    this.eventsTopic.addSubscription(
      new subscriptions.SqsSubscription(this.notificationsQueue, { rawMessageDelivery: true }),
    );

    // --- Buckets: write-once (Object Lock COMPLIANCE), versioned, KMS, private, TLS only. ---
    const lockedBucket = (bucketId: string, days: number, logPrefix: string) =>
      new s3.Bucket(this, bucketId, {
        objectLockEnabled: true,
        objectLockDefaultRetention: s3.ObjectLockRetention.compliance(Duration.days(days)),
        versioned: true,
        encryption: s3.BucketEncryption.KMS,
        encryptionKey: this.key,
        bucketKeyEnabled: true,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforceSSL: true,
        minimumTLSVersion: 1.2,
        serverAccessLogsBucket: props.accessLogsBucket,
        serverAccessLogsPrefix: logPrefix,
        // Object Lock keeps every version for its retention whatever happens to the stack.
        removalPolicy: RemovalPolicy.RETAIN,
      });
    this.statementsBucket = lockedBucket("Statements", config.statementRetentionDays, "statements/");
    this.auditBucket = lockedBucket("Audit", config.auditRetentionDays, "audit/");

    // --- Aurora PostgreSQL 15: a writer and a reader, behind RDS Proxy. ---
    const databaseCredentials = new secretsmanager.Secret(this, "DatabaseCredentials", {
      secretName: `${prefix}/database-credentials`,
      description: "Aurora master user (the server's user: it runs the migrations)",
      encryptionKey: this.key,
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ username: DATABASE_USER }),
        generateStringKey: "password",
        // Letters and digits only: the password goes into a URL unescaped.
        excludePunctuation: true,
        passwordLength: 40,
      },
    });
    const dataSubnets = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED };
    this.clientSecurityGroup = new ec2.SecurityGroup(this, "ClientSg", {
      vpc,
      description: "bank ECS tasks: clients of the database proxy and of Redis",
      allowAllOutbound: true,
    });
    const databaseSg = new ec2.SecurityGroup(this, "DatabaseSg", {
      vpc,
      description: "Aurora cluster: reached by RDS Proxy only",
      allowAllOutbound: false,
    });
    const proxySg = new ec2.SecurityGroup(this, "ProxySg", {
      vpc,
      description: "RDS Proxy: reached by the ECS tasks",
      allowAllOutbound: false,
    });
    proxySg.addIngressRule(this.clientSecurityGroup, ec2.Port.tcp(5432), "ECS tasks to the proxy");
    proxySg.addEgressRule(databaseSg, ec2.Port.tcp(5432), "proxy to Aurora");
    databaseSg.addIngressRule(proxySg, ec2.Port.tcp(5432), "proxy to Aurora");
    const instanceType = new ec2.InstanceType(config.databaseInstanceType);
    const readerId = "reader1";
    // The cluster's log group, made here (encrypted, with retention) instead of by RDS on first
    // write, so no log-retention Lambda is needed.
    const clusterIdentifier = `${prefix}-db`;
    const databaseLogs = new logs.LogGroup(this, "DatabaseLogs", {
      logGroupName: `/aws/rds/cluster/${clusterIdentifier}/postgresql`,
      retention: logs.RetentionDays.ONE_YEAR,
      encryptionKey: this.key,
      removalPolicy,
    });
    this.cluster = new rds.DatabaseCluster(this, "Database", {
      clusterIdentifier,
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_15_17 }),
      credentials: rds.Credentials.fromSecret(databaseCredentials),
      defaultDatabaseName: DATABASE_NAME,
      writer: rds.ClusterInstance.provisioned("writer", { instanceType, enablePerformanceInsights: true, performanceInsightEncryptionKey: this.key, autoMinorVersionUpgrade: true }),
      readers: [rds.ClusterInstance.provisioned(readerId, { instanceType, enablePerformanceInsights: true, performanceInsightEncryptionKey: this.key, autoMinorVersionUpgrade: true, promotionTier: 1 })],
      vpc,
      vpcSubnets: dataSubnets,
      securityGroups: [databaseSg],
      storageEncrypted: true,
      storageEncryptionKey: this.key,
      iamAuthentication: true,
      deletionProtection: config.retainData,
      backup: { retention: Duration.days(35), preferredWindow: "02:00-03:00" },
      preferredMaintenanceWindow: "sun:04:00-sun:05:00",
      cloudwatchLogsExports: ["postgresql"],
      monitoringInterval: Duration.seconds(60),
      copyTagsToSnapshot: true,
      parameters: {
        // TLS only, and every statement that changes data logged for audit.
        "rds.force_ssl": "1",
        "log_statement": "ddl",
      },
      removalPolicy: config.retainData ? RemovalPolicy.SNAPSHOT : RemovalPolicy.DESTROY,
    });
    (this.cluster.node.defaultChild as CfnResource).addResourceDependency(databaseLogs.node.defaultChild as CfnResource);
    const readerInstance = this.cluster.node.findChild(readerId).node.defaultChild as rds.CfnDBInstance;
    this.readerInstanceIds = [readerInstance.ref];

    this.proxy = this.cluster.addProxy("Proxy", {
      dbProxyName: `${prefix}-proxy`,
      secrets: [databaseCredentials],
      vpc,
      vpcSubnets: dataSubnets,
      securityGroups: [proxySg],
      requireTLS: true,
      debugLogging: false,
      borrowTimeout: Duration.seconds(30),
      maxConnectionsPercent: 90,
    });
    const readerEndpoint = new rds.CfnDBProxyEndpoint(this, "ProxyReaderEndpoint", {
      dbProxyEndpointName: `${prefix}-proxy-reader`,
      dbProxyName: this.proxy.dbProxyName,
      vpcSubnetIds: vpc.selectSubnets(dataSubnets).subnetIds,
      vpcSecurityGroupIds: [proxySg.securityGroupId],
      targetRole: "READ_ONLY",
    });

    // The URLs the server reads. CloudFormation resolves the password's dynamic reference when it
    // writes the secret, so no template or log holds it. After rotating the password, update these
    // secrets too (see deploy/README.md).
    const password = databaseCredentials.secretValueFromJson("password").unsafeUnwrap();
    const postgresUrl = (host: string) =>
      Fn.join("", [`postgres://${DATABASE_USER}:`, password, "@", host, `:5432/${DATABASE_NAME}?sslmode=require`]);
    this.databaseUrl = new secretsmanager.Secret(this, "DatabaseUrl", {
      secretName: `${prefix}/database-url`,
      description: "BANK_DATABASE_URL: RDS Proxy read/write endpoint",
      encryptionKey: this.key,
      secretStringValue: SecretValue.unsafePlainText(postgresUrl(this.proxy.endpoint)),
    });
    this.databaseReaderUrl = new secretsmanager.Secret(this, "DatabaseReaderUrl", {
      secretName: `${prefix}/database-reader-url`,
      description: "BANK_DATABASE_READER_URL: RDS Proxy read-only endpoint (the readers)",
      encryptionKey: this.key,
      secretStringValue: SecretValue.unsafePlainText(postgresUrl(readerEndpoint.attrEndpoint)),
    });

    // --- ElastiCache Redis: TLS in transit, encrypted at rest, auth token, multi-AZ failover. ---
    const redisToken = new secretsmanager.Secret(this, "RedisAuthToken", {
      secretName: `${prefix}/redis-auth-token`,
      encryptionKey: this.key,
      generateSecretString: { excludePunctuation: true, passwordLength: 64 },
    });
    const redisSg = new ec2.SecurityGroup(this, "RedisSg", {
      vpc,
      description: "ElastiCache Redis: reached by the ECS tasks",
      allowAllOutbound: false,
    });
    redisSg.addIngressRule(this.clientSecurityGroup, ec2.Port.tcp(6379), "ECS tasks to Redis");
    const redisSubnets = new elasticache.CfnSubnetGroup(this, "RedisSubnets", {
      description: `bank ${config.name} Redis`,
      subnetIds: vpc.selectSubnets(dataSubnets).subnetIds,
    });
    this.redis = new elasticache.CfnReplicationGroup(this, "Redis", {
      replicationGroupDescription: `bank ${config.name}: account-view cache and shared rate limits`,
      engine: "redis",
      engineVersion: "7.1",
      cacheNodeType: config.cacheNodeType,
      numCacheClusters: 2,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      transitEncryptionEnabled: true,
      transitEncryptionMode: "required",
      atRestEncryptionEnabled: true,
      kmsKeyId: this.key.keyId,
      authToken: redisToken.secretValue.unsafeUnwrap(),
      cacheSubnetGroupName: redisSubnets.ref,
      securityGroupIds: [redisSg.securityGroupId],
      autoMinorVersionUpgrade: true,
      snapshotRetentionLimit: 7,
      port: 6379,
    });
    this.redis.applyRemovalPolicy(removalPolicy);
    this.redisUrl = new secretsmanager.Secret(this, "RedisUrl", {
      secretName: `${prefix}/redis-url`,
      description: "BANK_REDIS_URL: rediss:// (TLS) with the auth token",
      encryptionKey: this.key,
      secretStringValue: SecretValue.unsafePlainText(
        Fn.join("", ["rediss://:", redisToken.secretValue.unsafeUnwrap(), "@", this.redis.attrPrimaryEndPointAddress, ":6379"]),
      ),
    });

    // --- Application keys: values come from `bank-server keys` after the first deploy. ---
    this.signingKeys = new secretsmanager.Secret(this, "SigningKeys", {
      secretName: `${prefix}/signing-keys`,
      description:
        "BANK_AUDIT_SIGNING_KEY and BANK_JWT_SIGNING_KEY (JSON fields); set them from `bank-server keys` (deploy/README.md)",
      encryptionKey: this.key,
      // Placeholders the server refuses at start-up (not base64 PKCS#8), so nothing runs on a key
      // that was never set.
      secretObjectValue: {
        BANK_AUDIT_SIGNING_KEY: SecretValue.unsafePlainText("unset: run bank-server keys"),
        BANK_JWT_SIGNING_KEY: SecretValue.unsafePlainText("unset: run bank-server keys"),
      },
    });
    if (config.webhookUrl) {
      this.webhookSecret = new secretsmanager.Secret(this, "WebhookSecret", {
        secretName: `${prefix}/webhook-secret`,
        description: "BANK_WEBHOOK_SECRET: HMAC-SHA256 key of webhook signatures",
        encryptionKey: this.key,
        generateSecretString: { excludePunctuation: true, passwordLength: 64 },
      });
    }
  }
}
