//! The client handle and its request engine: URL building, the bearer token (refreshed ahead of
//! expiry and once after a 401), retries under the [`RetryPolicy`], bounded body reads and turning
//! error responses into [`ClientError`]. The routes themselves live in `routes.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bank_api::{IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, REQUEST_ID_HEADER, RefreshRequest, Tokens, paths};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::problem_from_body;
use crate::retry::{RetryClass, RetryPolicy, retry_after};
use crate::session::{Secret, Session, TokenState};
use crate::time::{Instant, sleep};
use crate::{ClientError, Submitted};

/// Default time limit of one HTTP exchange (each retry gets its own).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default time limit to open a connection.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Largest response body the client reads; a larger one is an error, not an allocation.
pub const RESPONSE_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Typed async client of the bank API.
///
/// Cheap to clone: clones share the connection pool and the signed-in session.
/// [`BankClient::with_access_token`] makes a client with its own session on the same pool.
#[derive(Clone)]
pub struct BankClient {
    pub(crate) inner: Arc<Inner>,
    pub(crate) session: Arc<Session>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    /// Base URL without a trailing slash; route paths start with one.
    base_url: String,
    retry: RetryPolicy,
    /// Time limit of one exchange, set on every request (the fetch backend has no client-wide one).
    timeout: Duration,
}

impl fmt::Debug for BankClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankClient")
            .field("base_url", &self.inner.base_url)
            .field("signed_in", &self.session.get().is_some())
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Options of a [`BankClient`]; [`BankClient::new`] uses the defaults.
#[derive(Debug, Clone)]
pub struct BankClientBuilder {
    base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl BankClientBuilder {
    /// Time limit of one HTTP exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time limit to open a connection (native only: in a browser or Node, `fetch` decides).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn build(self) -> Result<BankClient, ClientError> {
        let parsed = Url::parse(&self.base_url).map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(ClientError::InvalidUrl(format!("{} is not an http(s) base URL", self.base_url)));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ClientError::InvalidUrl("a base URL has no query or fragment".to_owned()));
        }
        let http = http_client(&self)?;
        let base_url = parsed.as_str().trim_end_matches('/').to_owned();
        Ok(BankClient {
            inner: Arc::new(Inner { http, base_url, retry: self.retry, timeout: self.timeout }),
            session: Arc::new(Session::default()),
        })
    }
}

/// The native HTTP client: rustls, connect and exchange time limits, our user agent.
#[cfg(not(target_arch = "wasm32"))]
fn http_client(options: &BankClientBuilder) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .user_agent(concat!("bank-client/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The `fetch` backend: the JS environment owns connections, TLS and the `User-Agent` (a browser
/// refuses to let a page set it); the exchange time limit is set per request.
#[cfg(target_arch = "wasm32")]
fn http_client(_options: &BankClientBuilder) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder().build()?)
}

/// How a call authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No `Authorization` header.
    None,
    /// A bearer token is required: refreshed if about to expire, and once after a 401.
    Required,
}

/// One logical call, sent one or more times.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) auth: Auth,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) retry: RetryClass,
    /// Non-2xx statuses whose body is still the answer (e.g. 503 from `/health/ready`).
    pub(crate) also_ok: &'static [u16],
}

impl<'a> Call<'a> {
    pub(crate) fn get(path: &'a str) -> Self {
        Self {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            auth: Auth::Required,
            idempotency_key: None,
            retry: RetryClass::Safe,
            also_ok: &[],
        }
    }

    /// A POST without an idempotency key: never retried.
    pub(crate) fn post(path: &'a str, body: &impl Serialize) -> Result<Self, ClientError> {
        let body =
            serde_json::to_vec(body).map_err(|e| ClientError::Decode(format!("cannot encode the request: {e}")))?;
        Ok(Self { method: Method::POST, body: Some(body), retry: RetryClass::Never, ..Self::get(path) })
    }

