//! Stores (and an event publisher, an audit log and the deposit requests) whose calls fail the way calls over a dropped
//! connection do, for the fault simulation: before the store acted (nothing happened) or after it
//! (it happened, its answer was lost). Either way the caller gets a retryable storage error and
//! cannot tell which. A [`Cutter`] decides, call by call; the wrappers pass every call through
//! when it says [`Cut::No`].

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;

use super::simulation::SimStores;
use crate::account::{Account, AccountStatus, Balance, NewAccount};
use crate::approvals::{DepositRequest, DepositRequestStore};
use crate::audit::{AuditLog, AuditRecord, Digest, NewAuditRecord, StoredCheckpoint};
use crate::error::{Error, Result};
use crate::events::{Event, OutboxMessage, OutboxRecord};
use crate::idempotency::{Begin, IdempotencyRecord, IdempotencyScope, LeaseToken};
use crate::ids::{AccountId, ClaimToken, CustomerId, HoldId, TransferId};
use crate::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal,
};
use crate::money::Currency;
use crate::ports::{EventPublisher, IdempotencyStore, Inserted, KeyAnswer, LedgerStore, TransferQueue, TransferStore};
use crate::queue::{Delivery, QueueMessage, QueueStats, Receipt};
use crate::transfer::{Fingerprint, Transfer, TransferStatus};

/// What happens to one store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// It goes through.
    No,
    /// The connection drops before the store acts.
    Before,
    /// The store acts; the connection drops before its answer arrives.
    After,
}

/// Decides each call's [`Cut`].
pub trait Cutter: Send + Sync + std::fmt::Debug {
    /// What happens to the next call.
    fn cut(&self) -> Cut;
}

/// `stores`, each call subject to `cutter`.
pub fn wrap(stores: SimStores, cutter: Arc<dyn Cutter>) -> SimStores {
    SimStores {
        ledger: Arc::new(Lossy { inner: stores.ledger, cutter: Arc::clone(&cutter) }),
        transfers: Arc::new(Lossy { inner: stores.transfers, cutter: Arc::clone(&cutter) }),
        idempotency: Arc::new(Lossy { inner: stores.idempotency, cutter: Arc::clone(&cutter) }),
        queue: Arc::new(Lossy { inner: stores.queue, cutter }),
    }
}

/// A store whose calls `cutter` may cut; implements the port `T` is.
#[derive(Debug)]
pub struct Lossy<T: ?Sized> {
    inner: Arc<T>,
    cutter: Arc<dyn Cutter>,
}

impl<T: ?Sized> Lossy<T> {
    /// `inner`, each call subject to `cutter`.
    pub fn new(inner: Arc<T>, cutter: Arc<dyn Cutter>) -> Self {
        Lossy { inner, cutter }
    }

    /// Runs `call` as the cutter says (a future does nothing until awaited: dropped, it never ran).
    async fn call<R>(&self, call: impl Future<Output = Result<R>>) -> Result<R> {
        match self.cutter.cut() {
            Cut::No => call.await,
            Cut::Before => Err(dropped()),
            Cut::After => {
                let _lost = call.await;
                Err(dropped())
            }
        }
    }
}

/// Cuts one call: the `skip`-th call from now (0: the next) is cut as `how`; all others pass.
/// Set (or re-arm) it through the field: `*cutter.0.lock() = Some((skip, how))`; it reads `None`
/// once it has cut.
#[derive(Debug, Default)]
pub struct CutOne(pub Mutex<Option<(u32, Cut)>>);

impl CutOne {
    /// Cuts the `skip`-th call from now as `how`.
    pub fn new(skip: u32, how: Cut) -> Self {
        CutOne(Mutex::new(Some((skip, how))))
    }
}

impl Cutter for CutOne {
    fn cut(&self) -> Cut {
        let mut armed = self.0.lock();
        match armed.as_mut() {
            Some((0, how)) => {
                let how = *how;
                *armed = None;
                how
            }
            Some((skip, _)) => {
                *skip -= 1;
                Cut::No
            }
            None => Cut::No,
        }
    }
}

