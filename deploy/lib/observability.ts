// What watches the environment: the CloudWatch alarms (each described in deploy/README.md with
// what to do), the SNS topic they notify, and the CloudTrail trail (management events of every
// region, and object-level events of the statements and audit buckets).

import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as cloudtrail from "aws-cdk-lib/aws-cloudtrail";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cwActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as elbv2 from "aws-cdk-lib/aws-elasticloadbalancingv2";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import { Construct } from "constructs";
import { EnvironmentConfig } from "./config";
import { Data } from "./data";
import { Services } from "./services";

/** Alarm thresholds, named so the README and the tests say the same numbers. */
export const ALARMS = {
  /** p95 of the ALB's target response time, seconds, over 5 minutes. */
  apiLatencyP95Seconds: 1,
  /** Share of API responses that are 5xx, percent, over 5 minutes. */
  api5xxPercent: 1,
  /** Messages waiting on the transfer queue. */
  transferQueueDepth: 5000,
  /** Age of the oldest transfer message, seconds. */
  transferOldestAgeSeconds: 300,
  /** Age of the oldest notification message, seconds. */
  notificationsOldestAgeSeconds: 900,
  /** Aurora replica lag, milliseconds. */
  replicaLagMs: 2000,
} as const;

export interface ObservabilityProps {
  readonly config: EnvironmentConfig;
  readonly data: Data;
  readonly services: Services;
  readonly accessLogsBucket: s3.IBucket;
}

/** The alarms and their topic, and the CloudTrail trail. */
export class Observability extends Construct {
  readonly alarmTopic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly trail: cloudtrail.Trail;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { config, data, services } = props;
    const prefix = `bank-${config.name}`;

    this.alarmTopic = new sns.Topic(this, "AlarmTopic", {
      topicName: `${prefix}-alarms`,
      masterKey: data.key,
      enforceSSL: true,
    });
    if (config.alarmEmail) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(config.alarmEmail));
    }
    const action = new cwActions.SnsAction(this.alarmTopic);
    const alarm = (alarmId: string, description: string, options: cloudwatch.CreateAlarmOptions, metric: cloudwatch.IMetric) => {
      const created = new cloudwatch.Alarm(this, alarmId, {
        metric,
        alarmName: `${prefix}-${kebab(alarmId)}`,
        alarmDescription: `${description} (deploy/README.md, "Alarms")`,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...options,
      });
      created.addAlarmAction(action);
      created.addOkAction(action);
      this.alarms.push(created);
      return created;
    };
    const fiveMinutes = Duration.minutes(5);
    const oneMinute = Duration.minutes(1);
    const alb = services.alb;

    alarm("ApiLatencyP95", `API p95 latency above ${ALARMS.apiLatencyP95Seconds} s`, {
      threshold: ALARMS.apiLatencyP95Seconds,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    }, alb.metrics.targetResponseTime({ statistic: "p95", period: fiveMinutes }));

    const errors = alb.metrics.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { statistic: "Sum", period: fiveMinutes });
    const elbErrors = alb.metrics.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { statistic: "Sum", period: fiveMinutes });
    const requests = alb.metrics.requestCount({ statistic: "Sum", period: fiveMinutes });
    alarm("Api5xxRate", `more than ${ALARMS.api5xxPercent}% of API responses are 5xx`, {
      threshold: ALARMS.api5xxPercent,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    }, new cloudwatch.MathExpression({
      expression: "IF(requests > 0, 100 * (errors + elbErrors) / requests, 0)",
      usingMetrics: { errors, elbErrors, requests },
      label: "5xx percent",
      period: fiveMinutes,
    }));

    alarm("TransferQueueDepth", `more than ${ALARMS.transferQueueDepth} transfers waiting`, {
      threshold: ALARMS.transferQueueDepth,
      evaluationPeriods: 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    }, data.transferQueue.metricApproximateNumberOfMessagesVisible({ statistic: "Maximum", period: oneMinute }));
    alarm("TransferOldestAge", `a transfer waits longer than ${ALARMS.transferOldestAgeSeconds} s`, {
      threshold: ALARMS.transferOldestAgeSeconds,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    }, data.transferQueue.metricApproximateAgeOfOldestMessage({ statistic: "Maximum", period: oneMinute }));
    alarm("NotificationsOldestAge", `a notification waits longer than ${ALARMS.notificationsOldestAgeSeconds} s`, {
      threshold: ALARMS.notificationsOldestAgeSeconds,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    }, data.notificationsQueue.metricApproximateAgeOfOldestMessage({ statistic: "Maximum", period: oneMinute }));
    for (const [alarmId, queue, what] of [
      ["TransferDeadLetters", data.transferDlq, "transfers"],
      ["NotificationDeadLetters", data.notificationsDlq, "notifications"],
    ] as const) {
      alarm(alarmId, `${what} moved to the dead-letter queue`, {
        threshold: 0,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }, queue.metricApproximateNumberOfMessagesVisible({ statistic: "Maximum", period: oneMinute }));
    }
    data.readerInstanceIds.forEach((instanceId, i) => {
      alarm(`ReplicaLag${i + 1}`, `Aurora reader ${i + 1} lags the writer by more than ${ALARMS.replicaLagMs} ms`, {
        threshold: ALARMS.replicaLagMs,
        evaluationPeriods: 5,
        datapointsToAlarm: 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }, new cloudwatch.Metric({
        namespace: "AWS/RDS",
        metricName: "AuroraReplicaLag",
        dimensionsMap: { DBInstanceIdentifier: instanceId },
        statistic: "Maximum",
        period: oneMinute,
      }));
    });
    alarm("StatementsJobFailed", "the monthly statements job failed", {
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    }, services.statementsJob.metricFailed({ statistic: "Sum", period: fiveMinutes }));

    // --- CloudTrail. ---
    const trailBucket = new s3.Bucket(this, "TrailBucket", {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      versioned: true,
      serverAccessLogsBucket: props.accessLogsBucket,
      serverAccessLogsPrefix: "cloudtrail/",
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const trailLogs = new logs.LogGroup(this, "TrailLogs", {
      logGroupName: `/bank/${config.name}/cloudtrail`,
      retention: logs.RetentionDays.ONE_YEAR,
      encryptionKey: data.key,
    });
    this.trail = new cloudtrail.Trail(this, "Trail", {
      trailName: `${prefix}-trail`,
      bucket: trailBucket,
      encryptionKey: data.key,
      sendToCloudWatchLogs: true,
      cloudWatchLogGroup: trailLogs,
      enableFileValidation: true,
      isMultiRegionTrail: true,
      includeGlobalServiceEvents: true,
    });
    this.trail.addS3EventSelector(
      [{ bucket: data.statementsBucket }, { bucket: data.auditBucket }],
      { readWriteType: cloudtrail.ReadWriteType.ALL, includeManagementEvents: false },
    );
  }
}

function kebab(id: string): string {
  return id.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}
