//! The [`TransferStore`] conformance suite: transfers, compare-and-swap updates, the outbox
//! written atomically with them, and the claims through which several relays share the outbox
//! (no record to two live claims, expired claims taken over, per-group order).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::fixtures::usd;
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::events::{Event, OutboxMessage, OutboxRecord};
use crate::ids::{AccountId, ClaimToken, CustomerId, TransferId};
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
            concurrent_inserts_of_one_id_create_it_once,
            a_conflict_fails_only_its_own_update,
            unresolved_lists_pending_transfers_of_unknown_outcome,
            concurrent_claims_never_share_a_record,
            an_expired_claim_is_taken_over,
            done_deletes_only_the_named_records,
            release_gives_back_only_its_own_claim,
            claims_keep_each_group_in_order,
            concurrent_relays_deliver_every_record_once_in_group_order,
            a_lease_must_be_positive,
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

/// The lease of the claims in this suite.
const LEASE: TimeDelta = TimeDelta::seconds(60);

/// Inserts a transfer from `from` whose outbox is one queue message (group `from`); returns
/// its outbox position's message.
async fn write_one(store: &dyn TransferStore, clock: &ManualClock, from: AccountId) -> OutboxMessage {
    let t = transfer(clock, from, AccountId::new());
    let message = OutboxMessage::Enqueue(QueueMessage::first(t.id, from));
    created(store.insert(t, vec![message.clone()]).await.expect("insert"));
    message
}

/// A claim as a relay makes it: the token it chose, and what it took.
struct Claim {
    token: ClaimToken,
    records: Vec<OutboxRecord>,
}

impl Claim {
    fn seqs(&self) -> Vec<u64> {
        self.records.iter().map(|r| r.seq).collect()
    }
}

/// Claims at most `limit` records for [`LEASE`] under a fresh token.
async fn take(store: &dyn TransferStore, limit: usize) -> Claim {
    let token = ClaimToken::new();
    Claim { token, records: store.outbox_claim(token, limit, LEASE).await.expect("claim") }
}

/// Every unrelayed record, claimed and then given back (for checks).
async fn all_records(store: &dyn TransferStore) -> Vec<OutboxRecord> {
    let claim = take(store, usize::MAX).await;
    store.outbox_release(claim.token).await.expect("release");
    claim.records
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
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None), "a refused insert wrote outbox messages");
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
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None), "a refused update wrote outbox messages");
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

/// Outbox messages are claimed in write order, a live claim keeps them from the next, done
/// deletes them, and the lag figures follow.
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
    let (count, age) = store.outbox_lag().await.expect("lag");
    assert_eq!((count, age), (3, Some(2_000)));

    let claim = take(store.as_ref(), 10).await;
    let messages: Vec<OutboxMessage> = claim.records.iter().map(|r| r.message.clone()).collect();
    assert_eq!(messages, [out1, out2].concat());
    assert!(claim.records.windows(2).all(|w| w[0].seq < w[1].seq), "outbox positions must increase");
    assert_eq!(claim.records[0].created_at, clock.now() - TimeDelta::seconds(2), "written at the clock's time");
    assert!(take(store.as_ref(), 10).await.records.is_empty(), "all held by the first");
    assert_eq!(store.outbox_lag().await.expect("lag"), (3, Some(2_000)), "claimed records are still unrelayed");

    store.outbox_done(&claim.seqs()[..2]).await.expect("done");
    assert_eq!(store.outbox_lag().await.expect("lag"), (1, Some(0)));
    store.outbox_done(&claim.seqs()[..2]).await.expect("marking again is harmless");
    store.outbox_release(claim.token).await.expect("release");
    let rest = take(store.as_ref(), 10).await;
    assert_eq!(rest.records, claim.records[2..], "the released record comes back");
    store.outbox_done(&rest.seqs()).await.expect("done");
    assert!(take(store.as_ref(), 10).await.records.is_empty());
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
    assert!(take(store.as_ref(), 0).await.records.is_empty());
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

