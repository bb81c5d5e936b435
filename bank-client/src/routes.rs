//! One method per API route, each a thin typed wrapper over the request engine in `client.rs`.
//!
//! This module decides, per route, the method, path, authentication and retry class; it holds
//! no retry or token logic of its own.

use bank_api::{
    Account, AuditEntry, AuditProof, AuditVerification, Deposit, DepositRequest, Health, HistoryEntry, LoginRequest,
    LogoutRequest, OpenAccountRequest, PAGE_LIMIT_MAX, Page, PendingDeposit, RegisterRequest, Registered,
    StatementLink, StatementRun, StatementSummary, Tokens, Transfer, TransferRequest, paths,
};
use futures::Stream;
use uuid::Uuid;

use crate::client::Call;
use crate::paginate::paginate;
use crate::retry::RetryClass;
use crate::session::TokenState;
use crate::time::Instant;
use crate::{BankClient, ClientError, Submitted};

/// Page size of the streams that take no `limit`.
pub const PAGE_LIMIT_DEFAULT: u32 = 50;

/// A fresh `Idempotency-Key` for one transfer (a UUID v7: unique, and sortable by creation time).
/// Keep it with the transfer you mean and send every retry of that transfer under it.
pub fn new_idempotency_key() -> String {
    Uuid::now_v7().to_string()
}

/// `id` as exactly one path segment: every byte but `A-Z a-z 0-9 - _` percent-encoded, so no id
/// can add a segment (`/`), a query (`?`) or a fragment (`#`). `""`, `"."` and `".."` name no
/// segment (URL parsers read `%2E%2E` as `..` too) and are refused.
fn path_segment(id: &str) -> Result<String, ClientError> {
    if matches!(id, "" | "." | "..") {
        return Err(ClientError::InvalidUrl(format!("{id:?} is not an id")));
    }
    let mut segment = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(segment)
}

fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, PAGE_LIMIT_MAX)
}

impl BankClient {
    // --- auth (local issuer) ---

    /// Creates a user; enrol the returned TOTP secret, then [`BankClient::login`].
    pub async fn register(&self, email: &str, password: &str) -> Result<Registered, ClientError> {
        let body = RegisterRequest { email: email.to_owned(), password: password.to_owned() };
        self.execute(&Call::post(paths::AUTH_REGISTER, &body)?.public()).await?.json()
    }

    /// Signs in and keeps the tokens in this client (and its clones) for the following calls.
    pub async fn login(&self, email: &str, password: &str, totp_code: &str) -> Result<(), ClientError> {
        let body =
            LoginRequest { email: email.to_owned(), password: password.to_owned(), totp_code: totp_code.to_owned() };
        let tokens: Tokens = self.execute(&Call::post(paths::AUTH_LOGIN, &body)?.public()).await?.json()?;
        self.session.set(TokenState::from_tokens(&tokens, Instant::now()));
        Ok(())
    }

