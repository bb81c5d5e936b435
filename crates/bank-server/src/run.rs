//! The embedded process: opening the local backend, choosing the authentication, the simulated
//! rail behind its circuit breaker, the background loops ([`Loops`]), serving HTTP, and the demo
//! seed. `main.rs` only parses the command line and calls these.
//!
//! Every loop runs one step at a time (`run_once` of a `bank-core` service), sleeps a little when
//! the step found nothing to do, and on an error logs it (a `bank_core::Error` never carries a
//! token or a password) and backs off before the next step. Shutdown is cooperative: the
//! [`CancellationToken`] is checked between steps, so a step in progress finishes (its effects
//! are idempotent anyway) and [`Loops::shutdown`] waits for every loop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bank_core::account::{AccountKind, NewAccount};
use bank_core::clock::{Clock, SystemClock};
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::money::{Currency, Money};
use bank_core::notifications::{Channel, EventSubscription, LogNotifier, NotificationsService, Notifier};
use bank_core::payments::{OutboxRelay, PaymentsConfig, PaymentsScheduler, PaymentsWorker, RELAY_BATCH_MAX};
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::SimulatedRail;
use bank_core::users::{Email, Role};
use bank_local::backend::LocalBackend;

use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::issuer::TokenIssuer;
use crate::auth::verify::TokenVerifier;
use crate::auth::{AuthError, passwords};
use crate::config::{AuthMode, Config};
use crate::state::{Auth, Backend};

/// Pause of the worker and relay loops after a step that found nothing.
pub const IDLE_POLL: Duration = Duration::from_millis(10);
/// Period of the scheduler (re-enqueue stuck transfers, expire holds, purge keys).
pub const SCHEDULER_PERIOD: Duration = Duration::from_secs(1);
/// Period of the refresh-token purge.
pub const PURGE_PERIOD: Duration = Duration::from_secs(3600);
/// Pause after a failed step before the next one.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(500);
/// Events one notifications step handles at most.
pub const NOTIFICATIONS_BATCH_MAX: usize = 256;
/// The event subscription notifications read.
pub const NOTIFICATIONS_SUBSCRIPTION: &str = "notifications";
/// Notifications the log notifier keeps in memory (it is a demo channel; this bounds it).
pub const LOG_NOTIFIER_KEPT_MAX: usize = 1024;

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

/// Opens (and migrates) the local backend in `config.data_dir`, on the system clock.
pub async fn open_local(config: &Config) -> Result<(Backend, LocalBackend), RunError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let local = LocalBackend::open(&config.local_config(), clock)
        .await
        .map_err(|source| RunError::Open { path: config.data_dir.clone(), source })?;
    Ok((Backend::from(local.clone()), local))
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

/// Which background loops to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopSet {
    /// Process queued transfers.
    pub worker: bool,
    /// Publish outbox rows as events.
    pub relay: bool,
    /// Re-enqueue stuck transfers, expire holds, purge idempotency keys.
    pub scheduler: bool,
    /// Send notifications of transfer events.
    pub notifications: bool,
    /// Delete expired refresh tokens.
    pub refresh_purge: bool,
}

impl LoopSet {
    /// Every loop (`serve`).
    pub const ALL: LoopSet =
        LoopSet { worker: true, relay: true, scheduler: true, notifications: true, refresh_purge: true };
    /// The transfers pipeline (`worker`).
    pub const PIPELINE: LoopSet =
        LoopSet { worker: true, relay: true, scheduler: true, notifications: false, refresh_purge: false };
    /// Notifications only (`notifications`).
    pub const NOTIFICATIONS: LoopSet =
        LoopSet { worker: false, relay: false, scheduler: false, notifications: true, refresh_purge: false };
    /// The refresh-token purge only (`api`: the process that owns the users).
    pub const API: LoopSet =
        LoopSet { worker: false, relay: false, scheduler: false, notifications: false, refresh_purge: true };
}

