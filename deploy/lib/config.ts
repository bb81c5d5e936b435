// The deployment's settings: one named environment from `cdk.json` (context `environments`),
// chosen with `-c env=NAME`, plus the image tag (`-c imageTag=TAG`). Everything is checked here,
// before any construct exists, so a missing or wrong value stops synthesis with a message naming
// it instead of producing a template that fails at deploy time.

/** How users authenticate. */
export type AuthMode =
  /** Cognito user pool (MFA required): API Gateway checks its JWTs, the server verifies them too
   * (`BANK_AUTH_MODE=external`). */
  | "cognito"
  /** The server issues its own tokens (`BANK_AUTH_MODE=builtin`, TOTP MFA in the server); API
   * Gateway passes requests through unauthenticated and the server checks every token. */
  | "builtin";

/** One deployment environment (staging, production, …). */
export interface EnvironmentConfig {
  /** The environment's name (the key in `environments`): part of every resource name. */
  readonly name: string;
  /** AWS account id, 12 digits. */
  readonly account: string;
  /** AWS region of the stack (the edge stack of CloudFront's WAF is always us-east-1). */
  readonly region: string;
  /** Availability zones used (2 or 3). Pinned in `cdk.context.json`. */
  readonly maxAzs: number;
  /** ECR repository (in this account and region) holding `bank-server` images. */
  readonly imageRepository: string;
  /** Image tag to run (an immutable tag, e.g. the commit). */
  readonly imageTag: string;
  /** How users authenticate. */
  readonly authMode: AuthMode;
  /** The bank's name printed on statements (`BANK_BANK_NAME`). */
  readonly bankName: string;
  /** `BANK_AUDIT_ORIGIN`: the audit log's name, fixed once the audit key exists. */
  readonly auditOrigin: string;
  /** Statement retention, days (S3 Object Lock COMPLIANCE default and `BANK_STATEMENT_RETENTION_DAYS`). */
  readonly statementRetentionDays: number;
  /** Audit segment retention, days (Object Lock default and `BANK_AUDIT_RETENTION_DAYS`). */
  readonly auditRetentionDays: number;
  /** API tasks: minimum and maximum count. */
  readonly apiTasks: { readonly min: number; readonly max: number };
  /** Worker tasks: minimum and maximum count. */
  readonly workerTasks: { readonly min: number; readonly max: number };
  /** Notifications tasks (fixed count). */
  readonly notificationsTasks: number;
  /** Aurora instance class, e.g. `r6g.large`. */
  readonly databaseInstanceType: string;
  /** ElastiCache node type, e.g. `cache.r7g.large`. */
  readonly cacheNodeType: string;
  /** Requests per 5 minutes per client IP before WAF blocks it. */
  readonly wafRateLimitPer5Min: number;
  /** Where alarm notifications are mailed (none: subscribe to the alarm topic yourself). */
  readonly alarmEmail?: string;
  /** `BANK_WEBHOOK_URL` (none: no webhooks). Its secret is generated in Secrets Manager. */
  readonly webhookUrl?: string;
  /** `true` keeps data stores on stack deletion and turns on deletion protection. */
  readonly retainData: boolean;
}

/** A setting that is missing or wrong; the message names it and says what is expected. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Reads context values; `undefined` when absent (as `Node.tryGetContext`). */
export type ContextReader = (key: string) => unknown;

const ENV_NAME = /^[a-z][a-z0-9-]{1,15}$/;
const ACCOUNT = /^[0-9]{12}$/;
const REGION = /^[a-z]{2}(-gov)?-[a-z]+-[0-9]$/;
const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const REPOSITORY = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;

function fail(message: string): never {
  throw new ConfigError(message);
}

function str(raw: Record<string, unknown>, where: string, key: string, pattern?: RegExp, hint?: string): string {
  const value = raw[key];
  if (typeof value !== "string" || value.length === 0) {
    fail(`${where}: "${key}" is missing (a non-empty string${hint ? `, ${hint}` : ""})`);
  }
  if (pattern && !pattern.test(value)) {
    fail(`${where}: "${key}" is ${JSON.stringify(value)}, expected ${hint ?? pattern.source}`);
  }
  return value;
}

function int(raw: Record<string, unknown>, where: string, key: string, min: number, max: number): number {
  const value = raw[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    fail(`${where}: "${key}" is ${JSON.stringify(value)}, expected an integer from ${min} to ${max}`);
  }
  return value;
}

function range(raw: Record<string, unknown>, where: string, key: string, max: number): { min: number; max: number } {
  const value = raw[key];
  if (typeof value !== "object" || value === null) {
    fail(`${where}: "${key}" is missing ({"min": N, "max": M})`);
  }
  const r = value as Record<string, unknown>;
  const lo = int(r, `${where}.${key}`, "min", 1, max);
  const hi = int(r, `${where}.${key}`, "max", lo, max);
  return { min: lo, max: hi };
}

