//! `/v1/transfers`: submit (idempotent, `Idempotency-Key`), read one, list an account's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bank_api::{Page, Problem, Transfer, TransferRequest};
use bank_core::audit::AuditOutcome;
use bank_core::page::PageQuery;
use bank_core::payments::Caller;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, ApiQuery, AuditContext, Authed, Delivery, IdempotencyKeyHeader, json_response};
use crate::http::problem::ApiError;

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
    audit: AuditContext,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<TransferRequest>,
) -> Result<Response, ApiError> {
    let request = convert::transfer_request(request)?;
    let from = format!("account:{}", request.from_account_id);
    let subject = caller.subject();
    // An accepted transfer's record is committed with the transfer itself (the relay appends it
    // to the log); a replay's, or a takeover's that found the transfer stored, before the 202.
    let record = |id, replayed: bool| {
        let action = if replayed { "transfer.create.replayed" } else { "transfer.created" };
        audit.new_record(&state, subject.clone(), action, format!("transfer:{id}"), AuditOutcome::Done)
    };
    let caller = Caller { customer: caller.0.user };
    match state.service().accept_audited(&caller, key, request, record).await {
        Ok((accepted, unwritten)) => {
            tracing::info!(transfer_id = %accepted.transfer.id, replayed = accepted.replayed, "transfer accepted");
            if let Some(record) = unwritten {
                audit.write(&state, Delivery::Durable, record).await?;
            }
            Ok(json_response(StatusCode::ACCEPTED, &convert::transfer(&accepted.transfer), accepted.replayed))
        }
        Err(error) => {
            let error = ApiError::from(error);
            audit.outcome(&state, Delivery::Durable, subject, "transfer.create", from, Err(error)).await
        }
    }
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
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Json<Transfer>, ApiError> {
    let target = format!("transfer:{}", id.chars().take(64).collect::<String>());
    let viewed = async {
        let transfer = state.service().view(&caller.viewer(), convert::transfer_id(&id)?).await?;
        Ok(Json(convert::transfer(&transfer)))
    }
    .await;
    audit.outcome(&state, Delivery::Queued, caller.subject(), "transfer.view", target, viewed).await
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
    audit: AuditContext,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Transfer>>, ApiError> {
    let target = format!("account:{}", params.account_id.chars().take(64).collect::<String>());
    let listed = async {
        let query = PageQuery::parse(params.limit, params.cursor.as_deref())?;
        let page = state.service().list(&caller.viewer(), convert::account_id(&params.account_id)?, query).await?;
        let items = page.items.iter().map(convert::transfer).collect();
        Ok(Json(Page::new(items, page.next_cursor.map(|cursor| cursor.to_string()))))
    }
    .await;
    audit.outcome(&state, Delivery::Queued, caller.subject(), "transfer.list", target, listed).await
}
