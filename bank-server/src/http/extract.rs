//! Extractors whose rejections are problems: JSON bodies ([`ApiJson`]), query strings
//! ([`ApiQuery`]), the bearer principal ([`Authed`]), plus the client IP and `Idempotency-Key`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bank_core::idempotency::IdempotencyKey;
use bank_core::users::Role;
use serde::de::DeserializeOwned;

use super::AppState;
use super::problem::ApiError;
use crate::auth::{AuthError, Principal};
use bank_core::audit::AuditOutcome;

/// A JSON body: malformed JSON, wrong types and unknown fields answer 400 `malformed-body`, an
/// amount the grammar refuses 400 `invalid-request` naming the field, a body over the limit 413
/// `payload-too-large`. The `Content-Type` must be JSON ([`is_json_content_type`]): another one, or
/// none, answers 415 `unsupported-media-type`.
#[derive(Debug, Clone)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(state.config().body_limit_bytes)
            } else {
                ApiError::malformed_body("the body could not be read")
            }
        })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = T::deserialize(&mut deserializer).and_then(|value| deserializer.end().map(|()| value)).map_err(
            |error| {
                let message = error.to_string();
                match message.strip_prefix(bank_api::INVALID_AMOUNT_PREFIX) {
                    // The grammar's message names the field and quotes no input.
                    Some(detail) => ApiError::invalid(detail.split(" at line ").next().unwrap_or(detail).to_owned()),
                    None => ApiError::malformed_body(json_error_detail(&error)),
                }
            },
        )?;
        Ok(ApiJson(value))
    }
}

/// `application/json` (parameters such as `charset=utf-8` allowed) or `application/<x>+json`.
pub(crate) fn is_json_content_type(value: Option<&axum::http::HeaderValue>) -> bool {
    value.and_then(|value| value.to_str().ok()).is_some_and(|text| {
        let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|sub| sub.len() > "+json".len() && sub.ends_with("+json"))
    })
}

/// What went wrong in a body, without echoing it (it may hold a password).
fn json_error_detail(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("invalid JSON at line {} column {}", error.line(), error.column())
        }
        // serde's type errors quote the value given (which may be a secret): keep only what was
        // expected. Other data errors (unknown or missing field) name fields, not values.
        Category::Data => {
            let message = error.to_string();
            if message.starts_with("invalid type") || message.starts_with("invalid value") {
                let expected = message.split_once(", expected ").map_or("", |(_, rest)| rest);
                format!("a field has the wrong type or value; expected {expected}")
            } else {
                message
            }
        }
    }
}

/// A JSON answer with a status (`201`, `202`) and optionally `Idempotent-Replayed: true`.
pub(crate) fn json_response<T: serde::Serialize>(status: axum::http::StatusCode, body: &T, replayed: bool) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if replayed {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static("idempotent-replayed"),
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// A query string; a bad one answers 400 `invalid-request`.
#[derive(Debug, Clone)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|query| ApiQuery(query.0))
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))
    }
}

/// The verified principal of `Authorization: Bearer <jwt>`, after the per-subject rate limit.
#[derive(Debug, Clone)]
pub(crate) struct Authed(pub(crate) Principal);

impl Authed {
    pub(crate) fn is_operator(&self) -> bool {
        self.0.has_role(Role::Operator)
    }

    /// The audit records' subject: the user id.
    pub(crate) fn subject(&self) -> String {
        self.0.user.to_string()
    }

    /// Who is asking, as the core services see it.
    pub(crate) fn viewer(&self) -> bank_core::accounts::Viewer {
        bank_core::accounts::Viewer { user: self.0.user, operator: self.is_operator() }
    }

    /// The principal if it is an operator, else 403.
    pub(crate) fn require_operator(&self) -> Result<&Principal, ApiError> {
        if self.is_operator() { Ok(&self.0) } else { Err(ApiError::forbidden()) }
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = match bearer_principal(parts, state).await {
            Ok(principal) => principal,
            Err((reason, error)) => {
                // A refused token is audited (queued: it changed nothing), naming why, never the
                // token. The subject is unknown: the token was not trusted.
                let audit = AuditContext::from_parts(parts, state);
                let target = format!("route:{}", parts.uri.path().chars().take(128).collect::<String>());
                let action = format!("auth.token.refused.{reason}");
                let _ = audit.log(state, Delivery::Queued, ANONYMOUS, &action, target, AuditOutcome::Refused).await;
                return Err(error);
            }
        };
        state.limits().per_subject(&principal.user).await.map_err(ApiError::rate_limited)?;
        tracing::Span::current().record("subject", tracing::field::display(&principal.user));
        Ok(Authed(principal))
    }
}

/// The principal of the request's bearer token, or why there is none (`missing`, `malformed`,
/// `invalid`, `mfa_missing`) with the problem to answer.
async fn bearer_principal(parts: &Parts, state: &AppState) -> Result<Principal, (&'static str, ApiError)> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(("missing", ApiError::unauthorized("an Authorization: Bearer token is required")))?;
    let text = value.to_str().map_err(|_| ("malformed", ApiError::unauthorized("malformed Authorization header")))?;
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(("malformed", ApiError::unauthorized("an Authorization: Bearer token is required"))),
    };
    state.auth().verifier.verify(token).await.map_err(|error| {
        let reason = match &error {
            AuthError::MfaMissing => "mfa_missing",
            _ => "invalid",
        };
        (reason, ApiError::from_auth(error))
    })
}

