//! `/v1/admin/*`: operator-only routes — deposits (with four eyes above a threshold), deposit
//! requests and their approval, and the audit log (its pages, latest signed checkpoint, inclusion
//! proofs and verification) — plus the public `/.well-known/audit-key`.
//!
//! Separation of duties: an operator may not credit an account it owns, and may not approve a
//! deposit it requested (403 `separation-of-duties`). Every operator action, done or refused, is
//! appended to the audit log before the answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bank_api::{
    AuditEntry, AuditProof, AuditVerification, Deposit, DepositRequest, Page, PendingDeposit, PendingDepositStatus,
    Problem, paths,
};
use bank_core::Error;
use bank_core::approvals::{self, DepositRequestStatus};
use bank_core::audit::{AUDIT_PAGE_MAX, AuditOutcome};
use bank_core::audit::{AuditRecord, tree, verify};
use bank_core::deposits::DepositOutcome;
use bank_core::ids::{AccountId, TransferId};
use bank_core::ledger::PostedEntry;
use bank_core::money::{Money, in_minor_units};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::convert;
use crate::http::extract::{ApiJson, ApiQuery, AuditContext, Authed, Delivery, IdempotencyKeyHeader, json_response};
use crate::http::problem::ApiError;

/// Credits a customer account from the bank's deposits account of its currency. Idempotent on
/// (operator, `Idempotency-Key`): the ledger entry is keyed by an id derived from both, so a
/// replay answers the first deposit and moves no money; another request under the key is 422.
/// Above the four-eyes threshold (`BANK_DEPOSIT_APPROVAL_ABOVE`) nothing is posted: a pending
/// request is stored (202) for another operator to approve. At or below it the request is stored
/// approved by the operator itself and posted at once (201); should the call be interrupted
/// between the two, the server's deposits sweep posts it within a minute.
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

/// One deposit request: every deposit has one under its id, a deposit at or below the four-eyes
/// threshold approved by the operator who made it.
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
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Json<PendingDeposit>, ApiError> {
    caller.require_operator()?;
    let target = format!("deposit-request:{}", id.chars().take(64).collect::<String>());
    let read = async {
        let id: TransferId = id.parse().map_err(|_| ApiError::not_found("deposit request"))?;
        match state.backend().deposit_requests.get(id).await? {
            Some(request) => Ok(Json(pending_of(&request))),
            None => Err(ApiError::not_found("deposit request")),
        }
    }
    .await;
    // An operator's read: recorded durably, like every operator action.
    audit.outcome(&state, Delivery::Durable, caller.subject(), "deposit-request.view", target, read).await
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
    audit: AuditContext,
    ApiQuery(params): ApiQuery<PendingParams>,
) -> Result<Json<Page<PendingDeposit>>, ApiError> {
    caller.require_operator()?;
    if params.status.as_deref().is_some_and(|status| status != "pending") {
        return Err(ApiError::invalid("status must be pending"));
    }
    let limit = page_limit(params.limit)?;
    let pending = state.backend().deposit_requests.pending(limit).await?;
    let listed = Ok(Json(Page::new(pending.iter().map(pending_of).collect(), None)));
    audit
        .outcome(&state, Delivery::Durable, caller.subject(), "deposit-request.list", "deposit-requests".into(), listed)
        .await
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
    audit: AuditContext,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let operator = caller.require_operator()?;
    let limit = page_limit(params.limit)?.min(AUDIT_PAGE_MAX);
    if params.from_seq.is_some_and(|seq| seq == 0 || i64::try_from(seq).is_err()) {
        return Err(ApiError::invalid(format!("from_seq must be from 1 to {}", i64::MAX)));
    }
    let from_seq = params.from_seq.unwrap_or(1);
    audit.record(&state, operator, "audit.listed", format!("audit:{from_seq}"), AuditOutcome::Done).await?;
    let records = state.backend().audit.list(from_seq, limit).await?;
    let next = (records.len() == limit).then(|| records.last().map(|r| (r.seq + 1).to_string())).flatten();
    let items = records.into_iter().map(audit_entry).collect();
    Ok(Json(Page::new(items, next)))
}

fn audit_entry(r: AuditRecord) -> AuditEntry {
    AuditEntry {
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
        prev_hash: hex::encode(r.prev_hash),
        hash: hex::encode(r.hash),
    }
}

fn text_plain(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The latest signed checkpoint: a C2SP signed note whose text is a C2SP tlog-checkpoint (origin,
/// tree size, base64 RFC 6962 root), signed with the key of `/.well-known/audit-key`.
#[utoipa::path(get, path = "/v1/admin/audit/checkpoint", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed checkpoint", body = String, content_type = "text/plain"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No checkpoint yet", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn audit_checkpoint(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
) -> Result<Response, ApiError> {
    let operator = caller.require_operator()?;
    let latest = state.backend().audit.latest_checkpoint().await?.ok_or_else(|| ApiError::not_found("checkpoint"))?;
    let target = format!("audit-checkpoint:{}", latest.ordinal);
    audit.record(&state, operator, "audit.checkpoint.read", target, AuditOutcome::Done).await?;
    Ok(text_plain(latest.note))
}

/// `?seq=` of `GET /v1/admin/audit/proof`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProofParams {
    /// The record to prove (it must be in the latest checkpoint).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) seq: u64,
}

