//! [`MemoryAuditLog`]: the audit log in a vector behind one mutex (append order is `seq` order).
//!
//! Bounded: past [`MEMORY_AUDIT_RECORDS_MAX`] records an append fails rather than growing
//! without limit (a durable adapter is what production runs).

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::audit::{AUDIT_PAGE_MAX, AuditLog, AuditRecord, NewAuditRecord};
use crate::error::{Error, Result};

/// Most records the in-memory log holds.
pub const MEMORY_AUDIT_RECORDS_MAX: usize = 1 << 20;

/// Audit records held in memory.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryAuditLog::default()
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        let mut records = self.records.lock();
        if records.len() >= MEMORY_AUDIT_RECORDS_MAX {
            return Err(Error::Storage { message: "the in-memory audit log is full".into(), retryable: false });
        }
        let seq = u64::try_from(records.len()).unwrap_or(u64::MAX).saturating_add(1);
        let appended = AuditRecord { seq, record };
        records.push(appended.clone());
        Ok(appended)
    }

    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let records = self.records.lock();
        let start = usize::try_from(from_seq.saturating_sub(1)).unwrap_or(usize::MAX).min(records.len());
        Ok(records[start..].iter().take(limit.min(AUDIT_PAGE_MAX)).cloned().collect())
    }
}
