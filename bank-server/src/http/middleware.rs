//! Middleware: the request context (request id, span, metrics, problem bodies), the request
//! timeout, the per-IP rate limit and the refusal of new writes while the disk is nearly full.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bank_api::{REQUEST_ID_HEADER, paths};
use tracing::Instrument;

use super::AppState;
use super::extract::client_ip;
use super::problem::{ApiError, finish_problem};

/// Longest request id taken from a client.
pub(crate) const REQUEST_ID_CHARS_MAX: usize = 128;
/// Longest path and query the server reads; a longer one answers 414 `uri-too-long`. (Past about
/// 64 KiB hyper refuses the request line itself, before any of this code runs: see the crate
/// README.)
pub(crate) const URI_BYTES_MAX: usize = 8 * 1024;

fn client_request_id(request: &Request) -> Option<String> {
    let text = request.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let visible = !text.is_empty() && text.len() <= REQUEST_ID_CHARS_MAX && text.bytes().all(|b| b.is_ascii_graphic());
    visible.then(|| text.to_owned())
}

/// The id of the request being served (for the audit log).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// Outermost: names the request (the client's `x-request-id` if it is 1 to 128 visible ASCII
/// characters, else a new UUID v7), runs it in a span, echoes the id, writes problem bodies and
/// records metrics by route template (never by raw path, so ids do not explode label sets).
pub(crate) async fn request_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = client_request_id(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |path| path.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %method,
        route = %route,
        subject = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let mut request = request;
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let uri_bytes = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    let mut response = if uri_bytes > URI_BYTES_MAX {
        ApiError::uri_too_long(URI_BYTES_MAX).into_response()
    } else {
        next.run(request).instrument(span.clone()).await
    };
    let problem_type = finish_problem(&mut response, &request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.record("status", status);
    span.in_scope(|| {
        tracing::info!(elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX), "request");
    });
    state.metrics().observe(&method, &route, status, elapsed, problem_type.as_deref());
    response
}

/// Answers 503 `timeout` when a request takes longer than the configured timeout. The handler's
/// future is dropped; every write it may have started is idempotent, so a retry is safe.
pub(crate) async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config().request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("request timed out");
            ApiError::timeout().into_response()
        }
    }
}

/// While the embedded backend's disk is under its free-space floor (see `bank_local::space`),
/// answers every state-changing request 503 with `Retry-After`, except sign-in, refresh and
/// sign-out (a customer must stay able to read). Reads, and the settlement of transfers already
/// accepted, go on in the room left. No floor on the AWS backend (nothing on a local disk).
pub(crate) async fn refuse_writes_when_disk_low(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = request.uri().path();
    let session = path == paths::AUTH_LOGIN || path == paths::AUTH_REFRESH || path == paths::AUTH_LOGOUT;
    if !read_only && !session && state.backend().data_disk.as_ref().is_some_and(|disk| disk.is_low()) {
        tracing::warn!("write refused: the data directory's disk is under its free-space floor");
        return ApiError::disk_low().into_response();
    }
    next.run(request).await
}

/// Per client IP on every route except health probes and metrics (scraped by the infrastructure).
pub(crate) async fn rate_limit_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let exempt = path == paths::HEALTH_LIVE || path == paths::HEALTH_READY || path == paths::METRICS;
    if !exempt {
        let ip = client_ip(request.headers(), request.extensions(), state.config().trust_forwarded_for);
        if let Err(retry_after_secs) = state.limits().per_ip(&ip).await {
            return ApiError::rate_limited(retry_after_secs).into_response();
        }
    }
    next.run(request).await
}
