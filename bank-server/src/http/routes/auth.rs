//! `/v1/auth/*` and the JWK Set of the built-in issuer. With an external issuer these answer 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bank_api::{LoginRequest, LogoutRequest, Problem, RefreshRequest, RegisterRequest, Registered, Tokens};

use crate::auth::issuer::{self, TokenIssuer};
use crate::http::AppState;
use bank_core::audit::AuditOutcome;

use crate::auth::AuthError;
use crate::http::extract::{ANONYMOUS, ApiJson, AuditContext, ClientIp, Delivery, json_response};
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

async fn login_throttle(state: &AppState, ip: ClientIp) -> Result<(), ApiError> {
    state.limits().login_per_ip(&ip.0).await.map_err(ApiError::rate_limited)
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
    audit: AuditContext,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let issuer = issuer(&state)?;
    let registered = async {
        login_throttle(&state, ip).await?;
        // A new address is taken as written (the OpenAPI pattern): no surrounding whitespace to
        // trim silently. Login still trims, so an address pasted with a space signs in.
        if request.email.trim() != request.email {
            return Err(ApiError::invalid("the email address must not start or end with whitespace"));
        }
        Ok(issuer.register(&request.email, &request.password).await?)
    }
    .await;
    let registered = match registered {
        Ok(registered) => registered,
        Err(error) => {
            let refused = Err(error);
            return audit
                .outcome(&state, Delivery::Durable, ANONYMOUS, "auth.register", "user:new".into(), refused)
                .await;
        }
    };
    // The record names the new user by id (never the email, the password or the TOTP secret),
    // and is committed before the secret is handed out.
    let user = registered.user_id.to_string();
    audit
        .log(&state, Delivery::Durable, user.clone(), "auth.registered", format!("user:{user}"), AuditOutcome::Done)
        .await?;
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
    audit: AuditContext,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<Tokens>, ApiError> {
    let issuer = issuer(&state)?;
    let unknown = || "user:unknown".to_owned();
    if let Err(error) = login_throttle(&state, ip).await {
        let refused = Err(error);
        return audit.outcome(&state, Delivery::Durable, ANONYMOUS, "auth.login", unknown(), refused).await;
    }
    // Every refusal is recorded with its reason (the client gets one generic answer); the
    // record never holds the email, the password or the code.
    match issuer.login_detailed(&request.email, &request.password, &request.totp_code, ip.0).await {
        Ok((issued, user)) => {
            let user = user.to_string();
            let target = format!("user:{user}");
            audit.log(&state, Delivery::Durable, user, "auth.login", target, AuditOutcome::Done).await?;
            Ok(Json(tokens(issued)))
        }
        Err(refused) => {
            let subject = refused.user.map_or_else(|| ANONYMOUS.to_owned(), |user| user.to_string());
            let target = refused.user.map_or_else(unknown, |user| format!("user:{user}"));
            let action = format!("auth.login.refused.{}", refused.reason);
            let _ = audit.log(&state, Delivery::Durable, subject, &action, target, AuditOutcome::Refused).await;
            Err(ApiError::from_auth(refused.error))
        }
    }
}

/// Trades a refresh token for new tokens (the old one is spent).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "Tokens", body = Tokens),
        (status = 401, description = "Unknown, expired or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    audit: AuditContext,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<Tokens>, ApiError> {
    match issuer(&state)?.refresh_detailed(&request.refresh_token).await {
        Ok((issued, user)) => {
            let user = user.to_string();
            let target = format!("user:{user}");
            audit.log(&state, Delivery::Durable, user, "auth.refresh", target, AuditOutcome::Done).await?;
            Ok(Json(tokens(issued)))
        }
        Err((error, user)) => {
            let reason = match &error {
                AuthError::RefreshReused => "reused",
                AuthError::InvalidToken(_) => "invalid",
                _ => "error",
            };
            let subject = user.map_or_else(|| ANONYMOUS.to_owned(), |user| user.to_string());
            let target = user.map_or_else(|| "session:unknown".to_owned(), |user| format!("user:{user}"));
            let action = format!("auth.refresh.refused.{reason}");
            let _ = audit.log(&state, Delivery::Durable, subject, &action, target, AuditOutcome::Refused).await;
            Err(ApiError::from_auth(error))
        }
    }
}

/// Ends the session of a refresh token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204, description = "Logged out")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    audit: AuditContext,
    ApiJson(request): ApiJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let ended = issuer(&state)?.logout_detailed(&request.refresh_token).await?;
    let subject = ended.map_or_else(|| ANONYMOUS.to_owned(), |user| user.to_string());
    let target = ended.map_or_else(|| "session:unknown".to_owned(), |user| format!("user:{user}"));
    audit.log(&state, Delivery::Durable, subject, "auth.logout", target, AuditOutcome::Done).await?;
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
