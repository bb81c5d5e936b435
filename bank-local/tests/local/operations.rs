//! `SqliteAuditLog` and `SqliteDepositRequests` against their conformance suites, plus what only
//! the durable adapters must show: the audit table refuses UPDATE and DELETE, and both survive a
//! reopen.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::approvals::{DepositRequestStatus, DepositRequestStore};
use bank_core::audit::AuditLog;
use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::CustomerId;
use bank_core::testkit::approvals::{DepositRequestsHarness, request};
use bank_core::testkit::audit::{AuditHarness, record};
use bank_local::approvals::SqliteDepositRequests;
use bank_local::audit::SqliteAuditLog;
use bank_local::db::LocalDb;
use tempfile::TempDir;

use crate::fresh::KeptDbs;

/// Builds each case's store in a fresh temporary directory, kept alive for the whole case.
#[derive(Default)]
struct Harness {
    dbs: KeptDbs,
}

impl Harness {
    async fn db(&self) -> LocalDb {
        self.dbs.open().await
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::at_epoch())
}

#[async_trait]
impl AuditHarness for Harness {
    async fn log(&self) -> Arc<dyn AuditLog> {
        Arc::new(SqliteAuditLog::new(&self.db().await, clock()))
    }
}

#[async_trait]
impl DepositRequestsHarness for Harness {
    async fn store(&self) -> Arc<dyn DepositRequestStore> {
        Arc::new(SqliteDepositRequests::new(&self.db().await, clock()))
    }
}

mod audit_log {
    bank_core::audit_conformance_tests!(super::Harness::default());
}

mod deposit_requests {
    bank_core::deposit_requests_conformance_tests!(super::Harness::default());
}

#[tokio::test]
async fn the_audit_tables_refuse_update_and_delete() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let log = SqliteAuditLog::new(&db, clock());
    log.append(record(1)).await.expect("append");
    for statement in [
        "UPDATE audit_records SET subject = 'someone else'",
        "DELETE FROM audit_records",
        "UPDATE audit_tree SET hash = zeroblob(32)",
        "DELETE FROM audit_tree",
        "INSERT INTO audit_checkpoints (ordinal, size, at, note) VALUES (1, 1, 0, 'n')",
        "UPDATE audit_checkpoints SET note = 'forged'",
        "DELETE FROM audit_checkpoints",
    ] {
        let refused = db.read(|conn| {
            // A read connection is read-only; open a writable one as an intruder would.
            let path = conn.path().expect("path").to_owned();
            let writable = rusqlite::Connection::open(path).expect("open writable");
            Ok(writable.execute(statement, []))
        });
        let refused = refused.expect("read");
        if statement.starts_with("INSERT") {
            // Inserting is what appends do; the checkpoint row is there to be refused below.
            refused.expect(statement);
            continue;
        }
        let error = refused.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    assert_eq!(log.list(1, 10).await.expect("list")[0].record, record(1), "unchanged");
}

#[tokio::test]
async fn audit_records_and_deposit_requests_survive_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let pending = request("25000.00", 7);
    let approver = CustomerId::new();
    {
        let db = LocalDb::open(dir.path()).await.expect("open");
        SqliteAuditLog::new(&db, clock()).append(record(1)).await.expect("append");
        let store = SqliteDepositRequests::new(&db, clock());
        store.create(pending.clone()).await.expect("create");
        store.approve(pending.id, approver, pending.requested_at).await.expect("approve");
        db.close().await;
    }
    let db = LocalDb::open(dir.path()).await.expect("reopen");
    assert_eq!(SqliteAuditLog::new(&db, clock()).list(1, 10).await.expect("list")[0].record, record(1));
    let stored = SqliteDepositRequests::new(&db, clock()).get(pending.id).await.expect("get").expect("kept");
    assert_eq!(stored.money, pending.money);
    assert_eq!(stored.status, DepositRequestStatus::Approved { by: approver, at: pending.requested_at });
}
