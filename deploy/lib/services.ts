// The compute and entry path of one environment: the ECS cluster and its Fargate services (api,
// worker, notifications) and job task definitions (statements, migrate), each with its own task
// role holding only what that process does; the internal ALB, the API Gateway HTTP API in front of
// it (Cognito JWT authorizer), CloudFront with the edge stack's WAF in front of that; the Cognito
// user pool; the monthly statements schedule. The `BANK_*` environment of every container is built
// here and checked against the server's variable list.

import { Duration, Stack } from "aws-cdk-lib";
import * as apigwv1 from "aws-cdk-lib/aws-apigateway";
import * as apigw from "aws-cdk-lib/aws-apigatewayv2";
import * as apigwAuthorizers from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import * as apigwIntegrations from "aws-cdk-lib/aws-apigatewayv2-integrations";
import * as appscaling from "aws-cdk-lib/aws-applicationautoscaling";
import * as cloudfront from "aws-cdk-lib/aws-cloudfront";
import * as origins from "aws-cdk-lib/aws-cloudfront-origins";
import * as cognito from "aws-cdk-lib/aws-cognito";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecr from "aws-cdk-lib/aws-ecr";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as elbv2 from "aws-cdk-lib/aws-elasticloadbalancingv2";
import * as events from "aws-cdk-lib/aws-events";
import * as eventsTargets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { EnvironmentConfig } from "./config";
import { Data } from "./data";
import { justify } from "./policy-scan";
import { checkVariableNames, ProcessKind } from "./variables";

/** Port the server listens on in the container (`BANK_LISTEN`). */
export const CONTAINER_PORT = 8080;
/** Name of the one container of every task definition. */
export const CONTAINER_NAME = "bank";
/** Writable directory of the read-only container (`BANK_DATA_DIR`), an ephemeral task volume. */
export const DATA_DIR = "/var/lib/bank";
/** The image's health probe (see Dockerfile): GET /health/live on the listen port. */
export const HEALTHCHECK_COMMAND = "/usr/local/bin/bank-healthcheck";

export interface ServicesProps {
  readonly config: EnvironmentConfig;
  readonly vpc: ec2.IVpc;
  readonly data: Data;
  /** Access logs of the ALB and CloudFront. */
  readonly accessLogsBucket: s3.IBucket;
  /** The edge stack's web ACL (CLOUDFRONT scope). */
  readonly webAclArn: string;
}

/** A process kind's task: its definition, its task role and its one container. */
export interface ProcessTask {
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly role: iam.Role;
  readonly container: ecs.ContainerDefinition;
}

/** The ECS services and jobs, their IAM, and the entry path from CloudFront to the API tasks. */
export class Services extends Construct {
  readonly cluster: ecs.Cluster;
  readonly tasks: Record<ProcessKind, ProcessTask>;
  readonly api: ecs.FargateService;
  readonly worker: ecs.FargateService;
  readonly notifications: ecs.FargateService;
  readonly alb: elbv2.ApplicationLoadBalancer;
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  readonly httpApi: apigw.HttpApi;
  readonly distribution: cloudfront.Distribution;
  readonly userPool?: cognito.UserPool;
  readonly userPoolClient?: cognito.UserPoolClient;
  readonly statementsJob: sfn.StateMachine;
  /** Every task role, for the buckets' deny statements. */
  readonly taskRoles: iam.Role[];

