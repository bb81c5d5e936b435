//! [`PgStores`]: the PostgreSQL stores of one bank opened together on one [`PgDb`], with the
//! bank's own accounts, ready to replace their embedded counterparts in a server's assembly.

use std::sync::Arc;

use bank_core::clock::Clock;
use bank_core::money::Currency;
use bank_core::payments::SystemAccounts;

use super::PgDb;
use super::approvals::PgDepositRequests;
use super::audit::PgAuditLog;
use super::ledger::PgLedger;
use super::notifications::PgNotificationLog;
use super::transfers::PgTransferStore;
use super::users::PgUserStore;

/// The opened stores. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStores {
    /// The database (writer and reader pools).
    pub db: PgDb,
    /// The ledger.
    pub ledger: Arc<PgLedger>,
    /// Transfers and their outbox.
    pub transfers: Arc<PgTransferStore>,
    /// Users and refresh tokens.
    pub users: Arc<PgUserStore>,
    /// The hash-chained audit log (sealed segments go to the blob store, as with every log).
    pub audit: Arc<PgAuditLog>,
    /// The notification log (at most one notification per event, channel and recipient).
    pub notifications: Arc<PgNotificationLog>,
    /// Four-eyes deposit requests.
    pub deposit_requests: Arc<PgDepositRequests>,
    /// The bank's own accounts (opened on first start).
    pub system: SystemAccounts,
}

impl PgStores {
    /// Opens every store on `db` (whose schema must be migrated) and opens the bank's own
    /// accounts in `currencies` when missing. Must run inside a tokio runtime (the stores start
    /// their group-commit tasks).
    pub async fn open(db: &PgDb, clock: Arc<dyn Clock>, currencies: &[Currency]) -> bank_core::Result<PgStores> {
        let ledger = Arc::new(PgLedger::new(db, Arc::clone(&clock)));
        let transfers = Arc::new(PgTransferStore::new(db, Arc::clone(&clock)));
        let users = Arc::new(PgUserStore::new(db, Arc::clone(&clock)));
        let audit = Arc::new(PgAuditLog::new(db));
        let notifications = Arc::new(PgNotificationLog::new(db, clock));
        let deposit_requests = Arc::new(PgDepositRequests::new(db));
        let system = SystemAccounts::ensure(ledger.as_ref(), currencies).await?;
        Ok(PgStores { db: db.clone(), ledger, transfers, users, audit, notifications, deposit_requests, system })
    }
}
