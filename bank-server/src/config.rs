//! The server's configuration: one typed [`Config`] read from the `BANK_*` environment variables
//! once, at start, with safe local defaults. A bad value is refused with a [`ConfigError`] naming
//! the variable and the value (never the value of a secret such as `BANK_PASSWORD`).
//!
//! [`VARIABLES`] is the one list of variables: `--help` and the crate README are written from it.
//! An empty variable counts as unset.
//!
//! This module only parses: it opens nothing, and the secrets it holds never reach `Debug`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bank_core::audit::seal::SealPolicy;
use bank_core::payments::PaymentsConfig;
use bank_core::queue::RECEIVE_BATCH_MAX;
use bank_core::rail::simulator::{PPM, SimulatorConfig};
use bank_core::statements::job::{STATEMENT_RETENTION_DAYS_MAX, STATEMENT_RETENTION_DAYS_MIN};
use bank_core::statements::{STATEMENT_LINK_SECONDS_MAX, StatementsConfig};
use bank_local::backend::LocalConfig;
use chrono::TimeDelta;
use rust_decimal::Decimal;
use tracing_subscriber::EnvFilter;

use crate::auth::{ACCESS_TTL_MAX, AuthConfig, REFRESH_TTL_DEFAULT};
use crate::http::{HttpConfig, RateLimit};

/// Longest refresh-token lifetime accepted (one year).
pub const REFRESH_TTL_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest simulated rail latency accepted, in milliseconds.
pub const RAIL_LATENCY_MS_MAX: u64 = 60_000;
/// Most messages a worker takes per receive (the queue's own bound).
pub const WORKER_BATCH_MAX: usize = RECEIVE_BATCH_MAX;
/// Longest accepted environment value, in bytes (a URL or a filter is far shorter).
pub const VALUE_BYTES_MAX: usize = 4096;

/// Every variable: `(name, default, meaning)`.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "BANK_BACKEND",
        "local",
        "local (SQLite in BANK_DATA_DIR; with BANK_DATABASE_URL the ledger, transfers and users in PostgreSQL) or aws (every store a shared service, for many processes: the variables below marked aws)",
    ),
    ("BANK_LISTEN", "127.0.0.1:8080", "address the HTTP API listens on (port 0: any free port)"),
    ("BANK_DATA_DIR", "./data", "data directory (SQLite database, blobs, signing key)"),
    (
        "BANK_DATA_DIR_MIN_FREE_MB",
        "256",
        "free MiB on BANK_DATA_DIR's disk under which new writes answer 503 (reads, sign-ins and accepted transfers go on), 1 to 1048576",
    ),
    (
        "BANK_DATABASE_URL",
        "(none)",
        "PostgreSQL writer, postgres://user:password@host:5432/db: ledger, transfers and users live there (unset: SQLite in BANK_DATA_DIR)",
    ),
    (
        "BANK_DATABASE_READER_URL",
        "BANK_DATABASE_URL",
        "PostgreSQL reader (a replica) for views that may lag; reads it only once it has replayed the writer's position",
    ),
    ("BANK_DATABASE_POOL", "32", "connections per PostgreSQL pool (writer and reader each), 1 to 1000"),
    ("BANK_LOG", "info", "log filter, tracing env-filter syntax (e.g. info,bank_core=debug)"),
    ("BANK_LOG_FORMAT", "text", "log format: text or json"),
    ("BANK_PUBLIC_URL", "http://127.0.0.1:8080", "the server's public base URL (signed links, token issuer)"),
    ("BANK_AUTH_MODE", "builtin", "builtin (this server issues tokens) or external (verify a JWKS issuer's tokens)"),
    ("BANK_JWT_ISSUER", "BANK_PUBLIC_URL", "`iss` of access tokens (issued or expected)"),
    ("BANK_JWT_AUDIENCE", "bank-api", "`aud` of access tokens (issued or expected)"),
    ("BANK_ACCESS_TTL_SECONDS", "900", "access-token lifetime in seconds, 1 to 900"),
    ("BANK_REFRESH_TTL_SECONDS", "2592000", "refresh-token lifetime in seconds, access TTL to 31536000"),
    ("BANK_JWKS_URL", "(none)", "the external issuer's JWKS URL; required when BANK_AUTH_MODE=external"),
    ("BANK_RAIL_FAILURE_RATE", "0", "share of simulated rail submits answered unavailable, 0 to 1 (e.g. 0.05)"),
    ("BANK_RAIL_LATENCY_MS", "0", "latency added to each simulated rail call, 0 to 60000 ms"),
    ("BANK_WORKER_BATCH", "64", "transfers a worker takes per receive, 1 to 256"),
    ("BANK_RATE_PER_SUBJECT", "50", "requests per second per signed-in user (burst twice that), 1 to 100000"),
    ("BANK_RATE_PER_IP", "100", "requests per second per client IP (burst twice that), 1 to 100000"),
    (
        "BANK_LOGIN_RATE_PER_IP",
        "300",
        "login and register requests per minute per client IP (a shared NAT included), 1 to 100000",
    ),
    (
        "BANK_LOGIN_FAILURES_PER_IP",
        "100",
        "failed logins per client IP per 15 min before accounts that failed are refused from it, 1 to 100000",
    ),
    (
        "BANK_DEPOSIT_APPROVAL_ABOVE",
        "10000",
        "operator deposits above this amount (in the account's currency) wait for a second operator's approval",
    ),
    ("BANK_REQUEST_TIMEOUT_SECONDS", "10", "time a request may take before it answers 503 timeout, 1 to 300"),
    ("BANK_TRUST_FORWARDED_FOR", "false", "`true` behind a proxy: the client IP is the last X-Forwarded-For entry"),
    (
        "BANK_WEBHOOK_URL",
        "(none)",
        "http(s) endpoint every `webhook` notification is POSTed to, signed (none: no webhooks)",
    ),
    (
        "BANK_WEBHOOK_SECRET",
        "(none)",
        "HMAC-SHA256 key of webhook signatures, at least 32 bytes; required with BANK_WEBHOOK_URL",
    ),
    ("BANK_BANK_NAME", "Example Bank", "the bank's name, printed on statements (1 to 80 characters)"),
    (
        "BANK_STATEMENT_RETENTION_DAYS",
        "2557",
        "days a statement is kept, undeletable and unchangeable (7 years), 31 to 36525",
    ),
    ("BANK_PASSWORD", "(stdin)", "password for `users create` (read from standard input when unset)"),
    (
        "BANK_AUDIT_ORIGIN",
        "bank.example/audit",
        "the audit log's name: origin line of its checkpoints and name of its key (fixed once the key exists)",
    ),
    ("BANK_AUDIT_CHECKPOINT_RECORDS", "1000", "sign an audit checkpoint once this many records wait, 1 to 10000"),
    (
        "BANK_AUDIT_CHECKPOINT_SECONDS",
        "60",
        "… or once the oldest record not in a checkpoint is this old, 1 to 86400 seconds",
    ),
    ("BANK_AUDIT_RETENTION_DAYS", "2555", "days a sealed audit segment is retained (write-once), 1 to 36500"),
    ("AWS_REGION", "(none)", "aws: the AWS region (required); credentials come from the standard AWS chain"),
    ("AWS_ENDPOINT_URL", "(none)", "aws: one endpoint for every AWS service (an emulator, http://127.0.0.1:5000)"),
    ("BANK_IDEMPOTENCY_TABLE", "bank-idempotency", "aws: the DynamoDB table of idempotency keys"),
    (
        "BANK_TRANSFER_QUEUE",
        "bank-transfers.fifo",
        "aws: the SQS FIFO queue of transfers, grouped by source account (its dead-letter queue: <name>-dlq.fifo)",
    ),
    ("BANK_EVENTS_TOPIC", "bank-events.fifo", "aws: the SNS FIFO topic the outbox relay publishes events to"),
    (
        "BANK_SUBSCRIPTION_QUEUE_PREFIX",
        "bank-events",
        "aws: SQS FIFO queues subscribed to the topic are <prefix>-<subscription>.fifo (notifications: <prefix>-notifications.fifo)",
    ),
    ("BANK_STATEMENTS_BUCKET", "(none)", "aws: the S3 bucket (Object Lock) of statements (required)"),
    ("BANK_AUDIT_BUCKET", "(none)", "aws: the S3 bucket (Object Lock) of sealed audit segments (required)"),
    (
        "BANK_REDIS_URL",
        "(none)",
        "aws: redis:// or rediss:// (TLS) URL of the account-view cache and shared rate limits (required)",
    ),
    (
        "BANK_REDIS_KEY_PREFIX",
        "bank:",
        "aws: the prefix of every Redis key (to share one Redis between deployments), up to 64 bytes, no whitespace",
    ),
    (
        "BANK_JWT_SIGNING_KEY",
        "(none)",
        "aws with builtin auth: the token signing key every API process shares, base64 PKCS#8 Ed25519 (`bank-server keys`)",
    ),
    (
        "BANK_AUDIT_SIGNING_KEY",
        "(none)",
        "aws: the audit log's checkpoint signing key, for BANK_AUDIT_ORIGIN (`bank-server keys`) (required)",
    ),
];