    /// Trades the refresh token for new tokens now (calls also do it on their own when needed).
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let _guard = self.session.refreshing.lock().await;
        let state = self.session.get().ok_or(ClientError::NotLoggedIn)?;
        let refresh = state.refresh.ok_or(ClientError::NotLoggedIn)?;
        self.refresh_with(&refresh).await
    }

    /// Forgets the tokens and revokes the refresh token on the server. The tokens are forgotten
    /// even when the server cannot be reached.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let state = self.session.clear().ok_or(ClientError::NotLoggedIn)?;
        let Some(refresh) = state.refresh else {
            return Ok(()); // an external token: nothing to revoke here
        };
        let body = LogoutRequest { refresh_token: refresh.expose().to_owned() };
        self.execute(&Call::post(paths::AUTH_LOGOUT, &body)?.public()).await?;
        Ok(())
    }

    // --- accounts ---

    pub async fn open_account(&self, currency: &str, name: &str) -> Result<Account, ClientError> {
        let body = OpenAccountRequest { currency: currency.to_owned(), name: name.to_owned() };
        self.execute(&Call::post(paths::ACCOUNTS, &body)?).await?.json()
    }

    /// The caller's accounts (the first page, up to [`PAGE_LIMIT_MAX`]).
    pub async fn accounts(&self) -> Result<Vec<Account>, ClientError> {
        let call = Call::get(paths::ACCOUNTS).query("limit", PAGE_LIMIT_MAX);
        let page: Page<Account> = self.execute(&call).await?.json()?;
        Ok(page.items)
    }

    pub async fn account(&self, id: Uuid) -> Result<Account, ClientError> {
        self.execute(&Call::get(&paths::account(id))).await?.json()
    }

    /// One page of an account's history, newest first; pass `next_cursor` back for the next one.
    pub async fn transactions_page(
        &self,
        account_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<HistoryEntry>, ClientError> {
        let path = paths::account_transactions(account_id);
        let mut call = Call::get(&path).query("limit", clamp_limit(limit));
        if let Some(cursor) = cursor {
            call = call.query("cursor", cursor);
        }
        self.execute(&call).await?.json()
    }

    /// An account's whole history, fetched `limit` entries at a time as the stream is polled.
    ///
    /// The stream is `Send` natively (a test asserts it; it is left out of the signature because
    /// the `fetch` futures of the wasm32 build are not).
    pub fn transactions(
        &self,
        account_id: Uuid,
        limit: u32,
    ) -> impl Stream<Item = Result<HistoryEntry, ClientError>> + use<> {
        let client = self.clone();
        paginate(move |cursor: Option<String>| {
            let client = client.clone();
            async move { client.transactions_page(account_id, limit, cursor.as_deref()).await }
        })
    }

    // --- transfers ---

    /// Submits a transfer under a fresh idempotency key, reused by every automatic retry, so a
    /// retry can never move the money twice. To retry safely after this call fails (e.g. after a
    /// crash), keep your own key and use [`BankClient::transfer_with_key`].
    pub async fn transfer(&self, request: &TransferRequest) -> Result<Submitted<Transfer>, ClientError> {
        self.transfer_with_key(&new_idempotency_key(), request).await
    }

    /// Submits a transfer under `key`; the same key with the same request replays the first answer
    /// (`replayed: true`), with a different request it is refused (422).
    pub async fn transfer_with_key(
        &self,
        key: &str,
        request: &TransferRequest,
    ) -> Result<Submitted<Transfer>, ClientError> {
        self.execute(&Call::post_keyed(paths::TRANSFERS, key, request)?).await?.submitted()
    }

    pub async fn get_transfer(&self, id: Uuid) -> Result<Transfer, ClientError> {
        self.execute(&Call::get(&paths::transfer(id))).await?.json()
    }

    /// One page of the transfers from or to an account, newest first.
    pub async fn transfers_page(
        &self,
        account_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Transfer>, ClientError> {
        let mut call = Call::get(paths::TRANSFERS).query("account_id", account_id).query("limit", clamp_limit(limit));
        if let Some(cursor) = cursor {
            call = call.query("cursor", cursor);
        }
        self.execute(&call).await?.json()
    }

    /// All transfers of an account, [`PAGE_LIMIT_DEFAULT`] at a time as the stream is polled
    /// (`Send` natively, as [`BankClient::transactions`]).
    pub fn transfers(&self, account_id: Uuid) -> impl Stream<Item = Result<Transfer, ClientError>> + use<> {
        let client = self.clone();
        paginate(move |cursor: Option<String>| {
            let client = client.clone();
            async move { client.transfers_page(account_id, PAGE_LIMIT_DEFAULT, cursor.as_deref()).await }
        })
    }

    // --- operator ---

    /// Credits a customer account from the bank's settlement account (operator role), idempotent
    /// under `key`.
    /// Above the server's four-eyes threshold nothing is posted: the answer is
    /// [`ClientError::PendingApproval`] with the stored request.
    pub async fn admin_deposit(&self, key: &str, request: &DepositRequest) -> Result<Submitted<Deposit>, ClientError> {
        let answer = self.execute(&Call::post_keyed(paths::ADMIN_DEPOSITS, key, request)?).await?;
        if answer.status == 202 {
            return Err(ClientError::PendingApproval(Box::new(answer.json()?)));
        }
        answer.submitted()
    }

    /// Approves (as another operator) and so posts a pending deposit; approving again posts
    /// nothing and answers the same deposit with `replayed` set. Idempotent, so retried.
    pub async fn approve_deposit(&self, id: Uuid) -> Result<Submitted<Deposit>, ClientError> {
        let path = paths::admin_deposit_approve(id);
        let call = Call { method: reqwest::Method::POST, ..Call::get(&path) };
        self.execute(&call).await?.submitted()
    }

    /// One deposit request (operator role).
    pub async fn deposit_request(&self, id: Uuid) -> Result<PendingDeposit, ClientError> {
        self.execute(&Call::get(&paths::admin_deposit(id))).await?.json()
    }

    /// Deposit requests waiting for a second operator, oldest first (operator role).
    pub async fn pending_deposits(&self, limit: u32) -> Result<Page<PendingDeposit>, ClientError> {
        let call = Call::get(paths::ADMIN_DEPOSITS).query("status", "pending").query("limit", clamp_limit(limit));
        self.execute(&call).await?.json()
    }

    /// One page of the audit log from `from_seq` on (operator role); `next_cursor` is the next
    /// `from_seq`.
    pub async fn audit(&self, from_seq: u64, limit: u32) -> Result<Page<AuditEntry>, ClientError> {
        let call = Call::get(paths::ADMIN_AUDIT).query("from_seq", from_seq.max(1)).query("limit", clamp_limit(limit));
        self.execute(&call).await?.json()
    }

    // --- statements ---

    /// The account's monthly statements, oldest period first (owner or operator).
    pub async fn statements(&self, account_id: Uuid) -> Result<Vec<StatementSummary>, ClientError> {
        let page: Page<StatementSummary> =
            self.execute(&Call::get(&paths::account_statements(account_id))).await?.json()?;
        Ok(page.items)
    }

    /// A link to a statement's PDF (`id` as listed), valid for at most five minutes; the PDF read
    /// through it has the returned SHA-256. Fetch it with any HTTP client, without a token.
    pub async fn statement_link(&self, id: &str) -> Result<StatementLink, ClientError> {
        self.execute(&Call::get(&paths::statement_download(&path_segment(id)?))).await?.json()
    }

    /// Makes the statements of `period` (`YYYY-MM`) that are not stored yet, of every customer
    /// account or of one (operator role). Running a period again changes nothing, so it is retried.
    pub async fn run_statements(&self, period: &str, account_id: Option<Uuid>) -> Result<StatementRun, ClientError> {
        let mut call =
            Call { method: reqwest::Method::POST, ..Call::get(paths::ADMIN_STATEMENTS).query("period", period) };
        if let Some(account_id) = account_id {
            call = call.query("account_id", account_id);
        }
        self.execute(&call).await?.json()
    }

    /// The latest signed audit checkpoint, as the note's text (operator role).
    pub async fn audit_checkpoint(&self) -> Result<String, ClientError> {
        self.execute(&Call::get(paths::ADMIN_AUDIT_CHECKPOINT)).await?.text()
    }

    /// The inclusion proof of audit record `seq` in the latest checkpoint (operator role).
    pub async fn audit_proof(&self, seq: u64) -> Result<AuditProof, ClientError> {
        self.execute(&Call::get(paths::ADMIN_AUDIT_PROOF).query("seq", seq)).await?.json()
    }

    /// Verifies the audit log: chain, checkpoints and sealed segments (operator role).
    pub async fn audit_verify(&self) -> Result<AuditVerification, ClientError> {
        self.execute(&Call::get(paths::ADMIN_AUDIT_VERIFY)).await?.json()
    }

    /// The audit log's verifier key, `<origin>+<key id>+<base64 key>` (no token).
    pub async fn audit_key(&self) -> Result<String, ClientError> {
        self.execute(&Call::get(paths::AUDIT_KEY).public()).await?.text()
    }

    // --- operations (no token) ---

    /// `Ok` when the process is up.
    pub async fn health_live(&self) -> Result<(), ClientError> {
        self.execute(&Call::get(paths::HEALTH_LIVE).public()).await?;
        Ok(())
    }

    /// The readiness report; a not-ready server (503 with the report) is `Ok` with its status.
    pub async fn health_ready(&self) -> Result<Health, ClientError> {
        let call = Call { also_ok: &[503], retry: RetryClass::Never, ..Call::get(paths::HEALTH_READY).public() };
        self.execute(&call).await?.json()
    }

    /// The Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.execute(&Call::get(paths::METRICS).public()).await?.text()
    }

    /// The local issuer's public keys (JWK set).
    pub async fn jwks(&self) -> Result<serde_json::Value, ClientError> {
        self.execute(&Call::get(paths::JWKS).public()).await?.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(path_segment("0190_2026-01").expect("plain"), "0190_2026-01");
        assert_eq!(path_segment("../accounts/x").expect("encoded"), "%2E%2E%2Faccounts%2Fx");
        assert_eq!(path_segment("a?b#c d").expect("encoded"), "a%3Fb%23c%20d");
        assert_eq!(path_segment("é").expect("utf-8"), "%C3%A9");
        for bad in ["", ".", ".."] {
            assert!(matches!(path_segment(bad), Err(ClientError::InvalidUrl(_))), "{bad:?}");
        }
    }

    /// Natively the streams and the calls' futures can move between threads (`tokio::spawn`):
    /// the signatures do not say `Send` (the wasm32 build's are not), so this test does.
    #[test]
    fn native_streams_and_futures_are_send() {
        let client = BankClient::new("http://127.0.0.1:9").expect("client");
        assert_send(&client.transactions(Uuid::nil(), 10));
        assert_send(&client.transfers(Uuid::nil()));
        let request = TransferRequest::internal(Uuid::nil(), Uuid::nil(), "1".parse().expect("amount"), "USD", "r");
        assert_send(&client.transfer(&request));
        assert_send(&client.accounts());
    }
}
