//! WebAssembly bindings of [`bank_client`] for browsers and Node (wasm-bindgen), with TypeScript
//! declarations generated from `bank-api`'s wire types (tsify).
//!
//! Layout: this file holds the JS class [`BankClient`], one async method per call; `error` holds
//! the one error class JS sees, [`BankError`]; `convert` turns JS values into wire types and back
//! (and declares the binding's own [`PageOptions`] and [`SubmittedTransfer`]).
//!
//! This crate is bindings only. Every rule — token refresh, which calls are retried and how,
//! one `Idempotency-Key` per transfer reused by every retry, the amount grammar, problem errors,
//! pagination — lives in `bank-client` and `bank-api`, the same code the Rust client runs; here
//! values are only converted. Amounts stay decimal strings end to end: no JS number ever holds
//! money. Tokens live in this module's memory (never in `localStorage` or a cookie) and are never
//! handed to JS.
//!
//! Built for `wasm32-unknown-unknown` by `scripts/build-wasm.sh`. Natively the crate compiles (as
//! an rlib, so the workspace tests and lints it) but the JS-facing calls only run on wasm32.

mod convert;
mod error;

use bank_api::TransferRequest;
use bank_client::PAGE_LIMIT_DEFAULT;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

pub use convert::{PageOptions, SubmittedTransfer};
pub use error::BankError;

use convert::{from_js, parse_id, to_js};

/// A signed-in client of the bank API. Make one with `BankClient.login`.
///
/// Every method returns a promise that rejects with a [`BankError`] only. Calls are retried as
/// the Rust client retries them (GETs on transport errors, 408, 429, 5xx; a transfer under its one
/// idempotency key), and the access token is refreshed on its own before it expires.
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct BankClient {
    inner: bank_client::BankClient,
}

#[wasm_bindgen]
impl BankClient {
    /// Signs in at `baseUrl` (e.g. `https://bank.example` or `location.origin`) with a password
    /// and the current TOTP code, and answers the signed-in client.
    #[wasm_bindgen(js_name = "login")]
    pub async fn login(
        #[wasm_bindgen(js_name = "baseUrl")] base_url: String,
        email: String,
        password: String,
        #[wasm_bindgen(js_name = "totpCode")] totp_code: String,
    ) -> Result<BankClient, BankError> {
        let inner = bank_client::BankClient::new(base_url)?;
        inner.login(&email, &password, &totp_code).await?;
        Ok(BankClient { inner })
    }

    /// The base URL this client talks to (no trailing slash).
    #[wasm_bindgen(getter, js_name = "baseUrl")]
    pub fn base_url(&self) -> String {
        self.inner.base_url().to_owned()
    }

    /// Whether the client holds tokens (false after `logout`).
    #[wasm_bindgen(getter, js_name = "signedIn")]
    pub fn signed_in(&self) -> bool {
        self.inner.is_signed_in()
    }

    /// Trades the refresh token for new tokens now (calls also do it on their own when needed).
    pub async fn refresh(&self) -> Result<(), BankError> {
        Ok(self.inner.refresh().await?)
    }

    /// Forgets the tokens and revokes the refresh token on the server. The tokens are forgotten
    /// even when the server cannot be reached.
    pub async fn logout(&self) -> Result<(), BankError> {
        Ok(self.inner.logout().await?)
    }

    /// The caller's accounts, with their posted, pending and available balances.
    #[wasm_bindgen(js_name = "listAccounts", unchecked_return_type = "Account[]")]
    pub async fn list_accounts(&self) -> Result<JsValue, BankError> {
        to_js(&self.inner.accounts().await?)
    }

    /// One account of the caller (another customer's answers 404 `not-found`).
    #[wasm_bindgen(js_name = "getAccount", unchecked_return_type = "Account")]
    pub async fn get_account(
        &self,
        #[wasm_bindgen(js_name = "accountId")] account_id: String,
    ) -> Result<JsValue, BankError> {
        let id = parse_id("accountId", &account_id)?;
        to_js(&self.inner.account(id).await?)
    }

