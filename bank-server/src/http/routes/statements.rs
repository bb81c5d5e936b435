//! Statements: an account's list (`GET /v1/accounts/{id}/statements`), a short-lived download
//! link (`GET /v1/statements/{statement_id}/download`), an operator's run of a period
//! (`POST /v1/admin/statements?period=YYYY-MM`), and the signed links themselves
//! (`GET /files/{key}?expires=&signature=`), which this server serves for the local file store
//! (on AWS the link is an S3 pre-signed URL and S3 serves it).
//!
//! Access: the owner and operators (who may read every account) list and link; anyone else's,
//! a missing and a malformed statement answer the same 404. A link is its own credential: no
//! token, but an HMAC over the object's key and expiry; an expired, altered or malformed link is
//! 403 and reads nothing.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bank_api::{Page, Problem, StatementLink, StatementRun, StatementSummary};
use bank_core::Error;
use bank_core::statements::{Generated, Initiator, Period, RunReport, StatementId, StatementMeta};
use serde::Deserialize;

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiQuery, AuditContext, Authed};
use crate::http::problem::ApiError;

fn summary(meta: &StatementMeta) -> StatementSummary {
    StatementSummary {
        id: meta.id.to_string(),
        account_id: *meta.id.account_id.as_uuid(),
        period: meta.id.period.to_string(),
        sha256: meta.sha256.clone(),
        size: meta.size,
        created_at: meta.created_at,
        retain_until: meta.retain_until,
    }
}

/// The account's statements, oldest period first (one page: `next_cursor` is null).
#[utoipa::path(get, path = "/v1/accounts/{id}/statements", tag = "statements", operation_id = "list_statements",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account's statements", body = Page<StatementSummary>),
        (status = 404, description = "No such account of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Authed,
    Path(id): Path<String>,
) -> Result<Json<Page<StatementSummary>>, ApiError> {
    let metas = state.statements().list(&caller.viewer(), convert::account_id(&id)?).await?;
    Ok(Json(Page::new(metas.iter().map(summary).collect(), None)))
}

/// A link to the statement's PDF, valid for at most five minutes, with the SHA-256 the PDF has.
/// The hand-out is in the audit log (`statement.downloaded`).
#[utoipa::path(get, path = "/v1/statements/{statement_id}/download", tag = "statements", operation_id = "download_statement",
    security(("bearer" = [])),
    params(("statement_id" = String, Path, description = "`<account id>_<YYYY-MM>`, as listed",
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}_[0-9]{4}-(0[1-9]|1[0-2])$")),
    responses(
        (status = 200, description = "A short-lived link", body = StatementLink),
        (status = 404, description = "No such statement of the caller (missing, another owner's or malformed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn download(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Json<StatementLink>, ApiError> {
    let id: StatementId = id.parse().map_err(|_| ApiError::not_found("statement"))?;
    let link = match state.statements().download_link(&caller.viewer(), &audit.actor(&caller.0), id).await {
        Err(Error::BlobNotFound(_) | Error::AccountNotFound(_)) => return Err(ApiError::not_found("statement")),
        other => other?,
    };
    Ok(Json(StatementLink { url: link.url, expires_at: link.expires_at, sha256: link.sha256 }))
}

/// `?period=YYYY-MM&account_id=` of `POST /v1/admin/statements`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunParams {
    /// The month, `YYYY-MM` (UTC), 1970-01 to 9998-12; it must have ended.
    #[param(pattern = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])$")]
    pub(crate) period: String,
    /// Only this account (default: every customer account).
    pub(crate) account_id: Option<String>,
}

/// Makes the period's statements that are not stored yet (every customer account's, or one
/// account's): running a period again creates nothing and changes nothing. A period that has not
/// ended, or in which no account (or not this one) was open, is refused (400), nothing stored.
#[utoipa::path(post, path = "/v1/admin/statements", tag = "admin", operation_id = "run_statements",
    security(("bearer" = [])), params(RunParams),
    responses(
        (status = 200, description = "What the run did", body = StatementRun),
        (status = 400, description = "Malformed period, a period that has not ended, or one with no account open", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "A statement did not reconcile (nothing stored for it)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn run(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    ApiQuery(params): ApiQuery<RunParams>,
) -> Result<Json<StatementRun>, ApiError> {
    let operator = caller.require_operator()?;
    let period: Period = params.period.parse()?;
    let initiator = Initiator::Operator(audit.actor(operator));
    let report = match params.account_id {
        Some(account) => {
            let account = convert::account_id(&account)?;
            let generated = state.statements().generate(&initiator, account, period).await?;
            let created = u64::from(matches!(generated, Generated::Created(_)));
            RunReport { period, created, existing: 1 - created, skipped: 0, failed: Vec::new(), failed_count: 0 }
        }
        None => state.statements().run_period(&initiator, period).await?.require_some_account()?,
    };
    Ok(Json(StatementRun {
        period: report.period.to_string(),
        created: report.created,
        existing: report.existing,
        skipped: report.skipped,
        failed: report.failed_count,
    }))
}

/// The bytes behind a signed link this server handed out. The link is the credential: an
/// expired, altered or malformed one is 403.
#[utoipa::path(get, path = "/files/{key}", tag = "statements", operation_id = "signed_file",
    params(
        ("key" = String, Path, description = "The object's key, as in the link"),
        ("expires" = i64, Query, description = "Unix time the link expires at"),
        ("signature" = String, Query, description = "Hex HMAC-SHA256 of the key and expiry"),
    ),
    responses(
        (status = 200, description = "The file (a statement's PDF)", content_type = "application/pdf", body = Vec<u8>),
        (status = 403, description = "Expired, altered or malformed link", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This server serves no files (the object store serves its own links)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Some(files) = state.backend().served_files.clone() else { return Err(ApiError::not_found("file")) };
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            bank_api::problem_types::FORBIDDEN,
            "Forbidden",
            "the link is invalid or has expired",
        )
    };
    let (expires, signature) = query
        .as_deref()
        .and_then(|q| q.strip_prefix("expires="))
        .and_then(|q| q.split_once("&signature="))
        .ok_or_else(refused)?;
    let expires: i64 = expires.parse().map_err(|_| refused())?;
    let now = state.backend().payments.clock.now();
    files.signer().verify(&key, expires, signature, now).map_err(|_| refused())?;
    let (meta, bytes) = match bank_core::ports::BlobStore::get(files.as_ref(), &key).await {
        // Signed, but gone (deleted after its retention): the link grants nothing any more.
        Err(Error::BlobNotFound(_)) => return Err(refused()),
        other => other?,
    };
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    let content_type =
        HeaderValue::from_str(&meta.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", meta.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    let file_name = key.rsplit('/').next().unwrap_or("file");
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}
