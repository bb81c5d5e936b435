//! `/v1/auth/*` and the JWK Set of the built-in issuer. With an external issuer these answer 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bank_api::{LoginRequest, LogoutRequest, Problem, RefreshRequest, RegisterRequest, Registered, Tokens};

use crate::auth::issuer::{self, TokenIssuer};
use crate::http::AppState;
use crate::http::extract::{ApiJson, ClientIp, json_response};
use crate::http::problem::ApiError;

fn issuer(state: &AppState) -> Result<&Arc<TokenIssuer>, ApiError> {
    state.auth().issuer.as_ref().ok_or_else(|| ApiError::not_found("route"))
}

fn tokens(tokens: issuer::Tokens) -> Tokens {
    Tokens {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expires_in,
        token_type: bank_api::TOKEN_TYPE_BEARER.to_owned(),
    }
}

fn login_throttle(state: &AppState, ip: ClientIp) -> Result<(), ApiError> {
    state.limits().login_per_ip.check(&ip.0).map_err(ApiError::rate_limited)
}

/// Registers a customer; the answer holds the TOTP secret to enrol (shown once).
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Malformed body, invalid email or weak password", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let issuer = issuer(&state)?;
    login_throttle(&state, ip)?;
    // A new address is taken as written (the OpenAPI pattern): no surrounding whitespace to trim
    // silently. Login still trims, so an address pasted with a space signs in.
    if request.email.trim() != request.email {
        return Err(ApiError::invalid("the email address must not start or end with whitespace"));
    }
    let registered = issuer.register(&request.email, &request.password).await?;
    let body = Registered {
        user_id: *registered.user_id.as_uuid(),
        totp_secret: registered.totp_secret,
        otpauth_uri: registered.otpauth_uri,
    };
    Ok(json_response(StatusCode::CREATED, &body, false))
}

/// Logs in with password and TOTP code.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens", body = Tokens),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Invalid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<Tokens>, ApiError> {
    let issuer = issuer(&state)?;
    login_throttle(&state, ip)?;
    let issued = issuer.login(&request.email, &request.password, &request.totp_code, ip.0).await?;
    Ok(Json(tokens(issued)))
}

/// Trades a refresh token for new tokens (the old one is spent).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "Tokens", body = Tokens),
        (status = 401, description = "Unknown, expired or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<Tokens>, ApiError> {
    let issued = issuer(&state)?.refresh(&request.refresh_token).await?;
    Ok(Json(tokens(issued)))
}

/// Ends the session of a refresh token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204, description = "Logged out")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    issuer(&state)?.logout(&request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys of the built-in issuer.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses(
        (status = 200, description = "JWK Set", body = Object),
        (status = 404, description = "No built-in issuer", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jwks = issuer(&state)?.keys().jwks();
    Ok(([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], Json(jwks)).into_response())
}