  constructor(scope: Construct, id: string, props: ServicesProps) {
    super(scope, id);
    const { config, vpc, data } = props;
    const stack = Stack.of(this);
    const prefix = `bank-${config.name}`;

    // --- Users: Cognito with MFA required (TOTP only; no SMS). ---
    if (config.authMode === "cognito") {
      this.userPool = new cognito.UserPool(this, "Users", {
        userPoolName: `${prefix}-users`,
        selfSignUpEnabled: true,
        signInAliases: { email: true },
        autoVerify: { email: true },
        mfa: cognito.Mfa.REQUIRED,
        mfaSecondFactor: { otp: true, sms: false },
        passwordPolicy: {
          minLength: 12,
          requireDigits: true,
          requireLowercase: true,
          requireUppercase: true,
          requireSymbols: true,
          tempPasswordValidity: Duration.days(3),
        },
        accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
        featurePlan: cognito.FeaturePlan.PLUS,
        standardThreatProtectionMode: cognito.StandardThreatProtectionMode.FULL_FUNCTION,
        deletionProtection: config.retainData,
      });
      this.userPoolClient = this.userPool.addClient("AppClient", {
        userPoolClientName: `${prefix}-app`,
        generateSecret: false,
        authFlows: { userSrp: true },
        preventUserExistenceErrors: true,
        enableTokenRevocation: true,
        // The server's own limits: access tokens at most 900 s.
        accessTokenValidity: Duration.minutes(15),
        idTokenValidity: Duration.minutes(15),
        refreshTokenValidity: Duration.days(30),
      });
    }
    const issuer = this.userPool
      ? `https://cognito-idp.${stack.region}.amazonaws.com/${this.userPool.userPoolId}`
      : undefined;

    // --- Cluster and tasks. ---
    this.cluster = new ecs.Cluster(this, "Cluster", {
      clusterName: prefix,
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    const image = ecs.ContainerImage.fromEcrRepository(
      ecr.Repository.fromRepositoryName(this, "Repository", config.imageRepository),
      config.imageTag,
    );
    const apiLogs = new logs.LogGroup(this, "ApiAccessLogs", {
      logGroupName: `/bank/${config.name}/apigateway`,
      retention: logs.RetentionDays.ONE_YEAR,
      encryptionKey: data.key,
    });

    // --- Internal ALB, reached only through API Gateway's VPC link. ---
    const albSg = new ec2.SecurityGroup(this, "AlbSg", { vpc, description: "internal ALB", allowAllOutbound: false });
    const vpcLinkSg = new ec2.SecurityGroup(this, "VpcLinkSg", {
      vpc,
      description: "API Gateway VPC link",
      allowAllOutbound: false,
    });
    vpcLinkSg.addEgressRule(albSg, ec2.Port.tcp(80), "VPC link to the ALB");
    albSg.addIngressRule(vpcLinkSg, ec2.Port.tcp(80), "API Gateway VPC link");
    this.alb = new elbv2.ApplicationLoadBalancer(this, "Alb", {
      loadBalancerName: `${prefix}-api`,
      vpc,
      internetFacing: false,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroup: albSg,
      dropInvalidHeaderFields: true,
      deletionProtection: config.retainData,
    });
    this.alb.logAccessLogs(props.accessLogsBucket, "alb");
    const listener = this.alb.addListener("Http", { port: 80, open: false });
    const internalHttp =
      "internal ALB in private subnets, reachable only from the API Gateway VPC link's security group; " +
      "TLS ends at CloudFront and API Gateway (deploy/README.md, Security notes)";
    justify(listener, { id: "CKV_AWS_2", comment: internalHttp }, { id: "CKV_AWS_103", comment: internalHttp });
    this.targetGroup = new elbv2.ApplicationTargetGroup(this, "ApiTargets", {
      vpc,
      port: CONTAINER_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targetType: elbv2.TargetType.IP,
      healthCheck: {
        path: "/health/ready",
        healthyHttpCodes: "200",
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 3,
      },
      deregistrationDelay: Duration.seconds(30),
    });
    listener.addTargetGroups("Api", { targetGroups: [this.targetGroup] });
    // Prometheus metrics are scraped inside the VPC, never served to the internet.
    listener.addAction("NoPublicMetrics", {
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(["/metrics", "/metrics/*"])],
      action: elbv2.ListenerAction.fixedResponse(404, { contentType: "text/plain", messageBody: "not found" }),
    });

    // --- API Gateway HTTP API → VPC link → ALB. ---
    const vpcLink = new apigw.VpcLink(this, "VpcLink", {
      vpc,
      subnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [vpcLinkSg],
    });
    const integration = new apigwIntegrations.HttpAlbIntegration("Alb", listener, { vpcLink });
    this.httpApi = new apigw.HttpApi(this, "HttpApi", {
      apiName: `${prefix}-api`,
      createDefaultStage: false,
    });
    new apigw.HttpStage(this, "Stage", {
      httpApi: this.httpApi,
      stageName: "$default",
      autoDeploy: true,
      throttle: { rateLimit: 5000, burstLimit: 10000 },
      detailedMetricsEnabled: true,
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(apiLogs),
        format: apigwAccessLogFormat(),
      },
    });
    const authorizer =
      this.userPool && this.userPoolClient
        ? new apigwAuthorizers.HttpUserPoolAuthorizer("Cognito", this.userPool, {
            userPoolClients: [this.userPoolClient],
          })
        : undefined;
    this.httpApi.addRoutes({
      path: "/{proxy+}",
      methods: [apigw.HttpMethod.ANY],
      integration,
      // builtin auth mode: the server authenticates every request itself.
      authorizer: authorizer ?? new apigw.HttpNoneAuthorizer(),
    });

    // --- CloudFront (with WAF) → API Gateway. ---
    this.distribution = new cloudfront.Distribution(this, "Distribution", {
      comment: `bank ${config.name} API`,
      defaultBehavior: {
        origin: new origins.HttpOrigin(`${this.httpApi.apiId}.execute-api.${stack.region}.${stack.urlSuffix}`, {
          protocolPolicy: cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
          originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2],
        }),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_ALL,
        cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
        originRequestPolicy: cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
        responseHeadersPolicy: cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
      },
      webAclId: props.webAclArn,
      enableLogging: true,
      logBucket: props.accessLogsBucket,
      logFilePrefix: "cloudfront/",
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
    });
    justify(this.distribution, {
      id: "CKV_AWS_174",
      comment: "the default *.cloudfront.net certificate (no custom domain configured); with a custom domain set minimumProtocolVersion TLS_V1_2_2021 (deploy/README.md)",
    });
    const publicBase = `https://${this.distribution.distributionDomainName}`;