/// The default of `name` when it is a literal value (not "(none)", "(stdin)" or another
/// variable's name): the one place a default is written; parsing reads it from here.
fn literal_default(name: &str) -> Option<&'static str> {
    VARIABLES
        .iter()
        .find(|(variable, _, _)| *variable == name)
        .map(|(_, default, _)| *default)
        .filter(|default| !default.starts_with('(') && !default.starts_with("BANK_"))
}

/// A variable that has a literal default is never absent.
fn required(value: Option<String>) -> String {
    value.unwrap_or_default()
}

/// The help text listing every variable (for `--help` and the README).
pub fn variables_help() -> String {
    let mut text = String::from("Environment variables (an empty value counts as unset):\n");
    for (name, default, meaning) in VARIABLES {
        text.push_str(&format!("  {name:<26} {meaning} [default: {default}]\n"));
    }
    text
}

/// A configuration value that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value cannot be used; fix it and start again.
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// The value as given (`"<redacted>"` for a secret).
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A variable this configuration needs is unset; set it.
    #[error("{variable} is required: {reason}")]
    Missing {
        /// The variable.
        variable: &'static str,
        /// Why it is needed.
        reason: String,
    },
}

impl ConfigError {
    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Invalid { variable, .. } | ConfigError::Missing { variable, .. } => variable,
        }
    }

    fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> Self {
        // Database URLs may carry a password.
        let secret = matches!(
            variable,
            "BANK_PASSWORD"
                | "BANK_WEBHOOK_SECRET"
                | "BANK_DATABASE_URL"
                | "BANK_DATABASE_READER_URL"
                | "BANK_REDIS_URL"
                | "BANK_JWT_SIGNING_KEY"
                | "BANK_AUDIT_SIGNING_KEY"
        );
        let value = if secret { "<redacted>".to_owned() } else { value.to_owned() };
        ConfigError::Invalid { variable, value, reason: reason.into() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Who issues access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// This server: registration, login, TOTP, its own signing key.
    BuiltIn,
    /// An outside issuer (e.g. Cognito); tokens are checked against its key set.
    External {
        /// Where the issuer's JWK Set is fetched from.
        jwks_url: String,
    },
}

/// A secret string; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself (pass it on; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The HTTP limits read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Requests per second per signed-in user.
    pub rate_per_subject: u32,
    /// Requests per second per client IP.
    pub rate_per_ip: u32,
    /// Login and register requests per minute per client IP.
    pub login_rate_per_ip: u32,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// Failed logins per client IP per 15 minutes (see `auth::issuer`).
    pub login_failures_per_ip: u32,
    /// Operator deposits above this wait for a second operator.
    pub deposit_approval_above: Decimal,
}

/// Where the PostgreSQL backend is (`BANK_DATABASE_*`). The URLs may carry a password: they are
/// [`Secret`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `BANK_DATABASE_URL`.
    pub url: Secret,
    /// `BANK_DATABASE_READER_URL` (`None`: the writer).
    pub reader_url: Option<Secret>,
    /// `BANK_DATABASE_POOL`.
    pub pool: u32,
}

/// Which storage assembly the process runs on (`BANK_BACKEND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// The embedded backend in `BANK_DATA_DIR` (with [`Config::database`], the ledger, transfers
    /// and users on PostgreSQL).
    Local,
    /// The seed's AWS services, shared by every process.
    Aws(Box<AwsConfig>),
}

/// Where the AWS backend's services are (`BANK_BACKEND=aws`). Names, not handles: `bank-server
/// migrate --create-aws-resources` creates them, `migrate` and start-up check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// `AWS_REGION` and `AWS_ENDPOINT_URL`.
    pub settings: bank_aws::aws::AwsSettings,
    /// The resources' names.
    pub resources: bank_aws::backend::AwsResources,
    /// `BANK_REDIS_URL` (may carry a password).
    pub redis_url: Secret,
    /// `BANK_REDIS_KEY_PREFIX`.
    pub redis_key_prefix: String,
    /// `BANK_AUDIT_SIGNING_KEY`.
    pub audit_key: Secret,
}