    /// A POST with an idempotency key: retried with the same key.
    pub(crate) fn post_keyed(path: &'a str, key: &'a str, body: &impl Serialize) -> Result<Self, ClientError> {
        Ok(Self { idempotency_key: Some(key), retry: RetryClass::Keyed, ..Self::post(path, body)? })
    }

    pub(crate) fn public(self) -> Self {
        Self { auth: Auth::None, ..self }
    }

    pub(crate) fn query(mut self, name: &'static str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }
}

/// A successful answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub(crate) fn submitted<T: DeserializeOwned>(&self) -> Result<Submitted<T>, ClientError> {
        let replayed = self
            .headers
            .get(IDEMPOTENT_REPLAYED_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Ok(Submitted { value: self.json()?, replayed })
    }

    pub(crate) fn text(self) -> Result<String, ClientError> {
        String::from_utf8(self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

impl BankClient {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`), with default options.
    pub fn new(base_url: impl Into<String>) -> Result<Self, ClientError> {
        Self::builder(base_url).build()
    }

    pub fn builder(base_url: impl Into<String>) -> BankClientBuilder {
        BankClientBuilder {
            base_url: base_url.into(),
            timeout: REQUEST_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            retry: RetryPolicy::default(),
        }
    }

    /// A client on the same connection pool that authenticates with `access_token`, issued
    /// elsewhere (e.g. Cognito). It is never refreshed: when it expires, calls fail with 401.
    pub fn with_access_token(&self, access_token: impl AsRef<str>) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            session: Arc::new(Session::with_tokens(TokenState::external(access_token.as_ref()))),
        }
    }

    /// Whether the client holds an access token.
    pub fn is_signed_in(&self) -> bool {
        self.session.get().is_some()
    }

    /// The access token calls send now, refreshed first when it expires within
    /// [`crate::REFRESH_MARGIN`] — for a component that reaches the API by other means than this
    /// client (a load generator's own connections, a WebSocket). Treat it as a secret.
    pub async fn access_token(&self) -> Result<String, ClientError> {
        Ok(self.bearer().await?.expose().to_owned())
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Sends `call`, retrying as its class and the policy allow, and returns the successful answer.
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<Answer, ClientError> {
        let url = self.url(call)?;
        // One request id per logical call, so the server's logs tie the retries together.
        let request_id = uuid::Uuid::now_v7().to_string();
        let policy = self.inner.retry;
        let mut attempt: u32 = 1;
        let mut refreshed_after_401 = false;
        loop {
            let bearer = match call.auth {
                Auth::None => None,
                Auth::Required => Some(self.bearer().await?),
            };
            let outcome = self.send_once(call, &url, &request_id, bearer.as_ref()).await;
            let (error, wait) = match outcome {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err((error, wait))) => (error, wait),
                Err(error) => (error, None),
            };
            if error.status() == Some(401)
                && call.auth == Auth::Required
                && !refreshed_after_401
                && let Some(sent) = &bearer
                && self.session.get().is_some_and(|s| s.refresh.is_some())
            {
                refreshed_after_401 = true;
                tracing::debug!(path = call.path, "access token refused; refreshing once");
                self.refresh_if_current(sent).await?;
                continue;
            }
            if attempt >= policy.attempts_max || !call.retry.allows(&error) {
                return Err(error);
            }
            let Some(delay) = policy.delay(attempt, wait) else {
                return Err(error); // the server asked for a longer wait than we are allowed to block
            };
            tracing::debug!(path = call.path, attempt, delay_ms = delay.as_millis(), status = ?error.status(), "retrying");
            sleep(delay).await;
            attempt += 1;
        }
    }

    /// One HTTP exchange: `Ok(Ok)` on success, `Ok(Err)` on an error status (with its
    /// `Retry-After`), `Err` when there was no usable answer.
    async fn send_once(
        &self,
        call: &Call<'_>,
        url: &Url,
        request_id: &str,
        bearer: Option<&Secret>,
    ) -> Result<Result<Answer, (ClientError, Option<Duration>)>, ClientError> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url.clone())
            .timeout(self.inner.timeout)
            .header(REQUEST_ID_HEADER, request_id);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        if let Some(key) = call.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response).await?;
        if status.is_success() || call.also_ok.contains(&status.as_u16()) {
            return Ok(Ok(Answer { status: status.as_u16(), headers, body }));
        }
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let error = problem_from_body(status, content_type, &body);
        let wait = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            retry_after(&headers)
        } else {
            None
        };
        Ok(Err((error, wait)))
    }

    fn url(&self, call: &Call<'_>) -> Result<Url, ClientError> {
        debug_assert!(call.path.starts_with('/'), "route paths are absolute");
        let mut url = Url::parse(&format!("{}{}", self.inner.base_url, call.path))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &call.query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// The access token to send, refreshed first when it expires within the margin.
    async fn bearer(&self) -> Result<Secret, ClientError> {
        let state = self.session.get().ok_or(ClientError::NotLoggedIn)?;
        if !state.needs_refresh(Instant::now()) {
            return Ok(state.access);
        }
        self.refresh_if_current(&state.access).await?;
        Ok(self.session.get().ok_or(ClientError::NotLoggedIn)?.access)
    }

    /// Refreshes the session unless another call already replaced `seen` while we waited.
    pub(crate) async fn refresh_if_current(&self, seen: &Secret) -> Result<(), ClientError> {
        let _guard = self.session.refreshing.lock().await;
        let state = self.session.get().ok_or(ClientError::NotLoggedIn)?;
        if &state.access != seen {
            return Ok(());
        }
        let refresh = state.refresh.ok_or(ClientError::NotLoggedIn)?;
        self.refresh_with(&refresh).await
    }

    /// Trades `refresh` for new tokens and stores them. Not retried: refresh tokens are single use.
    pub(crate) async fn refresh_with(&self, refresh: &Secret) -> Result<(), ClientError> {
        let body = RefreshRequest { refresh_token: refresh.expose().to_owned() };
        let call = Call::post(paths::AUTH_REFRESH, &body)?.public();
        let url = self.url(&call)?;
        let request_id = uuid::Uuid::now_v7().to_string();
        let answer = match self.send_once(&call, &url, &request_id, None).await? {
            Ok(answer) => answer,
            Err((error, _)) => return Err(error),
        };
        let tokens: Tokens = answer.json()?;
        self.session.set(TokenState::from_tokens(&tokens, Instant::now()));
        Ok(())
    }
}

fn body_too_large() -> ClientError {
    ClientError::Decode(format!("response body over {RESPONSE_BODY_BYTES_MAX} bytes"))
}

/// Reads a body of at most [`RESPONSE_BODY_BYTES_MAX`] bytes, chunk by chunk, so a larger one is
/// refused before it is held whole.
#[cfg(not(target_arch = "wasm32"))]
async fn read_body(mut response: Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > RESPONSE_BODY_BYTES_MAX {
            return Err(body_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a body of at most [`RESPONSE_BODY_BYTES_MAX`] bytes. `fetch` hands the body over whole
/// (reading it as a stream would cost another dependency): a declared larger `Content-Length` is
/// refused before reading, and any larger body after.
#[cfg(target_arch = "wasm32")]
async fn read_body(response: Response) -> Result<Vec<u8>, ClientError> {
    let max = u64::try_from(RESPONSE_BODY_BYTES_MAX).unwrap_or(u64::MAX);
    if response.content_length().is_some_and(|length| length > max) {
        return Err(body_too_large());
    }
    let body = response.bytes().await?;
    if body.len() > RESPONSE_BODY_BYTES_MAX {
        return Err(body_too_large());
    }
    Ok(body.to_vec())
}