/// The client's address: the last `X-Forwarded-For` entry when trusted (the one the proxy
/// appended), else the connection's peer, else `0.0.0.0` (served without connect info).
pub(crate) fn client_ip(
    parts_headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trust_forwarded_for: bool,
) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = parts_headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return ip;
    }
    extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| addr.ip())
}

/// The client IP as an extractor (never rejects).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.headers, &parts.extensions, state.config().trust_forwarded_for)))
    }
}

/// The required `Idempotency-Key` header: 1 to 255 printable ASCII characters, else 400
/// `idempotency-key-missing`.
#[derive(Debug, Clone)]
pub(crate) struct IdempotencyKeyHeader(pub(crate) IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(bank_api::IDEMPOTENCY_KEY_HEADER)
            .ok_or_else(|| ApiError::idempotency_key_missing("this route requires an Idempotency-Key header"))?;
        let text = value.to_str().map_err(|_| {
            ApiError::idempotency_key_missing("Idempotency-Key must be 1 to 255 printable ASCII characters")
        })?;
        let key = IdempotencyKey::new(text).map_err(|error| ApiError::idempotency_key_missing(error.to_string()))?;
        Ok(IdempotencyKeyHeader(key))
    }
}

/// What an audit record needs from the request: its id and the client address (never a header
/// value beyond these, never a body).
#[derive(Debug, Clone)]
pub(crate) struct AuditContext {
    pub(crate) request_id: Option<String>,
    pub(crate) client_ip: IpAddr,
}

impl FromRequestParts<AppState> for AuditContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(AuditContext::from_parts(parts, state))
    }
}

/// How an audit record is written (see [`crate::audit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Committed before the request answers.
    Durable,
    /// Queued to the bounded buffer; the request answers at once.
    Queued,
}

/// Who the audit record of an unauthenticated request names.
pub(crate) const ANONYMOUS: &str = "anonymous";

impl AuditContext {
    fn from_parts(parts: &Parts, state: &AppState) -> AuditContext {
        let request_id = parts.extensions.get::<super::middleware::RequestId>().map(|id| id.0.clone());
        let client_ip = client_ip(&parts.headers, &parts.extensions, state.config().trust_forwarded_for);
        AuditContext { request_id, client_ip }
    }

    /// The operator `subject` acting from this request, as the core services audit it.
    pub(crate) fn actor(&self, subject: &crate::auth::Principal) -> bank_core::audit::Actor {
        bank_core::audit::Actor {
            user: subject.user,
            request_id: self.request_id.clone(),
            client_ip: Some(self.client_ip.to_string()),
        }
    }

    /// Writes the record of `subject`'s `action` on `target` from this request. The record holds
    /// ids and names only, never a secret.
    pub(crate) async fn log(
        &self,
        state: &AppState,
        delivery: Delivery,
        subject: impl Into<String>,
        action: &str,
        target: String,
        outcome: bank_core::audit::AuditOutcome,
    ) -> Result<(), ApiError> {
        self.write(state, delivery, self.new_record(state, subject, action, target, outcome)).await
    }

    /// The record of `subject`'s `action` on `target` from this request, as of now.
    pub(crate) fn new_record(
        &self,
        state: &AppState,
        subject: impl Into<String>,
        action: &str,
        target: String,
        outcome: bank_core::audit::AuditOutcome,
    ) -> bank_core::audit::NewAuditRecord {
        bank_core::audit::NewAuditRecord::new(state.backend().payments.clock.now(), subject, action, target, outcome)
            .with_request(self.request_id.clone(), Some(self.client_ip.to_string()))
    }

    /// Writes `record` as `delivery` says; a failure is logged and answered as a 503.
    pub(crate) async fn write(
        &self,
        state: &AppState,
        delivery: Delivery,
        record: bank_core::audit::NewAuditRecord,
    ) -> Result<(), ApiError> {
        let action = record.action.clone();
        let written = match delivery {
            Delivery::Durable => state.audit().durable(record).await.map(|_| ()),
            Delivery::Queued => state.audit().queued(record).await,
        };
        written.map_err(|error| {
            tracing::error!(%error, action = %action, "audit append failed");
            ApiError::from_core(error)
        })
    }

    /// Records how an action ended and hands `result` back: `action` done when it succeeded,
    /// `action.refused.<problem code>` when it was refused. An action that succeeded is answered
    /// only once its record is written (else 503); a refusal is answered as it was even if its
    /// record could not be written (that failure is logged).
    pub(crate) async fn outcome<T>(
        &self,
        state: &AppState,
        delivery: Delivery,
        subject: impl Into<String>,
        action: &str,
        target: String,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        use bank_core::audit::AuditOutcome;
        match result {
            Ok(value) => {
                self.log(state, delivery, subject, action, target, AuditOutcome::Done).await?;
                Ok(value)
            }
            Err(error) => {
                let refused = format!("{action}.refused.{}", error.code());
                let _ = self.log(state, delivery, subject, &refused, target, AuditOutcome::Refused).await;
                Err(error)
            }
        }
    }

    /// Appends an operator action to the audit log, durably. An append that fails is logged and
    /// answered as an internal error only where the action has not happened yet (callers audit
    /// before acting when they can); the record never holds a secret.
    pub(crate) async fn record(
        &self,
        state: &AppState,
        subject: &crate::auth::Principal,
        action: &str,
        target: String,
        outcome: bank_core::audit::AuditOutcome,
    ) -> Result<(), ApiError> {
        self.log(state, Delivery::Durable, subject.user.to_string(), action, target, outcome).await
    }
}