/// Everything the process is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `BANK_BACKEND` and, for `aws`, its variables.
    pub backend: BackendConfig,
    /// `BANK_LISTEN`.
    pub listen: SocketAddr,
    /// `BANK_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `BANK_DATA_DIR_MIN_FREE_MB`, in bytes.
    pub data_dir_min_free: u64,
    /// `BANK_DATABASE_URL`, `BANK_DATABASE_READER_URL`, `BANK_DATABASE_POOL` (`None`: the embedded
    /// SQLite backend only).
    pub database: Option<DatabaseConfig>,
    /// `BANK_LOG` (checked to parse as an env-filter).
    pub log: String,
    /// `BANK_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `BANK_PUBLIC_URL`, without a trailing slash.
    pub public_url: String,
    /// `BANK_AUTH_MODE` (with `BANK_JWKS_URL` for an external issuer).
    pub auth_mode: AuthMode,
    /// `BANK_JWT_ISSUER`.
    pub jwt_issuer: String,
    /// `BANK_JWT_AUDIENCE`.
    pub jwt_audience: String,
    /// `BANK_ACCESS_TTL_SECONDS`.
    pub access_ttl: Duration,
    /// `BANK_REFRESH_TTL_SECONDS`.
    pub refresh_ttl: Duration,
    /// `BANK_RAIL_FAILURE_RATE`, in parts per million.
    pub rail_failure_rate_ppm: u32,
    /// `BANK_RAIL_LATENCY_MS`.
    pub rail_latency_ms: u64,
    /// `BANK_WORKER_BATCH`.
    pub worker_batch: usize,
    /// `BANK_RATE_PER_SUBJECT`, `BANK_RATE_PER_IP`, `BANK_LOGIN_RATE_PER_IP`,
    /// `BANK_REQUEST_TIMEOUT_SECONDS`, `BANK_TRUST_FORWARDED_FOR`.
    pub http: HttpLimits,
    /// `BANK_WEBHOOK_URL` with `BANK_WEBHOOK_SECRET`.
    pub webhook: Option<(String, Secret)>,
    /// `BANK_BANK_NAME`, `BANK_STATEMENT_RETENTION_DAYS` (links last five minutes).
    pub statements: StatementsConfig,
    /// `BANK_PASSWORD`.
    pub password: Option<Secret>,
    /// `BANK_AUDIT_ORIGIN`.
    pub audit_origin: String,
    /// `BANK_AUDIT_CHECKPOINT_RECORDS`, `BANK_AUDIT_CHECKPOINT_SECONDS`, `BANK_AUDIT_RETENTION_DAYS`.
    pub audit_seal: SealPolicy,
    /// `BANK_JWT_SIGNING_KEY` (checked to be a key).
    pub jwt_signing_key: Option<Secret>,
}

impl Default for Config {
    /// The configuration of an empty environment.
    fn default() -> Self {
        // The defaults are constants that parse (`defaults_are_safe_and_local` checks it).
        Config::from_lookup(|_| None).expect("the defaults are valid")
    }
}

