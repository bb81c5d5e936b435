//! The [`TransferStore`] conformance suite: transfers, compare-and-swap updates, and the outbox
//! written atomically with them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::fixtures::usd;
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::events::{Event, OutboxMessage};
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::ports::{Inserted, TransferStore};
use crate::queue::QueueMessage;
use crate::transfer::{Destination, FailureCode, Transfer, TransferRequest, TransferStatus};

/// How to build a fresh, empty transfer store for one test case.
#[async_trait]
pub trait TransferStoreHarness: Send + Sync {
    /// A new empty store that reads time from `clock`.
    async fn transfers(&self, clock: Arc<dyn Clock>) -> Arc<dyn TransferStore>;
}

/// Expands to one `#[tokio::test]` per [`TransferStore`] conformance case.
#[macro_export]
macro_rules! transfer_store_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(outbox, $harness;
            insert_assigns_order_and_is_idempotent,
            update_is_compare_and_swap,
            outbox_is_written_with_changes_and_read_in_order,
            due_lists_unfinished_transfers_by_deadline,
            list_for_account_pages_newest_first,
            concurrent_updates_have_one_winner,
            unresolved_lists_pending_transfers_of_unknown_outcome,
        );
    };
}

/// The harness for [`crate::memory::transfers::MemoryTransferStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryTransferStoreHarness;

#[async_trait]
impl TransferStoreHarness for MemoryTransferStoreHarness {
    async fn transfers(&self, clock: Arc<dyn Clock>) -> Arc<dyn TransferStore> {
        Arc::new(crate::memory::transfers::MemoryTransferStore::new(clock))
    }
}

async fn setup(harness: &dyn TransferStoreHarness) -> (Arc<dyn TransferStore>, ManualClock) {
    let clock = ManualClock::at_epoch();
    (harness.transfers(Arc::new(clock.clone())).await, clock)
}

fn transfer(clock: &ManualClock, from: AccountId, to: AccountId) -> Transfer {
    let request = TransferRequest {
        id: None,
        from_account_id: from,
        destination: Destination::Internal { account_id: to },
        money: usd("12.34"),
        reference: "test".into(),
    };
    let now = clock.now();
    Transfer::accepted(TransferId::new(), CustomerId::new(), &request, now, now + TimeDelta::minutes(5))
}

fn accepted_outbox(t: &Transfer, clock: &ManualClock) -> Vec<OutboxMessage> {
    let mut out = vec![OutboxMessage::Enqueue(QueueMessage::first(t.id, t.from_account_id))];
    out.extend(Event::of(t, None, clock.now()).map(OutboxMessage::Publish));
    out
}

fn created(inserted: Inserted) -> Transfer {
    match inserted {
        Inserted::Created(t) => t,
        Inserted::Existing(t) => panic!("expected a new transfer, found {}", t.id),
    }
}

/// Inserting assigns increasing `seq`; inserting an existing id returns it unchanged.
pub async fn insert_assigns_order_and_is_idempotent(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let (a, b) = (AccountId::new(), AccountId::new());
    let first = created(store.insert(transfer(&clock, a, b), Vec::new()).await.expect("insert"));
    let second = created(store.insert(transfer(&clock, a, b), Vec::new()).await.expect("insert"));
    assert!(second.seq > first.seq && first.seq > 0);
    assert_eq!(first.version, 0);
    assert_eq!(store.get(first.id).await.expect("get"), first);
    let mut changed = first.clone();
    changed.reference = "other".into();
    match store.insert(changed, accepted_outbox(&first, &clock)).await.expect("insert again") {
        Inserted::Existing(existing) => assert_eq!(existing, first),
        Inserted::Created(_) => panic!("a second insert under one id created a transfer"),
    }
    assert!(store.outbox_batch(10).await.expect("outbox").is_empty(), "a refused insert wrote outbox messages");
    assert!(matches!(store.get(TransferId::new()).await, Err(Error::TransferNotFound(_))));
}