/// Many inserts of one transfer at once (a client's retries racing): one creates it and writes
/// its outbox messages, every other answers `Existing` with that transfer and writes nothing.
pub async fn concurrent_inserts_of_one_id_create_it_once(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let t = transfer(&clock, AccountId::new(), AccountId::new());
    let outbox = accepted_outbox(&t, &clock);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, t, outbox) = (Arc::clone(&store), t.clone(), outbox.clone());
            tokio::spawn(async move { store.insert(t, outbox).await })
        })
        .collect();
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for result in futures::future::join_all(tasks).await {
        match result.expect("task").expect("insert") {
            Inserted::Created(t) => created.push(t),
            Inserted::Existing(t) => existing.push(t),
        }
    }
    assert_eq!(created.len(), 1, "exactly one insert creates the transfer");
    assert!(existing.iter().all(|e| *e == created[0]), "the others see the created transfer");
    assert_eq!(store.outbox_lag().await.expect("lag").0, outbox.len() as u64, "its messages, once");
}

/// Updates racing in one moment, some stale: the stale ones fail with `VersionConflict` and
/// write nothing; every other one is stored with its outbox messages.
pub async fn a_conflict_fails_only_its_own_update(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let mut stored = Vec::new();
    for _ in 0..12 {
        let t = created(
            store.insert(transfer(&clock, AccountId::new(), AccountId::new()), Vec::new()).await.expect("insert"),
        );
        let mut processing = t.clone();
        processing.enter(TransferStatus::Processing, clock.now());
        stored.push((t, store.update(processing, Vec::new()).await.expect("update")));
    }
    let tasks: Vec<_> = stored
        .iter()
        .flat_map(|(stale, current)| {
            [stale.clone(), current.clone()].map(|mut t| {
                t.enter(TransferStatus::Settled, clock.now());
                let event: Vec<OutboxMessage> =
                    Event::of(&t, None, clock.now()).map(OutboxMessage::Publish).into_iter().collect();
                let store = Arc::clone(&store);
                tokio::spawn(async move { (t.version, store.update(t, event).await) })
            })
        })
        .collect();
    for result in futures::future::join_all(tasks).await {
        match result.expect("task") {
            (0, Err(Error::VersionConflict)) => {}
            (1, Ok(t)) => assert_eq!((t.version, t.status), (2, TransferStatus::Settled)),
            (version, other) => panic!("an update of version {version} answered {other:?}"),
        }
    }
    assert_eq!(store.outbox_lag().await.expect("lag").0, 12, "one event per winning update");
    for (t, _) in &stored {
        assert_eq!(store.get(t.id).await.expect("get").status, TransferStatus::Settled);
    }
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

/// Relays claiming at the same moment never get the same record, and each group's claimed
/// records come from one claim, as a prefix of the group in order.
pub async fn concurrent_claims_never_share_a_record(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let accounts: Vec<AccountId> = (0..6).map(|_| AccountId::new()).collect();
    for i in 0..48 {
        write_one(store.as_ref(), &clock, accounts[i % accounts.len()]).await;
    }
    let written = all_records(store.as_ref()).await;
    assert_eq!(written.len(), 48);
    let relays: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut claims = Vec::new();
                loop {
                    let claim = take(store.as_ref(), 4).await;
                    if claim.records.is_empty() {
                        return claims;
                    }
                    claims.push(claim);
                }
            })
        })
        .collect();
    let claims: Vec<_> = futures::future::join_all(relays).await.into_iter().flat_map(|r| r.expect("relay")).collect();
    let mut seen = BTreeSet::new();
    let mut holder: BTreeMap<AccountId, ClaimToken> = BTreeMap::new();
    for claim in &claims {
        assert!(claim.records.len() <= 4, "a claim respects its limit");
        assert!(claim.records.windows(2).all(|w| w[0].seq < w[1].seq), "a claim is in outbox order");
        for record in &claim.records {
            assert!(seen.insert(record.seq), "record {} was handed to two live claims", record.seq);
            let group = record.message.group();
            let first = *holder.entry(group).or_insert(claim.token);
            assert_eq!(first, claim.token, "two live claims hold records of one group");
        }
    }
    for account in &accounts {
        let group: Vec<u64> = written.iter().filter(|r| r.message.group() == *account).map(|r| r.seq).collect();
        let claimed: Vec<u64> = group.iter().copied().filter(|seq| seen.contains(seq)).collect();
        assert!(!claimed.is_empty(), "every group's head is claimable by someone");
        assert_eq!(claimed, group[..claimed.len()], "a group is claimed from its oldest record on");
    }
}