impl Config {
    /// Reads every `BANK_*` variable of the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let not_unicode = std::cell::RefCell::new(None);
        let config = Config::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(raw)) => {
                not_unicode.borrow_mut().get_or_insert(ConfigError::invalid(
                    static_name(name),
                    &raw.to_string_lossy(),
                    "not valid UTF-8",
                ));
                None
            }
        });
        match not_unicode.into_inner() {
            Some(err) => Err(err),
            None => config,
        }
    }

    /// Reads the variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name) {
                None => Ok(literal_default(name).map(str::to_owned)),
                Some(value) if value.is_empty() => Ok(literal_default(name).map(str::to_owned)),
                Some(value) if value.len() > VALUE_BYTES_MAX => {
                    let start: String = value.chars().take(64).collect();
                    Err(ConfigError::invalid(
                        name,
                        &format!("{start}…"),
                        format!("longer than {VALUE_BYTES_MAX} bytes"),
                    ))
                }
                Some(value) => Ok(Some(value)),
            }
        };

        let listen = {
            let v = required(get("BANK_LISTEN")?);
            v.parse().map_err(|_| ConfigError::invalid("BANK_LISTEN", &v, "expected IP:PORT, e.g. 127.0.0.1:8080"))?
        };
        let data_dir = PathBuf::from(required(get("BANK_DATA_DIR")?));
        let data_dir_min_free =
            parse_in_range("BANK_DATA_DIR_MIN_FREE_MB", &required(get("BANK_DATA_DIR_MIN_FREE_MB")?), 1, 1 << 20)?
                << 20;
        let database = {
            let pool =
                u32::try_from(parse_in_range("BANK_DATABASE_POOL", &required(get("BANK_DATABASE_POOL")?), 1, 1000)?)
                    .unwrap_or(1000);
            let url = |variable: &'static str| -> Result<Option<Secret>, ConfigError> {
                match get(variable)? {
                    None => Ok(None),
                    Some(v) => match bank_aws::postgres::check_url(&v) {
                        Ok(()) => Ok(Some(Secret::new(v))),
                        Err(reason) => Err(ConfigError::invalid(variable, &v, reason)),
                    },
                }
            };
            match (url("BANK_DATABASE_URL")?, url("BANK_DATABASE_READER_URL")?) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(ConfigError::Missing {
                        variable: "BANK_DATABASE_URL",
                        reason: "BANK_DATABASE_READER_URL is set; a reader needs its writer".into(),
                    });
                }
                (Some(url), reader_url) => Some(DatabaseConfig { url, reader_url, pool }),
            }
        };
        let log = required(get("BANK_LOG")?);
        EnvFilter::try_new(&log).map_err(|e| ConfigError::invalid("BANK_LOG", &log, e.to_string()))?;
        let log_format = match get("BANK_LOG_FORMAT")?.as_deref() {
            Some("text") | None => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(v) => return Err(ConfigError::invalid("BANK_LOG_FORMAT", v, "expected text or json")),
        };
        let public_url = {
            let v = required(get("BANK_PUBLIC_URL")?);
            parse_url("BANK_PUBLIC_URL", &v)?.trim_end_matches('/').to_owned()
        };
        let auth_mode = match get("BANK_AUTH_MODE")?.as_deref() {
            None | Some("builtin") => AuthMode::BuiltIn,
            Some("external") => match get("BANK_JWKS_URL")? {
                Some(url) => AuthMode::External { jwks_url: parse_url("BANK_JWKS_URL", &url)? },
                None => {
                    return Err(ConfigError::Missing {
                        variable: "BANK_JWKS_URL",
                        reason: "BANK_AUTH_MODE=external verifies tokens against the issuer's JWK Set".into(),
                    });
                }
            },
            Some(v) => return Err(ConfigError::invalid("BANK_AUTH_MODE", v, "expected builtin or external")),
        };
        if let (AuthMode::BuiltIn, Some(url)) = (&auth_mode, get("BANK_JWKS_URL")?) {
            // Harmless, but worth checking: a typo would otherwise surface only after a switch.
            parse_url("BANK_JWKS_URL", &url)?;
        }
        let jwt_issuer = get("BANK_JWT_ISSUER")?.unwrap_or_else(|| public_url.clone());
        let jwt_audience = required(get("BANK_JWT_AUDIENCE")?);

        let access_secs = parse_in_range(
            "BANK_ACCESS_TTL_SECONDS",
            &required(get("BANK_ACCESS_TTL_SECONDS")?),
            1,
            ACCESS_TTL_MAX.as_secs(),
        )?;
        let refresh_secs = match get("BANK_REFRESH_TTL_SECONDS")? {
            None => REFRESH_TTL_DEFAULT.as_secs().max(access_secs),
            Some(v) => parse_in_range("BANK_REFRESH_TTL_SECONDS", &v, access_secs, REFRESH_TTL_MAX.as_secs())?,
        };
        let rail_failure_rate_ppm =
            parse_rate_ppm("BANK_RAIL_FAILURE_RATE", &required(get("BANK_RAIL_FAILURE_RATE")?))?;
        let rail_latency_ms =
            parse_in_range("BANK_RAIL_LATENCY_MS", &required(get("BANK_RAIL_LATENCY_MS")?), 0, RAIL_LATENCY_MS_MAX)?;
        let worker_batch = {
            let max = u64::try_from(WORKER_BATCH_MAX).unwrap_or(u64::MAX);
            let batch = parse_in_range("BANK_WORKER_BATCH", &required(get("BANK_WORKER_BATCH")?), 1, max)?;
            usize::try_from(batch).unwrap_or(WORKER_BATCH_MAX)
        };
        let statements = {
            let name = required(get("BANK_BANK_NAME")?);
            let days = required(get("BANK_STATEMENT_RETENTION_DAYS")?);
            let days = u32::try_from(parse_in_range(
                "BANK_STATEMENT_RETENTION_DAYS",
                &days,
                u64::from(STATEMENT_RETENTION_DAYS_MIN),
                u64::from(STATEMENT_RETENTION_DAYS_MAX),
            )?)
            .unwrap_or(STATEMENT_RETENTION_DAYS_MAX);
            let link_ttl = TimeDelta::seconds(STATEMENT_LINK_SECONDS_MAX);
            StatementsConfig::new(name.clone(), days, link_ttl)
                .map_err(|e| ConfigError::invalid("BANK_BANK_NAME", &name, e.to_string()))?
        };
        let password = get("BANK_PASSWORD")?.map(Secret);
        let webhook = match (get("BANK_WEBHOOK_URL")?, get("BANK_WEBHOOK_SECRET")?) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    variable: "BANK_WEBHOOK_URL",
                    reason: "BANK_WEBHOOK_SECRET is set".into(),
                });
            }
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    variable: "BANK_WEBHOOK_SECRET",
                    reason: "BANK_WEBHOOK_URL is set".into(),
                });
            }
            (Some(url), Some(secret)) => {
                // Checked here so a bad value stops the start with the variable named.
                match crate::notify::WebhookNotifier::new(&url, secret.as_bytes()) {
                    Err(crate::notify::WebhookConfigError::WeakSecret) => {
                        return Err(ConfigError::invalid("BANK_WEBHOOK_SECRET", "", "must have at least 32 bytes"));
                    }
                    Err(e) => return Err(ConfigError::invalid("BANK_WEBHOOK_URL", &url, e.to_string())),
                    Ok(_) => Some((url, Secret::new(secret))),
                }
            }
        };
        let rate = |variable: &'static str| -> Result<u32, ConfigError> {
            let v = required(get(variable)?);
            Ok(u32::try_from(parse_in_range(variable, &v, 1, 100_000)?).unwrap_or(u32::MAX))
        };
        let http = HttpLimits {
            rate_per_subject: rate("BANK_RATE_PER_SUBJECT")?,
            rate_per_ip: rate("BANK_RATE_PER_IP")?,
            login_rate_per_ip: rate("BANK_LOGIN_RATE_PER_IP")?,
            login_failures_per_ip: rate("BANK_LOGIN_FAILURES_PER_IP")?,
            deposit_approval_above: {
                let v = required(get("BANK_DEPOSIT_APPROVAL_ABOVE")?);
                match bank_core::money::parse_decimal(&v) {
                    Ok(amount) if !amount.is_sign_negative() => amount,
                    _ => {
                        return Err(ConfigError::invalid(
                            "BANK_DEPOSIT_APPROVAL_ABOVE",
                            &v,
                            "expected a plain decimal amount of at least 0 (e.g. 10000.00)",
                        ));
                    }
                }
            },
            request_timeout: Duration::from_secs(parse_in_range(
                "BANK_REQUEST_TIMEOUT_SECONDS",
                &required(get("BANK_REQUEST_TIMEOUT_SECONDS")?),
                1,
                300,
            )?),
            trust_forwarded_for: match get("BANK_TRUST_FORWARDED_FOR")?.as_deref() {
                Some("false") | None => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ConfigError::invalid("BANK_TRUST_FORWARDED_FOR", other, "expected true or false"));
                }
            },
        };

        let audit_origin = required(get("BANK_AUDIT_ORIGIN")?);
        bank_core::audit::checkpoint::check_origin(&audit_origin)
            .map_err(|e| ConfigError::invalid("BANK_AUDIT_ORIGIN", &audit_origin, e.to_string()))?;
        let audit_seal = {
            let records_max = bank_core::audit::seal::SEGMENT_RECORDS_MAX;
            let every_records = parse_in_range(
                "BANK_AUDIT_CHECKPOINT_RECORDS",
                &required(get("BANK_AUDIT_CHECKPOINT_RECORDS")?),
                1,
                records_max,
            )?;
            let seconds = parse_in_range(
                "BANK_AUDIT_CHECKPOINT_SECONDS",
                &required(get("BANK_AUDIT_CHECKPOINT_SECONDS")?),
                1,
                86_400,
            )?;
            let days =
                parse_in_range("BANK_AUDIT_RETENTION_DAYS", &required(get("BANK_AUDIT_RETENTION_DAYS")?), 1, 36_500)?;
            SealPolicy {
                every_records,
                every: TimeDelta::seconds(i64::try_from(seconds).unwrap_or(86_400)),
                retention: TimeDelta::days(i64::try_from(days).unwrap_or(36_500)),
            }
        };

        let jwt_signing_key = match get("BANK_JWT_SIGNING_KEY")? {
            None => None,
            Some(v) => {
                crate::auth::keys::SigningKeys::from_pkcs8_base64(&v)
                    .map_err(|e| ConfigError::invalid("BANK_JWT_SIGNING_KEY", &v, e.to_string()))?;
                Some(Secret::new(v))
            }
        };
        let backend = match get("BANK_BACKEND")?.as_deref() {
            None | Some("local") => BackendConfig::Local,
            Some("aws") => {
                let aws = parse_aws(&get, &audit_origin)?;
                if database.is_none() {
                    return Err(ConfigError::Missing {
                        variable: "BANK_DATABASE_URL",
                        reason: "BANK_BACKEND=aws keeps the ledger, transfers, users and audit in PostgreSQL".into(),
                    });
                }
                if auth_mode == AuthMode::BuiltIn && jwt_signing_key.is_none() {
                    return Err(ConfigError::Missing {
                        variable: "BANK_JWT_SIGNING_KEY",
                        reason:
                            "BANK_BACKEND=aws with built-in authentication: every API process signs tokens with one key"
                                .into(),
                    });
                }
                BackendConfig::Aws(Box::new(aws))
            }
            Some(v) => return Err(ConfigError::invalid("BANK_BACKEND", v, "expected local or aws")),
        };

        Ok(Config {
            backend,
            jwt_signing_key,
            audit_origin,
            audit_seal,
            listen,
            data_dir,
            data_dir_min_free,
            database,
            log,
            log_format,
            public_url,
            auth_mode,
            jwt_issuer,
            jwt_audience,
            access_ttl: Duration::from_secs(access_secs),
            refresh_ttl: Duration::from_secs(refresh_secs),
            rail_failure_rate_ppm,
            rail_latency_ms,
            worker_batch,
            http,
            webhook,
            statements,
            password,
        })
    }

    /// The HTTP layer's limits (the body limit stays 16 KiB).
    pub fn http_config(&self) -> HttpConfig {
        let limits = &self.http;
        HttpConfig {
            rate_per_subject: RateLimit::per_second(limits.rate_per_subject, limits.rate_per_subject.saturating_mul(2)),
            rate_per_ip: RateLimit::per_second(limits.rate_per_ip, limits.rate_per_ip.saturating_mul(2)),
            login_rate_per_ip: RateLimit::per_minute(limits.login_rate_per_ip, limits.login_rate_per_ip),
            request_timeout: limits.request_timeout,
            trust_forwarded_for: limits.trust_forwarded_for,
            deposit_policy: bank_core::approvals::DepositPolicy { approval_above: limits.deposit_approval_above },
            statements: self.statements.clone(),
            ..HttpConfig::default()
        }
    }

    /// Whether this server issues its own tokens.
    pub fn is_built_in_auth(&self) -> bool {
        self.auth_mode == AuthMode::BuiltIn
    }

    /// The embedded backend's settings.
    pub fn local_config(&self) -> LocalConfig {
        // Signed links to files are served under `/files` (see `http::routes::statements`).
        let public_url = format!("{}{}", self.public_url, bank_api::paths::FILES);
        LocalConfig {
            public_url,
            audit_origin: self.audit_origin.clone(),
            audit_seal: self.audit_seal,
            min_free_bytes: self.data_dir_min_free,
            ..LocalConfig::new(&self.data_dir)
        }
    }

    /// The built-in issuer's settings (the signing key lives under the data directory).
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            data_dir: self.data_dir.clone(),
            signing_key: self.jwt_signing_key.clone(),
            login_failures_per_ip: self.http.login_failures_per_ip,
        }
    }

    /// The transfers pipeline's settings.
    pub fn payments_config(&self) -> PaymentsConfig {
        PaymentsConfig { worker_batch: self.worker_batch, ..PaymentsConfig::default() }
    }

    /// The simulated rail's settings.
    pub fn simulator_config(&self) -> SimulatorConfig {
        SimulatorConfig {
            failure_rate_ppm: self.rail_failure_rate_ppm,
            latency: TimeDelta::milliseconds(i64::try_from(self.rail_latency_ms).unwrap_or(i64::MAX)),
            ..SimulatorConfig::default()
        }
    }
}