/// Updates succeed only against the version read, bump it, and never change a final transfer.
pub async fn update_is_compare_and_swap(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let t = created(store.insert(transfer(&clock, AccountId::new(), AccountId::new()), Vec::new()).await.expect("i"));
    let mut processing = t.clone();
    processing.enter(TransferStatus::Processing, clock.now());
    let stored = store.update(processing.clone(), Vec::new()).await.expect("update");
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, TransferStatus::Processing);
    assert_eq!(stored.seq, t.seq);
    // The stale copy (version 0) loses, and its outbox messages are not written.
    let event = Event::of(&processing, None, clock.now()).map(OutboxMessage::Publish).into_iter().collect();
    assert!(matches!(store.update(processing, event).await, Err(Error::VersionConflict)));
    assert!(store.outbox_batch(10).await.expect("outbox").is_empty());
    let mut failed = stored.clone();
    failed.fail(FailureCode::HoldExpired, "test", clock.now());
    let failed = store.update(failed, Vec::new()).await.expect("fail");
    assert_eq!(failed.version, 2);
    let mut reopened = failed.clone();
    reopened.status = TransferStatus::Processing;
    assert!(matches!(store.update(reopened, Vec::new()).await, Err(Error::VersionConflict)));
    assert_eq!(store.get(t.id).await.expect("get").status, TransferStatus::Failed);
    let mut unknown = transfer(&clock, AccountId::new(), AccountId::new());
    unknown.version = 0;
    assert!(matches!(store.update(unknown, Vec::new()).await, Err(Error::TransferNotFound(_))));
    let counts = store.count_by_status().await.expect("counts");
    assert!(counts.contains(&(TransferStatus::Failed, 1)));
    assert!(counts.contains(&(TransferStatus::Processing, 0)));
    assert!(counts.contains(&(TransferStatus::Accepted, 0)));
}

/// Outbox messages come back in write order, are marked done up to a position, and the lag
/// figures follow.
pub async fn outbox_is_written_with_changes_and_read_in_order(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let t1 = transfer(&clock, AccountId::new(), AccountId::new());
    let out1 = accepted_outbox(&t1, &clock);
    let t1 = created(store.insert(t1, out1.clone()).await.expect("insert"));
    clock.advance(TimeDelta::seconds(2));
    let mut settled = t1.clone();
    settled.enter(TransferStatus::Settled, clock.now());
    let out2: Vec<OutboxMessage> =
        Event::of(&settled, None, clock.now()).map(OutboxMessage::Publish).into_iter().collect();
    store.update(settled, out2.clone()).await.expect("update");

    let batch = store.outbox_batch(10).await.expect("outbox");
    let messages: Vec<OutboxMessage> = batch.iter().map(|r| r.message.clone()).collect();
    assert_eq!(messages, [out1, out2].concat());
    assert!(batch.windows(2).all(|w| w[0].seq < w[1].seq), "outbox positions must increase");
    assert_eq!(store.outbox_batch(2).await.expect("outbox").len(), 2);
    let (count, age) = store.outbox_lag().await.expect("lag");
    assert_eq!((count, age), (3, Some(2_000)));

    store.outbox_done(batch[1].seq).await.expect("done");
    let rest = store.outbox_batch(10).await.expect("outbox");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].seq, batch[2].seq);
    store.outbox_done(batch[1].seq).await.expect("marking again is harmless");
    assert_eq!(store.outbox_batch(10).await.expect("outbox").len(), 1);
    store.outbox_done(batch[2].seq).await.expect("done");
    assert!(store.outbox_batch(10).await.expect("outbox").is_empty());
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
}