/// The RFC 6962 inclusion proof (audit path) of one record in the tree of the latest signed
/// checkpoint, with the record's canonical bytes and the checkpoint, so an auditor checks it with
/// the published key and nothing else from this server.
#[utoipa::path(get, path = "/v1/admin/audit/proof", tag = "admin", security(("bearer" = [])), params(ProofParams),
    responses(
        (status = 200, description = "The proof", body = AuditProof),
        (status = 400, description = "Bad seq", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record in the latest checkpoint (yet)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn audit_proof(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    ApiQuery(params): ApiQuery<ProofParams>,
) -> Result<Json<AuditProof>, ApiError> {
    let operator = caller.require_operator()?;
    if params.seq == 0 || i64::try_from(params.seq).is_err() {
        return Err(ApiError::invalid(format!("seq must be from 1 to {}", i64::MAX)));
    }
    let log = state.backend().audit.as_ref();
    let latest = log.latest_checkpoint().await?.ok_or_else(|| ApiError::not_found("checkpointed audit record"))?;
    let head = state.backend().audit_key.verifier().open(&latest.note).map_err(|refused| {
        tracing::error!(%refused, ordinal = latest.ordinal, "the latest audit checkpoint does not verify");
        ApiError::internal()
    })?;
    if params.seq > head.size {
        return Err(ApiError::not_found("checkpointed audit record"));
    }
    audit.record(&state, operator, "audit.proof.read", format!("audit:{}", params.seq), AuditOutcome::Done).await?;
    let record = log
        .list(params.seq, 1)
        .await?
        .into_iter()
        .find(|r| r.seq == params.seq)
        .ok_or_else(|| ApiError::not_found("checkpointed audit record"))?;
    let path = tree::inclusion_proof(log, params.seq - 1, head.size).await?;
    let bytes = record.encode();
    Ok(Json(AuditProof {
        seq: record.seq,
        leaf_index: record.seq - 1,
        tree_size: head.size,
        leaf_hash: BASE64.encode(tree::leaf_hash(&bytes)),
        record_bytes: BASE64.encode(&bytes),
        record: audit_entry(record),
        audit_path: path.iter().map(|h| BASE64.encode(h)).collect(),
        checkpoint: latest.note,
    }))
}

/// `?from_seq=` of `GET /v1/admin/audit/verify`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyParams {
    /// Start at the checkpoint before this seq (its state authenticated by its signed root);
    /// default 1, everything.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub(crate) from_seq: Option<u64>,
}

/// Checks the audit log: the hash chain, every checkpoint's signature and root, and every sealed
/// segment against the live records; names the first bad record. Tampering is a 200 with
/// `ok: false` (the check itself worked).
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", security(("bearer" = [])), params(VerifyParams),
    responses(
        (status = 200, description = "The verdict", body = AuditVerification),
        (status = 400, description = "Invalid query (from_seq not from 1 to 2^63-1, or given twice)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn audit_verify(
    State(state): State<AppState>,
    caller: Authed,
    audit: AuditContext,
    ApiQuery(params): ApiQuery<VerifyParams>,
) -> Result<Json<AuditVerification>, ApiError> {
    let operator = caller.require_operator()?;
    // As the document says (minimum 1, at most i64::MAX), like `GET /v1/admin/audit`.
    if params.from_seq.is_some_and(|seq| seq == 0 || i64::try_from(seq).is_err()) {
        return Err(ApiError::invalid(format!("from_seq must be from 1 to {}", i64::MAX)));
    }
    let backend = state.backend();
    let from_seq = params.from_seq.unwrap_or(1);
    let report =
        verify::verify(backend.audit.as_ref(), backend.audit_blobs.as_ref(), &backend.audit_key.verifier(), from_seq)
            .await?;
    let (action, outcome) = if report.ok {
        ("audit.verified", AuditOutcome::Done)
    } else {
        tracing::error!(first_bad_seq = ?report.first_bad_seq, problem = ?report.problem, "the audit log failed verification");
        ("audit.verify.tampering_found", AuditOutcome::Done)
    };
    let target = format!("audit:{}", report.first_bad_seq.unwrap_or(report.from_seq));
    audit.record(&state, operator, action, target, outcome).await?;
    Ok(Json(AuditVerification {
        ok: report.ok,
        from_seq: report.from_seq,
        records_checked: report.records_checked,
        checkpoints_checked: report.checkpoints_checked,
        segments_checked: report.segments_checked,
        first_bad_seq: report.first_bad_seq,
        problem: report.problem,
    }))
}

/// The audit log's public verifier key in the signed-note format, `<origin>+<key id>+<base64
/// key>` (what Go's `note.NewVerifier` and C2SP tools take), to check checkpoints with.
#[utoipa::path(get, path = "/.well-known/audit-key", tag = "admin",
    responses((status = 200, description = "The verifier key", body = String, content_type = "text/plain")))]
pub(crate) async fn audit_key(State(state): State<AppState>) -> Response {
    let mut response = text_plain(state.backend().audit_key.verifier_key().to_owned());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
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