/// A claim whose lease ran out (`now >= until`) is taken over by the next claim, and the lag
/// keeps counting its records until they are done.
pub async fn an_expired_claim_is_taken_over(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let account = AccountId::new();
    for _ in 0..3 {
        write_one(store.as_ref(), &clock, account).await;
    }
    let dead = take(store.as_ref(), 10).await;
    assert_eq!(dead.records.len(), 3);
    clock.advance(LEASE - TimeDelta::seconds(1));
    assert!(take(store.as_ref(), 10).await.records.is_empty(), "the lease is still live");
    clock.advance(TimeDelta::seconds(1));
    let heir = take(store.as_ref(), 10).await;
    assert_eq!(heir.records, dead.records, "the expired claim's records go to the next claim, in order");
    // The dead relay's late release does not free the heir's claim.
    store.outbox_release(dead.token).await.expect("release");
    assert!(take(store.as_ref(), 10).await.records.is_empty(), "the heir holds them");
    assert_eq!(store.outbox_lag().await.expect("lag").0, 3);
    store.outbox_done(&heir.seqs()).await.expect("done");
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
}

/// `outbox_done` deletes exactly the named records, claimed by anyone or not, and nothing else.
pub async fn done_deletes_only_the_named_records(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    for _ in 0..5 {
        write_one(store.as_ref(), &clock, AccountId::new()).await;
    }
    let claim = take(store.as_ref(), 3).await;
    assert_eq!(claim.records.len(), 3);
    let others = take(store.as_ref(), 10).await;
    assert_eq!(others.records.len(), 2, "the records the first claim did not take");
    let done = [claim.records[1].seq, others.records[0].seq];
    store.outbox_done(&done).await.expect("done");
    store.outbox_done(&[u64::MAX]).await.expect("an unknown position is ignored");
    store.outbox_release(claim.token).await.expect("release");
    store.outbox_release(others.token).await.expect("release");
    let left: Vec<u64> = all_records(store.as_ref()).await.iter().map(|r| r.seq).collect();
    assert_eq!(left, vec![claim.records[0].seq, claim.records[2].seq, others.records[1].seq]);
    assert_eq!(store.outbox_lag().await.expect("lag").0, 3);
}

/// Releasing a claim frees its own records at once and no other claim's, also when the relay
/// never saw what it claimed.
pub async fn release_gives_back_only_its_own_claim(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let (x, y) = (AccountId::new(), AccountId::new());
    write_one(store.as_ref(), &clock, x).await;
    let first = take(store.as_ref(), 10).await;
    write_one(store.as_ref(), &clock, y).await;
    let second = take(store.as_ref(), 10).await;
    assert_eq!((first.records.len(), second.records.len()), (1, 1));
    store.outbox_release(ClaimToken::new()).await.expect("an unknown token changes nothing");
    assert!(take(store.as_ref(), 10).await.records.is_empty(), "both still held");
    store.outbox_release(first.token).await.expect("release");
    let third = take(store.as_ref(), 10).await;
    assert_eq!(third.records, first.records, "the released record, and not the other claim's");

    // A claim whose answer the relay never got: releasing its token gives the records back.
    write_one(store.as_ref(), &clock, x).await;
    store.outbox_release(third.token).await.expect("release");
    let lost = ClaimToken::new();
    let _unseen = store.outbox_claim(lost, 10, LEASE).await.expect("claim");
    store.outbox_release(lost).await.expect("release");
    assert_eq!(take(store.as_ref(), 10).await.records.len(), 2, "x's records, claimable again");
}