/// `due` lists unfinished transfers whose deadline has come, oldest deadline first.
pub async fn due_lists_unfinished_transfers_by_deadline(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let start = clock.now();
    let mut ids = Vec::new();
    for minutes in [3, 1, 2] {
        let mut t = transfer(&clock, AccountId::new(), AccountId::new());
        t.next_attempt_at = Some(start + TimeDelta::minutes(minutes));
        ids.push(created(store.insert(t, Vec::new()).await.expect("insert")));
    }
    assert!(store.due(start, 10).await.expect("due").is_empty());
    let due: Vec<TransferId> =
        store.due(start + TimeDelta::minutes(2), 10).await.expect("due").iter().map(|t| t.id).collect();
    assert_eq!(due, vec![ids[1].id, ids[2].id]);
    assert_eq!(store.due(start + TimeDelta::minutes(5), 1).await.expect("due").len(), 1);
    // Settling removes it; pushing the deadline moves it.
    let mut settled = ids[1].clone();
    settled.enter(TransferStatus::Settled, clock.now());
    store.update(settled, Vec::new()).await.expect("settle");
    let mut later = ids[2].clone();
    later.next_attempt_at = Some(start + TimeDelta::minutes(10));
    store.update(later, Vec::new()).await.expect("push");
    let due: Vec<TransferId> =
        store.due(start + TimeDelta::minutes(5), 10).await.expect("due").iter().map(|t| t.id).collect();
    assert_eq!(due, vec![ids[0].id]);
}

/// Transfers from and into an account, newest first, paged by `seq`.
pub async fn list_for_account_pages_newest_first(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let (a, b, c) = (AccountId::new(), AccountId::new(), AccountId::new());
    let mut seqs = Vec::new();
    for i in 0..5 {
        let t = if i % 2 == 0 { transfer(&clock, a, b) } else { transfer(&clock, c, a) };
        seqs.push(created(store.insert(t, Vec::new()).await.expect("insert")).seq);
    }
    let page = store.list_for_account(a, 3, None).await.expect("list");
    assert_eq!(page.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![seqs[4], seqs[3], seqs[2]]);
    let next = store.list_for_account(a, 3, Some(seqs[2])).await.expect("list");
    assert_eq!(next.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![seqs[1], seqs[0]]);
    assert_eq!(store.list_for_account(b, 10, None).await.expect("list").len(), 3, "incoming transfers are listed");
    assert!(store.list_for_account(AccountId::new(), 10, None).await.expect("list").is_empty());
}

/// Many writers updating one version: exactly one wins.
pub async fn concurrent_updates_have_one_winner(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let t = created(store.insert(transfer(&clock, AccountId::new(), AccountId::new()), Vec::new()).await.expect("i"));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let mut copy = t.clone();
            copy.attempts = i;
            tokio::spawn(async move { store.update(copy, Vec::new()).await })
        })
        .collect();
    let mut wins = 0;
    for result in futures::future::join_all(tasks).await {
        match result.expect("task") {
            Ok(_) => wins += 1,
            Err(Error::VersionConflict) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.get(t.id).await.expect("get").version, 1);
}

/// `unresolved` lists exactly the `pending` transfers whose rail outcome is unknown, in
/// acceptance order: not a processing one (a call in flight), not a plain pending one, not a
/// final one.
pub async fn unresolved_lists_pending_transfers_of_unknown_outcome(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let mut stored = Vec::new();
    for _ in 0..5 {
        stored.push(created(
            store.insert(transfer(&clock, AccountId::new(), AccountId::new()), Vec::new()).await.expect("i"),
        ));
    }
    let now = clock.now();
    let set = |t: &Transfer, status: TransferStatus, unknown: bool| {
        let mut t = t.clone();
        t.enter(status, now);
        t.outcome_unknown = unknown;
        t
    };
    let changes = [
        set(&stored[0], TransferStatus::Pending, true),
        set(&stored[1], TransferStatus::Pending, false),
        set(&stored[2], TransferStatus::Processing, true),
        set(&stored[3], TransferStatus::Pending, true),
        set(&stored[4], TransferStatus::Settled, false),
    ];
    for change in changes {
        store.update(change, Vec::new()).await.expect("update");
    }
    let ids: Vec<TransferId> = store.unresolved(10).await.expect("unresolved").iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![stored[0].id, stored[3].id]);
    assert_eq!(store.unresolved(1).await.expect("unresolved").len(), 1);
    assert!(store.unresolved(0).await.expect("unresolved").is_empty());
    // Resolved by the rail: off the list.
    let mut settled = store.get(stored[0].id).await.expect("get");
    settled.outcome_unknown = false;
    settled.enter(TransferStatus::Settled, now);
    store.update(settled, Vec::new()).await.expect("settle");
    let ids: Vec<TransferId> = store.unresolved(10).await.expect("unresolved").iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![stored[3].id]);
}
