//! [`App`]: the one assembly of a server — storage backend, authentication, payment rail and the
//! HTTP state — built from a [`Config`]. `main` runs it and every test that starts a server builds
//! it the same way, so no second hand-made assembly can drift from what production runs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use bank_aws::redis::RedisRateLimiter;
use bank_core::clock::{Clock, SystemClock};
use bank_core::ratelimit::RateLimiter;
use bank_local::backend::LocalBackend;

use crate::config::Config;
use crate::http::{AppState, HttpConfig, RateLimiters, router};
use crate::run::{self, LoopSet, Loops, Rail, RunError};
use crate::state::{Auth, Backend};

/// An assembled server, not yet serving.
#[derive(Debug, Clone)]
pub struct App {
    /// The configuration it was built from.
    pub config: Config,
    /// The stores it runs on.
    pub backend: Backend,
    /// The embedded backend behind `backend` (its clock, its files; with PostgreSQL configured,
    /// what is not in PostgreSQL: idempotency keys, queue, events, audit, blobs); `None` on the
    /// AWS backend.
    pub local: Option<LocalBackend>,
    /// Token issuing and verification.
    pub auth: Auth,
    /// The payment rail and its circuit breaker.
    pub rail: Rail,
    /// The HTTP limits in force (from the configuration unless replaced).
    pub http: HttpConfig,
    /// Rate limiters shared with other API processes (Redis); `None`: in-process ones.
    pub rate_limiters: Option<RateLimiters>,
}

impl App {
    /// Opens the backend of `config` and sets up authentication and the rail.
    pub async fn build(config: &Config) -> Result<App, RunError> {
        App::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`App::build`] on `clock` instead of the system clock: every store, token, link and loop
    /// reads it (tests move it by hand).
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<App, RunError> {
        let (backend, local) = run::open_backend_with_clock(config, clock).await?;
        let auth = run::auth(config, &backend)?;
        let rail = Rail::simulated(config, Arc::clone(&backend.payments.clock));
        Ok(App { config: config.clone(), backend, local, auth, rail, http: config.http_config(), rate_limiters: None })
    }

    /// The same app with other HTTP limits (tests tighten or loosen rate limits).
    pub fn with_http(mut self, http: HttpConfig) -> App {
        self.http = http;
        self
    }

    /// The same app checking rate limits with `limiters` (shared by several API processes).
    pub fn with_rate_limiters(mut self, limiters: RateLimiters) -> App {
        self.rate_limiters = Some(limiters);
        self
    }

    /// The rate limiters the backend calls for: shared in Redis on the AWS backend (a limit holds
    /// across every API process), else this process's own.
    fn configured_rate_limiters(&self) -> RateLimiters {
        let Some(redis) = &self.backend.shared_limits else {
            return RateLimiters::local(&self.http);
        };
        let shared = RateLimiters::build(&self.http, |name, quota| {
            RedisRateLimiter::new(redis.clone(), name, quota).map(|limiter| Arc::new(limiter) as Arc<dyn RateLimiter>)
        });
        shared.unwrap_or_else(|err| {
            // The names and quotas come from this crate and a checked configuration.
            tracing::error!(error = %err, "shared rate limiters refused their settings; counting in this process");
            RateLimiters::local(&self.http)
        })
    }

    /// The HTTP state; `with_breaker`: this process runs the worker, so the API reports the
    /// rail's circuit breaker.
    pub fn state(&self, with_breaker: bool) -> AppState {
        let limiters = self.rate_limiters.clone().unwrap_or_else(|| self.configured_rate_limiters());
        let state = AppState::with_rate_limiters(
            self.backend.clone(),
            self.auth.clone(),
            self.config.payments_config(),
            self.http.clone(),
            limiters,
        );
        if with_breaker { state.with_breaker(Arc::clone(&self.rail.breaker)) } else { state }
    }

    /// The router of [`App::state`], ready for `axum::serve` (peer addresses included).
    pub fn service(&self, with_breaker: bool) -> IntoMakeServiceWithConnectInfo<Router, SocketAddr> {
        router(self.state(with_breaker)).into_make_service_with_connect_info::<SocketAddr>()
    }

    /// Starts the background loops of `set`, with the configured notifiers.
    pub fn start_loops(&self, set: LoopSet) -> Result<Loops, RunError> {
        let notifiers = run::notifiers(&self.config)?;
        Ok(Loops::start(
            &self.backend,
            &self.config.payments_config(),
            &self.config.statements,
            &self.rail,
            set,
            notifiers,
        ))
    }
}
