//! Ports: the small traits through which `bank-core` reaches storage and the outside world.
//!
//! Each is `Send + Sync`, held as `Arc<dyn Port>`, and has an in-memory implementation in
//! [`crate::memory`] and a conformance suite in `testkit` that every implementation runs.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use crate::account::{Account, AccountStatus, Balance, NewAccount};
use crate::error::Result;
use crate::events::{Event, OutboxMessage, OutboxRecord};
use crate::idempotency::{Begin, IdempotencyRecord, IdempotencyScope, LeaseToken};
use crate::ids::{AccountId, ClaimToken, CustomerId, HoldId, TransferId};
use crate::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, HoldMark, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal,
};
use crate::money::Currency;
use crate::queue::{Delivery, QueueMessage, QueueStats, Receipt};
use crate::rail::{RailConfirmation, RailError, RailPayment, RailStatus};
use crate::transfer::{Fingerprint, Transfer, TransferStatus};

pub use crate::clock::Clock;
/// Notification ports live beside their types in [`crate::notifications`].
pub use crate::notifications::{EventSubscriber, EventSubscription, NotificationLog, Notifier};

/// Most accounts one owner may hold (bounds `accounts_of`).
pub const ACCOUNTS_PER_OWNER_MAX: usize = 100;

/// Accounts, postings, holds, balances and history, with every rule of [`crate::ledger::rules`]
/// applied atomically.
///
/// # Contract
/// - Each call is atomic: on error, nothing changed.
/// - `post`, `post_hold` and `reverse` are idempotent on their [`EntryKey`]: the same request
///   again returns the first [`PostedEntry`] and moves no money; a different request under a used
///   key fails with [`crate::Error::KeyReused`]. The same holds for `hold` and `open_account` on
///   their ids.
/// - Entries are append-only; each account's entries get sequence numbers 1, 2, 3, … with no gap.
/// - Holds whose `expires_at` has passed no longer reserve funds, whether or not
///   [`LedgerStore::expire_holds`] has run.
/// - Concurrent calls behave as if run one at a time (serializable per touched account).
#[async_trait]
pub trait LedgerStore: Send + Sync + std::fmt::Debug + 'static {
    /// Opens an account (validated with [`NewAccount::validate`]). Idempotent on the id.
    async fn open_account(&self, new: NewAccount) -> Result<Account>;

    /// One account.
    async fn account(&self, id: AccountId) -> Result<Account>;

    /// The accounts of `owner`, oldest first (at most [`ACCOUNTS_PER_OWNER_MAX`]).
    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>>;

    /// Freezes, reopens or closes an account ([`crate::ledger::rules::check_status_change`]).
    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account>;

    /// Posts a balanced entry.
    async fn post(&self, entry: NewEntry) -> Result<PostedEntry>;

    /// Posts several independent entries, each with its own result, as if posted one after the
    /// other in order. Stores override this to commit the batch together (group commit).
    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            results.push(self.post(entry).await);
        }
        results
    }

    /// The entry posted under `key`.
    async fn entry(&self, key: EntryKey) -> Result<PostedEntry>;

    /// Posts the reversal of an entry (each entry is reversed at most once).
    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry>;

    /// Reserves funds.
    async fn hold(&self, hold: NewHold) -> Result<Hold>;

    /// A hold, as of now.
    async fn get_hold(&self, id: HoldId) -> Result<Hold>;

    /// Posts (part of) an active hold; the rest is released.
    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry>;

    /// Releases an active hold. Voiding a voided or expired hold returns it unchanged; a posted
    /// hold cannot be voided.
    async fn void_hold(&self, id: HoldId) -> Result<Hold>;

    /// Marks every hold past its expiry as expired; returns how many it marked.
    async fn expire_holds(&self) -> Result<u64>;

    /// Marks `id` as given up while no hold of it could be seen — a void that found none, whose
    /// caller then forgets the id (the payments pipeline, freeing an abandoned request's key).
    /// A hold under `id` may still land afterwards: a call placing it was on its way (a commit
    /// the database finished after its client gave up). Marking an id again keeps the first mark.
    async fn mark_hold(&self, id: HoldId) -> Result<()>;

    /// Up to `limit` marks in id order, after `after` (from the first when `None`), each with its
    /// hold as of now, if one was placed.
    async fn marked_holds(&self, after: Option<HoldId>, limit: usize) -> Result<Vec<HoldMark>>;

    /// Removes the marks of `ids` (ids not marked are ignored).
    async fn unmark_holds(&self, ids: &[HoldId]) -> Result<()>;

    /// Balances of one account.
    async fn balance(&self, id: AccountId) -> Result<Balance>;

    /// One page of an account's history, newest first.
    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>>;

    /// The sum of all posted balances per currency (zero for every currency, by double entry);
    /// used by audits and tests.
    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>>;

    /// The account's posted balance as of the instant `at`: its credits minus its debits over
    /// every entry posted strictly before `at` (`posted_at < at`), zero before its first entry.
    /// Holds do not count. Statements reconcile against it.
    ///
    /// The default pages through [`LedgerStore::history`] and sums; a store overrides it with one
    /// query where it can.
    async fn balance_at(&self, id: AccountId, at: DateTime<Utc>) -> Result<Decimal> {
        let mut query = HistoryQuery::new(crate::ledger::PAGE_LIMIT_MAX, None)?;
        let mut balance = Decimal::ZERO;
        loop {
            let page = self.history(id, query).await?;
            for item in page.items.iter().filter(|item| item.posted_at < at) {
                balance = crate::money::checked_add(balance, item.direction.signed(item.money.value()))?;
            }
            match page.next_cursor {
                Some(cursor) => query = HistoryQuery::new(crate::ledger::PAGE_LIMIT_MAX, Some(cursor))?,
                None => return Ok(balance),
            }
        }
    }

    /// Every account (customers' and the bank's own) in id order: at most `limit` (1 to
    /// [`ACCOUNTS_PAGE_MAX`]) with an id greater than `after` (from the first when `None`). Jobs
    /// that visit every account (monthly statements) page with it.
    ///
    /// The default refuses (a non-retryable storage error naming the missing capability): a
    /// store can only list what it keeps, so each store implements it.
    async fn accounts_after(&self, after: Option<AccountId>, limit: usize) -> Result<Vec<Account>> {
        let _ = (after, limit);
        Err(crate::Error::Storage {
            message: format!(
                "{} cannot list accounts (LedgerStore::accounts_after is not implemented)",
                std::any::type_name::<Self>()
            ),
            retryable: false,
        })
    }
}

