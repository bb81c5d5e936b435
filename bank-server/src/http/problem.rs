//! [`ApiError`]: every error answer, and the one place bank-core and auth errors become RFC 9457
//! problems ([`ApiError::from_core`], [`ApiError::from_auth`]).
//!
//! A core error's problem `type` is `https://bank.example/problems/` followed by its
//! [`Error::code`]: one spelling for clients, logs and metrics. The mapping table names the
//! variants with a problem of their own (422 refusals, idempotency, separation of duties, the two
//! not-found resources that say what is missing); every other variant is answered by its [`Error::action`]
//! ([`ApiError::from_action`]), never by a blanket 500.
//!
//! A handler's error response carries its [`Problem`] as a response extension with an empty body;
//! the request-context middleware writes the body once it has added the request id
//! ([`finish_problem`]). It also turns error responses that axum made itself (unknown route, wrong
//! method) into problems, so no error leaves the server in another shape.
//!
//! Internal failures never reach the client: storage messages, SQL and key-store errors are
//! logged under the request's span and answered with a generic detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bank_api::{PROBLEM_JSON, Problem, problem_types as types};
use bank_core::{Error, ErrorAction};

use crate::auth::AuthError;

/// Seconds a client is told to wait before retrying a transient failure.
pub(crate) const RETRY_AFTER_TRANSIENT_SECS: u64 = 1;
/// `Retry-After` of a write refused because the disk is nearly full (freeing space takes an
/// operator, not a moment).
pub(crate) const RETRY_AFTER_DISK_LOW_SECS: u64 = 10;

/// An error answer: a problem plus the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    problem_type: &'static str,
    title: &'static str,
    detail: String,
    retry_after_secs: Option<u64>,
    bearer_challenge: bool,
}