function optionalUrl(raw: Record<string, unknown>, where: string, key: string): string | undefined {
  const value = raw[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^https:\/\/[^\s/]+(\/\S*)?$/.test(value)) {
    fail(`${where}: "${key}" is ${JSON.stringify(value)}, expected an https:// URL`);
  }
  return value;
}

/**
 * The environment chosen by context `env`, validated. Throws [`ConfigError`] naming the missing or
 * wrong value (an unknown environment lists the known ones).
 */
export function loadConfig(context: ContextReader): EnvironmentConfig {
  const environments = context("environments");
  if (typeof environments !== "object" || environments === null || Array.isArray(environments)) {
    fail('context "environments" is missing: cdk.json must map environment names to their settings');
  }
  const known = Object.keys(environments as object).sort();
  const name = context("env");
  if (typeof name !== "string" || name.length === 0) {
    fail(`context "env" is missing: run with -c env=NAME, one of ${known.join(", ")}`);
  }
  if (!known.includes(name)) {
    fail(`unknown environment ${JSON.stringify(name)}: expected one of ${known.join(", ")} (cdk.json, context "environments")`);
  }
  if (!ENV_NAME.test(name)) {
    fail(`environment name ${JSON.stringify(name)}: expected 2 to 16 lowercase letters, digits or dashes, starting with a letter`);
  }
  const raw = (environments as Record<string, unknown>)[name] as Record<string, unknown>;
  if (typeof raw !== "object" || raw === null) fail(`environment ${name}: settings must be an object`);
  const where = `environment ${name}`;
  const imageTag = context("imageTag");
  if (typeof imageTag !== "string" || imageTag.length === 0) {
    fail('context "imageTag" is missing: run with -c imageTag=TAG (the bank-server image tag to deploy)');
  }
  if (!IMAGE_TAG.test(imageTag)) {
    fail(`context "imageTag" is ${JSON.stringify(imageTag)}: expected a container image tag (letters, digits, _ . -, at most 128)`);
  }
  const authMode = str(raw, where, "authMode", /^(cognito|builtin)$/, "cognito or builtin") as AuthMode;
  const alarmEmail = raw["alarmEmail"];
  if (alarmEmail !== undefined && (typeof alarmEmail !== "string" || !/^[^\s@]+@[^\s@]+$/.test(alarmEmail))) {
    fail(`${where}: "alarmEmail" is ${JSON.stringify(alarmEmail)}, expected an email address`);
  }
  const retainData = raw["retainData"];
  if (typeof retainData !== "boolean") fail(`${where}: "retainData" is missing (true or false)`);
  const bankName = str(raw, where, "bankName");
  if (bankName.length > 80) fail(`${where}: "bankName" is longer than 80 characters`);
  return {
    name,
    account: str(raw, where, "account", ACCOUNT, "a 12-digit AWS account id"),
    region: str(raw, where, "region", REGION, "an AWS region such as eu-west-1"),
    maxAzs: int(raw, where, "maxAzs", 2, 3),
    imageRepository: str(raw, where, "imageRepository", REPOSITORY, "an ECR repository name"),
    imageTag,
    authMode,
    bankName,
    auditOrigin: str(raw, where, "auditOrigin", /^[^\s]{1,200}$/, "a name without spaces"),
    // The server's own limits: BANK_STATEMENT_RETENTION_DAYS 31..36525, BANK_AUDIT_RETENTION_DAYS 1..36500.
    statementRetentionDays: int(raw, where, "statementRetentionDays", 31, 36525),
    auditRetentionDays: int(raw, where, "auditRetentionDays", 1, 36500),
    apiTasks: range(raw, where, "apiTasks", 100),
    workerTasks: range(raw, where, "workerTasks", 100),
    notificationsTasks: int(raw, where, "notificationsTasks", 1, 20),
    databaseInstanceType: str(raw, where, "databaseInstanceType", /^[a-z][a-z0-9-]*\.[a-z0-9]+$/, "an instance class such as r6g.large"),
    cacheNodeType: str(raw, where, "cacheNodeType", /^cache\.[a-z0-9-]+\.[a-z0-9]+$/, "a node type such as cache.r7g.large"),
    wafRateLimitPer5Min: int(raw, where, "wafRateLimitPer5Min", 100, 2_000_000_000),
    alarmEmail: alarmEmail as string | undefined,
    webhookUrl: optionalUrl(raw, where, "webhookUrl"),
    retainData,
  };
}