fn dropped() -> Error {
    Error::storage("simulated: the connection dropped", true)
}

#[async_trait]
impl LedgerStore for Lossy<dyn LedgerStore> {
    async fn open_account(&self, new: NewAccount) -> Result<Account> {
        self.call(self.inner.open_account(new)).await
    }
    async fn account(&self, id: AccountId) -> Result<Account> {
        self.call(self.inner.account(id)).await
    }
    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>> {
        self.call(self.inner.accounts_of(owner)).await
    }
    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account> {
        self.call(self.inner.set_status(id, status)).await
    }
    async fn post(&self, entry: NewEntry) -> Result<PostedEntry> {
        self.call(self.inner.post(entry)).await
    }
    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        let count = entries.len();
        match self.call(async { Ok(self.inner.post_batch(entries).await) }).await {
            Ok(results) => results,
            Err(_) => (0..count).map(|_| Err(dropped())).collect(),
        }
    }
    async fn entry(&self, key: EntryKey) -> Result<PostedEntry> {
        self.call(self.inner.entry(key)).await
    }
    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry> {
        self.call(self.inner.reverse(reversal)).await
    }
    async fn hold(&self, hold: NewHold) -> Result<Hold> {
        self.call(self.inner.hold(hold)).await
    }
    async fn get_hold(&self, id: HoldId) -> Result<Hold> {
        self.call(self.inner.get_hold(id)).await
    }
    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry> {
        self.call(self.inner.post_hold(request)).await
    }
    async fn void_hold(&self, id: HoldId) -> Result<Hold> {
        self.call(self.inner.void_hold(id)).await
    }
    async fn expire_holds(&self) -> Result<u64> {
        self.call(self.inner.expire_holds()).await
    }
    async fn balance(&self, id: AccountId) -> Result<Balance> {
        self.call(self.inner.balance(id)).await
    }
    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>> {
        self.call(self.inner.history(id, query)).await
    }
    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>> {
        self.call(self.inner.trial_balance()).await
    }
    async fn balance_at(&self, id: AccountId, at: DateTime<Utc>) -> Result<Decimal> {
        self.call(self.inner.balance_at(id, at)).await
    }
    async fn accounts_after(&self, after: Option<AccountId>, limit: usize) -> Result<Vec<Account>> {
        self.call(self.inner.accounts_after(after, limit)).await
    }
}