/// Behind a record another claim holds, or that a claim's limit left out, nothing of its group
/// is claimed; other groups go on.
pub async fn claims_keep_each_group_in_order(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let (a, b) = (AccountId::new(), AccountId::new());
    let a1 = write_one(store.as_ref(), &clock, a).await;
    let b1 = write_one(store.as_ref(), &clock, b).await;
    let a2 = write_one(store.as_ref(), &clock, a).await;
    let a3 = write_one(store.as_ref(), &clock, a).await;
    let messages = |records: &[OutboxRecord]| records.iter().map(|r| r.message.clone()).collect::<Vec<_>>();

    // The limit cuts group a after a1: a2 and a3 wait for that claim.
    let head = take(store.as_ref(), 1).await;
    assert_eq!(messages(&head.records), vec![a1.clone()]);
    let next = take(store.as_ref(), 10).await;
    assert_eq!(messages(&next.records), vec![b1.clone()], "a2 and a3 are behind a1, which another relay holds");
    store.outbox_done(&head.seqs()).await.expect("done");
    let rest = take(store.as_ref(), 10).await;
    assert_eq!(messages(&rest.records), vec![a2.clone(), a3.clone()], "once a1 is done, the rest of a in order");

    // An expired claim's record is taken together with the records behind it.
    clock.advance(LEASE);
    let b2 = write_one(store.as_ref(), &clock, b).await;
    let all = take(store.as_ref(), 10).await;
    assert_eq!(messages(&all.records), vec![b1, a2, a3, b2]);
}

/// Several relays looping at once (claim, deliver, done) deliver every record exactly once,
/// and each group's records in order.
pub async fn concurrent_relays_deliver_every_record_once_in_group_order(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    let accounts: Vec<AccountId> = (0..5).map(|_| AccountId::new()).collect();
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (store, clock, accounts, writing) = (Arc::clone(&store), clock.clone(), accounts.clone(), writing.clone());
        tokio::spawn(async move {
            for i in 0..60 {
                write_one(store.as_ref(), &clock, accounts[i % accounts.len()]).await;
            }
            writing.store(false, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let delivered: Arc<parking_lot::Mutex<Vec<OutboxRecord>>> = Arc::default();
    let relays: Vec<_> = (0..4)
        .map(|_| {
            let (store, delivered, writing) = (Arc::clone(&store), Arc::clone(&delivered), writing.clone());
            tokio::spawn(async move {
                loop {
                    // Read before claiming: an empty claim after the writer finished means
                    // nothing is left that this relay could take.
                    let still_writing = writing.load(std::sync::atomic::Ordering::SeqCst);
                    let claim = take(store.as_ref(), 3).await;
                    if claim.records.is_empty() {
                        if !still_writing {
                            return;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    // "Delivering" is appending, under the lock, in claim order.
                    delivered.lock().extend(claim.records.iter().cloned());
                    store.outbox_done(&claim.seqs()).await.expect("done");
                }
            })
        })
        .collect();
    writer.await.expect("writer");
    for relay in relays {
        relay.await.expect("relay");
    }
    // Whatever the relays left when they went idle, one last relay delivers.
    loop {
        let claim = take(store.as_ref(), 100).await;
        if claim.records.is_empty() {
            break;
        }
        delivered.lock().extend(claim.records.iter().cloned());
        store.outbox_done(&claim.seqs()).await.expect("done");
    }
    let delivered = delivered.lock().clone();
    let seqs: BTreeSet<u64> = delivered.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), delivered.len(), "no record was delivered twice");
    assert_eq!(delivered.len(), 60, "every record was delivered");
    for account in &accounts {
        let group: Vec<u64> = delivered.iter().filter(|r| r.message.group() == *account).map(|r| r.seq).collect();
        assert!(group.windows(2).all(|w| w[0] < w[1]), "group {account} delivered out of order: {group:?}");
    }
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
}

/// A claim needs a positive lease.
pub async fn a_lease_must_be_positive(harness: &dyn TransferStoreHarness) {
    let (store, clock) = setup(harness).await;
    write_one(store.as_ref(), &clock, AccountId::new()).await;
    for lease in [TimeDelta::zero(), TimeDelta::seconds(-1)] {
        let err = store.outbox_claim(ClaimToken::new(), 10, lease).await.expect_err("not a lease");
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
    assert_eq!(take(store.as_ref(), 10).await.records.len(), 1, "nothing was claimed");
}
