//! [`LocalBackend`]: every store of the embedded backend opened on one data directory, ready to
//! be assembled into `bank-core`'s services (the reference server's `serve` does exactly this).
//!
//! Layout of the data directory (`BANK_DATA_DIR`, default `./data`):
//! - `ledger.sqlite` (+ `-wal`, `-shm`): the ledger (accounts, entries, holds, reversals);
//! - `bank.sqlite` (+ `-wal`, `-shm`): idempotency keys, transfers, queue, events and subscriber
//!   cursors, notification log, users and refresh tokens, deposit requests;
//! - `audit.sqlite` (+ `-wal`, `-shm`): the hash-chained audit log, its tree and checkpoints
//!   (see [`crate::audit`]), with its own writer so audit commits queue behind nothing else;
//! - `audit.key`: the audit log's Ed25519 signing key (note format, mode 0600);
//! - `ledger.lock`, `bank.lock`, `audit.lock`: held while the process runs (one process per data
//!   directory);
//! - `blobs/`: write-once objects with retention (statements, sealed audit segments) and the
//!   secret that signs their download links.
//!
//! Why two database files: SQLite commits one transaction at a time per file, and the writer of
//! one file was the whole pipeline's limit (one core busy, the other mostly idle). The ledger and
//! the rest never need one transaction together — the transfers pipeline is built for stores that
//! commit separately (each step is keyed and replayable, as with PostgreSQL, DynamoDB and SQS) —
//! so each file gets its own writer thread and group commit, and the two run on both cores.
//! Measured: +7–13% settled transfers per second; a third file (idempotency keys) was slower on
//! two cores.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bank_core::Result;
use bank_core::clock::Clock;
use bank_core::faults::NoFaults;
use bank_core::money::Currency;
use bank_core::payments::{PaymentsPorts, SystemAccounts};
use bank_core::queue::QueueConfig;

use crate::approvals::SqliteDepositRequests;
use bank_core::audit::checkpoint::AuditKey;
use bank_core::audit::seal::SealPolicy;

use crate::audit::{AUDIT_FILE_NAME, SqliteAuditLog, carry_over_legacy, load_or_create_key};
use crate::blob::FileBlobStore;
use crate::db::{LEDGER_FILE_NAME, LocalDb};
use crate::events::SqliteEventBus;
use crate::idempotency::SqliteIdempotencyStore;
use crate::ledger::SqliteLedger;
use crate::notification_log::SqliteNotificationLog;
use crate::queue::SqliteQueue;
use crate::space::DiskSpace;
use crate::transfers::SqliteTransferStore;
use crate::users::SqliteUserStore;

/// Events the bus keeps for subscribers that are behind (older ones are trimmed once every
/// subscriber has read them).
pub const EVENT_LOG_CAPACITY: usize = 1 << 22;
/// Notification deliveries remembered (to deliver each at most once).
pub const NOTIFICATION_LOG_CAPACITY: usize = 1 << 22;

/// How to open the backend.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// Currencies the bank's own accounts (deposits, rail settlement, suspense) are opened in.
    pub currencies: Vec<Currency>,
    /// Limits of the transfer queue.
    pub queue: QueueConfig,
    /// Base URL that signed blob links start with (the reference server passes its public address
    /// followed by `/files`, where it serves them).
    pub public_url: String,
    /// The audit log's name: the origin line of its checkpoints and the name of its key (used
    /// when the key is created; an existing key of another origin is refused).
    pub audit_origin: String,
    /// When audit checkpoints are taken and how long their sealed segments are kept.
    pub audit_seal: SealPolicy,
    /// Free bytes under which the data directory counts as nearly full (see [`crate::space`]).
    pub min_free_bytes: u64,
}

/// The default [`LocalConfig::min_free_bytes`]: 256 MiB, room for about nine minutes of audited
/// reads at a thousand a second after new writes stop (an audit record took ~470 bytes in the
/// soak of `bank-load`).
pub const MIN_FREE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// The default [`LocalConfig::audit_origin`].
pub const AUDIT_ORIGIN_DEFAULT: &str = "bank.example/audit";

impl LocalConfig {
    /// Defaults for `data_dir`: every supported currency, default queue limits, links on
    /// `http://127.0.0.1:8080`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalConfig {
            data_dir: data_dir.into(),
            currencies: Currency::ALL.to_vec(),
            queue: QueueConfig::default(),
            public_url: "http://127.0.0.1:8080".into(),
            audit_origin: AUDIT_ORIGIN_DEFAULT.into(),
            audit_seal: SealPolicy::default(),
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
        }
    }
}

