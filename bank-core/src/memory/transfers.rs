//! [`MemoryTransferStore`]: transfers and their outbox in one mutex, so a transfer change and its
//! outbox messages are written together or not at all, and a claim of outbox records sees every
//! other claim (the reference for the claim rules of [`TransferStore::outbox_claim`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::{OutboxMessage, OutboxRecord};
use crate::ids::{AccountId, ClaimToken, TransferId};
use crate::ports::{Inserted, TransferStore};
use crate::transfer::{Transfer, TransferStatus};

/// Transfers and outbox held in memory.
#[derive(Debug)]
pub struct MemoryTransferStore {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Ordered by id: transfer ids are time-ordered (UUID v7), so inserts append at the right edge.
    transfers: BTreeMap<TransferId, Transfer>,
    /// Per account (source and internal destination): (seq, id), in seq order.
    by_account: FxHashMap<AccountId, Vec<(u64, TransferId)>>,
    /// Non-final transfers by due time.
    due: BTreeSet<(DateTime<Utc>, u64, TransferId)>,
    counts: FxHashMap<TransferStatus, u64>,
    last_seq: u64,
    /// Unrelayed records by position.
    outbox: BTreeMap<u64, Unrelayed>,
    last_outbox_seq: u64,
}

/// An outbox record and the claim on it, if any.
#[derive(Debug)]
struct Unrelayed {
    record: OutboxRecord,
    /// The claim and the instant it runs out.
    claim: Option<(ClaimToken, DateTime<Utc>)>,
}

impl MemoryTransferStore {
    /// An empty store.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryTransferStore { clock, inner: Mutex::new(Inner::default()) }
    }
}

impl Inner {
    fn push_outbox(&mut self, messages: Vec<OutboxMessage>, now: DateTime<Utc>) {
        for message in messages {
            self.last_outbox_seq += 1;
            let record = OutboxRecord { seq: self.last_outbox_seq, message, created_at: now };
            self.outbox.insert(record.seq, Unrelayed { record, claim: None });
        }
    }

    fn index_due(&mut self, transfer: &Transfer) {
        if let (false, Some(at)) = (transfer.status.is_final(), transfer.next_attempt_at) {
            self.due.insert((at, transfer.seq, transfer.id));
        }
    }

    fn unindex_due(&mut self, transfer: &Transfer) {
        if let Some(at) = transfer.next_attempt_at {
            self.due.remove(&(at, transfer.seq, transfer.id));
        }
    }
}

#[async_trait]
impl TransferStore for MemoryTransferStore {
    async fn insert(&self, mut transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Inserted> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if let Some(existing) = inner.transfers.get(&transfer.id) {
            return Ok(Inserted::Existing(existing.clone()));
        }
        inner.last_seq += 1;
        transfer.seq = inner.last_seq;
        transfer.version = 0;
        let mut accounts = vec![transfer.from_account_id];
        accounts.extend(transfer.to_account_id());
        for account in accounts {
            inner.by_account.entry(account).or_default().push((transfer.seq, transfer.id));
        }
        *inner.counts.entry(transfer.status).or_default() += 1;
        inner.index_due(&transfer);
        inner.push_outbox(outbox, now);
        inner.transfers.insert(transfer.id, transfer.clone());
        Ok(Inserted::Created(transfer))
    }

    async fn get(&self, id: TransferId) -> Result<Transfer> {
        self.inner.lock().transfers.get(&id).cloned().ok_or(Error::TransferNotFound(id))
    }

    async fn update(&self, mut transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let stored = inner.transfers.get(&transfer.id).ok_or(Error::TransferNotFound(transfer.id))?.clone();
        if stored.version != transfer.version {
            return Err(Error::VersionConflict);
        }
        if stored.status.is_final() {
            // A final transfer never changes; a caller holding an old copy lost a race.
            return Err(Error::VersionConflict);
        }
        transfer.version += 1;
        transfer.seq = stored.seq;
        inner.unindex_due(&stored);
        inner.index_due(&transfer);
        if stored.status != transfer.status {
            if let Some(count) = inner.counts.get_mut(&stored.status) {
                *count = count.saturating_sub(1);
            }
            *inner.counts.entry(transfer.status).or_default() += 1;
        }
        inner.push_outbox(outbox, now);
        inner.transfers.insert(transfer.id, transfer.clone());
        Ok(transfer)
    }

    async fn list_for_account(
        &self,
        account: AccountId,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<Transfer>> {
        let inner = self.inner.lock();
        let Some(ids) = inner.by_account.get(&account) else { return Ok(Vec::new()) };
        let before = before_seq.unwrap_or(u64::MAX);
        let end = ids.partition_point(|(seq, _)| *seq < before);
        Ok(ids[..end].iter().rev().take(limit).filter_map(|(_, id)| inner.transfers.get(id).cloned()).collect())
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Transfer>> {
        let inner = self.inner.lock();
        Ok(inner
            .due
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, _, id)| inner.transfers.get(id).cloned())
            .collect())
    }

    async fn count_by_status(&self) -> Result<Vec<(TransferStatus, u64)>> {
        let inner = self.inner.lock();
        Ok(TransferStatus::ALL.iter().map(|s| (*s, inner.counts.get(s).copied().unwrap_or(0))).collect())
    }

    async fn unresolved(&self, limit: usize) -> Result<Vec<Transfer>> {
        let inner = self.inner.lock();
        // Every non-final transfer is in `due`; unresolved ones are few.
        let mut found: Vec<Transfer> = inner
            .due
            .iter()
            .filter_map(|(_, _, id)| inner.transfers.get(id))
            .filter(|t| t.status == TransferStatus::Pending && t.outcome_unknown)
            .cloned()
            .collect();
        found.sort_by_key(|t| t.seq);
        found.truncate(limit);
        Ok(found)
    }

    async fn outbox_claim(&self, token: ClaimToken, limit: usize, lease: TimeDelta) -> Result<Vec<OutboxRecord>> {
        if lease <= TimeDelta::zero() {
            return Err(Error::invalid("an outbox lease must be positive"));
        }
        let now = self.clock.now();
        let until = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut inner = self.inner.lock();
        // Groups with an earlier record this claim does not take: nothing more of them is taken.
        let mut blocked: FxHashSet<AccountId> = FxHashSet::default();
        let mut records = Vec::new();
        for entry in inner.outbox.values_mut() {
            if records.len() >= limit {
                break;
            }
            let group = entry.record.message.group();
            if blocked.contains(&group) {
                continue;
            }
            if entry.claim.is_some_and(|(_, until)| now < until) {
                blocked.insert(group);
                continue;
            }
            entry.claim = Some((token, until));
            records.push(entry.record.clone());
        }
        Ok(records)
    }

    async fn outbox_done(&self, seqs: &[u64]) -> Result<()> {
        let mut inner = self.inner.lock();
        for seq in seqs {
            inner.outbox.remove(seq);
        }
        Ok(())
    }

    async fn outbox_release(&self, token: ClaimToken) -> Result<()> {
        let mut inner = self.inner.lock();
        for entry in inner.outbox.values_mut() {
            if entry.claim.is_some_and(|(held, _)| held == token) {
                entry.claim = None;
            }
        }
        Ok(())
    }

    async fn outbox_lag(&self) -> Result<(u64, Option<u64>)> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        let age = inner
            .outbox
            .values()
            .next()
            .map(|u| u64::try_from((now - u.record.created_at).num_milliseconds()).unwrap_or(0));
        Ok((inner.outbox.len() as u64, age))
    }
}
