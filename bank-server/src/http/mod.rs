//! The HTTP API (v1): routes, problem+json errors, middleware, OpenAPI and metrics.
//!
//! Layout:
//! - [`router`] assembles every route of [`bank_api::paths`] over an [`AppState`];
//! - `problem`: [`ApiError`] and the one function mapping [`bank_core::Error`] (and auth errors)
//!   to RFC 9457 problems;
//! - `extract`: the extractors (JSON bodies, query strings, bearer principal, client IP,
//!   `Idempotency-Key`) whose rejections are problems too;
//! - `middleware`: request ids, timeouts, per-IP rate limits, metrics, and the last step that
//!   turns any error response (axum's own 404/405 included) into a problem carrying the request id;
//! - `limits`: the rate limits per IP and per subject ([`RateLimiters`]: in-process `governor`
//!   limiters, or shared ones passed in), failing open;
//! - `metrics`: the Prometheus registry and the gauges refreshed at scrape time;
//! - `convert`: bank-core ↔ bank-api types (no rule lives there);
//! - `routes`: the handlers, one module per resource; `openapi`: the document;
//! - `web`: the web app's static files at `/` and `/app/*`, with their Content-Security-Policy.
//!
//! This module holds no business rule: it parses, authenticates, calls bank-core and converts.
//! It never logs a token, a password, a TOTP code or a request body.

mod convert;
mod extract;
mod limits;
mod metrics;
mod middleware;
mod openapi;
mod problem;
mod routes;
pub mod web;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use bank_api::paths;
use bank_core::accounts::AccountsService;
use bank_core::approvals::DepositPolicy;
use bank_core::deposits::DepositsService;
use bank_core::payments::{PaymentsConfig, PaymentsService};
use bank_core::rail::breaker::CircuitBreaker;
use bank_core::statements::{StatementJob, StatementsConfig};

pub use limits::{RateLimiters, quota as rate_limit_quota};
pub use openapi::openapi;

use crate::audit::AuditRecorder;
use crate::state::{Auth, Backend};

/// Largest request body accepted by default (16 KiB).
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024;
/// Default time a request may take before it is answered with a `timeout` problem.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default login and register requests per client IP per minute: five a second, room for an office
/// behind one NAT signing in at nine; a guesser is stopped by the failure counters, not by this.
pub const LOGIN_REQUESTS_PER_IP_PER_MINUTE: u32 = 300;
/// Keys (IPs or subjects) a rate limiter tracks before it forgets the idle ones.
pub const RATE_LIMIT_KEYS_MAX: usize = 100_000;

/// A token bucket: `requests` per `per`, with bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests replenished per period (at least 1).
    pub requests: u32,
    /// The period.
    pub per: Duration,
    /// Largest burst (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `requests` per second with bursts of `burst`.
    pub const fn per_second(requests: u32, burst: u32) -> Self {
        RateLimit { requests, per: Duration::from_secs(1), burst }
    }

    /// `requests` per minute with bursts of `burst`.
    pub const fn per_minute(requests: u32, burst: u32) -> Self {
        RateLimit { requests, per: Duration::from_secs(60), burst }
    }
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request body; larger ones answer 413 `payload-too-large`.
    pub body_limit_bytes: usize,
    /// Longest a request may take; then 503 `timeout`.
    pub request_timeout: Duration,
    /// Per authenticated subject (after auth).
    pub rate_per_subject: RateLimit,
    /// Per client IP, on every route but health and metrics.
    pub rate_per_ip: RateLimit,
    /// Per client IP on login and registration (on top of `rate_per_ip`): requests, not failures
    /// (failures are the issuer's), so it must be high enough for many users behind one NAT.
    pub login_rate_per_ip: RateLimit,
    /// Take the client IP from the last `X-Forwarded-For` entry (only behind a trusted proxy that
    /// appends it); otherwise from the connection.
    pub trust_forwarded_for: bool,
    /// Operator deposits above this amount wait for a second operator (four eyes).
    pub deposit_policy: DepositPolicy,
    /// Statements: the bank's name, retention, link validity.
    pub statements: StatementsConfig,
    /// The web app's folder (`index.html`, `app.js`, `app.css`, `pkg/`), served at `/` and
    /// `/app/*` ([`web`]); `None` serves no app. Default: the checkout's `bank-wasm/web`
    /// ([`web::checkout_web_root`]), whose `pkg/` `scripts/build-wasm.sh` writes.
    pub web_root: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: REQUEST_BODY_BYTES_MAX,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            rate_per_subject: RateLimit::per_second(50, 100),
            rate_per_ip: RateLimit::per_second(100, 200),
            login_rate_per_ip: RateLimit::per_minute(
                LOGIN_REQUESTS_PER_IP_PER_MINUTE,
                LOGIN_REQUESTS_PER_IP_PER_MINUTE,
            ),
            trust_forwarded_for: false,
            deposit_policy: DepositPolicy::default(),
            statements: StatementsConfig::default(),
            web_root: Some(web::checkout_web_root()),
        }
    }
}

