//! `/v1/admin/*`: operator-only routes — deposits (with four eyes above a threshold), deposit
//! requests and their approval, and the audit log.
//!
//! Separation of duties: an operator may not credit an account it owns, and may not approve a
//! deposit it requested (403 `separation-of-duties`). Every operator action, done or refused, is
//! appended to the audit log before the answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bank_api::{AuditEntry, Deposit, DepositRequest, Page, PendingDeposit, PendingDepositStatus, Problem, paths};
use bank_core::Error;
use bank_core::approvals::{self, DepositRequestStatus};
use bank_core::audit::{AUDIT_PAGE_MAX, AuditOutcome};
use bank_core::deposits::DepositOutcome;
use bank_core::ids::{AccountId, TransferId};
use bank_core::ledger::PostedEntry;
use bank_core::money::{Money, in_minor_units};
use serde::Deserialize;

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, ApiQuery, AuditContext, Authed, IdempotencyKeyHeader, json_response};
use crate::http::problem::ApiError;

/// Credits a customer account from the bank's deposits account of its currency. Idempotent on
/// (operator, `Idempotency-Key`): the ledger entry is keyed by an id derived from both, so a
/// replay answers the first deposit and moves no money; another request under the key is 422.
/// Above the four-eyes threshold (`BANK_DEPOSIT_APPROVAL_ABOVE`) nothing is posted: a pending
/// request is stored (202) for another operator to approve.
#[utoipa::path(post, path = "/v1/admin/deposits", tag = "admin", request_body = DepositRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    responses(
        (status = 201, description = "Posted (or replayed)", body = Deposit),
        (status = 202, description = "Above the four-eyes threshold: stored pending a second operator's approval (or replayed)", body = PendingDeposit,
            headers(("Location" = String, description = "The deposit request"))),
        (status = 400, description = "Invalid amount or missing key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, or the operator owns the account (separation of duties)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Key reused with another request; account not open", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Timeout or backend unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn deposit(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<DepositRequest>,
) -> Result<Response, ApiError> {
    let operator = caller.require_operator()?;
    let account =
        state.accounts().readable(&caller.viewer(), convert::account_id(&request.account_id.to_string())?).await?;
    let money = convert::money_of(request.amount, account.currency)?;
    let outcome =
        state.deposits().deposit(&audit.actor(operator), key.as_str(), &account, money, request.reference).await?;
    match outcome {
        DepositOutcome::Posted { entry, account, money, replayed } => {
            Ok(json_response(StatusCode::CREATED, &deposit_of(&entry, account, money), replayed))
        }
        DepositOutcome::Pending { request, replayed } => {
            let mut response = json_response(StatusCode::ACCEPTED, &pending_of(&request), replayed);
            if let Ok(location) = HeaderValue::from_str(&paths::admin_deposit(*request.id.as_uuid())) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
    }
}

/// A second operator approves a pending deposit, which is then posted under the request's id:
/// exactly once, however many times it is approved (a repeated approval answers 200 with
/// `Idempotent-Replayed: true`). The requester may not approve (403 `separation-of-duties`), nor
/// may an operator who owns the account.
#[utoipa::path(post, path = "/v1/admin/deposits/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Deposit request id")),
    responses(
        (status = 201, description = "Approved and posted", body = Deposit),
        (status = 200, description = "Already approved and posted (replayed)", body = Deposit),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, the requester itself, or the account's owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deposit request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Account not open", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Timeout or backend unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn approve_deposit(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let operator = caller.require_operator()?;
    let id: TransferId = id.parse().map_err(|_| ApiError::not_found("deposit request"))?;
    let approved = match state.deposits().approve(&audit.actor(operator), id).await {
        Err(Error::TransferNotFound(_)) => return Err(ApiError::not_found("deposit request")),
        other => other?,
    };
    let replayed = !approved.first;
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    let body = deposit_of(&approved.entry, approved.request.account_id, approved.request.money);
    Ok(json_response(status, &body, replayed))
}

/// One deposit request.
#[utoipa::path(get, path = "/v1/admin/deposits/{id}", tag = "admin", operation_id = "deposit_request",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Deposit request id")),
    responses(
        (status = 200, description = "The request", body = PendingDeposit),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deposit request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn deposit_request(
    State(state): State<AppState>,
    caller: Authed,
    Path(id): Path<String>,
) -> Result<Json<PendingDeposit>, ApiError> {
    caller.require_operator()?;
    let id: TransferId = id.parse().map_err(|_| ApiError::not_found("deposit request"))?;
    match state.backend().deposit_requests.get(id).await? {
        Some(request) => Ok(Json(pending_of(&request))),
        None => Err(ApiError::not_found("deposit request")),
    }
}

/// `?status=pending&limit=` of `GET /v1/admin/deposits`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PendingParams {
    /// Only `pending` (the default) is listed.
    #[param(pattern = "^pending$")]
    pub(crate) status: Option<String>,
    /// 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// Deposit requests waiting for a second operator, oldest first (one page).
#[utoipa::path(get, path = "/v1/admin/deposits", tag = "admin", security(("bearer" = [])), params(PendingParams),
    responses(
        (status = 200, description = "Pending requests", body = Page<PendingDeposit>),
        (status = 400, description = "Unknown status or bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn pending_deposits(
    State(state): State<AppState>,
    caller: Authed,
    ApiQuery(params): ApiQuery<PendingParams>,
) -> Result<Json<Page<PendingDeposit>>, ApiError> {
    caller.require_operator()?;
    if params.status.as_deref().is_some_and(|status| status != "pending") {
        return Err(ApiError::invalid("status must be pending"));
    }
    let limit = page_limit(params.limit)?;
    let pending = state.backend().deposit_requests.pending(limit).await?;
    Ok(Json(Page::new(pending.iter().map(pending_of).collect(), None)))
}

/// `?from_seq=&limit=` of `GET /v1/admin/audit`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// The first `seq` to read (default 1); a page's `next_cursor` is the next one.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) from_seq: Option<u64>,
    /// 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// The audit log, oldest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("bearer" = [])), params(AuditParams),
    responses(
        (status = 200, description = "One page of the audit log", body = Page<AuditEntry>),
        (status = 400, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    caller: Authed,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    caller.require_operator()?;
    let limit = page_limit(params.limit)?.min(AUDIT_PAGE_MAX);
    if params.from_seq.is_some_and(|seq| seq == 0 || i64::try_from(seq).is_err()) {
        return Err(ApiError::invalid(format!("from_seq must be from 1 to {}", i64::MAX)));
    }
    let records = state.backend().audit.list(params.from_seq.unwrap_or(1), limit).await?;
    let next = (records.len() == limit).then(|| records.last().map(|r| (r.seq + 1).to_string())).flatten();
    let items = records
        .into_iter()
        .map(|r| AuditEntry {
            seq: r.seq,
            at: r.record.at,
            subject: r.record.subject,
            action: r.record.action,
            target: r.record.target,
            outcome: match r.record.outcome {
                AuditOutcome::Done => bank_api::AuditOutcome::Done,
                AuditOutcome::Refused => bank_api::AuditOutcome::Refused,
            },
            request_id: r.record.request_id,
            client_ip: r.record.client_ip,
        })
        .collect();
    Ok(Json(Page::new(items, next)))
}

fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(usize::try_from(bank_api::PAGE_LIMIT_MAX).unwrap_or(100)),
        Some(limit) if (1..=bank_api::PAGE_LIMIT_MAX).contains(&limit) => Ok(usize::try_from(limit).unwrap_or(100)),
        Some(_) => Err(ApiError::invalid(format!("limit must be from 1 to {}", bank_api::PAGE_LIMIT_MAX))),
    }
}

fn deposit_of(posted: &PostedEntry, account: AccountId, money: Money) -> Deposit {
    let line = posted.line_of(account).map_or(money, |line| line.money);
    Deposit {
        entry_id: *posted.id.as_uuid(),
        account_id: *account.as_uuid(),
        amount: in_minor_units(line.value(), line.currency),
        currency: line.currency.code().to_owned(),
        reference: posted.reference.clone(),
        posted_at: posted.posted_at,
    }
}

fn pending_of(request: &approvals::DepositRequest) -> PendingDeposit {
    let (status, approved_by, approved_at) = match request.status {
        DepositRequestStatus::Pending => (PendingDepositStatus::PendingApproval, None, None),
        DepositRequestStatus::Approved { by, at } => (PendingDepositStatus::Approved, Some(*by.as_uuid()), Some(at)),
    };
    PendingDeposit {
        id: *request.id.as_uuid(),
        status,
        account_id: *request.account_id.as_uuid(),
        amount: in_minor_units(request.money.value(), request.money.currency),
        currency: request.money.currency.code().to_owned(),
        reference: request.reference.clone(),
        requested_by: *request.requested_by.as_uuid(),
        requested_at: request.requested_at,
        approved_by,
        approved_at,
    }
}
