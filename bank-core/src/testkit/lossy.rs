//! Stores (and an event publisher, an audit log and the deposit requests) whose calls fail the way calls over a dropped
//! connection do, for the fault simulation: before the store acted (nothing happened), after it
//! (it happened, its answer was lost), or — for a write — *late*: the caller's connection drops
//! at once, and the write lands later, after other calls (a commit the database finished after its
//! client gave up: a lock wait, a stalled disk). Either way the caller gets a retryable storage
//! error and cannot tell which. A [`Cutter`] decides, call by call, and keeps the late writes
//! until it lands them ([`Cutter::landing`], asked before every call); the wrappers pass every
//! call through when it says [`Cut::No`].

use std::future::Future;
use std::pin::Pin;
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
    EntryKey, HistoryItem, HistoryQuery, Hold, HoldMark, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal,
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
    /// The connection drops at once; a write acts later, when the cutter lands it (a read does
    /// nothing, as [`Cut::Before`]).
    Late,
}

/// A write on its way to the store, to be landed later ([`Cut::Late`]).
pub struct LateWrite(Pin<Box<dyn Future<Output = ()> + Send>>);

impl LateWrite {
    /// Lands the write: the store acts now (its answer goes nowhere).
    pub async fn land(self) {
        self.0.await;
    }
}

impl std::fmt::Debug for LateWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LateWrite")
    }
}

/// Late writes waiting to land, each after a number of further calls: the queue a simulation's
/// cutter keeps ([`Cutter::defer`], [`Cutter::landing`]), and how many it was given.
#[derive(Debug, Default)]
pub struct LateQueue {
    waiting: Vec<(u64, LateWrite)>,
    pushed: usize,
}

impl LateQueue {
    /// Keeps `write` until `calls` more calls have been made (at least one).
    pub fn push(&mut self, calls: u64, write: LateWrite) {
        self.waiting.push((calls.max(1), write));
        self.pushed += 1;
    }

    /// Counts one call: the writes due now.
    pub fn due(&mut self) -> Vec<LateWrite> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let (due, waiting) =
            std::mem::take(&mut self.waiting).into_iter().partition::<Vec<_>, _>(|(calls, _)| *calls <= 1);
        self.waiting = waiting.into_iter().map(|(calls, write)| (calls - 1, write)).collect();
        due.into_iter().map(|(_, write)| write).collect()
    }

    /// Every write still waiting.
    pub fn take_all(&mut self) -> Vec<LateWrite> {
        std::mem::take(&mut self.waiting).into_iter().map(|(_, write)| write).collect()
    }

    /// How many writes it was given in all.
    pub fn pushed(&self) -> usize {
        self.pushed
    }
}

/// Decides each call's [`Cut`].
pub trait Cutter: Send + Sync + std::fmt::Debug {
    /// What happens to the next call.
    fn cut(&self) -> Cut;

    /// Keeps a write cut [`Cut::Late`] until [`Cutter::landing`] returns it. By default it never
    /// lands (as if cut before the store acted).
    fn defer(&self, write: LateWrite) {
        drop(write);
    }

    /// The late writes to land now, before the next call goes on.
    fn landing(&self) -> Vec<LateWrite> {
        Vec::new()
    }
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

    /// Runs the read `call` as the cutter says (a future does nothing until awaited: dropped, it
    /// never ran), after the late writes the cutter lands now.
    async fn call<R>(&self, call: impl Future<Output = Result<R>>) -> Result<R> {
        self.land().await;
        match self.cutter.cut() {
            Cut::No => call.await,
            Cut::Before | Cut::Late => Err(dropped()),
            Cut::After => {
                let _lost = call.await;
                Err(dropped())
            }
        }
    }

    /// Runs the write `call(store)` as the cutter says: as [`Lossy::call`], and cut
    /// [`Cut::Late`] it is handed to the cutter to land later.
    async fn write<R, F>(&self, call: impl FnOnce(Arc<T>) -> F) -> Result<R>
    where
        F: Future<Output = Result<R>> + Send + 'static,
    {
        self.land().await;
        match self.cutter.cut() {
            Cut::No => call(Arc::clone(&self.inner)).await,
            Cut::Before => Err(dropped()),
            Cut::After => {
                let _lost = call(Arc::clone(&self.inner)).await;
                Err(dropped())
            }
            Cut::Late => {
                let write = call(Arc::clone(&self.inner));
                self.cutter.defer(LateWrite(Box::pin(async move {
                    let _lost = write.await;
                })));
                Err(dropped())
            }
        }
    }