/// What every handler runs on. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    service: PaymentsService,
    accounts: AccountsService,
    deposits: DepositsService,
    statements: StatementJob,
    audit: AuditRecorder,
    auth: Auth,
    config: HttpConfig,
    metrics: metrics::Metrics,
    limits: limits::Limits,
    breakers: parking_lot::RwLock<Vec<Arc<CircuitBreaker>>>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.inner.auth)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state of a server over `backend`, authenticating with `auth`. Starts the audit
    /// recorder's flusher on the current tokio runtime ([`crate::audit`]).
    pub fn new(backend: Backend, auth: Auth, payments_config: PaymentsConfig, config: HttpConfig) -> Self {
        let limiters = RateLimiters::local(&config);
        AppState::with_rate_limiters(backend, auth, payments_config, config, limiters)
    }

    /// [`AppState::new`] with the given rate limiters (shared by several API processes) instead
    /// of in-process ones.
    pub fn with_rate_limiters(
        backend: Backend,
        auth: Auth,
        payments_config: PaymentsConfig,
        config: HttpConfig,
        limiters: RateLimiters,
    ) -> Self {
        let service = PaymentsService::new(backend.payments.clone(), payments_config);
        let accounts = AccountsService::new(backend.ledger.clone());
        let deposits = DepositsService::new(
            backend.ledger.clone(),
            backend.deposit_requests.clone(),
            backend.audit.clone(),
            backend.system.clone(),
            config.deposit_policy,
            backend.payments.clock.clone(),
        );
        let statements = statement_job(&backend, config.statements.clone());
        let limits = limits::Limits::new(limiters);
        let audit = AuditRecorder::start(backend.audit.clone());
        AppState {
            inner: Arc::new(Inner {
                backend,
                service,
                accounts,
                deposits,
                statements,
                audit,
                auth,
                config,
                metrics: metrics::Metrics::new(),
                limits,
                breakers: parking_lot::RwLock::new(Vec::new()),
            }),
        }
    }

    /// Reports `breaker`'s state on `/metrics` (gauge `circuit_breaker_state{name}`: 0 closed,
    /// 1 half-open, 2 open).
    pub fn with_breaker(self, breaker: Arc<CircuitBreaker>) -> Self {
        self.inner.breakers.write().push(breaker);
        self
    }

    /// The storage assembly.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The transfers service.
    pub fn service(&self) -> &PaymentsService {
        &self.inner.service
    }

    /// The accounts service.
    pub fn accounts(&self) -> &AccountsService {
        &self.inner.accounts
    }

    /// The operators' deposits service.
    pub fn deposits(&self) -> &DepositsService {
        &self.inner.deposits
    }

    /// The statements job.
    pub fn statements(&self) -> &StatementJob {
        &self.inner.statements
    }

    /// Where audit records go (durable or queued: see [`crate::audit`]).
    pub fn audit(&self) -> &AuditRecorder {
        &self.inner.audit
    }

    /// The authentication in force.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The HTTP limits.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    fn limits(&self) -> &limits::Limits {
        &self.inner.limits
    }
}

