//! `/v1/admin/*`: operator-only routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bank_api::{Deposit, DepositRequest, Problem};
use bank_core::Error;
use bank_core::ledger::{EntryKey, NewEntry, PostedEntry};
use bank_core::money::{Money, in_minor_units};

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, Authed, IdempotencyKeyHeader, json_response};
use crate::http::problem::ApiError;

/// Ledger leg of a deposit entry.
const DEPOSIT_LEG: u16 = 0;

/// Credits a customer account from the bank's deposits account of its currency. Idempotent on
/// (operator, `Idempotency-Key`): the ledger entry is keyed by an id derived from both, so a
/// replay answers the first deposit and moves no money; another request under the key is 422.
#[utoipa::path(post, path = "/v1/admin/deposits", tag = "admin", request_body = DepositRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    responses(
        (status = 201, description = "Posted (or replayed)", body = Deposit),
        (status = 400, description = "Invalid amount or missing key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Key reused with another request; account not open", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn deposit(
    State(state): State<AppState>,
    caller: Authed,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<DepositRequest>,
) -> Result<Response, ApiError> {
    let operator = caller.require_operator()?;
    let ledger = &state.backend().ledger;
    let account_id = convert::account_id(&request.account_id.to_string())?;
    let account = match ledger.account(account_id).await {
        Ok(account) => account,
        Err(Error::AccountNotFound(_)) => return Err(ApiError::not_found("account")),
        Err(other) => return Err(other.into()),
    };
    if account.owner == operator.user {
        tracing::warn!(account_id = %account.id, "operator tried to credit its own account");
        return Err(ApiError::separation_of_duties("an operator may not credit an account it owns"));
    }
    let money = convert::money_of(request.amount, account.currency)?;
    let from = state.backend().system.deposits(account.currency)?;
    let id = convert::deposit_transfer_id(&operator.user.to_string(), key.as_str())?;
    let entry_key = EntryKey::new(id, DEPOSIT_LEG);
    let entry = NewEntry::transfer(entry_key, from, account.id, money, request.reference)?;
    let (posted, replayed) = match ledger.entry(entry_key).await {
        Ok(posted) if entry.is_same_as(&posted) => (posted, true),
        Ok(_) => return Err(ApiError::idempotency_key_reused()),
        Err(Error::EntryNotFound(_)) => (ledger.post(entry).await?, false),
        Err(other) => return Err(other.into()),
    };
    tracing::info!(account_id = %account.id, transfer_id = %id, replayed, "deposit posted");
    Ok(json_response(StatusCode::CREATED, &deposit_of(&posted, account.id, money), replayed))
}

fn deposit_of(posted: &PostedEntry, account: bank_core::ids::AccountId, money: Money) -> Deposit {
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
