//! `/v1/transfers`: submit (idempotent, `Idempotency-Key`), read one, list an account's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bank_api::{Page, Problem, Transfer, TransferRequest};
use bank_core::Error;
use bank_core::payments::Caller;
use serde::Deserialize;

use super::accounts::readable_account;
use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, ApiQuery, Authed, IdempotencyKeyHeader, json_response};
use crate::http::problem::ApiError;

/// Default page size of `GET /v1/transfers`.
pub(crate) const TRANSFERS_PAGE_DEFAULT: u32 = 50;

/// `?account_id=&limit=&cursor=`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// The account whose transfers (sent or received) to list.
    pub(crate) account_id: String,
    /// 1 to 100.
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Submits a transfer. A replay with the same key and body answers the first response with
/// `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", operation_id = "create_transfer", request_body = TransferRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    responses(
        (status = 202, description = "Accepted (or replayed)", body = Transfer),
        (status = 400, description = "Invalid request or missing key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Source account not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Same key in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Insufficient funds, account not open, currency mismatch, key reused", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Authed,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<TransferRequest>,
) -> Result<Response, ApiError> {
    let request = convert::transfer_request(request)?;
    let accepted = state.service().accept(&Caller { customer: caller.0.user }, key, request).await?;
    tracing::info!(transfer_id = %accepted.transfer.id, replayed = accepted.replayed, "transfer accepted");
    Ok(json_response(StatusCode::ACCEPTED, &convert::transfer(&accepted.transfer), accepted.replayed))
}

/// One transfer the caller sent or received (operators: any).
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers", operation_id = "get_transfer", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Transfer id")),
    responses(
        (status = 200, description = "The transfer", body = Transfer),
        (status = 404, description = "No such transfer of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    caller: Authed,
    Path(id): Path<String>,
) -> Result<Json<Transfer>, ApiError> {
    let id = convert::transfer_id(&id)?;
    let transfer = if caller.is_operator() {
        state.backend().payments.transfers.get(id).await
    } else {
        state.service().get(&Caller { customer: caller.0.user }, id).await
    };
    match transfer {
        Ok(transfer) => Ok(Json(convert::transfer(&transfer))),
        Err(Error::TransferNotFound(_)) => Err(ApiError::not_found("transfer")),
        Err(other) => Err(other.into()),
    }
}

/// Transfers from or to one of the caller's accounts, newest first.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers", operation_id = "list_transfers", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "One page of transfers", body = Page<Transfer>),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Authed,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Transfer>>, ApiError> {
    let account = readable_account(&state, &caller, &params.account_id).await?;
    let limit = params.limit.unwrap_or(TRANSFERS_PAGE_DEFAULT);
    if limit == 0 || limit > bank_api::PAGE_LIMIT_MAX {
        return Err(ApiError::invalid(format!("limit must be 1 to {}", bank_api::PAGE_LIMIT_MAX)));
    }
    let before_seq = params.cursor.as_deref().map(convert::parse_transfer_cursor).transpose()?;
    let limit = limit as usize;
    let transfers = state.backend().payments.transfers.list_for_account(account.id, limit, before_seq).await?;
    let next_cursor = match transfers.last() {
        Some(last) if transfers.len() == limit && last.seq > 1 => Some(convert::transfer_cursor(last.seq)),
        _ => None,
    };
    Ok(Json(Page::new(transfers.iter().map(convert::transfer).collect(), next_cursor)))
}