/// The statements job over `backend`'s ports: the ledger wherever it lives, the object store,
/// the audit log and the event bus (whose subscribers notify the owner).
pub fn statement_job(backend: &Backend, config: StatementsConfig) -> StatementJob {
    StatementJob::new(
        Arc::clone(&backend.ledger),
        Arc::clone(&backend.blobs),
        Arc::clone(&backend.audit),
        Arc::clone(&backend.publisher),
        Arc::clone(&backend.payments.clock),
        config,
    )
}

/// Every route of the API over `state`.
///
/// Serve it with `axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())`:
/// login throttling and per-IP rate limits read the peer address from `ConnectInfo<SocketAddr>`.
/// Served without it (or through `oneshot` in tests), every client counts as `0.0.0.0`, one bucket.
pub fn router(state: AppState) -> Router {
    let account = format!("{}/{{id}}", paths::ACCOUNTS);
    let account_transactions = format!("{}/{{id}}/transactions", paths::ACCOUNTS);
    let transfer = format!("{}/{{id}}", paths::TRANSFERS);
    let admin_deposit = format!("{}/{{id}}", paths::ADMIN_DEPOSITS);
    let admin_deposit_approve = format!("{}/{{id}}/approve", paths::ADMIN_DEPOSITS);
    let account_statements = format!("{}/{{id}}/statements", paths::ACCOUNTS);
    let statement_download = format!("{}/{{statement_id}}/download", paths::STATEMENTS);
    let files = format!("{}/{{*key}}", paths::FILES);
    let web_asset = format!("{}/{{*path}}", web::WEB_APP_PREFIX);
    Router::new()
        .route(paths::AUTH_REGISTER, post(routes::auth::register))
        .route(paths::AUTH_LOGIN, post(routes::auth::login))
        .route(paths::AUTH_REFRESH, post(routes::auth::refresh))
        .route(paths::AUTH_LOGOUT, post(routes::auth::logout))
        .route(paths::JWKS, get(routes::auth::jwks))
        .route(paths::ACCOUNTS, post(routes::accounts::open).get(routes::accounts::list))
        .route(&account, get(routes::accounts::get_one))
        .route(&account_transactions, get(routes::accounts::transactions))
        .route(paths::TRANSFERS, post(routes::transfers::create).get(routes::transfers::list))
        .route(&transfer, get(routes::transfers::get_one))
        .route(paths::ADMIN_DEPOSITS, post(routes::admin::deposit).get(routes::admin::pending_deposits))
        .route(&admin_deposit, get(routes::admin::deposit_request))
        .route(&admin_deposit_approve, post(routes::admin::approve_deposit))
        .route(paths::ADMIN_AUDIT, get(routes::admin::audit))
        .route(&account_statements, get(routes::statements::list))
        .route(&statement_download, get(routes::statements::download))
        .route(paths::ADMIN_STATEMENTS, post(routes::statements::run))
        .route(&files, get(routes::statements::file))
        .route(paths::ADMIN_AUDIT_CHECKPOINT, get(routes::admin::audit_checkpoint))
        .route(paths::ADMIN_AUDIT_PROOF, get(routes::admin::audit_proof))
        .route(paths::ADMIN_AUDIT_VERIFY, get(routes::admin::audit_verify))
        .route(paths::AUDIT_KEY, get(routes::admin::audit_key))
        .route(paths::HEALTH_LIVE, get(routes::ops::live))
        .route(paths::HEALTH_READY, get(routes::ops::ready))
        .route(paths::METRICS, get(routes::ops::metrics))
        .route(paths::OPENAPI, get(routes::ops::openapi_json))
        .route("/", get(web::index))
        .route(&web_asset, get(web::asset))
        .fallback(routes::ops::not_found)
        // Innermost first: the body limit, then the timeout, the refusal of writes on a nearly
        // full disk, the per-IP limit, and outermost the request context (request id, span,
        // metrics, problem bodies), so it sees every answer.
        .layer(DefaultBodyLimit::max(state.config().body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::timeout))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::refuse_writes_when_disk_low))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::rate_limit_ip))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::request_context))
        .with_state(state)
}