/// Most accounts one [`LedgerStore::accounts_after`] call returns.
pub const ACCOUNTS_PAGE_MAX: usize = 1_000;

/// Checks the `limit` of [`LedgerStore::accounts_after`]: 1 to [`ACCOUNTS_PAGE_MAX`].
pub fn check_accounts_page(limit: usize) -> Result<()> {
    if limit == 0 || limit > ACCOUNTS_PAGE_MAX {
        return Err(crate::Error::InvalidInput(format!("accounts page limit must be 1 to {ACCOUNTS_PAGE_MAX}")));
    }
    Ok(())
}

/// Idempotency records (Stripe semantics; see [`crate::idempotency`]). Implementations read the
/// time from their [`Clock`].
///
/// # Contract
/// - `begin` on an unknown (or expired) scope stores an in-flight record naming `resource` with a
///   lease of `lease` and returns [`Begin::Started`]. Exactly one of many concurrent `begin`s on
///   the same scope starts; the others see `IdempotencyInFlight` (or a replay, once completed).
/// - Same scope, different fingerprint → `IdempotencyMismatch`, whatever the record's state.
/// - Same fingerprint: completed → [`Begin::Replay`]; in flight with a live lease →
///   `IdempotencyInFlight`; in flight with an expired lease → a takeover: a new token, the
///   *stored* resource and first-seen time, `takeover: true`.
/// - `complete` and `release` need the current token, else `LeaseLost`. `release` forgets the key
///   (the request failed before doing anything).
/// - Records are forgotten [`crate::idempotency::IDEMPOTENCY_RETENTION_HOURS`] after first use
///   (`now < created_at + retention` keeps it); a record past retention counts as absent
///   everywhere, `abandoned` included.
/// - A lease is live while `now < lease_until`; a token stays current after its lease ran out
///   until someone takes over. A second `complete` with the same token is Ok and keeps the first
///   response; `release` on a completed record is `LeaseLost` (work that happened is never
///   forgotten). `abandoned` lists oldest `created_at` first. The lease must be positive.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Claims a key for a request, or reports what an earlier request with it did.
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: Fingerprint,
        resource: &str,
        lease: TimeDelta,
    ) -> Result<Begin>;

    /// Stores the response of a finished request.
    async fn complete(&self, scope: &IdempotencyScope, token: LeaseToken, response: Vec<u8>) -> Result<()>;

    /// Forgets an in-flight key whose request failed before any effect.
    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> Result<()>;

    /// In-flight records whose lease ran out (their request died), oldest first, at most `limit`.
    async fn abandoned(&self, limit: usize) -> Result<Vec<IdempotencyRecord>>;

    /// Deletes records past retention; returns how many.
    async fn purge_expired(&self) -> Result<u64>;
}