    async fn land(&self) {
        for write in self.cutter.landing() {
            write.land().await;
        }
    }
}

/// Cuts one call: the `skip`-th call from now (0: the next) is cut as `how`; all others pass.
/// Set (or re-arm) it through the field: `*cutter.0.lock() = Some((skip, how))`; it reads `None`
/// once it has cut. A write cut [`Cut::Late`] waits until [`CutOne::land`].
#[derive(Debug, Default)]
pub struct CutOne(pub Mutex<Option<(u32, Cut)>>, Mutex<Vec<LateWrite>>);

impl CutOne {
    /// Cuts the `skip`-th call from now as `how`.
    pub fn new(skip: u32, how: Cut) -> Self {
        CutOne(Mutex::new(Some((skip, how))), Mutex::default())
    }

    /// Lands the writes cut [`Cut::Late`] so far; returns how many.
    pub async fn land(&self) -> usize {
        let writes = std::mem::take(&mut *self.1.lock());
        let count = writes.len();
        for write in writes {
            write.land().await;
        }
        count
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

    fn defer(&self, write: LateWrite) {
        self.1.lock().push(write);
    }
}

fn dropped() -> Error {
    Error::storage("simulated: the connection dropped", true)
}

#[async_trait]
impl LedgerStore for Lossy<dyn LedgerStore> {
    async fn open_account(&self, new: NewAccount) -> Result<Account> {
        self.write(move |s| async move { s.open_account(new).await }).await
    }
    async fn account(&self, id: AccountId) -> Result<Account> {
        self.call(self.inner.account(id)).await
    }
    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>> {
        self.call(self.inner.accounts_of(owner)).await
    }
    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account> {
        self.write(move |s| async move { s.set_status(id, status).await }).await
    }
    async fn post(&self, entry: NewEntry) -> Result<PostedEntry> {
        self.write(move |s| async move { s.post(entry).await }).await
    }
    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        let count = entries.len();
        match self.write(move |s| async move { Ok(s.post_batch(entries).await) }).await {
            Ok(results) => results,
            Err(_) => (0..count).map(|_| Err(dropped())).collect(),
        }
    }
    async fn entry(&self, key: EntryKey) -> Result<PostedEntry> {
        self.call(self.inner.entry(key)).await
    }
    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry> {
        self.write(move |s| async move { s.reverse(reversal).await }).await
    }
    async fn hold(&self, hold: NewHold) -> Result<Hold> {
        self.write(move |s| async move { s.hold(hold).await }).await
    }
    async fn get_hold(&self, id: HoldId) -> Result<Hold> {
        self.call(self.inner.get_hold(id)).await
    }
    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry> {
        self.write(move |s| async move { s.post_hold(request).await }).await
    }
    async fn void_hold(&self, id: HoldId) -> Result<Hold> {
        self.write(move |s| async move { s.void_hold(id).await }).await
    }
    async fn expire_holds(&self) -> Result<u64> {
        self.write(move |s| async move { s.expire_holds().await }).await
    }
    async fn mark_hold(&self, id: HoldId) -> Result<()> {
        self.write(move |s| async move { s.mark_hold(id).await }).await
    }
    async fn marked_holds(&self, after: Option<HoldId>, limit: usize) -> Result<Vec<HoldMark>> {
        self.call(self.inner.marked_holds(after, limit)).await
    }
    async fn unmark_holds(&self, ids: &[HoldId]) -> Result<()> {
        let ids = ids.to_vec();
        self.write(move |s| async move { s.unmark_holds(&ids).await }).await
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
        self.write(move |s| async move { s.insert(transfer, outbox).await }).await
    }
    async fn insert_completing(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        key: &KeyAnswer,
    ) -> Result<(Inserted, Option<Result<()>>)> {
        let key = key.clone();
        self.write(move |s| async move { s.insert_completing(transfer, outbox, &key).await }).await
    }
    async fn get(&self, id: TransferId) -> Result<Transfer> {
        self.call(self.inner.get(id)).await
    }
    async fn update(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer> {
        self.write(move |s| async move { s.update(transfer, outbox).await }).await
    }
    async fn update_acking(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        receipt: &Receipt,
    ) -> Result<(Transfer, Option<Result<()>>)> {
        let receipt = receipt.clone();
        self.write(move |s| async move { s.update_acking(transfer, outbox, &receipt).await }).await
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
        self.write(move |s| async move { s.outbox_claim(token, limit, lease).await }).await
    }
    async fn outbox_done(&self, seqs: &[u64]) -> Result<()> {
        let seqs = seqs.to_vec();
        self.write(move |s| async move { s.outbox_done(&seqs).await }).await
    }
    async fn outbox_release(&self, token: ClaimToken) -> Result<()> {
        self.write(move |s| async move { s.outbox_release(token).await }).await
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
        let (scope, resource) = (scope.clone(), resource.to_owned());
        self.write(move |s| async move { s.begin(&scope, fingerprint, &resource, lease).await }).await
    }
    async fn complete(&self, scope: &IdempotencyScope, token: LeaseToken, response: Vec<u8>) -> Result<()> {
        let scope = scope.clone();
        self.write(move |s| async move { s.complete(&scope, token, response).await }).await
    }
    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> Result<()> {
        let scope = scope.clone();
        self.write(move |s| async move { s.release(&scope, token).await }).await
    }
    async fn abandoned(&self, limit: usize) -> Result<Vec<IdempotencyRecord>> {
        self.call(self.inner.abandoned(limit)).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.write(move |s| async move { s.purge_expired().await }).await
    }
}

#[async_trait]
impl TransferQueue for Lossy<dyn TransferQueue> {
    async fn enqueue(&self, message: QueueMessage) -> Result<bool> {
        self.write(move |s| async move { s.enqueue(message).await }).await
    }
    async fn enqueue_batch(&self, messages: Vec<QueueMessage>) -> Result<Vec<bool>> {
        self.write(move |s| async move { s.enqueue_batch(messages).await }).await
    }
    async fn receive(&self, max: usize, visibility: TimeDelta) -> Result<Vec<Delivery>> {
        self.write(move |s| async move { s.receive(max, visibility).await }).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let receipt = receipt.clone();
        self.write(move |s| async move { s.ack(&receipt).await }).await
    }
    async fn retry_later(&self, receipt: &Receipt, delay: TimeDelta) -> Result<()> {
        let receipt = receipt.clone();
        self.write(move |s| async move { s.retry_later(&receipt, delay).await }).await
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
        let events = events.to_vec();
        self.write(move |s| async move { s.publish(&events).await }).await
    }
}

#[async_trait]
impl AuditLog for Lossy<dyn AuditLog> {
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        self.write(move |s| async move { s.append(record).await }).await
    }
    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>> {
        self.write(move |s| async move { s.append_batch(records).await }).await
    }
    async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord> {
        let key = key.to_owned();
        self.write(move |s| async move { s.append_once(&key, record).await }).await
    }
    async fn append_once_batch(&self, records: Vec<(String, NewAuditRecord)>) -> Result<()> {
        self.write(move |s| async move { s.append_once_batch(records).await }).await
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
        self.write(move |s| async move { s.add_checkpoint(checkpoint).await }).await
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
        self.write(move |s| async move { s.create(request).await }).await
    }
    async fn get(&self, id: TransferId) -> Result<Option<DepositRequest>> {
        self.call(self.inner.get(id)).await
    }
    async fn approve(&self, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest> {
        self.write(move |s| async move { s.approve(id, by, at).await }).await
    }
    async fn pending(&self, limit: usize) -> Result<Vec<DepositRequest>> {
        self.call(self.inner.pending(limit)).await
    }
    async fn approved_since(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<DepositRequest>> {
        self.call(self.inner.approved_since(since, limit)).await
    }
}