    /// One page of an account's posted history, newest first; pass the page's `next_cursor` as
    /// `options.cursor` for the next one (`null` on the last page).
    #[wasm_bindgen(unchecked_return_type = "Page<HistoryEntry>")]
    pub async fn transactions(
        &self,
        #[wasm_bindgen(js_name = "accountId")] account_id: String,
        #[wasm_bindgen(unchecked_param_type = "PageOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, BankError> {
        let id = parse_id("accountId", &account_id)?;
        let options = page_options(options)?;
        let page = self.inner.transactions_page(id, page_limit(&options), options.cursor.as_deref()).await?;
        to_js(&page)
    }

    /// Submits a transfer. Amounts are decimal strings (`"12.34"`), never numbers. The transfer is
    /// sent under `idempotencyKey`, or under a fresh key when none is given; every automatic retry
    /// reuses it, and the answer returns it: call again with the same key and the same request to
    /// retry safely later (the server replays its first answer, `replayed: true`, and moves the
    /// money at most once).
    #[wasm_bindgen(js_name = "createTransfer", unchecked_return_type = "SubmittedTransfer")]
    pub async fn create_transfer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TransferRequest")] request: JsValue,
        #[wasm_bindgen(js_name = "idempotencyKey")] idempotency_key: Option<String>,
    ) -> Result<JsValue, BankError> {
        let request: TransferRequest =
            from_js("request", &request)?.ok_or_else(|| BankError::invalid_input("request is missing"))?;
        let key = idempotency_key.unwrap_or_else(bank_client::new_idempotency_key);
        let submitted = self.inner.transfer_with_key(&key, &request).await?;
        to_js(&SubmittedTransfer { transfer: submitted.value, idempotency_key: key, replayed: submitted.replayed })
    }

    /// One transfer, with its current status (`accepted`, `processing`, `pending`, `settled`,
    /// `failed` with a `failure_reason`).
    #[wasm_bindgen(js_name = "getTransfer", unchecked_return_type = "Transfer")]
    pub async fn get_transfer(
        &self,
        #[wasm_bindgen(js_name = "transferId")] transfer_id: String,
    ) -> Result<JsValue, BankError> {
        let id = parse_id("transferId", &transfer_id)?;
        to_js(&self.inner.get_transfer(id).await?)
    }

    /// One page of the transfers from or to an account, newest first.
    #[wasm_bindgen(js_name = "listTransfers", unchecked_return_type = "Page<Transfer>")]
    pub async fn list_transfers(
        &self,
        #[wasm_bindgen(js_name = "accountId")] account_id: String,
        #[wasm_bindgen(unchecked_param_type = "PageOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, BankError> {
        let id = parse_id("accountId", &account_id)?;
        let options = page_options(options)?;
        let page = self.inner.transfers_page(id, page_limit(&options), options.cursor.as_deref()).await?;
        to_js(&page)
    }

    /// The account's monthly statements, oldest period first.
    #[wasm_bindgen(js_name = "listStatements", unchecked_return_type = "StatementSummary[]")]
    pub async fn list_statements(
        &self,
        #[wasm_bindgen(js_name = "accountId")] account_id: String,
    ) -> Result<JsValue, BankError> {
        let id = parse_id("accountId", &account_id)?;
        to_js(&self.inner.statements(id).await?)
    }

    /// A short-lived link (at most five minutes) to a statement's PDF, with the SHA-256 the PDF
    /// has. Anyone holding the link can read that one PDF until it expires: open it, don't store it.
    #[wasm_bindgen(js_name = "statementDownloadUrl", unchecked_return_type = "StatementLink")]
    pub async fn statement_download_url(
        &self,
        #[wasm_bindgen(js_name = "statementId")] statement_id: String,
    ) -> Result<JsValue, BankError> {
        to_js(&self.inner.statement_link(&statement_id).await?)
    }
}

/// The options argument of a paginated call; absent (or `undefined`, `null`) is the first page at
/// the default size.
fn page_options(options: Option<JsValue>) -> Result<PageOptions, BankError> {
    match options {
        Some(options) => Ok(from_js::<PageOptions>("options", &options)?.unwrap_or_default()),
        None => Ok(PageOptions::default()),
    }
}

/// The page size of `options`: [`PAGE_LIMIT_DEFAULT`] when absent; the client clamps it to
/// 1–[`bank_api::PAGE_LIMIT_MAX`] as it does for Rust callers.
fn page_limit(options: &PageOptions) -> u32 {
    options.limit.unwrap_or(PAGE_LIMIT_DEFAULT)
}
