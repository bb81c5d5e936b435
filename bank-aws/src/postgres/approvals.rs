//! [`PgDepositRequests`]: the [`DepositRequestStore`] (four-eyes operator deposits) on
//! PostgreSQL, in the `deposit_requests` table (migrations
//! `0006_notifications_and_deposit_requests.sql`, `0007_deposit_requests_by_approval.sql`), shared
//! by every API process.
//!
//! # Why it is safe under concurrency
//! - `create` (pending, or approved already) is one `INSERT … ON CONFLICT (id) DO NOTHING`; when
//!   the id is taken (by a replay, here or in another process), the stored request is read and
//!   compared: the same request answers it, another is `KeyReused`. Requests are never deleted,
//!   so the read finds it.
//! - `approve` is one conditional `UPDATE … WHERE id = $1 AND approved_by IS NULL RETURNING …`:
//!   concurrent approvals queue on the row lock and each re-checks the condition against the row
//!   the first left, so exactly one sets the approver; the others read it back. The posting that
//!   follows is keyed by the request's id in the ledger, so the money moves once.
//! - The database refuses any other change of a request, a second approval, and any delete
//!   (trigger `deposit_requests_guarded`).
//!
//! Amounts are `NUMERIC` (exact); times `BIGINT` nanoseconds (exact); reads go to the writer (an
//! approver must see the request its colleague just made, whichever process stored it).

use async_trait::async_trait;
use bank_core::approvals::{DepositRequest, DepositRequestStatus, DepositRequestStore, PENDING_PAGE_MAX};
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::money::{Currency, Money};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgDb, RowOf, db_err};

const ROW: RowOf = RowOf("deposit request row");
const COLUMNS: &str =
    "id, account_id, amount, currency, reference, requested_by, requested_at, approved_by, approved_at";

/// Deposit requests in PostgreSQL. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct PgDepositRequests {
    db: PgDb,
}

impl PgDepositRequests {
    /// A store over `db` (migrated).
    pub fn new(db: &PgDb) -> Self {
        PgDepositRequests { db: db.clone() }
    }
}

fn nanos(at: DateTime<Utc>) -> Result<i64> {
    at.timestamp_nanos_opt().ok_or_else(|| Error::InvalidInput(format!("time {at} is outside 1677..2262")))
}

fn get<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(|e| ROW.corrupt(format!("column {name}: {e}")))
}

fn request_of(row: &PgRow) -> Result<DepositRequest> {
    let currency: String = get(row, "currency")?;
    let currency: Currency = currency.parse().map_err(|_| ROW.corrupt(format!("currency {currency:?}")))?;
    let amount: Decimal = get(row, "amount")?;
    let status = match (get::<Option<Uuid>>(row, "approved_by")?, get::<Option<i64>>(row, "approved_at")?) {
        (None, None) => DepositRequestStatus::Pending,
        (Some(by), Some(at)) => DepositRequestStatus::Approved {
            by: CustomerId::from_uuid(by).map_err(|e| ROW.corrupt(e))?,
            at: DateTime::from_timestamp_nanos(at),
        },
        _ => return Err(ROW.corrupt("approved_by and approved_at disagree")),
    };
    Ok(DepositRequest {
        id: TransferId::from_uuid(get(row, "id")?).map_err(|e| ROW.corrupt(e))?,
        account_id: AccountId::from_uuid(get(row, "account_id")?).map_err(|e| ROW.corrupt(e))?,
        money: Money::new(amount, currency).map_err(|e| ROW.corrupt(e))?,
        reference: get(row, "reference")?,
        requested_by: CustomerId::from_uuid(get(row, "requested_by")?).map_err(|e| ROW.corrupt(e))?,
        requested_at: DateTime::from_timestamp_nanos(get(row, "requested_at")?),
        status,
    })
}

impl PgDepositRequests {
    async fn load(&self, id: TransferId) -> Result<Option<DepositRequest>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM deposit_requests WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(self.db.writer())
            .await
            .map_err(db_err)?;
        row.as_ref().map(request_of).transpose()
    }
}

#[async_trait]
impl DepositRequestStore for PgDepositRequests {
    async fn create(&self, request: DepositRequest) -> Result<DepositRequest> {
        if request.reference.contains('\0') {
            return Err(Error::InvalidInput("a deposit reference may not contain NUL characters".into()));
        }
        let requested_at = nanos(request.requested_at)?;
        let (approved_by, approved_at) = match request.status {
            DepositRequestStatus::Pending => (None, None),
            DepositRequestStatus::Approved { by, at } => (Some(*by.as_uuid()), Some(nanos(at)?)),
        };
        let inserted = sqlx::query(
            "INSERT INTO deposit_requests \
             (id, account_id, amount, currency, reference, requested_by, requested_at, approved_by, approved_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(request.id.as_uuid())
        .bind(request.account_id.as_uuid())
        .bind(request.money.value())
        .bind(request.money.currency.code())
        .bind(&request.reference)
        .bind(request.requested_by.as_uuid())
        .bind(requested_at)
        .bind(approved_by)
        .bind(approved_at)
        .execute(self.db.writer())
        .await
        .map_err(db_err)?;
        if inserted.rows_affected() == 1 {
            return Ok(request);
        }
        // The id is taken (requests are never deleted, so it is there).
        let stored = self
            .load(request.id)
            .await?
            .ok_or_else(|| Error::storage("a deposit request's id is taken but the request is missing", true))?;
        if stored.is_same_request(&request) {
            Ok(stored)
        } else {
            Err(Error::KeyReused(format!("deposit request {}", request.id.as_uuid())))
        }
    }

    async fn get(&self, id: TransferId) -> Result<Option<DepositRequest>> {
        self.load(id).await
    }

    async fn approve(&self, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest> {
        let row = sqlx::query(&format!(
            "UPDATE deposit_requests SET approved_by = $1, approved_at = $2 \
             WHERE id = $3 AND approved_by IS NULL RETURNING {COLUMNS}"
        ))
        .bind(by.as_uuid())
        .bind(nanos(at)?)
        .bind(id.as_uuid())
        .fetch_optional(self.db.writer())
        .await
        .map_err(db_err)?;
        match row {
            Some(row) => request_of(&row),
            // Approved before (the first approver stays), or unknown.
            None => self.load(id).await?.ok_or(Error::TransferNotFound(id)),
        }
    }

    async fn pending(&self, limit: usize) -> Result<Vec<DepositRequest>> {
        let limit = i64::try_from(limit.min(PENDING_PAGE_MAX)).unwrap_or(0);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deposit_requests WHERE approved_by IS NULL ORDER BY requested_at, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.db.writer())
        .await
        .map_err(db_err)?;
        rows.iter().map(request_of).collect()
    }

    async fn approved_since(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<DepositRequest>> {
        let limit = i64::try_from(limit.min(PENDING_PAGE_MAX)).unwrap_or(0);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deposit_requests WHERE approved_by IS NOT NULL AND approved_at >= $1 \
             ORDER BY approved_at, id LIMIT $2"
        ))
        .bind(nanos(since)?)
        .bind(limit)
        .fetch_all(self.db.writer())
        .await
        .map_err(db_err)?;
        rows.iter().map(request_of).collect()
    }
}