    // --- One task definition per process kind. ---
    const common: Record<string, string> = {
      BANK_BACKEND: "aws",
      AWS_REGION: stack.region,
      BANK_LISTEN: `0.0.0.0:${CONTAINER_PORT}`,
      BANK_DATA_DIR: DATA_DIR,
      BANK_LOG: "info",
      BANK_LOG_FORMAT: "json",
      BANK_PUBLIC_URL: publicBase,
      BANK_BANK_NAME: config.bankName,
      BANK_IDEMPOTENCY_TABLE: data.table.tableName,
      // The dead-letter queue is found by name: <stem>-dlq.fifo (data.ts names it so).
      BANK_TRANSFER_QUEUE: data.transferQueue.queueName,
      // The ARN, so that no process needs sns:ListTopics to find it.
      BANK_EVENTS_TOPIC: data.eventsTopic.topicArn,
      // The notifications queue is <prefix>-notifications.fifo (data.ts names it so).
      BANK_SUBSCRIPTION_QUEUE_PREFIX: data.subscriptionQueuePrefix,
      BANK_STATEMENTS_BUCKET: data.statementsBucket.bucketName,
      BANK_AUDIT_BUCKET: data.auditBucket.bucketName,
      BANK_STATEMENT_RETENTION_DAYS: String(config.statementRetentionDays),
      BANK_AUDIT_RETENTION_DAYS: String(config.auditRetentionDays),
      BANK_AUDIT_ORIGIN: config.auditOrigin,
      // Behind CloudFront → API Gateway → ALB the last X-Forwarded-For entry is a proxy, not the
      // client: per-IP limits are WAF's rate rule (edge stack), so the server's are set high and
      // it does not trust the header (deploy/README.md, "Client addresses").
      BANK_TRUST_FORWARDED_FOR: "false",
      BANK_RATE_PER_IP: "100000",
      BANK_LOGIN_RATE_PER_IP: "100000",
      BANK_LOGIN_FAILURES_PER_IP: "100000",
    };
    if (issuer && this.userPoolClient) {
      Object.assign(common, {
        BANK_AUTH_MODE: "external",
        BANK_JWKS_URL: `${issuer}/.well-known/jwks.json`,
        BANK_JWT_ISSUER: issuer,
        BANK_JWT_AUDIENCE: this.userPoolClient.userPoolClientId,
      });
    } else {
      Object.assign(common, { BANK_AUTH_MODE: "builtin", BANK_JWT_ISSUER: publicBase, BANK_JWT_AUDIENCE: "bank-api" });
    }
    const commonSecrets: Record<string, ecs.Secret> = {
      BANK_DATABASE_URL: ecs.Secret.fromSecretsManager(data.databaseUrl),
      BANK_DATABASE_READER_URL: ecs.Secret.fromSecretsManager(data.databaseReaderUrl),
      BANK_REDIS_URL: ecs.Secret.fromSecretsManager(data.redisUrl),
      BANK_AUDIT_SIGNING_KEY: ecs.Secret.fromSecretsManager(data.signingKeys, "BANK_AUDIT_SIGNING_KEY"),
    };
    if (config.authMode === "builtin") {
      commonSecrets.BANK_JWT_SIGNING_KEY = ecs.Secret.fromSecretsManager(data.signingKeys, "BANK_JWT_SIGNING_KEY");
    }