/// The problem of an error response, waiting for its request id.
#[derive(Debug, Clone)]
pub(crate) struct PendingProblem(pub(crate) Problem);

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        problem_type: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError { status, problem_type, title, detail: detail.into(), retry_after_secs: None, bearer_challenge: false }
    }

    /// The problem type's last segment (`insufficient-funds`): what an audit record names.
    pub(crate) fn code(&self) -> &'static str {
        self.problem_type.rsplit('/').next().unwrap_or(self.problem_type)
    }

    pub(crate) fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, types::INVALID_REQUEST, "Invalid request", detail)
    }

    pub(crate) fn malformed_body(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, types::MALFORMED_BODY, "Malformed body", detail)
    }

    pub(crate) fn payload_too_large(limit_bytes: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            types::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("the body exceeds {limit_bytes} bytes"),
        )
    }

    pub(crate) fn unsupported_media_type() -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            types::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "the body must be sent with Content-Type: application/json",
        )
    }

    pub(crate) fn uri_too_long(limit_bytes: usize) -> Self {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            types::URI_TOO_LONG,
            "URI too long",
            format!("the path and query exceed {limit_bytes} bytes"),
        )
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        let mut error = ApiError::new(StatusCode::UNAUTHORIZED, types::UNAUTHORIZED, "Unauthorized", detail);
        error.bearer_challenge = true;
        error
    }

    pub(crate) fn forbidden() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, types::FORBIDDEN, "Forbidden", "this route needs the operator role")
    }

    /// Missing, foreign and malformed ids all answer this, identically.
    pub(crate) fn not_found(what: &'static str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, types::NOT_FOUND, "Not found", format!("{what} not found"))
    }

    pub(crate) fn idempotency_key_missing(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, types::IDEMPOTENCY_KEY_MISSING, "Idempotency key missing", detail)
    }

    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, types::RATE_LIMITED, "Too many requests", "slow down and retry")
            .with_retry_after(retry_after_secs)
    }

    pub(crate) fn timeout() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::TIMEOUT,
            "Timeout",
            "the request took too long; retrying with the same idempotency key is safe",
        )
        .with_retry_after(RETRY_AFTER_TRANSIENT_SECS)
    }

    pub(crate) fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::UNAVAILABLE,
            "Service unavailable",
            "a backend is unavailable; retry later",
        )
        .with_retry_after(RETRY_AFTER_TRANSIENT_SECS)
    }

    /// New writes refused while the data directory's disk is under its free-space floor.
    pub(crate) fn disk_low() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::UNAVAILABLE,
            "Service unavailable",
            "the bank's disk is nearly full: reads go on, new writes resume once space is freed; retrying with the same idempotency key is safe",
        )
        .with_retry_after(RETRY_AFTER_DISK_LOW_SECS)
    }

    pub(crate) fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            types::INTERNAL,
            "Internal error",
            "an internal error occurred; it was logged under the request id",
        )
    }

    /// The one mapping of bank-core errors to problems. The problem type is always the one
    /// [`Error::code`] names; the table below adds the status, title and detail of the variants
    /// that have a problem of their own, and every other variant (including ones added to
    /// bank-core later) is answered by its [`Error::action`] ([`ApiError::from_action`]).
    ///
    /// A not-found error's detail names the kind of resource, never an id, so a foreign resource
    /// and a missing one answer identically.
    pub(crate) fn from_core(error: Error) -> Self {
        use StatusCode as S;
        let unprocessable = S::UNPROCESSABLE_ENTITY;
        let (status, title, detail, retry) = match &error {
            Error::CurrencyMismatch { .. } => (unprocessable, "Currency mismatch", error.to_string(), false),
            Error::InsufficientFunds { .. } => {
                (unprocessable, "Insufficient funds", "the available balance is too low".to_owned(), false)
            }
            Error::AccountNotOpen { status, .. } => {
                (unprocessable, "Account not open", format!("an account of this transfer is {status}"), false)
            }
            Error::AccountNotFound(_) => (S::NOT_FOUND, "Not found", "account not found".to_owned(), false),
            Error::TransferNotFound(_) => (S::NOT_FOUND, "Not found", "transfer not found".to_owned(), false),
            Error::KeyReused(_) | Error::IdempotencyMismatch => (
                unprocessable,
                "Idempotency key reused",
                "the Idempotency-Key was already used with a different request".to_owned(),
                false,
            ),
            Error::IdempotencyInFlight | Error::LeaseLost => (
                S::CONFLICT,
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later with the same key"
                    .to_owned(),
                true,
            ),
            Error::SeparationOfDuties(detail) => (S::FORBIDDEN, "Separation of duties", detail.clone(), false),
            Error::VersionConflict => (
                S::CONFLICT,
                "Conflict",
                "the resource changed concurrently; retry with the same idempotency key".to_owned(),
                true,
            ),
            _ => return ApiError::from_action(&error),
        };
        // `code()` names a type in `types::ALL` for every variant (the tests below walk them all);
        // were it ever not to, the action still gives a well-formed answer.
        let Some(problem_type) = types::by_code(error.code()) else { return ApiError::from_action(&error) };
        let answer = ApiError::new(status, problem_type, title, detail);
        if retry { answer.with_retry_after(RETRY_AFTER_TRANSIENT_SECS) } else { answer }
    }

    /// The answer for a core error the table does not name, by what the caller can do about it:
    /// fix input → 400 `invalid-request`, refused → 409 `conflict`, not found → 404 `not-found`,
    /// retry → 503 `unavailable` with `Retry-After`, give up → 500 `internal`. Input and refusal
    /// errors explain themselves in the detail; transient and internal ones are only logged.
    pub(crate) fn from_action(error: &Error) -> Self {
        match error.action() {
            ErrorAction::FixInput => ApiError::invalid(error.to_string()),
            ErrorAction::Refused => ApiError::new(StatusCode::CONFLICT, types::CONFLICT, "Conflict", error.to_string()),
            ErrorAction::NotFound => ApiError::not_found("resource"),
            ErrorAction::Retry => {
                tracing::warn!(error = %error, code = error.code(), "transient failure");
                ApiError::unavailable()
            }
            ErrorAction::GiveUp => {
                tracing::error!(error = %error, code = error.code(), "internal failure");
                ApiError::internal()
            }
        }
    }

    /// The mapping of authentication errors.
    pub(crate) fn from_auth(error: AuthError) -> Self {
        match error {
            AuthError::InvalidCredentials => ApiError::unauthorized("invalid credentials"),
            AuthError::WeakPassword(reason) => ApiError::invalid(format!("weak password: {reason}")),
            AuthError::EmailTaken => ApiError::new(
                StatusCode::CONFLICT,
                types::CONFLICT,
                "Conflict",
                "the email address is already registered",
            ),
            AuthError::Throttled { retry_after_secs } => ApiError::rate_limited(retry_after_secs),
            AuthError::InvalidToken(why) => ApiError::unauthorized(format!("invalid token: {why}")),
            AuthError::MfaMissing => ApiError::unauthorized("the token lacks multi-factor authentication"),
            AuthError::RefreshReused => ApiError::unauthorized("refresh token reused; the session is revoked"),
            AuthError::Storage(core) => ApiError::from_core(core),
            other => {
                tracing::error!(error = %other, "authentication failure");
                ApiError::internal()
            }
        }
    }

    fn problem(&self) -> Problem {
        Problem::new(self.problem_type, self.title, self.status.as_u16()).with_detail(self.detail.clone())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError::from_core(error)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::from_auth(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.bearer_challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(PendingProblem(self.problem()));
        response
    }
}

