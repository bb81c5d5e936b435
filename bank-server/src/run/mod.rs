//! The process around the app: opening the local backend, choosing the authentication, the
//! simulated rail behind its circuit breaker (all three assembled by [`crate::app::App`]),
//! binding and serving HTTP, signals, and the errors of a command. The background loops live in
//! [`loops`], the demo seed in [`demo`], the notifiers in [`crate::notify`]. `main.rs` only parses
//! the command line and calls these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bank_aws::backend::{AwsBackend, AwsBackendConfig, OpenError, Resource};
use bank_aws::postgres::{PgConfig, PgDb, PgError, PgStores, Role};
use bank_core::audit::checkpoint::AuditKey;
use bank_core::clock::{Clock, SystemClock};
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::SimulatedRail;
use bank_local::backend::LocalBackend;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::issuer::TokenIssuer;
use crate::auth::verify::TokenVerifier;
use crate::auth::{AuthError, passwords};
use crate::config::{AuthMode, AwsConfig, BackendConfig, Config, DatabaseConfig};
use crate::state::{Auth, Backend};

pub mod audit;
pub mod demo;
pub mod loops;

pub use crate::notify::configured as notifiers;
pub use demo::{DEMO_DEPOSIT, DEMO_USERS, DemoUser, demo_banner, seed_demo};
pub use loops::{
    ERROR_BACKOFF, IDLE_POLL, LOG_NOTIFIER_KEPT_MAX, LoopSet, Loops, NOTIFICATIONS_BATCH_MAX,
    NOTIFICATIONS_SUBSCRIPTION, PURGE_PERIOD, SCHEDULER_PERIOD, STATEMENTS_PERIOD,
};

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The data directory could not be opened (locked by another process, not this bank's
    /// database, corrupt, not writable): fix the directory or point `BANK_DATA_DIR` elsewhere.
    #[error("cannot open the data directory {}: {source}", path.display())]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        source: bank_core::Error,
    },
    /// The PostgreSQL database named by `variable` could not be used (unreachable, wrong
    /// credentials, not this bank's, newer than this binary, not migrated).
    #[error("{variable}: {source}")]
    Database {
        /// The variable to fix (`BANK_DATABASE_URL` or `BANK_DATABASE_READER_URL`).
        variable: &'static str,
        /// What went wrong.
        source: PgError,
    },
    /// A service of the AWS backend could not be used (unreachable, missing, the wrong shape):
    /// `variable` names it.
    #[error("{variable}: {source}")]
    Aws {
        /// The variable to fix (`BANK_TRANSFER_QUEUE`, `BANK_REDIS_URL`, …).
        variable: &'static str,
        /// What went wrong.
        source: bank_aws::backend::OpenError,
    },
    /// Authentication could not be set up, or a user could not be created.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A storage call failed.
    #[error(transparent)]
    Storage(#[from] bank_core::Error),
    /// The command is not allowed in this configuration.
    #[error("{0}")]
    Refused(String),
    /// Binding, serving or reading input failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Opens the backend `config` names, on the system clock: the local backend in
/// `config.data_dir` (opened and migrated), and with `BANK_DATABASE_URL` the PostgreSQL stores
/// (ledger, transfers with their outbox, users) in place of their SQLite counterparts; or, with
/// `BANK_BACKEND=aws`, the AWS backend (nothing in the data directory). The PostgreSQL schema
/// must be this binary's and the AWS resources must exist: [`migrate`] brings them there.
/// The local backend is returned when it was opened.
pub async fn open_backend(config: &Config) -> Result<(Backend, Option<LocalBackend>), RunError> {
    open_backend_with_clock(config, Arc::new(SystemClock)).await
}

/// [`open_backend`] on `clock` (tests drive time-based work, such as the monthly statements,
/// with a manual clock).
pub async fn open_backend_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<(Backend, Option<LocalBackend>), RunError> {
    if let BackendConfig::Aws(aws) = &config.backend {
        let backend_config = aws_backend_config(config, aws)?;
        let opened = AwsBackend::open(&backend_config, clock).await.map_err(aws_error)?;
        let audit_key = AuditKey::parse(aws.audit_key.expose())?;
        return Ok((Backend::on_aws(opened, audit_key, config.audit_seal), None));
    }
    let local = open_local(config, Arc::clone(&clock)).await?;
    let backend = Backend::from(local.clone());
    let Some(database) = &config.database else {
        return Ok((backend, Some(local)));
    };
    let db = connect_database(database).await?;
    db.check_schema().await.map_err(|source| RunError::Database { variable: "BANK_DATABASE_URL", source })?;
    let stores = PgStores::open(&db, clock, &config.local_config().currencies).await?;
    Ok((backend.on_postgres(stores), Some(local)))
}

/// The AWS backend's settings from `config` (`BANK_BACKEND=aws`).
fn aws_backend_config(config: &Config, aws: &AwsConfig) -> Result<AwsBackendConfig, RunError> {
    let database = config
        .database
        .as_ref()
        .ok_or_else(|| RunError::Refused("BANK_DATABASE_URL is required with BANK_BACKEND=aws".into()))?;
    Ok(AwsBackendConfig {
        settings: aws.settings.clone(),
        credentials: None,
        database: pg_config(database),
        resources: aws.resources.clone(),
        redis_url: aws.redis_url.expose().to_owned(),
        redis_key_prefix: aws.redis_key_prefix.clone(),
        currencies: config.local_config().currencies,
        subscriptions: vec![NOTIFICATIONS_SUBSCRIPTION.to_owned()],
    })
}

/// The variable that names the resource at fault.
fn aws_error(source: OpenError) -> RunError {
    let variable = match source.resource() {
        Resource::Database => "BANK_DATABASE_URL",
        Resource::DatabaseReader => "BANK_DATABASE_READER_URL",
        Resource::IdempotencyTable => "BANK_IDEMPOTENCY_TABLE",
        Resource::TransferQueue => "BANK_TRANSFER_QUEUE",
        Resource::EventsTopic => "BANK_EVENTS_TOPIC",
        Resource::SubscriptionQueue => "BANK_SUBSCRIPTION_QUEUE_PREFIX",
        Resource::StatementsBucket => "BANK_STATEMENTS_BUCKET",
        Resource::AuditBucket => "BANK_AUDIT_BUCKET",
        Resource::Redis => "BANK_REDIS_URL",
        _ => "BANK_BACKEND",
    };
    RunError::Aws { variable, source }
}

/// Migrates what `config` names: the local databases, and the PostgreSQL schema when
/// `BANK_DATABASE_URL` is set; with `BANK_BACKEND=aws`, the PostgreSQL schema, then the AWS
/// resources are created when `create_aws_resources` (first installs, emulators) and checked in
/// any case. Returns what was done, for the operator.
pub async fn migrate(config: &Config, create_aws_resources: bool) -> Result<String, RunError> {
    let mut done = String::new();
    match &config.backend {
        BackendConfig::Aws(aws) if create_aws_resources => {
            let backend_config = aws_backend_config(config, aws)?;
            let created = bank_aws::backend::create_resources(&backend_config).await.map_err(aws_error)?;
            done = created.join("\n");
        }
        BackendConfig::Aws(_) => {}
        BackendConfig::Local if create_aws_resources => {
            return Err(RunError::Refused("--create-aws-resources needs BANK_BACKEND=aws".into()));
        }
        BackendConfig::Local => {
            open_local(config, Arc::new(SystemClock)).await?.close().await;
            done = format!("data directory {} is migrated", config.data_dir.display());
        }
    }
    if let Some(database) = &config.database {
        let db = connect_database(database).await?;
        let migrated =
            db.migrate().await.map_err(|source| RunError::Database { variable: "BANK_DATABASE_URL", source })?;
        done.push_str(&format!(
            "\nPostgreSQL database {:?} is at schema version {} (was {})",
            db.name(),
            migrated.to,
            migrated.from
        ));
        db.close().await;
    }
    if let BackendConfig::Aws(aws) = &config.backend {
        // Every resource is checked the way a start checks it (the bank's own accounts opened).
        let backend_config = aws_backend_config(config, aws)?;
        let opened = AwsBackend::open(&backend_config, Arc::new(SystemClock)).await.map_err(aws_error)?;
        opened.close().await;
        done.push_str("\nevery AWS resource is there and has the expected shape");
    }
    Ok(done.trim_start().to_owned())
}

/// Opens (and migrates) the local backend in `config.data_dir`.
async fn open_local(config: &Config, clock: Arc<dyn Clock>) -> Result<LocalBackend, RunError> {
    LocalBackend::open(&config.local_config(), clock)
        .await
        .map_err(|source| RunError::Open { path: config.data_dir.clone(), source })
}

/// Connects the writer and reader pools, naming the variable of the one that fails.
async fn connect_database(database: &DatabaseConfig) -> Result<PgDb, RunError> {
    PgDb::connect(&pg_config(database)).await.map_err(|source| {
        let variable = match &source {
            PgError::Connect { role: Role::Reader, .. } => "BANK_DATABASE_READER_URL",
            _ => "BANK_DATABASE_URL",
        };
        RunError::Database { variable, source }
    })
}

/// The pools' settings of `database`.
fn pg_config(database: &DatabaseConfig) -> PgConfig {
    PgConfig {
        reader_url: database.reader_url.as_ref().map(|url| url.expose().to_owned()),
        max_connections: database.pool,
        ..PgConfig::new(database.url.expose())
    }
}

/// The authentication in force: the built-in issuer over `backend.users`, or a verifier of an
/// external issuer's tokens.
pub fn auth(config: &Config, backend: &Backend) -> Result<Auth, RunError> {
    let clock = Arc::clone(&backend.payments.clock);
    match &config.auth_mode {
        AuthMode::BuiltIn => {
            let users = backend
                .users
                .clone()
                .ok_or_else(|| RunError::Refused("built-in authentication needs a backend that stores users".into()))?;
            let issuer = Arc::new(TokenIssuer::new(config.auth_config(), users, clock)?);
            Ok(Auth { verifier: Arc::new(issuer.verifier()), issuer: Some(issuer) })
        }
        AuthMode::External { jwks_url } => {
            let verifier = TokenVerifier::external(jwks_url, &config.jwt_issuer, &config.jwt_audience, clock)?;
            Ok(Auth { issuer: None, verifier: Arc::new(verifier) })
        }
    }
}

/// The simulated payment rail and the circuit breaker guarding it (the HTTP layer reports the
/// breaker's state).
#[derive(Debug, Clone)]
pub struct Rail {
    /// The rail.
    pub rail: Arc<SimulatedRail>,
    /// Its breaker.
    pub breaker: Arc<CircuitBreaker>,
}

impl Rail {
    /// A simulated rail with the configured failure rate and latency (slept on tokio's timer).
    pub fn simulated(config: &Config, clock: Arc<dyn Clock>) -> Rail {
        let rail = SimulatedRail::new(config.simulator_config(), Arc::clone(&clock))
            .with_sleep(Arc::new(|duration| Box::pin(tokio::time::sleep(duration))));
        let breaker = CircuitBreaker::new(rail.config().name.clone(), BreakerConfig::default(), clock);
        Rail { rail: Arc::new(rail), breaker: Arc::new(breaker) }
    }
}

/// Waits for Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// Binds `config.listen` (port 0 picks a free port; the listener tells which).
pub async fn bind(config: &Config) -> Result<TcpListener, RunError> {
    TcpListener::bind(config.listen).await.map_err(|e| {
        RunError::Io(std::io::Error::new(e.kind(), format!("cannot listen on {} (BANK_LISTEN): {e}", config.listen)))
    })
}

/// Serves `service` (an [`crate::app::App`]'s) on `listener` until `shutdown` is cancelled, then
/// stops accepting and lets requests in flight finish.
pub async fn serve_http(
    listener: TcpListener,
    service: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    axum::serve(listener, service).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    tracing::info!("HTTP server stopped");
    Ok(())
}

/// Checks a password against the rule before anything is stored.
pub fn check_password(password: &str) -> Result<(), RunError> {
    passwords::check_rule(password).map_err(RunError::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_passwords_satisfy_the_rule() {
        for (_, password, _) in DEMO_USERS {
            check_password(password).expect("demo password");
        }
    }
}