/// The `&'static` name of a `BANK_*` variable (every name looked up is one of [`VARIABLES`]).
fn static_name(name: &str) -> &'static str {
    VARIABLES.iter().map(|(n, _, _)| *n).find(|n| *n == name).unwrap_or("BANK_*")
}

/// The `aws` backend's variables.
fn parse_aws(
    get: &impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    audit_origin: &str,
) -> Result<AwsConfig, ConfigError> {
    use bank_aws::backend::{
        AwsResources, check_bucket_name, check_queue_name, check_queue_prefix, check_table_name, check_topic_name,
    };
    let missing = |variable: &'static str, reason: &str| ConfigError::Missing { variable, reason: reason.into() };
    let named = |variable: &'static str, check: fn(&str) -> Result<(), String>| -> Result<String, ConfigError> {
        let v = get(variable)?.ok_or_else(|| missing(variable, "BANK_BACKEND=aws names it"))?;
        check(&v).map_err(|reason| ConfigError::invalid(variable, &v, reason))?;
        Ok(v)
    };
    let region = get("AWS_REGION")?.ok_or_else(|| missing("AWS_REGION", "BANK_BACKEND=aws needs the AWS region"))?;
    if region.len() > 32 || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ConfigError::invalid("AWS_REGION", &region, "expected a region name such as eu-west-1"));
    }
    let endpoint = get("AWS_ENDPOINT_URL")?.map(|v| parse_url("AWS_ENDPOINT_URL", &v)).transpose()?;
    let resources = AwsResources {
        idempotency_table: named("BANK_IDEMPOTENCY_TABLE", check_table_name)?,
        transfer_queue: named("BANK_TRANSFER_QUEUE", check_queue_name)?,
        events_topic: named("BANK_EVENTS_TOPIC", check_topic_name)?,
        subscription_queue_prefix: named("BANK_SUBSCRIPTION_QUEUE_PREFIX", check_queue_prefix)?,
        statements_bucket: named("BANK_STATEMENTS_BUCKET", check_bucket_name)?,
        audit_bucket: named("BANK_AUDIT_BUCKET", check_bucket_name)?,
    };
    if resources.transfer_queue.starts_with(&format!("{}-", resources.subscription_queue_prefix)) {
        return Err(ConfigError::invalid(
            "BANK_TRANSFER_QUEUE",
            &resources.transfer_queue,
            "must not start with BANK_SUBSCRIPTION_QUEUE_PREFIX- (subscription queues are named so)",
        ));
    }
    let redis_url = get("BANK_REDIS_URL")?.ok_or_else(|| {
        missing("BANK_REDIS_URL", "BANK_BACKEND=aws caches account views and shares rate limits in Redis")
    })?;
    if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
        return Err(ConfigError::invalid("BANK_REDIS_URL", &redis_url, "expected redis://host:6379 or rediss://…"));
    }
    let redis_key_prefix = required(get("BANK_REDIS_KEY_PREFIX")?);
    if redis_key_prefix.len() > 64 || redis_key_prefix.chars().any(char::is_whitespace) {
        return Err(ConfigError::invalid("BANK_REDIS_KEY_PREFIX", &redis_key_prefix, "up to 64 bytes, no whitespace"));
    }
    let audit_key = get("BANK_AUDIT_SIGNING_KEY")?.ok_or_else(|| {
        missing("BANK_AUDIT_SIGNING_KEY", "BANK_BACKEND=aws: every process signs audit checkpoints with one key")
    })?;
    match bank_core::audit::checkpoint::AuditKey::parse(audit_key.trim()) {
        Ok(key) if key.origin() == audit_origin => {}
        Ok(key) => {
            return Err(ConfigError::invalid(
                "BANK_AUDIT_SIGNING_KEY",
                "",
                format!("made for the audit log {:?}, not BANK_AUDIT_ORIGIN={audit_origin:?}", key.origin()),
            ));
        }
        Err(_) => {
            return Err(ConfigError::invalid(
                "BANK_AUDIT_SIGNING_KEY",
                "",
                "not an audit signing key (bank-server keys)",
            ));
        }
    }
    Ok(AwsConfig {
        settings: bank_aws::aws::AwsSettings { region, endpoint },
        resources,
        redis_url: Secret::new(redis_url),
        redis_key_prefix,
        audit_key: Secret::new(audit_key.trim().to_owned()),
    })
}

fn parse_url(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(value).map_err(|e| ConfigError::invalid(variable, value, e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(variable, value, "expected an http:// or https:// URL with a host"));
    }
    Ok(value.to_owned())
}

fn parse_in_range(variable: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let number: u64 = value
        .parse()
        .map_err(|_| ConfigError::invalid(variable, value, format!("expected a whole number from {min} to {max}")))?;
    if !(min..=max).contains(&number) {
        return Err(ConfigError::invalid(variable, value, format!("must be from {min} to {max}")));
    }
    Ok(number)
}

