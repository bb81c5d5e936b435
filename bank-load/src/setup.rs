//! The load's own users: each registered through the API, signed in with a TOTP code computed by
//! the server's own [`bank_server::auth::totp::code_at`], given one account, and funded by an
//! operator's deposit (an idempotent admin deposit, below the four-eyes threshold). The run's own
//! connections ([`Wire`]) are opened to the same server, and each user's access token is handed
//! to them ([`Bearer`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bank_api::DepositRequest;
use bank_client::{BankClient, ClientError, RetryPolicy};
use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::wire::{Bearer, Wire};

/// Registrations and sign-ins in flight at once during setup (each hashes a password with argon2).
pub const SETUP_CONCURRENCY: usize = 4;

/// An operator's credentials (the one who deposits the users' starting balances).
#[derive(Clone, PartialEq, Eq)]
pub struct Operator {
    pub email: String,
    pub password: String,
    /// Base32 TOTP secret.
    pub totp_secret: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator").field("email", &self.email).finish_non_exhaustive()
    }
}

/// Why setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{step}: {source}")]
    Api { step: String, source: ClientError },
    #[error("not a valid base32 TOTP secret ({0})")]
    TotpSecret(String),
    #[error("the deposit to {0} needs a second operator's approval: lower --deposit below the server's threshold")]
    DepositNeedsApproval(Uuid),
    #[error("{0}")]
    Wire(String),
}

/// How the clients talk to the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Time limit of one request.
    pub timeout: Duration,
    /// Automatic retries (the load itself sends each request once: [`RetryPolicy::none`]).
    pub retry: RetryPolicy,
}

/// One signed-in user of the load and its account.
#[derive(Debug, Clone)]
pub struct LoadUser {
    pub email: String,
    pub client: BankClient,
    /// The user's `Authorization` header on the run's own connections ([`Fixture::refresh`]
    /// keeps it current).
    pub bearer: Arc<Bearer>,
    pub account: Uuid,
}

impl LoadUser {
    /// The user of `client`, signed in, and its `account`.
    pub async fn new(email: String, client: BankClient, account: Uuid) -> Result<Self, SetupError> {
        let token = client.access_token().await.map_err(api(format!("reading the access token of {email}")))?;
        let bearer = Arc::new(Bearer::new(&token).map_err(|e| SetupError::Wire(e.to_string()))?);
        Ok(Self { email, client, bearer, account })
    }
}

/// The users of a run, with the currency of their accounts.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub users: Vec<LoadUser>,
    pub currency: String,
    /// The operator's signed-in client.
    pub operator: BankClient,
    /// The connections the run's scheduled requests go on.
    pub wire: Arc<Wire>,
}

impl Fixture {
    /// Hands each user's access token to the run's connections again, refreshed first when it
    /// expires within [`bank_client::REFRESH_MARGIN`] (a run may outlast a token). A user whose
    /// refresh fails keeps its token (its requests then count their 401s).
    pub async fn refresh(&self) {
        for user in &self.users {
            if let Ok(token) = user.client.access_token().await {
                let _ = user.bearer.set(&token);
            }
        }
    }
}

/// The current TOTP code of `secret`, as the server computes it.
pub fn totp_now(secret: &str) -> Result<String, SetupError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    bank_server::auth::totp::code_at(secret, now).map_err(|_| SetupError::TotpSecret(secret.chars().take(4).collect()))
}

fn api(step: impl Into<String>) -> impl FnOnce(ClientError) -> SetupError {
    let step = step.into();
    move |source| SetupError::Api { step, source }
}

/// A client of `base_url` with `options`.
pub fn client(base_url: &str, options: ClientOptions) -> Result<BankClient, SetupError> {
    BankClient::builder(base_url)
        .timeout(options.timeout)
        .retry_policy(options.retry)
        .build()
        .map_err(api("building the HTTP client"))
}

/// Signs the operator in (with the default retries: deposits carry keys, so they are safe to retry).
pub async fn sign_in_operator(
    base_url: &str,
    operator: &Operator,
    options: ClientOptions,
) -> Result<BankClient, SetupError> {
    let client = client(base_url, ClientOptions { retry: RetryPolicy::default(), ..options })?;
    let code = totp_now(&operator.totp_secret)?;
    client
        .login(&operator.email, &operator.password, &code)
        .await
        .map_err(api(format!("signing in the operator {}", operator.email)))?;
    Ok(client)
}

/// Registers `users` users, opens a `currency` account for each and deposits `deposit` into it.
/// The users' clients send each load request once when `options.retry` says so (register, login
/// and opening an account are never retried by bank-client anyway).
pub async fn prepare(
    base_url: &str,
    operator: &Operator,
    users: usize,
    currency: &str,
    deposit: Decimal,
    options: ClientOptions,
) -> Result<Fixture, SetupError> {
    let wire = Arc::new(Wire::new(base_url, options.timeout).map_err(SetupError::Wire)?);
    let operator = sign_in_operator(base_url, operator, options).await?;
    let run = Uuid::new_v4().simple().to_string();
    let run = &run[..12];
    let made: Vec<LoadUser> = futures::stream::iter(0..users)
        .map(|i| {
            let operator = operator.clone();
            async move {
                let email = format!("load-{run}-{i}@load.example");
                let password = format!("load-password-{run}-{i}-not-weak");
                let client = client(base_url, options)?;
                let registered =
                    client.register(&email, &password).await.map_err(api(format!("registering {email}")))?;
                let code = totp_now(&registered.totp_secret)?;
                client.login(&email, &password, &code).await.map_err(api(format!("signing in {email}")))?;
                let account = client
                    .open_account(currency, &format!("load {i}"))
                    .await
                    .map_err(api(format!("opening an account for {email}")))?;
                let request = DepositRequest { account_id: account.id, amount: deposit, reference: "bank-load".into() };
                match operator.admin_deposit(&format!("bank-load-deposit:{}", account.id), &request).await {
                    Ok(_) => {}
                    Err(ClientError::PendingApproval(_)) => return Err(SetupError::DepositNeedsApproval(account.id)),
                    Err(e) => return Err(api(format!("depositing into {}", account.id))(e)),
                }
                LoadUser::new(email, client, account.id).await
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Fixture { users: made, currency: currency.to_owned(), operator, wire })
}