/// A problem for an error response that axum (or a layer) produced without one.
fn problem_for_status(status: StatusCode) -> Problem {
    let (problem_type, title, detail) = match status {
        StatusCode::NOT_FOUND => (types::NOT_FOUND, "Not found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            (types::METHOD_NOT_ALLOWED, "Method not allowed", "the route does not accept this method; see Allow")
        }
        StatusCode::URI_TOO_LONG => (types::URI_TOO_LONG, "URI too long", "the path and query are too long"),
        StatusCode::PAYLOAD_TOO_LARGE => (types::PAYLOAD_TOO_LARGE, "Payload too large", "the body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (types::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type", "the body must be application/json")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            (types::TIMEOUT, "Timeout", "the request took too long")
        }
        s if s.is_server_error() => (types::INTERNAL, "Internal error", "an internal error occurred"),
        _ => (types::INVALID_REQUEST, "Invalid request", "the request was refused"),
    };
    Problem::new(problem_type, title, status.as_u16()).with_detail(detail)
}

/// Gives an error response its problem body with `request_id`; returns the problem type (for
/// metrics), or `None` for a success.
pub(crate) fn finish_problem(response: &mut Response, request_id: &str) -> Option<String> {
    let status = response.status();
    let pending = response.extensions_mut().remove::<PendingProblem>();
    let problem = match pending {
        Some(PendingProblem(problem)) => problem,
        None if status.is_client_error() || status.is_server_error() => {
            let is_problem = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
            if is_problem {
                return Some(types::ABOUT_BLANK.to_owned());
            }
            problem_for_status(status)
        }
        None => return None,
    };
    let problem = problem.with_request_id(request_id);
    let problem_type = problem.problem_type.clone();
    // Serializing a struct of strings and a number cannot fail; an empty body if it ever did.
    let body: Vec<u8> = serde_json::to_vec(&problem).unwrap_or_default();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = axum::body::Body::from(body);
    Some(problem_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::testkit::errors::{CASES, one_of_each, variant_name};

    /// What the HTTP API answers for each variant: (status, problem type, `Retry-After`). The
    /// statuses and types are the API's contract (clients and the OpenAPI document match on them).
    fn expected(variant: &str) -> (u16, &'static str, bool) {
        match variant {
            "InvalidAmount" | "UnknownCurrency" | "UnbalancedEntry" | "InvalidInput" | "HoldExceeded" => {
                (400, types::INVALID_REQUEST, false)
            }
            "CurrencyMismatch" => (422, types::CURRENCY_MISMATCH, false),
            "InsufficientFunds" => (422, types::INSUFFICIENT_FUNDS, false),
            "AccountNotOpen" => (422, types::ACCOUNT_NOT_OPEN, false),
            "AccountNotFound" | "TransferNotFound" | "HoldNotFound" | "EntryNotFound" | "BlobNotFound" => {
                (404, types::NOT_FOUND, false)
            }
            "KeyReused" | "IdempotencyMismatch" => (422, types::IDEMPOTENCY_KEY_REUSED, false),
            "IdempotencyInFlight" | "LeaseLost" => (409, types::IDEMPOTENCY_IN_FLIGHT, true),
            "AccountNotEmpty" | "HoldNotActive" | "AlreadyReversed" | "StaleReceipt" | "Retained" => {
                (409, types::CONFLICT, false)
            }
            "VersionConflict" => (409, types::CONFLICT, true),
            "SeparationOfDuties" => (403, types::SEPARATION_OF_DUTIES, false),
            "TooManyAccounts" => (409, types::CONFLICT, false),
            "QueueFull" | "Interrupted" => (503, types::UNAVAILABLE, true),
            "StatementUnreconciled" => (500, types::INTERNAL, false),
            other => panic!("no expected answer for bank_core::Error::{other}: add it here"),
        }
    }

    #[test]
    fn every_core_error_maps_to_its_code_s_problem_type_and_internal_text_never_leaks() {
        let all = one_of_each();
        assert_eq!(all.len(), CASES);
        for error in all {
            let (name, code, text) = (variant_name(&error), error.code(), error.to_string());
            let expected = match &error {
                Error::Storage { retryable: true, .. } => (503, types::UNAVAILABLE, true),
                Error::Storage { retryable: false, .. } => (500, types::INTERNAL, false),
                _ => expected(&name),
            };
            let mapped = ApiError::from_core(error);
            let got = (mapped.status.as_u16(), mapped.problem_type, mapped.retry_after_secs.is_some());
            assert_eq!(got, expected, "{name}: {text}");
            assert!(types::ALL.contains(&mapped.problem_type), "{name}: {}", mapped.problem_type);
            assert_eq!(
                mapped.problem_type.strip_prefix(types::BASE),
                Some(code),
                "{name}: code() is the type's suffix"
            );
            assert_eq!(mapped.problem().status, mapped.status.as_u16());
            assert!(!mapped.detail.contains("SELECT"), "{name}: {}", mapped.detail);
            if mapped.status == StatusCode::NOT_FOUND {
                assert!(!mapped.detail.contains('-'), "{name}: a not-found detail names no id: {}", mapped.detail);
            }
        }
    }

    /// A variant the table does not name is answered by its action: checked on every variant
    /// the table leaves out, and for every action.
    #[test]
    fn errors_the_table_does_not_name_fall_back_on_their_action() {
        let mut actions = Vec::new();
        for error in one_of_each() {
            let name = variant_name(&error);
            let fallback = ApiError::from_action(&error);
            let (status, problem_type, retry_after) = match error.action() {
                ErrorAction::FixInput => (400, types::INVALID_REQUEST, false),
                ErrorAction::Refused => (409, types::CONFLICT, false),
                ErrorAction::NotFound => (404, types::NOT_FOUND, false),
                ErrorAction::Retry => (503, types::UNAVAILABLE, true),
                ErrorAction::GiveUp => (500, types::INTERNAL, false),
            };
            let got = (fallback.status.as_u16(), fallback.problem_type, fallback.retry_after_secs.is_some());
            assert_eq!(got, (status, problem_type, retry_after), "{name}");
            assert!(!fallback.detail.contains("SELECT"), "{name}: {}", fallback.detail);
            if !actions.contains(&error.action()) {
                actions.push(error.action());
            }
            let named = matches!(
                error,
                Error::CurrencyMismatch { .. }
                    | Error::InsufficientFunds { .. }
                    | Error::AccountNotOpen { .. }
                    | Error::AccountNotFound(_)
                    | Error::TransferNotFound(_)
                    | Error::KeyReused(_)
                    | Error::IdempotencyMismatch
                    | Error::IdempotencyInFlight
                    | Error::LeaseLost
                    | Error::VersionConflict
                    | Error::SeparationOfDuties(_)
            );
            if !named {
                assert_eq!(ApiError::from_core(error), fallback, "{name} is left to the fallback");
            }
        }
        assert_eq!(actions.len(), 5, "every action has a variant: {actions:?}");
    }
}