/// A rate from 0 to 1 with at most six decimals, in parts per million (no float on the way).
fn parse_rate_ppm(variable: &'static str, value: &str) -> Result<u32, ConfigError> {
    let expected = "expected a number from 0 to 1 with at most 6 decimals (e.g. 0.05)";
    let rate: Decimal = value.parse().map_err(|_| ConfigError::invalid(variable, value, expected))?;
    if rate < Decimal::ZERO || rate > Decimal::ONE || rate.normalize().scale() > 6 {
        return Err(ConfigError::invalid(variable, value, expected));
    }
    let ppm = rate.checked_mul(Decimal::from(PPM)).map(|p| p.trunc().mantissa());
    ppm.and_then(|p| u32::try_from(p).ok()).ok_or_else(|| ConfigError::invalid(variable, value, expected))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn refused(vars: &[(&str, &str)], variable: &str) -> ConfigError {
        let err = parse(vars).expect_err("refused");
        assert_eq!(err.variable(), variable, "{err}");
        assert!(err.to_string().contains(variable), "{err}");
        err
    }

    /// A complete `BANK_BACKEND=aws` environment (fresh keys), to vary one variable at a time.
    fn aws_vars() -> Vec<(&'static str, String)> {
        let mut seed = [7_u8; 32];
        seed[0] = 1;
        let audit = bank_core::audit::checkpoint::AuditKey::from_seed("bank.example/audit", seed).expect("key");
        vec![
            ("BANK_BACKEND", "aws".into()),
            ("BANK_DATABASE_URL", "postgres://bank:pw@db.internal:5432/bank".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("BANK_STATEMENTS_BUCKET", "bank-statements".into()),
            ("BANK_AUDIT_BUCKET", "bank-audit".into()),
            ("BANK_REDIS_URL", "rediss://:redis-pw@cache.internal:6379".into()),
            ("BANK_JWT_SIGNING_KEY", crate::auth::keys::SigningKeys::generate_pkcs8_base64().expect("jwt key")),
            ("BANK_AUDIT_SIGNING_KEY", audit.private_key()),
        ]
    }

    fn with(vars: &[(&'static str, String)], name: &'static str, value: Option<&str>) -> Vec<(&'static str, String)> {
        let mut vars: Vec<_> = vars.iter().filter(|(n, _)| *n != name).cloned().collect();
        if let Some(value) = value {
            vars.push((name, value.to_owned()));
        }
        vars
    }

    fn parse_owned(vars: &[(&'static str, String)]) -> Result<Config, ConfigError> {
        let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        parse(&borrowed)
    }

    #[test]
    fn the_aws_backend_reads_its_variables_with_defaults_for_the_names() {
        let c = parse_owned(&aws_vars()).expect("valid");
        let BackendConfig::Aws(aws) = &c.backend else { panic!("aws backend") };
        assert_eq!(aws.settings, bank_aws::aws::AwsSettings { region: "eu-west-1".into(), endpoint: None });
        assert_eq!(aws.resources.transfer_queue, "bank-transfers.fifo");
        assert_eq!(aws.resources.events_topic, "bank-events.fifo");
        assert_eq!(aws.resources.subscription_queue_prefix, "bank-events");
        assert_eq!(aws.resources.idempotency_table, "bank-idempotency");
        assert_eq!(
            (aws.resources.statements_bucket.as_str(), aws.resources.audit_bucket.as_str()),
            ("bank-statements", "bank-audit")
        );
        assert!(c.auth_config().signing_key.is_some(), "every API process signs with the given key");
        let shown = format!("{c:?}");
        for secret in ["redis-pw", "PRIVATE+KEY", ":pw@"] {
            assert!(!shown.contains(secret), "Debug shows {secret}: {shown}");
        }
        let with_endpoint =
            parse_owned(&with(&aws_vars(), "AWS_ENDPOINT_URL", Some("http://127.0.0.1:5000"))).expect("valid");
        let BackendConfig::Aws(aws) = &with_endpoint.backend else { panic!("aws backend") };
        assert_eq!(aws.settings.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(Config::default().backend, BackendConfig::Local, "local stays the default");
    }

    #[test]
    fn a_missing_or_bad_aws_setting_names_its_variable_and_never_echoes_a_secret() {
        let base = aws_vars();
        for required in [
            "BANK_DATABASE_URL",
            "AWS_REGION",
            "BANK_STATEMENTS_BUCKET",
            "BANK_AUDIT_BUCKET",
            "BANK_REDIS_URL",
            "BANK_JWT_SIGNING_KEY",
            "BANK_AUDIT_SIGNING_KEY",
        ] {
            let err = parse_owned(&with(&base, required, None)).expect_err(required);
            assert_eq!(err.variable(), required, "{err}");
            assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        }
        let external = with(
            &with(&with(&base, "BANK_JWT_SIGNING_KEY", None), "BANK_AUTH_MODE", Some("external")),
            "BANK_JWKS_URL",
            Some("https://cognito.example/jwks.json"),
        );
        parse_owned(&external).expect("an external issuer needs no signing key");
        let bad = [
            ("BANK_BACKEND", "azure"),
            ("AWS_REGION", "EU West"),
            ("AWS_ENDPOINT_URL", "moto:5000"),
            ("BANK_TRANSFER_QUEUE", "transfers"),
            ("BANK_TRANSFER_QUEUE", "bank-events-x.fifo"),
            ("BANK_SUBSCRIPTION_QUEUE_PREFIX", "bank.events"),
            ("BANK_SUBSCRIPTION_QUEUE_PREFIX", &"p".repeat(41)),
            ("BANK_EVENTS_TOPIC", "events"),
            ("BANK_IDEMPOTENCY_TABLE", "x"),
            ("BANK_STATEMENTS_BUCKET", "Bank_Statements"),
            ("BANK_AUDIT_BUCKET", "a"),
            ("BANK_REDIS_URL", "http://:redis-pw@cache:6379"),
            ("BANK_REDIS_KEY_PREFIX", "bank prod:"),
            ("BANK_JWT_SIGNING_KEY", "c2VjcmV0LW5vdC1hLWtleQ=="),
            ("BANK_AUDIT_SIGNING_KEY", "PRIVATE+KEY+garbage"),
        ];
        for (name, value) in bad {
            let err = parse_owned(&with(&base, name, Some(value))).expect_err(name);
            assert_eq!(err.variable(), name, "{err}");
            let shown = err.to_string();
            for secret in ["redis-pw", "c2VjcmV0", "garbage"] {
                assert!(!shown.contains(secret), "{name}: {shown}");
            }
        }
        // A key made for another audit log.
        let other = bank_core::audit::checkpoint::AuditKey::from_seed("other.example/audit", [3; 32]).expect("key");
        let err = parse_owned(&with(&base, "BANK_AUDIT_SIGNING_KEY", Some(&other.private_key()))).expect_err("origin");
        assert!(err.to_string().contains("other.example/audit"), "{err}");
    }

    #[test]
    fn defaults_are_safe_and_local() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.auth_mode, AuthMode::BuiltIn);
        assert_eq!(c.jwt_issuer, "http://127.0.0.1:8080");
        assert_eq!(c.jwt_audience, "bank-api");
        assert_eq!(c.access_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_ttl, REFRESH_TTL_DEFAULT);
        assert_eq!((c.rail_failure_rate_ppm, c.rail_latency_ms, c.worker_batch), (0, 0, 64));
        assert_eq!(c.password, None);
        c.auth_config().validate().expect("the default auth config is valid");
        assert_eq!(Config::default(), c);
    }

    #[test]
    fn defaults_are_written_once_and_the_code_agrees() {
        // Parsing takes every literal default from VARIABLES; the constants other code uses
        // when no configuration is at hand must say the same.
        let c = Config::default();
        assert_eq!(c.worker_batch, PaymentsConfig::default().worker_batch);
        assert_eq!(c.audit_seal, SealPolicy::default());
        assert_eq!(c.audit_origin, bank_local::backend::AUDIT_ORIGIN_DEFAULT);
        let http = c.http_config();
        let code = HttpConfig::default();
        assert_eq!(http.rate_per_subject.requests, code.rate_per_subject.requests);
        assert_eq!(http.rate_per_ip.requests, code.rate_per_ip.requests);
        assert_eq!(http.login_rate_per_ip.requests, code.login_rate_per_ip.requests);
        assert_eq!(http.request_timeout, code.request_timeout);
        assert_eq!(http.deposit_policy.approval_above, bank_core::approvals::DEPOSIT_APPROVAL_ABOVE_DEFAULT);
        assert_eq!(c.auth_config().login_failures_per_ip, crate::auth::issuer::IP_FAILURES_PER_IP_DEFAULT);
        for (name, default, _) in VARIABLES {
            let literal = literal_default(name);
            assert_eq!(literal.is_some(), !default.starts_with('(') && !default.starts_with("BANK_"), "{name}");
        }
    }

    #[test]
    fn every_variable_is_read() {
        let c = parse(&[
            ("BANK_LISTEN", "0.0.0.0:9000"),
            ("BANK_DATA_DIR", "/var/lib/bank"),
            ("BANK_DATA_DIR_MIN_FREE_MB", "64"),
            ("BANK_LOG", "warn,bank_core=debug"),
            ("BANK_LOG_FORMAT", "json"),
            ("BANK_PUBLIC_URL", "https://bank.example/"),
            ("BANK_AUTH_MODE", "external"),
            ("BANK_JWKS_URL", "https://issuer.example/.well-known/jwks.json"),
            ("BANK_JWT_AUDIENCE", "api"),
            ("BANK_ACCESS_TTL_SECONDS", "60"),
            ("BANK_REFRESH_TTL_SECONDS", "3600"),
            ("BANK_RAIL_FAILURE_RATE", "0.05"),
            ("BANK_RAIL_LATENCY_MS", "25"),
            ("BANK_WORKER_BATCH", "8"),
            ("BANK_BANK_NAME", "Banque Exemple"),
            ("BANK_STATEMENT_RETENTION_DAYS", "3650"),
            ("BANK_PASSWORD", "correct horse battery"),
            ("BANK_AUDIT_ORIGIN", "bank.example/prod-audit"),
            ("BANK_AUDIT_CHECKPOINT_RECORDS", "500"),
            ("BANK_AUDIT_CHECKPOINT_SECONDS", "30"),
            ("BANK_AUDIT_RETENTION_DAYS", "3650"),
        ])
        .expect("valid");
        assert_eq!((c.statements.bank_name(), c.statements.retention_days()), ("Banque Exemple", 3650));
        assert_eq!(c.http_config().statements, c.statements);
        assert_eq!(c.local_config().audit_origin, "bank.example/prod-audit");
        assert_eq!(
            c.local_config().audit_seal,
            SealPolicy { every_records: 500, every: TimeDelta::seconds(30), retention: TimeDelta::days(3650) }
        );
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/bank"));
        assert_eq!(c.local_config().min_free_bytes, 64 * 1024 * 1024);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.public_url, "https://bank.example");
        assert_eq!(c.jwt_issuer, "https://bank.example", "the issuer defaults to the public URL");
        assert_eq!(c.auth_mode, AuthMode::External { jwks_url: "https://issuer.example/.well-known/jwks.json".into() });
        assert_eq!(c.access_ttl, Duration::from_secs(60));
        assert_eq!(c.refresh_ttl, Duration::from_secs(3600));
        assert_eq!(c.rail_failure_rate_ppm, 50_000);
        assert_eq!(c.simulator_config().latency, TimeDelta::milliseconds(25));
        assert_eq!(c.payments_config().worker_batch, 8);
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("correct horse battery"));
        assert!(!format!("{c:?}").contains("horse"), "Debug never shows the password");
        assert_eq!(c.local_config().public_url, "https://bank.example/files", "signed links are served under /files");
    }

    #[test]
    fn the_disk_floor_is_in_mib_and_bounded() {
        let c = Config::default();
        assert_eq!(c.local_config().min_free_bytes, bank_local::backend::MIN_FREE_BYTES_DEFAULT);
        for bad in ["0", "1048577", "1.5", "64MB", "-1"] {
            refused(&[("BANK_DATA_DIR_MIN_FREE_MB", bad)], "BANK_DATA_DIR_MIN_FREE_MB");
        }
    }

    #[test]
    fn statement_settings_are_bounded() {
        let c = Config::default();
        assert_eq!(c.statements, bank_core::statements::StatementsConfig::default(), "7 years, Example Bank");
        for bad in ["30", "36526", "seven", "-1"] {
            refused(&[("BANK_STATEMENT_RETENTION_DAYS", bad)], "BANK_STATEMENT_RETENTION_DAYS");
        }
        refused(&[("BANK_BANK_NAME", &"B".repeat(81))], "BANK_BANK_NAME");
        refused(&[("BANK_BANK_NAME", "Bank\u{7}")], "BANK_BANK_NAME");
    }

    #[test]
    fn bad_audit_settings_are_named() {
        refused(&[("BANK_AUDIT_ORIGIN", "has space")], "BANK_AUDIT_ORIGIN");
        refused(&[("BANK_AUDIT_ORIGIN", "a+b")], "BANK_AUDIT_ORIGIN");
        refused(&[("BANK_AUDIT_CHECKPOINT_RECORDS", "0")], "BANK_AUDIT_CHECKPOINT_RECORDS");
        refused(&[("BANK_AUDIT_CHECKPOINT_RECORDS", "10001")], "BANK_AUDIT_CHECKPOINT_RECORDS");
        refused(&[("BANK_AUDIT_CHECKPOINT_SECONDS", "0")], "BANK_AUDIT_CHECKPOINT_SECONDS");
        refused(&[("BANK_AUDIT_RETENTION_DAYS", "0")], "BANK_AUDIT_RETENTION_DAYS");
    }

    #[test]
    fn empty_values_count_as_unset() {
        assert_eq!(parse(&[("BANK_LISTEN", ""), ("BANK_LOG_FORMAT", "")]).expect("valid"), Config::default());
    }

    #[test]
    fn bad_listen_is_named() {
        let err = refused(&[("BANK_LISTEN", "localhost")], "BANK_LISTEN");
        assert!(err.to_string().contains("\"localhost\""), "{err}");
    }

    #[test]
    fn bad_log_filter_is_named() {
        refused(&[("BANK_LOG", "info,[=")], "BANK_LOG");
    }

    #[test]
    fn bad_log_format_is_named() {
        refused(&[("BANK_LOG_FORMAT", "xml")], "BANK_LOG_FORMAT");
    }

    #[test]
    fn bad_public_url_is_named() {
        refused(&[("BANK_PUBLIC_URL", "bank.example")], "BANK_PUBLIC_URL");
        refused(&[("BANK_PUBLIC_URL", "ftp://bank.example")], "BANK_PUBLIC_URL");
    }

    #[test]
    fn bad_auth_mode_is_named() {
        refused(&[("BANK_AUTH_MODE", "cognito")], "BANK_AUTH_MODE");
    }

    #[test]
    fn external_mode_requires_a_jwks_url() {
        let err = refused(&[("BANK_AUTH_MODE", "external")], "BANK_JWKS_URL");
        assert!(matches!(err, ConfigError::Missing { .. }));
        refused(&[("BANK_AUTH_MODE", "external"), ("BANK_JWKS_URL", "not a url")], "BANK_JWKS_URL");
        refused(&[("BANK_JWKS_URL", "not a url")], "BANK_JWKS_URL");
    }

    #[test]
    fn oversized_values_are_refused() {
        let long = "a".repeat(VALUE_BYTES_MAX + 1);
        refused(&[("BANK_JWT_ISSUER", long.as_str())], "BANK_JWT_ISSUER");
        refused(&[("BANK_JWT_AUDIENCE", long.as_str())], "BANK_JWT_AUDIENCE");
    }

    #[test]
    fn bad_access_ttl_is_named() {
        refused(&[("BANK_ACCESS_TTL_SECONDS", "901")], "BANK_ACCESS_TTL_SECONDS");
        refused(&[("BANK_ACCESS_TTL_SECONDS", "0")], "BANK_ACCESS_TTL_SECONDS");
        refused(&[("BANK_ACCESS_TTL_SECONDS", "15m")], "BANK_ACCESS_TTL_SECONDS");
    }

    #[test]
    fn bad_refresh_ttl_is_named() {
        refused(&[("BANK_REFRESH_TTL_SECONDS", "60")], "BANK_REFRESH_TTL_SECONDS");
        refused(&[("BANK_REFRESH_TTL_SECONDS", "-1")], "BANK_REFRESH_TTL_SECONDS");
        refused(&[("BANK_REFRESH_TTL_SECONDS", "31536001")], "BANK_REFRESH_TTL_SECONDS");
    }

    #[test]
    fn bad_rail_failure_rate_is_named() {
        for bad in ["1.5", "-0.1", "5%", "0.0000001", "NaN"] {
            refused(&[("BANK_RAIL_FAILURE_RATE", bad)], "BANK_RAIL_FAILURE_RATE");
        }
        assert_eq!(parse(&[("BANK_RAIL_FAILURE_RATE", "1")]).expect("valid").rail_failure_rate_ppm, PPM);
        assert_eq!(parse(&[("BANK_RAIL_FAILURE_RATE", "0.000001")]).expect("valid").rail_failure_rate_ppm, 1);
    }

    #[test]
    fn bad_rail_latency_is_named() {
        refused(&[("BANK_RAIL_LATENCY_MS", "60001")], "BANK_RAIL_LATENCY_MS");
        refused(&[("BANK_RAIL_LATENCY_MS", "fast")], "BANK_RAIL_LATENCY_MS");
    }

    #[test]
    fn webhook_settings_come_in_pairs_and_are_checked() {
        refused(&[("BANK_WEBHOOK_URL", "https://hooks.example/bank")], "BANK_WEBHOOK_SECRET");
        refused(&[("BANK_WEBHOOK_SECRET", "0123456789abcdef0123456789abcdef")], "BANK_WEBHOOK_URL");
        refused(
            &[("BANK_WEBHOOK_URL", "ftp://x"), ("BANK_WEBHOOK_SECRET", "0123456789abcdef0123456789abcdef")],
            "BANK_WEBHOOK_URL",
        );
        let weak = Config::from_lookup(|name| match name {
            "BANK_WEBHOOK_URL" => Some("https://hooks.example/bank".into()),
            "BANK_WEBHOOK_SECRET" => Some("short-secret".into()),
            _ => None,
        })
        .expect_err("a short secret is refused");
        assert_eq!(weak.variable(), "BANK_WEBHOOK_SECRET");
        assert!(!weak.to_string().contains("short-secret"), "the secret is never echoed: {weak}");
    }

    #[test]
    fn bad_http_limits_are_named() {
        refused(&[("BANK_RATE_PER_SUBJECT", "0")], "BANK_RATE_PER_SUBJECT");
        refused(&[("BANK_RATE_PER_IP", "lots")], "BANK_RATE_PER_IP");
        refused(&[("BANK_LOGIN_RATE_PER_IP", "100001")], "BANK_LOGIN_RATE_PER_IP");
        refused(&[("BANK_LOGIN_FAILURES_PER_IP", "0")], "BANK_LOGIN_FAILURES_PER_IP");
        for bad in ["-1", "1e4", "ten", "10_000"] {
            refused(&[("BANK_DEPOSIT_APPROVAL_ABOVE", bad)], "BANK_DEPOSIT_APPROVAL_ABOVE");
        }
        let above = Config::from_lookup(|name| (name == "BANK_DEPOSIT_APPROVAL_ABOVE").then(|| "500.00".into()));
        assert_eq!(above.expect("valid").http_config().deposit_policy.approval_above.to_string(), "500.00");
        assert_eq!(Config::default().http_config().deposit_policy.approval_above, Decimal::from(10_000));
        refused(&[("BANK_REQUEST_TIMEOUT_SECONDS", "0")], "BANK_REQUEST_TIMEOUT_SECONDS");
        assert_eq!(Config::default().auth_config().login_failures_per_ip, 100);
        assert_eq!(Config::default().http_config().login_rate_per_ip.requests, 300, "room for a shared NAT");
        let failures = Config::from_lookup(|name| (name == "BANK_LOGIN_FAILURES_PER_IP").then(|| "250".into()));
        assert_eq!(failures.expect("valid").auth_config().login_failures_per_ip, 250);
        refused(&[("BANK_TRUST_FORWARDED_FOR", "yes")], "BANK_TRUST_FORWARDED_FOR");
        let c = Config::from_lookup(|name| match name {
            "BANK_RATE_PER_SUBJECT" => Some("7".into()),
            "BANK_REQUEST_TIMEOUT_SECONDS" => Some("3".into()),
            "BANK_TRUST_FORWARDED_FOR" => Some("true".into()),
            _ => None,
        })
        .expect("valid");
        let http = c.http_config();
        assert_eq!((http.rate_per_subject.requests, http.rate_per_subject.burst), (7, 14));
        assert_eq!(http.request_timeout, Duration::from_secs(3));
        assert!(http.trust_forwarded_for);
        assert_eq!(Config::default().http_config().rate_per_ip.requests, HttpConfig::default().rate_per_ip.requests);
    }

    #[test]
    fn bad_worker_batch_is_named() {
        refused(&[("BANK_WORKER_BATCH", "0")], "BANK_WORKER_BATCH");
        refused(&[("BANK_WORKER_BATCH", "257")], "BANK_WORKER_BATCH");
    }

    #[test]
    fn a_bad_password_is_never_echoed() {
        let long = "p".repeat(VALUE_BYTES_MAX + 1);
        let err = refused(&[("BANK_PASSWORD", long.as_str())], "BANK_PASSWORD");
        assert!(!err.to_string().contains("ppp"), "{err}");
    }

    #[test]
    fn help_lists_every_variable() {
        let help = variables_help();
        for (name, default, _) in VARIABLES {
            assert!(help.contains(name) && help.contains(default), "{name} missing from the help");
        }
    }
}
