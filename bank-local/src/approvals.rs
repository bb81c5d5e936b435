//! [`SqliteDepositRequests`]: the durable [`DepositRequestStore`], in the `deposit_requests` table
//! (migrations `0009_audit_and_deposit_requests.sql`, `0012_deposit_requests_by_approval.sql`).
//!
//! `create` (of a pending request, or of one approved already) and `approve` each read, decide and
//! write in one job of the database's single writer, so of concurrent approvals exactly one sets
//! the approver (`approved_by` is written only while NULL) and the others read it back.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::approvals::{DepositRequest, DepositRequestStatus, DepositRequestStore, PENDING_PAGE_MAX};
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::money::{Money, in_minor_units};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, fetch_optional, nanos, time};
use crate::db::writer::WriterHandle;

/// Deposit requests in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteDepositRequests {
    writer: WriterHandle,
    db: LocalDb,
}

impl SqliteDepositRequests {
    /// A store over `db`, writing through the database's one writer.
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        SqliteDepositRequests { writer: WriterHandle::for_db(db, clock), db: db.clone() }
    }
}

const ROW: RowOf = RowOf("deposit request row");
const COLUMNS: &str =
    "id, account_id, amount, currency, reference, requested_by, requested_at, approved_by, approved_at";

fn request_of(row: &Row<'_>) -> Result<DepositRequest> {
    let amount: String = ROW.get(row, "amount")?;
    let currency: String = ROW.get(row, "currency")?;
    let approved_by: Option<Uuid> = ROW.get(row, "approved_by")?;
    let approved_at: Option<i64> = ROW.get(row, "approved_at")?;
    let status = match (approved_by, approved_at) {
        (None, None) => DepositRequestStatus::Pending,
        (Some(by), Some(at)) => {
            DepositRequestStatus::Approved { by: CustomerId::from_uuid(by).map_err(|e| ROW.corrupt(e))?, at: time(at) }
        }
        _ => return Err(ROW.corrupt("approved_by and approved_at disagree")),
    };
    Ok(DepositRequest {
        id: TransferId::from_uuid(ROW.get(row, "id")?).map_err(|e| ROW.corrupt(e))?,
        account_id: AccountId::from_uuid(ROW.get(row, "account_id")?).map_err(|e| ROW.corrupt(e))?,
        money: Money::parse(&amount, &currency).map_err(|e| ROW.corrupt(e))?,
        reference: ROW.get(row, "reference")?,
        requested_by: CustomerId::from_uuid(ROW.get(row, "requested_by")?).map_err(|e| ROW.corrupt(e))?,
        requested_at: time(ROW.get(row, "requested_at")?),
        status,
    })
}

fn load(conn: &Connection, id: TransferId) -> Result<Option<DepositRequest>> {
    fetch_optional(conn, &format!("SELECT {COLUMNS} FROM deposit_requests WHERE id = ?1"), [id.as_uuid()], request_of)
}

fn create_job(conn: &Connection, request: DepositRequest) -> Result<DepositRequest> {
    if let Some(stored) = load(conn, request.id)? {
        return if stored.is_same_request(&request) {
            Ok(stored)
        } else {
            Err(Error::KeyReused(format!("deposit request {}", request.id.as_uuid())))
        };
    }
    let amount = in_minor_units(request.money.value(), request.money.currency).to_string();
    let requested_at = nanos(request.requested_at)?;
    let (approved_by, approved_at) = match request.status {
        DepositRequestStatus::Pending => (None, None),
        DepositRequestStatus::Approved { by, at } => (Some(*by.as_uuid()), Some(nanos(at)?)),
    };
    conn.prepare_cached(
        "INSERT INTO deposit_requests \
         (id, account_id, amount, currency, reference, requested_by, requested_at, approved_by, approved_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            request.id.as_uuid(),
            request.account_id.as_uuid(),
            amount,
            request.money.currency.code(),
            &request.reference,
            request.requested_by.as_uuid(),
            requested_at,
            approved_by,
            approved_at
        ])
    })
    .map_err(db_err)?;
    Ok(request)
}

fn approve_job(conn: &Connection, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest> {
    let at = nanos(at)?;
    conn.prepare_cached(
        "UPDATE deposit_requests SET approved_by = ?1, approved_at = ?2 WHERE id = ?3 AND approved_by IS NULL",
    )
    .and_then(|mut s| s.execute(params![by.as_uuid(), at, id.as_uuid()]))
    .map_err(db_err)?;
    load(conn, id)?.ok_or(Error::TransferNotFound(id))
}

#[async_trait]
impl DepositRequestStore for SqliteDepositRequests {
    async fn create(&self, request: DepositRequest) -> Result<DepositRequest> {
        self.writer.run(move |conn| create_job(conn, request)).await
    }

    async fn get(&self, id: TransferId) -> Result<Option<DepositRequest>> {
        self.db.read(|conn| load(conn, id))
    }

    async fn approve(&self, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest> {
        self.writer.run(move |conn| approve_job(conn, id, by, at)).await
    }

    async fn pending(&self, limit: usize) -> Result<Vec<DepositRequest>> {
        let limit = i64::try_from(limit.min(PENDING_PAGE_MAX)).unwrap_or(0);
        self.db.read(|conn| {
            fetch_all(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM deposit_requests WHERE approved_by IS NULL \
                     ORDER BY requested_at, id LIMIT ?1"
                ),
                [limit],
                request_of,
            )
        })
    }

    async fn approved_since(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<DepositRequest>> {
        let limit = i64::try_from(limit.min(PENDING_PAGE_MAX)).unwrap_or(0);
        let since = nanos(since)?;
        self.db.read(|conn| {
            fetch_all(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM deposit_requests WHERE approved_by IS NOT NULL AND approved_at >= ?1 \
                     ORDER BY approved_at, id LIMIT ?2"
                ),
                params![since, limit],
                request_of,
            )
        })
    }
}