/// The transfer queue (SQS FIFO semantics; see [`crate::queue`]). Implementations read the time
/// from their [`Clock`].
///
/// # Contract (beyond each method's doc)
/// - A receipt stays valid until its message is acknowledged, dead-lettered or delivered again.
/// - A message delayed by `retry_later` counts as in flight; visibility ends when `now >= until`,
///   and the redelivery raises its receive count.
/// - Dead-lettering happens at receive time, when a message would exceed `max_receives`.
/// - Deduplication covers the whole queue; a refused enqueue (full, bad input) records nothing.
/// - The order *between* groups is not guaranteed; within a group it is FIFO.
/// - Visibility and delays are at most 12 hours; dedup ids 1 to 128 bytes (SQS's limits), else
///   `InvalidInput`.
#[async_trait]
pub trait TransferQueue: Send + Sync + std::fmt::Debug + 'static {
    /// Adds a message at the end of its group. Returns `false` when its `dedup_id` was seen within
    /// the deduplication window (nothing added); `QueueFull` at capacity.
    async fn enqueue(&self, message: QueueMessage) -> Result<bool>;

    /// Enqueues `messages` in order, answering per message what [`TransferQueue::enqueue`] would
    /// (`false` for a duplicate, also of an earlier message of the same batch). Adapters do it in
    /// one round trip where they can. On `Err`, any prefix of the batch may have been enqueued;
    /// enqueueing the same batch again is safe (deduplication).
    async fn enqueue_batch(&self, messages: Vec<QueueMessage>) -> Result<Vec<bool>> {
        let mut added = Vec::with_capacity(messages.len());
        for message in messages {
            added.push(self.enqueue(message).await?);
        }
        Ok(added)
    }

    /// Up to `max` messages: from each group with no message in flight, its oldest messages in
    /// order, up to [`GROUP_RECEIVE_MAX`](crate::queue::GROUP_RECEIVE_MAX), groups with the oldest
    /// first message first; each stays invisible for `visibility`. A group with any message in
    /// flight delivers nothing else. A message past its delivery budget goes to the dead-letter
    /// queue instead (its group goes on with its next message).
    async fn receive(&self, max: usize, visibility: TimeDelta) -> Result<Vec<Delivery>>;

    /// Deletes a delivered message. `StaleReceipt` if the delivery is no longer current.
    async fn ack(&self, receipt: &Receipt) -> Result<()>;

    /// Makes a delivered message visible again after `delay`; its group stays blocked until then
    /// and while any other of its messages is in flight.
    async fn retry_later(&self, receipt: &Receipt, delay: TimeDelta) -> Result<()>;

    /// Depth figures.
    async fn stats(&self) -> Result<QueueStats>;

    /// The dead-lettered messages, oldest first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<QueueMessage>>;
}