/// The running background loops.
#[derive(Debug)]
pub struct Loops {
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Loops {
    /// Spawns the loops of `set` on the current tokio runtime.
    pub fn start(backend: &Backend, payments: &PaymentsConfig, rail: &Rail, set: LoopSet) -> Loops {
        Loops::start_with_notifiers(backend, payments, rail, set, Vec::new())
    }

    /// [`Loops::start`], with `notifiers` beside the log notifier of e-mails (e.g. the webhook
    /// notifier of [`notifiers`]).
    pub fn start_with_notifiers(
        backend: &Backend,
        payments: &PaymentsConfig,
        rail: &Rail,
        set: LoopSet,
        notifiers: Vec<Arc<dyn Notifier>>,
    ) -> Loops {
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        if set.worker {
            let worker = PaymentsWorker::new(
                backend.payments.clone(),
                payments.clone(),
                backend.system.clone(),
                rail.rail.clone(),
                Arc::clone(&rail.breaker),
            );
            let step = move || {
                let worker = worker.clone();
                async move { worker.run_once().await.map(|report| report.received > 0) }
            };
            tasks.push(("worker", tokio::spawn(run_loop("worker", cancel.clone(), IDLE_POLL, step))));
        }
        if set.relay {
            let relay = Arc::new(OutboxRelay::new(backend.payments.clone(), Arc::clone(&backend.publisher)));
            let step = move || {
                let relay = Arc::clone(&relay);
                async move { relay.run_once(RELAY_BATCH_MAX).await.map(|published| published > 0) }
            };
            tasks.push(("relay", tokio::spawn(run_loop("relay", cancel.clone(), IDLE_POLL, step))));
        }
        if set.scheduler {
            let scheduler = Arc::new(PaymentsScheduler::new(backend.payments.clone(), payments.clone()));
            let step = move || {
                let scheduler = Arc::clone(&scheduler);
                async move {
                    let report = scheduler.run_once().await?;
                    if report.requeued > 0 || report.recovered_keys > 0 || report.expired_holds > 0 {
                        tracing::info!(?report, "scheduler re-drove work");
                    }
                    // Periodic whatever it found: it sweeps, it does not drain.
                    Ok(false)
                }
            };
            tasks.push(("scheduler", tokio::spawn(run_loop("scheduler", cancel.clone(), SCHEDULER_PERIOD, step))));
        }
        if set.notifications {
            let mut all: Vec<Arc<dyn Notifier>> =
                vec![Arc::new(LogNotifier::with_kept_max(Channel::Email, LOG_NOTIFIER_KEPT_MAX))];
            all.extend(notifiers);
            let service = Arc::new(NotificationsService::new(all, Arc::clone(&backend.notification_log)));
            let subscriber = Arc::clone(&backend.subscriber);
            // Subscribed on the first step (and again only after a failed attempt), not per step:
            // creating the cursor may write.
            let subscription = Arc::new(OnceCell::<Arc<dyn EventSubscription>>::new());
            let step = move || {
                let (service, subscriber, subscription) =
                    (Arc::clone(&service), Arc::clone(&subscriber), Arc::clone(&subscription));
                async move {
                    let subscription =
                        subscription.get_or_try_init(|| subscriber.subscribe(NOTIFICATIONS_SUBSCRIPTION)).await?;
                    service.run_once(subscription.as_ref(), NOTIFICATIONS_BATCH_MAX).await.map(|handled| handled > 0)
                }
            };
            tasks.push(("notifications", tokio::spawn(run_loop("notifications", cancel.clone(), IDLE_POLL, step))));
        }
        if set.refresh_purge
            && let Some(users) = backend.users.clone()
        {
            let step = move || {
                let users = Arc::clone(&users);
                async move {
                    let purged = users.purge_expired_refresh().await?;
                    if purged > 0 {
                        tracing::info!(purged, "expired refresh tokens deleted");
                    }
                    Ok(false)
                }
            };
            tasks.push(("refresh_purge", tokio::spawn(run_loop("refresh_purge", cancel.clone(), PURGE_PERIOD, step))));
        }
        tracing::info!(loops = ?tasks.iter().map(|(name, _)| *name).collect::<Vec<_>>(), "background loops started");
        Loops { cancel, tasks }
    }

    /// The token that stops the loops (cancel it to stop them without waiting).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Names of the running loops.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Stops every loop after its current step and waits for them all.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for (name, task) in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(loop_name = name, error = %err, "background loop panicked");
            }
        }
        tracing::info!("background loops stopped");
    }
}

