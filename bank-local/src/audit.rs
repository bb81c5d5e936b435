//! [`SqliteAuditLog`]: the durable [`AuditLog`], in the append-only `audit_log` table (migration
//! `0009_audit_and_deposit_requests.sql`, whose triggers refuse every `UPDATE` and `DELETE`).
//!
//! Appends go through the database's single writer, so `seq` (the rowid, `AUTOINCREMENT`) is
//! gap-free in commit order; a call answers once its batch committed.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::Result;
use bank_core::audit::{AUDIT_PAGE_MAX, AuditLog, AuditOutcome, AuditRecord, NewAuditRecord};
use bank_core::clock::Clock;
use rusqlite::{Row, params};

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, nanos, time};
use crate::db::writer::WriterHandle;

/// The audit log in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteAuditLog {
    writer: WriterHandle,
    db: LocalDb,
}

impl SqliteAuditLog {
    /// A log over `db`, appending through the database's one writer.
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        SqliteAuditLog { writer: WriterHandle::for_db(db, clock), db: db.clone() }
    }
}

const ROW: RowOf = RowOf("audit row");

fn record_of(row: &Row<'_>) -> Result<AuditRecord> {
    let seq: i64 = ROW.get(row, "seq")?;
    let outcome: String = ROW.get(row, "outcome")?;
    Ok(AuditRecord {
        seq: u64::try_from(seq).map_err(|_| ROW.corrupt("negative seq"))?,
        record: NewAuditRecord {
            at: time(ROW.get(row, "at")?),
            subject: ROW.get(row, "subject")?,
            action: ROW.get(row, "action")?,
            target: ROW.get(row, "target")?,
            outcome: AuditOutcome::parse(&outcome).ok_or_else(|| ROW.corrupt(format!("outcome {outcome:?}")))?,
            request_id: ROW.get(row, "request_id")?,
            client_ip: ROW.get(row, "client_ip")?,
        },
    })
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        let at = nanos(record.at)?;
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO audit_log (at, subject, action, target, outcome, request_id, client_ip) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        at,
                        &record.subject,
                        &record.action,
                        &record.target,
                        record.outcome.as_str(),
                        &record.request_id,
                        &record.client_ip
                    ])
                })
                .map_err(db_err)?;
                let seq = u64::try_from(conn.last_insert_rowid()).map_err(|_| ROW.corrupt("negative seq"))?;
                Ok(AuditRecord { seq, record })
            })
            .await
    }

    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit.min(AUDIT_PAGE_MAX)).unwrap_or(0);
        self.db.read(|conn| {
            fetch_all(
                conn,
                "SELECT seq, at, subject, action, target, outcome, request_id, client_ip FROM audit_log \
                 WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
                params![from, limit],
                record_of,
            )
        })
    }
}
