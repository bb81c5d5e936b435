//! Typed async client of the bank HTTP API (v1).
//!
//! Layout: `client` owns the [`BankClient`] handle and its request engine (URLs, bearer tokens,
//! retries, bounded body reads, error decoding); `routes` has one method per API route; `session`
//! keeps the tokens out of `Debug` output and logs and refreshes them once for concurrent callers;
//! `retry` holds the [`RetryPolicy`] and which failures may be retried; `paginate` turns pages into
//! streams; `error` is the one [`ClientError`] type; `time` is the clock and timer seam between
//! native (tokio) and `wasm32` (browser or Node).
//!
//! The client sees the server only through [`bank_api`]'s wire types; it must not depend on
//! `bank-server` or `bank-core`.
//!
//! Safety of retries: GETs are retried on transport errors, 408, 429 and 5xx; POSTs only when they
//! carry an `Idempotency-Key` (transfers, deposits), and then always with the same key, so a retry
//! can never move money twice. Other POSTs (login, register, open account) are never retried.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bank_client::ClientError> {
//! use bank_client::BankClient;
//! let client = BankClient::new("http://127.0.0.1:8080")?;
//! client.login("alice@example.com", "correct horse", "123456").await?;
//! for account in client.accounts().await? {
//!     println!("{} {} {}", account.name, account.available, account.currency);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
mod paginate;
mod retry;
mod routes;
mod session;
mod time;

pub use bank_api;
pub use client::{
    BankClient, BankClientBuilder, CONNECT_TIMEOUT_DEFAULT, REQUEST_TIMEOUT_DEFAULT, RESPONSE_BODY_BYTES_MAX,
};
pub use error::{ClientError, ERROR_BODY_CHARS_MAX, client_problem_types};
pub use retry::RetryPolicy;
pub use routes::{PAGE_LIMIT_DEFAULT, new_idempotency_key};
pub use session::REFRESH_MARGIN;

/// The answer to an idempotent submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted<T> {
    pub value: T,
    /// `true` when the server replayed the answer to an earlier request under the same key
    /// (header `Idempotent-Replayed: true`): nothing new happened.
    pub replayed: bool,
}