/// Runs `step` until `cancel`: again at once after a step that did work, after `idle` when it
/// found nothing, after [`ERROR_BACKOFF`] when it failed.
async fn run_loop<F, Fut>(name: &'static str, cancel: CancellationToken, idle: Duration, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bank_core::Result<bool>>,
{
    while !cancel.is_cancelled() {
        let pause = match step().await {
            Ok(true) => {
                tokio::task::yield_now().await;
                continue;
            }
            Ok(false) => idle,
            Err(err) => {
                tracing::warn!(loop_name = name, error = %err, "background step failed; retrying after a pause");
                ERROR_BACKOFF
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
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

/// A demo user as `serve --demo` prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DemoUser {
    /// Login email.
    pub email: &'static str,
    /// Login password (a published demo password).
    pub password: &'static str,
    /// Role.
    pub role: Role,
    /// The user (and customer) id.
    pub user_id: CustomerId,
    /// The TOTP secret to enrol an authenticator with (base32).
    pub totp_secret: String,
    /// The user's USD account (customers only).
    pub account_id: Option<AccountId>,
}

impl std::fmt::Debug for DemoUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoUser").field("email", &self.email).field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

/// The demo users: `(email, password, role)`. Their passwords are public: demo data only.
pub const DEMO_USERS: [(&str, &str, Role); 3] = [
    ("alice@demo.bank", "alice-demo-password", Role::Customer),
    ("bob@demo.bank", "bob-demo-password", Role::Customer),
    ("operator@demo.bank", "operator-demo-password", Role::Operator),
];
/// What each demo customer is credited once.
pub const DEMO_DEPOSIT: &str = "1000.00";

/// Seeds the demo (idempotent: users found by email are reused, the account is opened once and
/// the deposit is posted under a key derived from the account, so a restart credits nothing more).
pub async fn seed_demo(backend: &Backend, issuer: &TokenIssuer) -> Result<Vec<DemoUser>, RunError> {
    let users = backend.users.clone().ok_or_else(|| RunError::Refused("the demo needs built-in users".into()))?;
    let mut seeded = Vec::with_capacity(DEMO_USERS.len());
    for (email, password, role) in DEMO_USERS {
        let user = match users.by_email(&Email::parse(email)?).await? {
            Some(user) => user,
            None => {
                issuer.create_user(email, password, role).await?;
                users.by_email(&Email::parse(email)?).await?.ok_or_else(|| {
                    RunError::Storage(bank_core::Error::Storage {
                        message: format!("demo user {email} vanished after creation"),
                        retryable: true,
                    })
                })?
            }
        };
        let account_id = match role {
            Role::Customer => Some(seed_demo_account(backend, user.id, email).await?),
            Role::Operator => None,
        };
        seeded.push(DemoUser {
            email,
            password,
            role,
            user_id: user.id,
            totp_secret: user.totp_secret.clone(),
            account_id,
        });
    }
    Ok(seeded)
}

async fn seed_demo_account(backend: &Backend, owner: CustomerId, email: &str) -> Result<AccountId, RunError> {
    let existing = backend.ledger.accounts_of(owner).await?;
    let account = match existing.into_iter().find(|a| a.currency == Currency::Usd && a.kind == AccountKind::Customer) {
        Some(account) => account,
        None => {
            let id = AccountId::from_uuid(derived_uuid("demo-account", &owner.to_string()))?;
            let name = format!("{} checking", email.split('@').next().unwrap_or(email));
            backend.ledger.open_account(NewAccount { id, ..NewAccount::customer(owner, name, Currency::Usd) }).await?
        }
    };
    let key = EntryKey::new(TransferId::from_uuid(derived_uuid("demo-deposit", &account.id.to_string()))?, 0);
    let money = Money::parse(DEMO_DEPOSIT, Currency::Usd.code())?;
    let deposit = NewEntry::transfer(key, backend.system.deposits(Currency::Usd)?, account.id, money, "demo deposit")?;
    // Posting a used key answers the first entry and moves no money.
    backend.ledger.post(deposit).await?;
    Ok(account.id)
}

/// A UUID v8 fixed by `(purpose, name)`: the same demo seed names the same ids on every start.
fn derived_uuid(purpose: &str, name: &str) -> Uuid {
    bank_core::ids::derived_uuid(format!("bank-server/{purpose}/{name}").as_bytes())
}

/// The text `serve --demo` prints: credentials, TOTP secrets and a curl session.
pub fn demo_banner(users: &[DemoUser], public_url: &str) -> String {
    let mut text = String::from("Demo data (built-in auth; these passwords are public, demo only):\n");
    for user in users {
        text.push_str(&format!(
            "  {:<20} password {:<24} role {:<9} totp_secret {}{}\n",
            user.email,
            user.password,
            user.role.as_str(),
            user.totp_secret,
            user.account_id.map(|a| format!("  USD account {a}")).unwrap_or_default(),
        ));
    }
    let alice = users.first().map(|u| (u.email, u.password, u.totp_secret.as_str()));
    if let Some((email, password, secret)) = alice {
        text.push_str(&format!(
            "\nTry it (needs curl and jq; `bank-server totp SECRET` prints the current code):\n  TOKEN=$(curl -s -X POST {public_url}{login} \
             -H 'content-type: application/json' \\\n    -d \"{{\\\"email\\\":\\\"{email}\\\",\\\"password\\\":\\\"{password}\\\",\
             \\\"totp_code\\\":\\\"$(cargo run -q -p bank-server -- totp {secret})\\\"}}\" | jq -r .access_token)\n  \
             curl -s {public_url}{accounts} -H \"authorization: Bearer $TOKEN\" | jq\n",
            login = "/v1/auth/login",
            accounts = "/v1/accounts",
        ));
    }
    text
}

/// Checks a password against the rule before anything is stored.
pub fn check_password(password: &str) -> Result<(), RunError> {
    passwords::check_rule(password).map_err(RunError::Auth)
}

/// The notifiers the configuration asks for beside the log: the signed webhook of
/// `BANK_WEBHOOK_URL` (checked when the configuration was read).
pub fn notifiers(config: &Config) -> Result<Vec<Arc<dyn Notifier>>, RunError> {
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some((url, secret)) = &config.webhook {
        let webhook = crate::notify::WebhookNotifier::new(url, secret.expose().as_bytes())
            .map_err(|e| RunError::Refused(format!("webhook notifier: {e}")))?;
        notifiers.push(Arc::new(webhook));
    }
    Ok(notifiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_uuid("a", "x"), derived_uuid("a", "x"));
        assert_ne!(derived_uuid("a", "x"), derived_uuid("b", "x"));
        assert_eq!(derived_uuid("a", "x").get_version_num(), 8);
    }

    #[test]
    fn demo_passwords_satisfy_the_rule() {
        for (_, password, _) in DEMO_USERS {
            check_password(password).expect("demo password");
        }
    }
}