#[async_trait]
impl TransferStore for Lossy<dyn TransferStore> {
    async fn insert(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Inserted> {
        self.call(self.inner.insert(transfer, outbox)).await
    }
    async fn insert_completing(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        key: &KeyAnswer,
    ) -> Result<(Inserted, Option<Result<()>>)> {
        self.call(self.inner.insert_completing(transfer, outbox, key)).await
    }
    async fn get(&self, id: TransferId) -> Result<Transfer> {
        self.call(self.inner.get(id)).await
    }
    async fn update(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer> {
        self.call(self.inner.update(transfer, outbox)).await
    }
    async fn update_acking(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        receipt: &Receipt,
    ) -> Result<(Transfer, Option<Result<()>>)> {
        self.call(self.inner.update_acking(transfer, outbox, receipt)).await
    }
    async fn list_for_account(
        &self,
        account: AccountId,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<Transfer>> {
        self.call(self.inner.list_for_account(account, limit, before_seq)).await
    }
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Transfer>> {
        self.call(self.inner.due(now, limit)).await
    }
    async fn count_by_status(&self) -> Result<Vec<(TransferStatus, u64)>> {
        self.call(self.inner.count_by_status()).await
    }
    async fn unresolved(&self, limit: usize) -> Result<Vec<Transfer>> {
        self.call(self.inner.unresolved(limit)).await
    }
    async fn outbox_claim(&self, token: ClaimToken, limit: usize, lease: TimeDelta) -> Result<Vec<OutboxRecord>> {
        self.call(self.inner.outbox_claim(token, limit, lease)).await
    }
    async fn outbox_done(&self, seqs: &[u64]) -> Result<()> {
        self.call(self.inner.outbox_done(seqs)).await
    }
    async fn outbox_release(&self, token: ClaimToken) -> Result<()> {
        self.call(self.inner.outbox_release(token)).await
    }
    async fn outbox_lag(&self) -> Result<(u64, Option<u64>)> {
        self.call(self.inner.outbox_lag()).await
    }
}

#[async_trait]
impl IdempotencyStore for Lossy<dyn IdempotencyStore> {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: Fingerprint,
        resource: &str,
        lease: TimeDelta,
    ) -> Result<Begin> {
        self.call(self.inner.begin(scope, fingerprint, resource, lease)).await
    }
    async fn complete(&self, scope: &IdempotencyScope, token: LeaseToken, response: Vec<u8>) -> Result<()> {
        self.call(self.inner.complete(scope, token, response)).await
    }
    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> Result<()> {
        self.call(self.inner.release(scope, token)).await
    }
    async fn abandoned(&self, limit: usize) -> Result<Vec<IdempotencyRecord>> {
        self.call(self.inner.abandoned(limit)).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.call(self.inner.purge_expired()).await
    }
}

#[async_trait]
impl TransferQueue for Lossy<dyn TransferQueue> {
    async fn enqueue(&self, message: QueueMessage) -> Result<bool> {
        self.call(self.inner.enqueue(message)).await
    }
    async fn enqueue_batch(&self, messages: Vec<QueueMessage>) -> Result<Vec<bool>> {
        self.call(self.inner.enqueue_batch(messages)).await
    }
    async fn receive(&self, max: usize, visibility: TimeDelta) -> Result<Vec<Delivery>> {
        self.call(self.inner.receive(max, visibility)).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.call(self.inner.ack(receipt)).await
    }
    async fn retry_later(&self, receipt: &Receipt, delay: TimeDelta) -> Result<()> {
        self.call(self.inner.retry_later(receipt, delay)).await
    }
    async fn stats(&self) -> Result<QueueStats> {
        self.call(self.inner.stats()).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<QueueMessage>> {
        self.call(self.inner.dead_letters(limit)).await
    }
}

#[async_trait]
impl EventPublisher for Lossy<dyn EventPublisher> {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        self.call(self.inner.publish(events)).await
    }
}

#[async_trait]
impl AuditLog for Lossy<dyn AuditLog> {
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        self.call(self.inner.append(record)).await
    }
    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>> {
        self.call(self.inner.append_batch(records)).await
    }
    async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord> {
        self.call(self.inner.append_once(key, record)).await
    }
    async fn append_once_batch(&self, records: Vec<(String, NewAuditRecord)>) -> Result<()> {
        self.call(self.inner.append_once_batch(records)).await
    }
    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.call(self.inner.list(from_seq, limit)).await
    }
    async fn size(&self) -> Result<u64> {
        self.call(self.inner.size()).await
    }
    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>> {
        self.call(self.inner.tree_hashes(indexes)).await
    }
    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
        self.call(self.inner.add_checkpoint(checkpoint)).await
    }
    async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        self.call(self.inner.checkpoints(from_ordinal, limit)).await
    }
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.call(self.inner.latest_checkpoint()).await
    }
}

#[async_trait]
impl DepositRequestStore for Lossy<dyn DepositRequestStore> {
    async fn create(&self, request: DepositRequest) -> Result<DepositRequest> {
        self.call(self.inner.create(request)).await
    }
    async fn get(&self, id: TransferId) -> Result<Option<DepositRequest>> {
        self.call(self.inner.get(id)).await
    }
    async fn approve(&self, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest> {
        self.call(self.inner.approve(id, by, at)).await
    }
    async fn pending(&self, limit: usize) -> Result<Vec<DepositRequest>> {
        self.call(self.inner.pending(limit)).await
    }
    async fn approved_since(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<DepositRequest>> {
        self.call(self.inner.approved_since(since, limit)).await
    }
}
