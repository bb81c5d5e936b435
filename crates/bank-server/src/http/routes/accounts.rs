//! `/v1/accounts`: open, list, read (with balances) and page through history. A customer sees
//! only their own accounts; another owner's, a missing one and a malformed id answer the same 404.
//! Operators may read any account.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bank_api::{Account, HistoryEntry, OpenAccountRequest, Page, Problem};
use bank_core::Error;
use bank_core::account::NewAccount;
use bank_core::audit::AuditOutcome;
use bank_core::ledger::{Cursor, HistoryQuery};
use bank_core::ports::ACCOUNTS_PER_OWNER_MAX;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, ApiQuery, AuditContext, Authed, json_response};
use crate::http::problem::ApiError;

/// Default page size of `GET /v1/accounts/{id}/transactions`.
pub(crate) const HISTORY_PAGE_DEFAULT: u32 = 50;

/// `?limit=&cursor=` of a list route.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// 1 to 100.
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// The account `id` if `caller` may read it (its owner, or an operator), else 404.
pub(crate) async fn readable_account(
    state: &AppState,
    caller: &Authed,
    id: &str,
) -> Result<bank_core::account::Account, ApiError> {
    let id = convert::account_id(id)?;
    match state.backend().ledger.account(id).await {
        Ok(account) if account.owner == caller.0.user || caller.is_operator() => Ok(account),
        Ok(_) | Err(Error::AccountNotFound(_)) => Err(ApiError::not_found("account")),
        Err(other) => Err(other.into()),
    }
}

async fn with_balance(state: &AppState, account: &bank_core::account::Account) -> Result<Account, ApiError> {
    let balance = state.backend().ledger.balance(account.id).await?;
    convert::account(account, &balance)
}

/// Opens an account owned by the caller. An operator may not own a customer account (separation
/// of duties: an operator who owned one could credit it): 403 `separation-of-duties`.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", operation_id = "open_account", request_body = OpenAccountRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Opened", body = Account),
        (status = 409, description = "The owner already holds 100 accounts, the most one owner may hold", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid currency or name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators may not own accounts", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn open(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    ApiJson(request): ApiJson<OpenAccountRequest>,
) -> Result<Response, ApiError> {
    if caller.is_operator() {
        let target = format!("customer:{}", caller.0.user);
        audit.record(&state, &caller.0, "account.open.refused.operator", target, AuditOutcome::Refused).await?;
        tracing::warn!("operator tried to open an account for itself");
        return Err(ApiError::separation_of_duties("operators may not own customer accounts"));
    }
    let currency = convert::currency(&request.currency)?;
    // The ledger enforces the cap atomically (a racing open past it answers 400 from there); this
    // check answers the usual case as what it is, a conflict with the owner's current state.
    if state.backend().ledger.accounts_of(caller.0.user).await?.len() >= ACCOUNTS_PER_OWNER_MAX {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            bank_api::problem_types::CONFLICT,
            "Conflict",
            format!("an owner may hold at most {ACCOUNTS_PER_OWNER_MAX} accounts"),
        ));
    }
    let new = NewAccount::customer(caller.0.user, request.name, currency);
    let account = state.backend().ledger.open_account(new).await?;
    tracing::info!(account_id = %account.id, "account opened");
    let body = with_balance(&state, &account).await?;
    Ok(json_response(StatusCode::CREATED, &body, false))
}

/// The caller's accounts, oldest first (one page: `next_cursor` is null).
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", operation_id = "list_accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's accounts", body = Page<Account>),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(State(state): State<AppState>, caller: Authed) -> Result<Json<Page<Account>>, ApiError> {
    let accounts = state.backend().ledger.accounts_of(caller.0.user).await?;
    let mut items = Vec::with_capacity(accounts.len());
    for account in &accounts {
        items.push(with_balance(&state, account).await?);
    }
    Ok(Json(Page::new(items, None)))
}

/// One account with its balances.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", operation_id = "get_account", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 404, description = "No such account of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    caller: Authed,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    let account = readable_account(&state, &caller, &id).await?;
    Ok(Json(with_balance(&state, &account).await?))
}

/// An account's posted entries, newest first.
#[utoipa::path(get, path = "/v1/accounts/{id}/transactions", tag = "accounts", operation_id = "account_transactions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Account id"), PageParams),
    responses(
        (status = 200, description = "One page of history", body = Page<HistoryEntry>),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn transactions(
    State(state): State<AppState>,
    caller: Authed,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let account = readable_account(&state, &caller, &id).await?;
    let cursor = params.cursor.as_deref().map(str::parse::<Cursor>).transpose()?;
    let query = HistoryQuery::new(params.limit.unwrap_or(HISTORY_PAGE_DEFAULT), cursor)?;
    let page = state.backend().ledger.history(account.id, query).await?;
    let items = page.items.iter().map(convert::history_entry).collect();
    Ok(Json(Page::new(items, page.next_cursor.map(|cursor| cursor.to_string()))))
}