/// The opened stores. Cheap to clone (everything is behind `Arc`s).
#[derive(Debug, Clone)]
pub struct LocalBackend {
    /// The database of everything but the ledger (`bank.sqlite`).
    pub db: LocalDb,
    /// The ledger's database (`ledger.sqlite`: its writer thread, read connections and the view
    /// cache of accounts).
    pub ledger_db: LocalDb,
    /// Time, as every store reads it.
    pub clock: Arc<dyn Clock>,
    /// The ledger.
    pub ledger: Arc<SqliteLedger>,
    /// The ports of the transfers pipeline (no fault injection). The transfer store delivers its
    /// outbox messages directly (see [`crate::transfers`]), so the outbox relay has nothing to do.
    pub payments: PaymentsPorts,
    /// The durable event bus (publisher for the outbox relay, subscriber for notifications).
    pub events: Arc<SqliteEventBus>,
    /// Which notifications were delivered.
    pub notification_log: Arc<SqliteNotificationLog>,
    /// Write-once objects with retention.
    pub blobs: Arc<FileBlobStore>,
    /// Users and refresh tokens (for the built-in token issuer).
    pub users: Arc<SqliteUserStore>,
    /// The bank's own accounts, opened on first start.
    pub system: SystemAccounts,
    /// The audit log's database (`audit.sqlite`).
    pub audit_db: LocalDb,
    /// The append-only, hash-chained audit log.
    pub audit: Arc<SqliteAuditLog>,
    /// The key that signs the audit log's checkpoints.
    pub audit_key: Arc<AuditKey>,
    /// When audit checkpoints are taken (from [`LocalConfig::audit_seal`]).
    pub audit_seal: SealPolicy,
    /// Deposits waiting for a second operator.
    pub deposit_requests: Arc<SqliteDepositRequests>,
    /// Free space of the data directory, and the floor under which new writes are refused.
    pub space: DiskSpace,
}

impl LocalBackend {
    /// Opens (creating if needed) every store in `config.data_dir`, refusing a directory another
    /// process uses, a database that is not this bank's (see [`LocalDb::open_file`]) or one whose
    /// ledger is in `bank.sqlite` (a layout this crate no longer opens), and opens the bank's own
    /// accounts.
    pub async fn open(config: &LocalConfig, clock: Arc<dyn Clock>) -> Result<LocalBackend> {
        let db = LocalDb::open(&config.data_dir).await?;
        refuse_ledger_in(&db)?;
        let ledger_db = LocalDb::open_file(&config.data_dir, LEDGER_FILE_NAME).await?;
        let ledger = Arc::new(SqliteLedger::new(&ledger_db, Arc::clone(&clock)));
        let keys = Arc::new(SqliteIdempotencyStore::new(&db, Arc::clone(&clock)));
        let queue = Arc::new(SqliteQueue::new(&db, Arc::clone(&clock), config.queue));
        let payments = PaymentsPorts {
            ledger: ledger.clone(),
            // Queue, bus and keys live in this database: outbox messages go straight to them,
            // an accepted transfer's key is completed in the transfer's own write, and a settled
            // transfer's delivery acknowledged in its outcome's.
            transfers: Arc::new(
                SqliteTransferStore::delivering_directly(&db, Arc::clone(&clock), config.queue, EVENT_LOG_CAPACITY)
                    .completing_keys_of(&keys)?
                    .acking_deliveries_of(&queue)?,
            ),
            idempotency: keys,
            queue,
            clock: Arc::clone(&clock),
            faults: Arc::new(NoFaults),
        };
        let events = Arc::new(SqliteEventBus::new(&db, Arc::clone(&clock), EVENT_LOG_CAPACITY));
        let notification_log = Arc::new(SqliteNotificationLog::new(&db, Arc::clone(&clock), NOTIFICATION_LOG_CAPACITY));
        let blobs = Arc::new(
            FileBlobStore::open(&blob_dir(&config.data_dir), Arc::clone(&clock), config.public_url.clone()).await?,
        );
        let users = Arc::new(SqliteUserStore::new(&db, Arc::clone(&clock)));
        let system = SystemAccounts::ensure(ledger.as_ref(), &config.currencies).await?;
        let audit_db = LocalDb::open_file(&config.data_dir, AUDIT_FILE_NAME).await?;
        let audit = Arc::new(SqliteAuditLog::new(&audit_db, Arc::clone(&clock)));
        let carried = carry_over_legacy(&db, &audit).await?;
        if carried > 0 {
            tracing::info!(carried, "audit records carried over from bank.sqlite into the chained log");
        }
        let audit_key = Arc::new(load_or_create_key(&config.data_dir, &config.audit_origin)?);
        let deposit_requests = Arc::new(SqliteDepositRequests::new(&db, Arc::clone(&clock)));
        Ok(LocalBackend {
            db,
            ledger_db,
            clock,
            ledger,
            payments,
            events,
            notification_log,
            blobs,
            users,
            system,
            audit_db,
            audit,
            audit_key,
            audit_seal: config.audit_seal,
            deposit_requests,
            space: DiskSpace::new(&config.data_dir, config.min_free_bytes),
        })
    }

    /// Checks that every database answers a read (for readiness probes).
    pub async fn ready(&self) -> Result<()> {
        for db in [&self.db, &self.ledger_db, &self.audit_db] {
            db.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(|e| bank_core::Error::storage(e, true)))?;
        }
        Ok(())
    }

    /// Closes the idle read connections of both databases (the writer threads stop once every
    /// store is dropped).
    pub async fn close(&self) {
        self.db.close().await;
        self.ledger_db.close().await;
        self.audit_db.close().await;
    }
}

/// Refuses a `bank.sqlite` that holds ledger rows: it was written when the ledger lived there,
/// and opening it in this layout would start an empty ledger beside the real one.
fn refuse_ledger_in(db: &LocalDb) -> Result<()> {
    let accounts: i64 = db.read(|conn| {
        conn.query_row("SELECT count(*) FROM (SELECT 1 FROM accounts LIMIT 1)", [], |row| row.get(0))
            .map_err(|e| bank_core::Error::storage(e, true))
    })?;
    if accounts == 0 {
        return Ok(());
    }
    Err(bank_core::Error::Storage {
        message: format!(
            "refusing to open {}: it holds the ledger (a layout from before ledger.sqlite); no migration exists for it",
            db.path().display()
        ),
        retryable: false,
    })
}

fn blob_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("blobs")
}
