//! The `audit` subcommands: `audit verify [--from SEQ]` and `audit export [--from SEQ] [--to SEQ]`,
//! on the audit log of the data directory (`audit.sqlite`, the key in `audit.key`, sealed segments
//! under `blobs/`) — they take the audit file's lock like any process, so they run while the
//! server is stopped; against a running server use `GET /v1/admin/audit/verify` — or, with
//! `BANK_BACKEND=aws`, on the shared log in PostgreSQL with its segments in the audit bucket and
//! the key of `BANK_AUDIT_SIGNING_KEY` (while the servers run).

use std::io::Write;
use std::sync::Arc;

use bank_core::audit::checkpoint::AuditKey;
use bank_core::audit::verify::{VerifyReport, verify};
use bank_core::audit::{AUDIT_PAGE_MAX, AuditLog};
use bank_core::clock::{Clock, SystemClock};
use bank_core::ports::BlobStore;
use bank_local::audit::{AUDIT_FILE_NAME, SqliteAuditLog, load_or_create_key};
use bank_local::blob::FileBlobStore;
use bank_local::db::LocalDb;

use super::RunError;
use crate::config::{BackendConfig, Config};

/// The audit log of a data directory, opened for the `audit` commands.
#[derive(Debug)]
pub struct AuditFiles {
    /// The log.
    pub log: Arc<dyn AuditLog>,
    /// The blob store holding the sealed segments.
    pub blobs: Arc<dyn BlobStore>,
    /// The log's key (its verifier checks the checkpoints).
    pub key: AuditKey,
    db: Option<LocalDb>,
}

impl AuditFiles {
    /// Opens the audit log, its key and the blob store of `config.data_dir` (on the AWS backend:
    /// the backend's).
    pub async fn open(config: &Config) -> Result<AuditFiles, RunError> {
        if let BackendConfig::Aws(_) = &config.backend {
            let (backend, _) = super::open_backend(config).await?;
            let key = (*backend.audit_key).clone();
            return Ok(AuditFiles { log: backend.audit, blobs: backend.audit_blobs, key, db: None });
        }
        let open_error = |source| RunError::Open { path: config.data_dir.clone(), source };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db = LocalDb::open_file(&config.data_dir, AUDIT_FILE_NAME).await.map_err(open_error)?;
        let log: Arc<dyn AuditLog> = Arc::new(SqliteAuditLog::new(&db, Arc::clone(&clock)));
        let key = load_or_create_key(&config.data_dir, &config.audit_origin).map_err(open_error)?;
        let local = config.local_config();
        let blobs: Arc<dyn BlobStore> = Arc::new(
            FileBlobStore::open(&config.data_dir.join("blobs"), clock, local.public_url).await.map_err(open_error)?,
        );
        Ok(AuditFiles { log, blobs, key, db: Some(db) })
    }

    /// Verifies the log from `from_seq` (see [`bank_core::audit::verify`]).
    pub async fn verify(&self, from_seq: u64) -> Result<VerifyReport, RunError> {
        Ok(verify(self.log.as_ref(), self.blobs.as_ref(), &self.key.verifier(), from_seq).await?)
    }

    /// Writes records `from..=to` (`to`: the last one when `None`) to `out`, one JSON object a
    /// line (the record's fields, `seq`, and `prev_hash` / `hash` in hex); returns how many.
    pub async fn export(&self, from: u64, to: Option<u64>, out: &mut impl Write) -> Result<u64, RunError> {
        let mut next = from.max(1);
        let mut written = 0;
        loop {
            let page = self.log.list(next, AUDIT_PAGE_MAX).await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for record in page.into_iter().take_while(|r| to.is_none_or(|to| r.seq <= to)) {
                let line = serde_json::to_string(&record).map_err(|e| bank_core::Error::storage(e, false))?;
                writeln!(out, "{line}")?;
                written += 1;
            }
            if to.is_some_and(|to| last >= to) {
                break;
            }
            next = last + 1;
        }
        out.flush()?;
        Ok(written)
    }

    /// Closes the database's idle connections.
    pub async fn close(&self) {
        if let Some(db) = &self.db {
            db.close().await;
        }
    }
}