    const executionRole = new iam.Role(this, "ExecutionRole", {
      roleName: `${prefix}-ecs-execution`,
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: "ECS agent: pulls the image, reads the task secrets, writes logs",
    });
    const makeTask = (kind: ProcessKind, cpu: number, memoryLimitMiB: number, command: string[],
      environment: Record<string, string>, secrets: Record<string, ecs.Secret>): ProcessTask => {
      const role = new iam.Role(this, `${cap(kind)}TaskRole`, {
        roleName: `${prefix}-${kind}`,
        assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com", {
          conditions: { StringEquals: { "aws:SourceAccount": stack.account } },
        }),
        description: `bank-server ${kind}: only what that process does`,
      });
      const taskDefinition = new ecs.FargateTaskDefinition(this, `${cap(kind)}Task`, {
        family: `${prefix}-${kind}`,
        cpu,
        memoryLimitMiB,
        taskRole: role,
        executionRole,
        runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
        volumes: [{ name: "data" }, { name: "tmp" }],
      });
      checkVariableNames(kind, Object.keys(environment));
      checkVariableNames(kind, Object.keys(secrets));
      const logGroup = new logs.LogGroup(this, `${cap(kind)}Logs`, {
        logGroupName: `/bank/${config.name}/${kind}`,
        retention: logs.RetentionDays.ONE_YEAR,
        encryptionKey: data.key,
      });
      const container = taskDefinition.addContainer(CONTAINER_NAME, {
        image,
        command,
        environment,
        secrets,
        readonlyRootFilesystem: true,
        user: "65532:65532",
        logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: kind, mode: ecs.AwsLogDriverMode.NON_BLOCKING }),
        stopTimeout: Duration.seconds(30),
        portMappings: kind === "api" ? [{ containerPort: CONTAINER_PORT, protocol: ecs.Protocol.TCP }] : [],
        healthCheck:
          kind === "api"
            ? {
                command: ["CMD", HEALTHCHECK_COMMAND],
                interval: Duration.seconds(15),
                timeout: Duration.seconds(5),
                retries: 3,
                startPeriod: Duration.seconds(30),
              }
            : undefined,
      });
      container.addMountPoints(
        { containerPath: DATA_DIR, sourceVolume: "data", readOnly: false },
        { containerPath: "/tmp", sourceVolume: "tmp", readOnly: false },
      );
      // Every process encrypts and decrypts with the environment's key (queues, topic, table,
      // buckets); what it may touch is limited by the grants below, resource by resource.
      data.key.grantEncryptDecrypt(role);
      return { taskDefinition, role, container };
    };

    const withoutListen = (env: Record<string, string>) => {
      const copy = { ...env };
      delete copy.BANK_LISTEN;
      return copy;
    };
    const webhook: Record<string, string> = config.webhookUrl ? { BANK_WEBHOOK_URL: config.webhookUrl } : {};
    const webhookSecrets: Record<string, ecs.Secret> = data.webhookSecret
      ? { BANK_WEBHOOK_SECRET: ecs.Secret.fromSecretsManager(data.webhookSecret) }
      : {};
    this.tasks = {
      api: makeTask("api", 1024, 2048, ["api"], { ...common, BANK_DATABASE_POOL: "32", BANK_REQUEST_TIMEOUT_SECONDS: "10" }, commonSecrets),
      worker: makeTask("worker", 512, 1024, ["worker"], { ...withoutListen(common), BANK_DATABASE_POOL: "16", BANK_WORKER_BATCH: "64" }, commonSecrets),
      notifications: makeTask("notifications", 256, 512, ["notifications"],
        { ...withoutListen(common), BANK_DATABASE_POOL: "8", ...webhook }, { ...commonSecrets, ...webhookSecrets }),
      // The monthly job; the state machine passes `statements --period YYYY-MM`.
      statements: makeTask("statements", 1024, 2048, ["statements"], { ...withoutListen(common), BANK_DATABASE_POOL: "8" }, commonSecrets),
      // Run once per release before the services roll (deploy/README.md).
      migrate: makeTask("migrate", 256, 512, ["migrate"], { ...withoutListen(common), BANK_DATABASE_POOL: "2" }, commonSecrets),
    };
    this.taskRoles = Object.values(this.tasks).map((t) => t.role);

    // --- Least privilege, per process. ---
    const { api, worker, notifications, statements, migrate } = this.tasks;
    // Every process checks at start that each resource exists with the shape the server relies on
    // (bank_aws::backend::AwsBackend::open): read-only descriptions, no data.
    for (const role of this.taskRoles) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: "StartupChecks",
          actions: [
            "dynamodb:DescribeTable",
            "dynamodb:DescribeTimeToLive",
            "sqs:GetQueueUrl",
            "sqs:GetQueueAttributes",
            "sns:GetTopicAttributes",
            "sns:ListSubscriptionsByTopic",
            "sns:GetSubscriptionAttributes",
            "s3:GetBucketObjectLockConfiguration",
          ],
          resources: [
            data.table.tableArn,
            data.transferQueue.queueArn,
            data.transferDlq.queueArn,
            data.notificationsQueue.queueArn,
            data.notificationsDlq.queueArn,
            data.eventsTopic.topicArn,
            `${data.eventsTopic.topicArn}:*`,
            data.statementsBucket.bucketArn,
            data.auditBucket.bucketArn,
          ],
        }),
      );
    }
    // Idempotency keys: the API (requests) and the worker (its purge of expired keys).
    data.table.grantReadWriteData(api.role);
    data.table.grantReadWriteData(worker.role);
    migrate.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ["dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive"], resources: [data.table.tableArn] }),
    );
    // Transfers: the API enqueues, the worker consumes (and re-enqueues retries), reads the DLQ depth.
    data.transferQueue.grantSendMessages(api.role);
    data.transferQueue.grantSendMessages(worker.role);
    data.transferQueue.grantConsumeMessages(worker.role);
    for (const role of [api.role, worker.role]) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
          resources: [data.transferQueue.queueArn, data.transferDlq.queueArn],
        }),
      );
    }
    // Events: the worker's outbox relay publishes, and so does the statements job (API route or
    // monthly task: one StatementReady per statement); notifications consume their queue.
    data.eventsTopic.grantPublish(worker.role);
    data.eventsTopic.grantPublish(api.role);
    data.eventsTopic.grantPublish(statements.role);
    worker.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ["sns:GetTopicAttributes"], resources: [data.eventsTopic.topicArn] }),
    );
    data.notificationsQueue.grantConsumeMessages(notifications.role);
    notifications.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
        resources: [data.notificationsQueue.queueArn, data.notificationsDlq.queueArn],
      }),
    );
    // Statements: the job writes them (write-once, with retention) and reads back what is stored
    // (a repeated put answers from the stored object); the API reads them (it pre-signs links).
    // Nobody else: the worker and notifications cannot read statements.
    statements.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "WriteStatements",
        actions: ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObject", "s3:GetObjectRetention"],
        resources: [data.statementsBucket.arnForObjects("*")],
      }),
    );
    for (const role of [statements.role, api.role]) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: "ListStatements", actions: ["s3:ListBucket"], resources: [data.statementsBucket.bucketArn] }),
      );
    }
    api.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: "ReadStatements", actions: ["s3:GetObject"], resources: [data.statementsBucket.arnForObjects("*")] }),
    );
    // Audit: every long-running process and the statements job seal audit segments.
    for (const role of [api.role, worker.role, notifications.role, statements.role]) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: "SealAudit",
          actions: ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObject", "s3:GetObjectRetention"],
          resources: [data.auditBucket.arnForObjects("*")],
        }),
      );
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: "ListAudit", actions: ["s3:ListBucket"], resources: [data.auditBucket.bucketArn] }),
      );
    }

    // --- Services. ---
    const serviceSg = data.clientSecurityGroup;
    serviceSg.addIngressRule(albSg, ec2.Port.tcp(CONTAINER_PORT), "ALB to the API tasks");
    albSg.addEgressRule(serviceSg, ec2.Port.tcp(CONTAINER_PORT), "ALB to the API tasks");
    const service = (kind: "api" | "worker" | "notifications", desiredCount: number) =>
      new ecs.FargateService(this, `${cap(kind)}Service`, {
        serviceName: kind,
        cluster: this.cluster,
        taskDefinition: this.tasks[kind].taskDefinition,
        desiredCount,
        securityGroups: [serviceSg],
        vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
        assignPublicIp: false,
        circuitBreaker: { enable: true, rollback: true },
        minHealthyPercent: 100,
        maxHealthyPercent: 200,
        enableExecuteCommand: false,
        platformVersion: ecs.FargatePlatformVersion.LATEST,
      });
    this.api = service("api", config.apiTasks.min);
    this.api.attachToApplicationTargetGroup(this.targetGroup);
    const apiScaling = this.api.autoScaleTaskCount({ minCapacity: config.apiTasks.min, maxCapacity: config.apiTasks.max });
    apiScaling.scaleOnCpuUtilization("Cpu", { targetUtilizationPercent: 60 });
    apiScaling.scaleOnRequestCount("Requests", { requestsPerTarget: 300, targetGroup: this.targetGroup });

    this.worker = service("worker", config.workerTasks.min);
    const workerScaling = this.worker.autoScaleTaskCount({ minCapacity: config.workerTasks.min, maxCapacity: config.workerTasks.max });
    // On the transfer queue: its depth, and the age of its oldest message (a backlog that does
    // not shrink even when shallow, e.g. slow rails).
    workerScaling.scaleOnMetric("QueueDepth", {
      metric: data.transferQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: "Maximum" }),
      scalingSteps: [
        { upper: 10, change: -1 },
        { lower: 200, change: +1 },
        { lower: 2000, change: +3 },
      ],
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      cooldown: Duration.minutes(2),
    });
    workerScaling.scaleOnMetric("OldestMessageAge", {
      metric: data.transferQueue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1), statistic: "Maximum" }),
      scalingSteps: [
        { upper: 15, change: -1 },
        { lower: 60, change: +1 },
        { lower: 300, change: +3 },
      ],
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      cooldown: Duration.minutes(2),
    });
    this.notifications = service("notifications", config.notificationsTasks);

    // --- The monthly statements job: EventBridge → Step Functions → ECS task. ---
    this.statementsJob = this.statementsStateMachine(config, vpc, serviceSg, executionRole, data);
    new events.Rule(this, "MonthlyStatements", {
      ruleName: `${prefix}-monthly-statements`,
      description: "Statements of the month that ended: 02:00 UTC on the 1st",
      schedule: events.Schedule.cron({ minute: "0", hour: "2", day: "1", month: "*", year: "*" }),
      targets: [new eventsTargets.SfnStateMachine(this.statementsJob, { retryAttempts: 3 })],
    });
  }

  /**
   * A state machine that runs the statements task for a month and waits for it: the period is
   * the execution input's `period` when given (a re-run), else the month before the one the
   * execution starts in. Retried on failure (the job skips statements already stored).
   */
  private statementsStateMachine(config: EnvironmentConfig, vpc: ec2.IVpc, sg: ec2.ISecurityGroup,
    executionRole: iam.IRole, data: Data): sfn.StateMachine {
    const stack = Stack.of(this);
    const task = this.tasks.statements;
    const subnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }).subnetIds;
    const period =
      "{% $exists($states.input.period) ? $states.input.period : " +
      "$fromMillis($toMillis($now()) - 172800000, '[Y0001]-[M01]') %}";
    const definition = {
      Comment: "bank-server statements --period YYYY-MM (the month before the start, or input.period)",
      QueryLanguage: "JSONata",
      StartAt: "Statements",
      States: {
        Statements: {
          Type: "Task",
          Resource: `arn:${stack.partition}:states:::ecs:runTask.sync`,
          Arguments: {
            Cluster: this.cluster.clusterArn,
            TaskDefinition: task.taskDefinition.taskDefinitionArn,
            LaunchType: "FARGATE",
            NetworkConfiguration: {
              AwsvpcConfiguration: { Subnets: subnets, SecurityGroups: [sg.securityGroupId], AssignPublicIp: "DISABLED" },
            },
            Overrides: { ContainerOverrides: [{ Name: CONTAINER_NAME, Command: ["statements", "--period", period] }] },
          },
          Retry: [{ ErrorEquals: ["States.ALL"], IntervalSeconds: 300, MaxAttempts: 2, BackoffRate: 2 }],
          End: true,
        },
      },
    };
    const logGroup = new logs.LogGroup(this, "StatementsJobLogs", {
      logGroupName: `/bank/${config.name}/statements-job`,
      retention: logs.RetentionDays.ONE_YEAR,
      encryptionKey: data.key,
    });
    const machine = new sfn.StateMachine(this, "StatementsJob", {
      stateMachineName: `bank-${config.name}-statements`,
      definitionBody: sfn.DefinitionBody.fromString(stack.toJsonString(definition)),
      timeout: Duration.hours(12),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false },
    });
    machine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ["ecs:RunTask"],
        resources: [task.taskDefinition.taskDefinitionArn],
        conditions: { ArnEquals: { "ecs:cluster": this.cluster.clusterArn } },
      }),
    );
    machine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ["ecs:StopTask", "ecs:DescribeTasks"],
        resources: ["*"],
        conditions: { ArnEquals: { "ecs:cluster": this.cluster.clusterArn } },
      }),
    );
    machine.addToRolePolicy(
      new iam.PolicyStatement({ actions: ["iam:PassRole"], resources: [task.role.roleArn, executionRole.roleArn] }),
    );
    machine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        resources: [stack.formatArn({ service: "events", resource: "rule", resourceName: "StepFunctionsGetEventsForECSTaskRule" })],
      }),
    );
    return machine;
  }
}

function cap(kind: string): string {
  return kind.charAt(0).toUpperCase() + kind.slice(1);
}

/** API Gateway access log line: JSON, no authorization header or body. */
function apigwAccessLogFormat(): apigwv1.AccessLogFormat {
  return apigwv1.AccessLogFormat.custom(
    JSON.stringify({
      requestId: "$context.requestId",
      ip: "$context.identity.sourceIp",
      requestTime: "$context.requestTime",
      httpMethod: "$context.httpMethod",
      routeKey: "$context.routeKey",
      status: "$context.status",
      protocol: "$context.protocol",
      responseLength: "$context.responseLength",
      integrationLatency: "$context.integrationLatency",
      integrationError: "$context.integrationErrorMessage",
      authorizerError: "$context.authorizer.error",
    }),
  );
}
