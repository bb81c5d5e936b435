//! The end-to-end harness: [`TestApp::spawn`] starts the real server (router, built-in token
//! issuer, `bank-local` backend on a fresh temporary directory, and the transfers pipeline's
//! background loops) on `127.0.0.1:0`, exactly as `serve` assembles it, and hands out signed-in
//! [`BankClient`]s. Dropping the app stops its loops and its listener.
// Shared by several test binaries; each uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bank_client::{BankClient, RetryPolicy};
use bank_core::users::Role;
use bank_server::app::App;
use bank_server::auth::issuer::TokenIssuer;
use bank_server::auth::totp;
use bank_server::config::Config;
use bank_server::http::{HttpConfig, RateLimit};
use bank_server::run::{LoopSet, Loops};
use bank_server::state::Backend;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The password of every test user.
pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// Longest a poll for an eventual state waits.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// Sends of one client call: more than the default, so a burst of concurrent requests under one
/// idempotency key all outlast the 409s "in flight" (backoff is capped at 2 s per retry).
pub(crate) const CLIENT_ATTEMPTS_MAX: u32 = 10;
/// Pause between two polls.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How to start one server.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) http: HttpConfig,
    /// `iss` of issued and expected tokens (default: the server's URL).
    pub(crate) jwt_issuer: Option<String>,
    /// `aud` of issued and expected tokens (default: the server's default).
    pub(crate) jwt_audience: Option<String>,
    /// `BANK_DATABASE_URL` (default: none, the embedded SQLite backend only).
    pub(crate) database_url: Option<String>,
    /// `BANK_DATABASE_READER_URL` (default: none, the writer).
    pub(crate) database_reader_url: Option<String>,
}

impl Default for Options {
    /// Rate limits far above what a test sends, so only the rate-limit test ever meets one.
    fn default() -> Self {
        Options {
            http: HttpConfig {
                rate_per_subject: RateLimit::per_second(10_000, 10_000),
                rate_per_ip: RateLimit::per_second(10_000, 10_000),
                login_rate_per_ip: RateLimit::per_second(1_000, 1_000),
                ..HttpConfig::default()
            },
            jwt_issuer: None,
            jwt_audience: None,
            database_url: None,
            database_reader_url: None,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub(crate) struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base_url: String,
    /// The server's built-in issuer (to create operators and to sign crafted tokens).
    pub(crate) issuer: Arc<TokenIssuer>,
    /// A plain HTTP client, for requests `BankClient` cannot make (crafted tokens, bad bodies).
    pub(crate) http: reqwest::Client,
    /// The server's stores (to set up what the API refuses to make, and to read the audit log).
    pub(crate) backend: Backend,
    loops: Option<Loops>,
    server: JoinHandle<()>,
    _dir: TempDir,
}

impl TestApp {
    /// A server with the default test options.
    pub(crate) async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub(crate) async fn spawn_with(options: Options) -> TestApp {
        log_to_test_output();
        let dir = TempDir::new().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base_url = format!("http://{}", listener.local_addr().expect("local address"));
        let mut vars =
            HashMap::from([("BANK_DATA_DIR", dir.path().display().to_string()), ("BANK_PUBLIC_URL", base_url.clone())]);
        if let Some(issuer) = options.jwt_issuer {
            vars.insert("BANK_JWT_ISSUER", issuer);
        }
        if let Some(audience) = options.jwt_audience {
            vars.insert("BANK_JWT_AUDIENCE", audience);
        }
        if let Some(url) = options.database_url {
            vars.insert("BANK_DATABASE_URL", url);
        }
        if let Some(url) = options.database_reader_url {
            vars.insert("BANK_DATABASE_READER_URL", url);
        }
        let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration");

        let app = App::build(&config).await.expect("build the app").with_http(options.http);
        let issuer = app.auth.issuer.clone().expect("the built-in issuer");
        let loops = app.start_loops(LoopSet::PIPELINE).expect("loops");
        let stores = app.backend.clone();
        let service = app.service(true);
        let server = tokio::spawn(async move {
            axum::serve(listener, service).await.expect("serve");
        });
        TestApp {
            base_url,
            issuer,
            http: reqwest::Client::new(),
            backend: stores,
            loops: Some(loops),
            server,
            _dir: dir,
        }
    }

    /// A client of this server, not signed in, retrying up to [`CLIENT_ATTEMPTS_MAX`] times.
    pub(crate) fn client(&self) -> BankClient {
        BankClient::builder(&self.base_url)
            .retry_policy(RetryPolicy { attempts_max: CLIENT_ATTEMPTS_MAX, ..RetryPolicy::default() })
            .build()
            .expect("client")
    }

    /// Registers `name@example.com` through the API and signs in with password and TOTP.
    pub(crate) async fn customer(&self, name: &str) -> BankClient {
        let client = self.client();
        let email = format!("{name}@example.com");
        let registered = client.register(&email, PASSWORD).await.expect("register");
        client.login(&email, PASSWORD, &totp_now(&registered.totp_secret)).await.expect("login");
        client
    }

    /// Creates an operator with the issuer (there is no API for it) and signs in through the API.
    pub(crate) async fn operator(&self) -> BankClient {
        let email = "operator@example.com";
        let registered = self.issuer.create_user(email, PASSWORD, Role::Operator).await.expect("create operator");
        let client = self.client();
        client.login(email, PASSWORD, &totp_now(&registered.totp_secret)).await.expect("operator login");
        client
    }

    /// Creates the operator `name@example.com` with the issuer and signs it in with the issuer:
    /// a client holding the access token, and the token (for raw requests).
    pub(crate) async fn operator_named(&self, name: &str) -> (BankClient, String) {
        let email = format!("{name}@example.com");
        let registered = self.issuer.create_user(&email, PASSWORD, Role::Operator).await.expect("create operator");
        let ip = "127.0.0.1".parse().expect("ip");
        let tokens = self.issuer.login(&email, PASSWORD, &totp_now(&registered.totp_secret), ip).await.expect("login");
        (self.client().with_access_token(&tokens.access_token), tokens.access_token)
    }

    /// [`TestApp::operator_named`] for `operator-token@example.com`.
    pub(crate) async fn operator_with_token(&self) -> (BankClient, String) {
        self.operator_named("operator-token").await
    }

    /// Registers a customer with the issuer and answers a fresh access token (for raw requests).
    pub(crate) async fn access_token(&self, name: &str) -> String {
        let email = format!("{name}@example.com");
        let registered = self.issuer.register(&email, PASSWORD).await.expect("register");
        let ip = "127.0.0.1".parse().expect("ip");
        let tokens = self.issuer.login(&email, PASSWORD, &totp_now(&registered.totp_secret), ip).await.expect("login");
        tokens.access_token
    }

    /// `base_url` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(loops) = self.loops.take() {
            loops.cancellation().cancel();
        }
        self.server.abort();
    }
}

/// The server's warnings and errors (or what `RUST_LOG` asks for) in the test's output, which
/// the runner shows when the test fails. Once per process; later calls do nothing.
fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _already = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// The TOTP code of `secret` now.
pub(crate) fn totp_now(secret: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    totp::code_at(secret, now).expect("totp code")
}

/// Polls `probe` until it answers `Some`, for at most [`POLL_TIMEOUT`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(POLL_TIMEOUT, what, probe).await
}

/// Polls `probe` until it answers `Some`, for at most `timeout`.
pub(crate) async fn eventually_within<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
