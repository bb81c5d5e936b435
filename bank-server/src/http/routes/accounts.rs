//! `/v1/accounts`: open, list, read (with balances) and page through history. A customer sees
//! only their own accounts; another owner's, a missing one and a malformed id answer the same 404.
//! Operators may read any account.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bank_api::{Account, HistoryEntry, OpenAccountRequest, Page, Problem};
use bank_core::Error;
use bank_core::accounts::AccountWithBalance;
use bank_core::audit::AuditOutcome;
use bank_core::page::PageQuery;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, ApiQuery, AuditContext, Authed, Delivery, json_response};
use crate::http::problem::ApiError;

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

fn with_balance(view: &AccountWithBalance) -> Result<Account, ApiError> {
    convert::account(&view.account, &view.balance)
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
    let currency = convert::currency(&request.currency)?;
    let opened = match state.accounts().open(&caller.viewer(), request.name, currency).await {
        Err(refused @ Error::SeparationOfDuties(_)) => {
            let target = format!("customer:{}", caller.0.user);
            audit.record(&state, &caller.0, "account.open.refused.operator", target, AuditOutcome::Refused).await?;
            tracing::warn!("operator tried to open an account for itself");
            return Err(refused.into());
        }
        Err(error) => {
            let target = format!("customer:{}", caller.0.user);
            let error = Err(ApiError::from(error));
            return audit.outcome(&state, Delivery::Durable, caller.subject(), "account.open", target, error).await;
        }
        Ok(opened) => opened,
    };
    let body = with_balance(&opened)?;
    let target = format!("account:{}", opened.account.id);
    let answer = Ok(json_response(StatusCode::CREATED, &body, false));
    audit.outcome(&state, Delivery::Durable, caller.subject(), "account.opened", target, answer).await
}

/// The caller's accounts, oldest first (one page: `next_cursor` is null).
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", operation_id = "list_accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's accounts", body = Page<Account>),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
) -> Result<Json<Page<Account>>, ApiError> {
    let listed = async {
        let accounts = state.accounts().list(&caller.viewer()).await?;
        let items = accounts.iter().map(with_balance).collect::<Result<Vec<_>, _>>()?;
        Ok(Json(Page::new(items, None)))
    }
    .await;
    let target = format!("customer:{}", caller.0.user);
    audit.outcome(&state, Delivery::Queued, caller.subject(), "account.list", target, listed).await
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
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    let viewed = async {
        let view = state.accounts().view(&caller.viewer(), convert::account_id(&id)?).await?;
        Ok(Json(with_balance(&view)?))
    }
    .await;
    let target = format!("account:{}", id.chars().take(64).collect::<String>());
    audit.outcome(&state, Delivery::Queued, caller.subject(), "account.view", target, viewed).await
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
    audit: AuditContext,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let viewed = async {
        let query = PageQuery::parse(params.limit, params.cursor.as_deref())?;
        let page = state.accounts().history(&caller.viewer(), convert::account_id(&id)?, query).await?;
        let items = page.items.iter().map(convert::history_entry).collect();
        Ok(Json(Page::new(items, page.next_cursor.map(|cursor| cursor.to_string()))))
    }
    .await;
    let target = format!("account:{}", id.chars().take(64).collect::<String>());
    audit.outcome(&state, Delivery::Queued, caller.subject(), "account.history", target, viewed).await
}
