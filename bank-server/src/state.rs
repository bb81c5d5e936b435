//! What the HTTP layer and the background loops run on: the [`Backend`] (ports of one storage
//! assembly, as trait objects, so the same server runs on `bank-local` or `bank-aws`) and the
//! authentication in force.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bank_aws::backend::AwsBackend;
use bank_aws::postgres::{PgDb, PgStores};
use bank_aws::redis::RedisClient;
use bank_core::Result;
use bank_core::approvals::DepositRequestStore;
use bank_core::audit::AuditLog;
use bank_core::audit::checkpoint::AuditKey;
use bank_core::audit::seal::{AuditSealer, SealPolicy};
use bank_core::faults::NoFaults;
use bank_core::notifications::{EventSubscriber, NotificationLog};
use bank_core::payments::{PaymentsPorts, SystemAccounts};
use bank_core::ports::{BlobStore, EventPublisher, LedgerStore};
use bank_core::users::UserStore;
use bank_local::backend::LocalBackend;
use bank_local::blob::FileBlobStore;
use bank_local::space::DiskSpace;

use crate::auth::issuer::TokenIssuer;
use crate::auth::verify::TokenVerifier;

/// Answers readiness probes for one storage assembly.
#[async_trait]
pub trait ReadyCheck: Send + Sync + fmt::Debug + 'static {
    /// `(check name, result)` for every backing service.
    async fn check(&self) -> Vec<(&'static str, Result<()>)>;

    /// `(check name, result)` for services the bank works without, in a degraded way (a cache):
    /// shown by the readiness probe, never failing it.
    async fn optional(&self) -> Vec<(&'static str, Result<()>)> {
        Vec::new()
    }

    /// How far the database reader is behind its writer (`None`: no separate reader, or it does
    /// not answer).
    async fn replica_lag(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The ports of one storage assembly.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Accounts, holds, postings, balances, history.
    pub ledger: Arc<dyn LedgerStore>,
    /// The transfers pipeline's ports (ledger, transfers + outbox, idempotency, queue, clock).
    pub payments: PaymentsPorts,
    /// Where the outbox relay publishes events.
    pub publisher: Arc<dyn EventPublisher>,
    /// Where notifications read events from.
    pub subscriber: Arc<dyn EventSubscriber>,
    /// Which notifications were delivered.
    pub notification_log: Arc<dyn NotificationLog>,
    /// Write-once objects: statements.
    pub blobs: Arc<dyn BlobStore>,
    /// Write-once objects: sealed audit segments (the same store as `blobs` locally; a bucket of
    /// its own on AWS, so that access to statements and to the audit trail is granted apart).
    pub audit_blobs: Arc<dyn BlobStore>,
    /// The object store whose signed links this server serves itself (`GET /files/…`): the
    /// local files. `None` where the store serves its own links (S3 pre-signed URLs).
    pub served_files: Option<Arc<FileBlobStore>>,
    /// Users for the built-in token issuer (`None` where an external issuer owns users).
    pub users: Option<Arc<dyn UserStore>>,
    /// The bank's own accounts (deposits, rail settlement, suspense) per currency.
    pub system: SystemAccounts,
    /// The append-only, hash-chained audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The key that signs the audit log's checkpoints.
    pub audit_key: Arc<AuditKey>,
    /// When audit checkpoints are taken and how long sealed segments are kept.
    pub audit_seal: SealPolicy,
    /// Deposits waiting for a second operator (four eyes).
    pub deposit_requests: Arc<dyn DepositRequestStore>,
    /// Readiness of the backing services.
    pub ready: Arc<dyn ReadyCheck>,
    /// Where rate limits shared by every API process are counted (the AWS backend's Redis);
    /// `None`: each process counts its own.
    pub shared_limits: Option<RedisClient>,
    /// The data directory's disk and its free-space floor, under which new writes are refused
    /// (the embedded backend; `None` on AWS, where nothing is on a local disk).
    pub data_disk: Option<DiskSpace>,
}

#[derive(Debug)]
struct LocalReady(LocalBackend);

#[async_trait]
impl ReadyCheck for LocalReady {
    async fn check(&self) -> Vec<(&'static str, Result<()>)> {
        vec![("sqlite", self.0.ready().await)]
    }
}

impl From<LocalBackend> for Backend {
    fn from(local: LocalBackend) -> Self {
        Backend {
            ledger: local.ledger.clone(),
            payments: local.payments.clone(),
            publisher: local.events.clone(),
            subscriber: local.events.clone(),
            notification_log: local.notification_log.clone(),
            blobs: local.blobs.clone(),
            audit_blobs: local.blobs.clone(),
            served_files: Some(local.blobs.clone()),
            users: Some(local.users.clone()),
            system: local.system.clone(),
            audit: local.audit.clone(),
            audit_key: Arc::clone(&local.audit_key),
            audit_seal: local.audit_seal,
            deposit_requests: local.deposit_requests.clone(),
            data_disk: Some(local.space.clone()),
            ready: Arc::new(LocalReady(local)),
            shared_limits: None,
        }
    }
}

#[derive(Debug)]
struct PostgresReady {
    db: PgDb,
    local: Arc<dyn ReadyCheck>,
}

#[async_trait]
impl ReadyCheck for PostgresReady {
    async fn check(&self) -> Vec<(&'static str, Result<()>)> {
        let mut checks = self.local.check().await;
        checks.push(("postgresql", self.db.ready().await));
        checks
    }

    async fn replica_lag(&self) -> Option<std::time::Duration> {
        self.db.replica_lag().await
    }
}

impl Backend {
    /// The sealer of the audit log: signed checkpoints every N records or T seconds, segments
    /// sealed to the blob store (see [`bank_core::audit::seal`]).
    pub fn audit_sealer(&self) -> AuditSealer {
        AuditSealer::new(
            Arc::clone(&self.audit),
            Arc::clone(&self.audit_blobs),
            Arc::clone(&self.audit_key),
            Arc::clone(&self.payments.clock),
            self.audit_seal,
        )
    }

    /// The same backend with the ledger, transfers (and their outbox), users and the bank's own
    /// accounts on PostgreSQL; readiness checks both.
    pub fn on_postgres(self, stores: PgStores) -> Backend {
        // The audit log, notification log and deposit requests on PostgreSQL are not assembled yet.
        let PgStores { db, ledger, transfers, users, system, .. } = stores;
        Backend {
            ledger: ledger.clone(),
            payments: PaymentsPorts { ledger, transfers, ..self.payments },
            users: Some(users),
            system,
            ready: Arc::new(PostgresReady { db, local: self.ready }),
            ..self
        }
    }
}

#[derive(Debug)]
struct AwsReady(AwsBackend);

#[async_trait]
impl ReadyCheck for AwsReady {
    async fn check(&self) -> Vec<(&'static str, Result<()>)> {
        self.0.ready().await
    }

    async fn optional(&self) -> Vec<(&'static str, Result<()>)> {
        vec![("redis", self.0.redis.ping().await)]
    }

    async fn replica_lag(&self) -> Option<std::time::Duration> {
        self.0.postgres.db.replica_lag().await
    }
}

impl Backend {
    /// Every store on the AWS backend: nothing in a data directory, so any number of processes
    /// share it. Statement links are S3 pre-signed URLs (`served_files` is `None`).
    pub fn on_aws(aws: AwsBackend, audit_key: AuditKey, audit_seal: SealPolicy) -> Backend {
        let pg = &aws.postgres;
        let ledger: Arc<dyn LedgerStore> = aws.ledger.clone();
        Backend {
            ledger: Arc::clone(&ledger),
            payments: PaymentsPorts {
                ledger,
                transfers: pg.transfers.clone(),
                idempotency: aws.idempotency.clone(),
                queue: aws.queue.clone(),
                clock: Arc::clone(&aws.clock),
                faults: Arc::new(NoFaults),
            },
            publisher: aws.publisher.clone(),
            subscriber: aws.subscriber.clone(),
            notification_log: pg.notifications.clone(),
            blobs: aws.statements.clone(),
            audit_blobs: aws.audit_blobs.clone(),
            served_files: None,
            users: Some(pg.users.clone()),
            system: pg.system.clone(),
            audit: pg.audit.clone(),
            audit_key: Arc::new(audit_key),
            audit_seal,
            deposit_requests: pg.deposit_requests.clone(),
            shared_limits: Some(aws.redis.clone()),
            data_disk: None,
            ready: Arc::new(AwsReady(aws)),
        }
    }
}

/// Authentication in force: the built-in issuer (which also verifies its own tokens) or an
/// external issuer's verifier only.
#[derive(Clone)]
pub struct Auth {
    /// Registration and login (`None` with an external issuer: those routes answer 404).
    pub issuer: Option<Arc<TokenIssuer>>,
    /// Turns a bearer token into a principal.
    pub verifier: Arc<TokenVerifier>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("built_in_issuer", &self.issuer.is_some()).finish_non_exhaustive()
    }
}
