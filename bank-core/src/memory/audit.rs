//! [`MemoryAuditLog`]: the hash-chained audit log in vectors behind one mutex (append order is
//! `seq` order), with its Merkle tree ([`MemoryTree`]) and checkpoints.
//!
//! Bounded: past [`MEMORY_AUDIT_RECORDS_MAX`] records an append fails rather than growing
//! without limit (a durable adapter is what production runs).

use async_trait::async_trait;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::audit::tree::{self, MemoryTree};
use crate::audit::{
    AUDIT_CHECKPOINT_PAGE_MAX, AUDIT_PAGE_MAX, AuditLog, AuditRecord, Digest, GENESIS_HASH, NewAuditRecord,
    StoredCheckpoint, check_next_checkpoint, check_once_key,
};
use crate::error::{Error, Result};

/// Most records the in-memory log holds.
pub const MEMORY_AUDIT_RECORDS_MAX: usize = 1 << 20;

/// Audit records held in memory.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<AuditRecord>,
    tree: MemoryTree,
    once: FxHashMap<String, u64>,
    checkpoints: Vec<StoredCheckpoint>,
}

impl State {
    fn append(&mut self, record: NewAuditRecord) -> Result<AuditRecord> {
        if self.records.len() >= MEMORY_AUDIT_RECORDS_MAX {
            return Err(Error::Storage { message: "the in-memory audit log is full".into(), retryable: false });
        }
        let seq = u64::try_from(self.records.len()).unwrap_or(u64::MAX).saturating_add(1);
        let prev_hash = self.records.last().map_or(GENESIS_HASH, |r| r.hash);
        let appended = AuditRecord::chained(seq, record, prev_hash);
        self.tree.push(tree::leaf_hash(&appended.encode()))?;
        self.records.push(appended.clone());
        Ok(appended)
    }
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
        self.state.lock().append(record)
    }

    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>> {
        let mut state = self.state.lock();
        if state.records.len().saturating_add(records.len()) > MEMORY_AUDIT_RECORDS_MAX {
            return Err(Error::Storage { message: "the in-memory audit log is full".into(), retryable: false });
        }
        records.into_iter().map(|record| state.append(record)).collect()
    }

    async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord> {
        check_once_key(key)?;
        let mut state = self.state.lock();
        if let Some(&seq) = state.once.get(key) {
            let index = usize::try_from(seq - 1).unwrap_or(usize::MAX);
            return state
                .records
                .get(index)
                .cloned()
                .ok_or_else(|| Error::storage("audit key without its record", false));
        }
        let appended = state.append(record)?;
        state.once.insert(key.to_owned(), appended.seq);
        Ok(appended)
    }

    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let state = self.state.lock();
        let start = usize::try_from(from_seq.saturating_sub(1)).unwrap_or(usize::MAX).min(state.records.len());
        Ok(state.records[start..].iter().take(limit.min(AUDIT_PAGE_MAX)).cloned().collect())
    }

    async fn size(&self) -> Result<u64> {
        Ok(self.state.lock().tree.size())
    }

    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>> {
        self.state.lock().tree.read(indexes)
    }

    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
        let mut state = self.state.lock();
        let size = state.tree.size();
        if check_next_checkpoint(state.checkpoints.last(), &checkpoint, size)? {
            state.checkpoints.push(checkpoint);
        }
        Ok(())
    }

    async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        let state = self.state.lock();
        let start = usize::try_from(from_ordinal.saturating_sub(1)).unwrap_or(usize::MAX).min(state.checkpoints.len());
        Ok(state.checkpoints[start..].iter().take(limit.min(AUDIT_CHECKPOINT_PAGE_MAX)).cloned().collect())
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.state.lock().checkpoints.last().cloned())
    }
}