/// Whether a transfer insert created it or found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now (with its `seq` assigned).
    Created(Transfer),
    /// A transfer with this id already existed; here it is, unchanged.
    Existing(Transfer),
}

/// An idempotency key's answer, to record in the same write as a new transfer where the transfer
/// store keeps the keys in its own database ([`TransferStore::insert_completing`]).
#[derive(Debug, Clone)]
pub struct KeyAnswer {
    pub scope: IdempotencyScope,
    /// The lease under which the key is in flight.
    pub token: LeaseToken,
    /// The answer to record, made from the transfer as stored (the insert assigns its `seq`).
    pub answer: fn(&Transfer) -> Vec<u8>,
}

/// Transfers and their outbox.
///
/// # Contract
/// - `insert` and `update` write the transfer **and** its outbox messages atomically.
/// - `update` succeeds only if the stored version equals `transfer.version`; it stores
///   `version + 1` and returns the stored transfer. Otherwise `VersionConflict`.
/// - The outbox is relayed by *claims*, so that several relays (several processes) can run at
///   once without handing a record to two of them while claims are live, and without losing one
///   ever:
///   - `outbox_claim(token, limit, lease)` claims, in `seq` order, at most `limit` unrelayed
///     records that no live claim holds (never claimed, or claimed until an instant `<= now`),
///     until `now + lease`, under `token`: a fresh [`ClaimToken`] the relay chose, so that it can
///     give the claim back even when the claim's answer was lost (a token used before is the
///     caller's mistake; stores need not detect it). A record is claimed only together with every
///     earlier unrelayed record of its group ([`OutboxMessage::group`]): behind a record that
///     another relay holds, or that this claim does not take, nothing of the group is claimed.
///     So the records of one group (one transfer, one source account) are delivered by one relay
///     at a time, in order, and a record caused by a delivered one cannot overtake it. Of
///     concurrent claims, none gets a record another holds live.
///   - `outbox_done(seqs)` deletes exactly the records at `seqs` (delivered, whoever holds them
///     now; unknown positions are ignored).
///   - `outbox_release(token)` gives back the records still claimed under `token` (the relay
///     could not deliver them, or does not know whether it claimed them): they are claimable again
///     at once; an unknown token changes nothing. A claim whose relay died runs out instead, and
///     the records go to the next claim. Both deliver again what may have been delivered:
///     delivery is at least once (the queue deduplicates on `dedup_id`, consumers on the event
///     id).
///   - Positions increase in write order and are never reused. The lease must be positive
///     (else `InvalidInput`).
#[async_trait]
pub trait TransferStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new transfer (assigning `seq`), or returns the one already stored under its id.
    async fn insert(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Inserted>;

    /// [`TransferStore::insert`], and where this store keeps the idempotency keys in the same
    /// database, `key`'s answer recorded in the same write when the transfer is created (one
    /// commit where there were two, none between them to fail). Answers what the insert did and
    /// `Some(result)` of completing the key (as [`IdempotencyStore::complete`] would answer it;
    /// `LeaseLost` keeps the insert), or `None`: the key was not touched, and the caller completes
    /// it through its idempotency store (the default, for stores without keys).
    async fn insert_completing(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        key: &KeyAnswer,
    ) -> Result<(Inserted, Option<Result<()>>)> {
        let _not_here = key;
        Ok((self.insert(transfer, outbox).await?, None))
    }

    /// One transfer.
    async fn get(&self, id: TransferId) -> Result<Transfer>;

    /// Replaces a transfer if unchanged since read, with its outbox messages.
    async fn update(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer>;

    /// [`TransferStore::update`], and where this store keeps the transfer queue in the same
    /// database, the delivery under `receipt` acknowledged in the same write (the worker's last
    /// two writes of a transfer in one commit). Answers the stored transfer and `Some(result)` of
    /// the acknowledgement (as [`TransferQueue::ack`] would answer it; `StaleReceipt` keeps the
    /// update), or `None`: the delivery was not touched, and the caller acknowledges it through
    /// its queue (the default, for stores without the queue). A refused update acknowledges
    /// nothing.
    async fn update_acking(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        receipt: &Receipt,
    ) -> Result<(Transfer, Option<Result<()>>)> {
        let _not_here = receipt;
        Ok((self.update(transfer, outbox).await?, None))
    }

    /// Transfers from or to `account`, newest first: at most `limit` with `seq < before_seq`.
    async fn list_for_account(
        &self,
        account: AccountId,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<Transfer>>;

    /// Non-final transfers whose `next_attempt_at` is at or before `now`, oldest first.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Transfer>>;

    /// Count of transfers per status.
    async fn count_by_status(&self) -> Result<Vec<(TransferStatus, u64)>>;

    /// `pending` transfers whose rail outcome is unknown (a payment may be out that the rail has
    /// not confirmed), in acceptance order, at most `limit`: what an operator is alerted to.
    async fn unresolved(&self, limit: usize) -> Result<Vec<Transfer>>;

    /// Claims unrelayed records under `token` until `now + lease` (see the contract); answers
    /// them in `seq` order, at most `limit`.
    async fn outbox_claim(&self, token: ClaimToken, limit: usize, lease: TimeDelta) -> Result<Vec<OutboxRecord>>;

    /// Deletes the records at `seqs`: they were delivered.
    async fn outbox_done(&self, seqs: &[u64]) -> Result<()>;

    /// Makes the records still claimed under `token` claimable again at once.
    async fn outbox_release(&self, token: ClaimToken) -> Result<()>;

    /// (unrelayed records, claimed or not; age in ms of the oldest one) for metrics.
    async fn outbox_lag(&self) -> Result<(u64, Option<u64>)>;
}

/// Where relayed events go (an in-process bus, SNS, …). Delivery is at least once; consumers
/// deduplicate on [`Event::id`].
#[async_trait]
pub trait EventPublisher: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes events in order. On error, some may have been published; the relay retries all.
    async fn publish(&self, events: &[Event]) -> Result<()>;
}

/// A payment rail (see [`crate::rail`]). Calls carry the transfer id as the idempotency key.
#[async_trait]
pub trait PaymentRail: Send + Sync + std::fmt::Debug + 'static {
    /// The rail's name (metrics, logs, circuit breaker).
    fn name(&self) -> &str;

    /// Submits a payment; submitting the same transfer id again returns the first outcome.
    async fn submit(&self, payment: &RailPayment) -> std::result::Result<RailConfirmation, RailError>;

    /// What the rail knows about a transfer id.
    async fn status(&self, transfer_id: TransferId) -> std::result::Result<RailStatus, RailError>;
}

/// Immutable object storage with retention (see [`crate::blob`]).
///
/// # Contract
/// - `put` on a new key stores the bytes; on an existing key with identical bytes it returns the
///   stored metadata (replay); with different bytes it fails with `Retained` while the object is
///   retained and `KeyReused` after.
/// - `delete` fails with `Retained` before `retain_until`.
/// - `presign_get` returns a URL that grants read access to one object until it expires.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Writes an object once.
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<crate::blob::BlobMeta>;

    /// Reads an object.
    async fn get(&self, key: &str) -> Result<(crate::blob::BlobMeta, Vec<u8>)>;

    /// Reads an object's metadata.
    async fn head(&self, key: &str) -> Result<crate::blob::BlobMeta>;

    /// Deletes an object whose retention has ended.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Objects whose key starts with `prefix`, in key order, at most `limit`.
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<crate::blob::BlobMeta>>;

    /// A URL reading the object, valid for `expires_in`.
    async fn presign_get(&self, key: &str, expires_in: TimeDelta) -> Result<String>;
}
