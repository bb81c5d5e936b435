//! `SqliteTransferStore` against the `TransferStore` conformance suite, plus what only a durable
//! store must show: transfers and the unrelayed outbox survive a reopen, and positions go on;
//! an idempotency key of the same database completed in the insert's own write.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::{Clock, ManualClock};
use bank_core::events::OutboxMessage;
use bank_core::idempotency::{Begin, IdempotencyKey, IdempotencyScope, LeaseToken};
use bank_core::ids::{AccountId, ClaimToken, CustomerId, TransferId};
use bank_core::money::Money;
use bank_core::ports::{IdempotencyStore, Inserted, KeyAnswer, TransferStore};
use bank_core::queue::QueueMessage;
use bank_core::testkit::outbox::TransferStoreHarness;
use bank_core::transfer::{Destination, Fingerprint, Transfer, TransferRequest, TransferStatus};
use bank_local::db::LocalDb;
use bank_local::idempotency::SqliteIdempotencyStore;
use bank_local::transfers::SqliteTransferStore;
use chrono::TimeDelta;
use parking_lot::Mutex;
use tempfile::TempDir;

/// Builds each case's store in a fresh temporary directory, kept alive for the whole case.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl TransferStoreHarness for Harness {
    async fn transfers(&self, clock: Arc<dyn Clock>) -> Arc<dyn TransferStore> {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        self.dirs.lock().push(dir);
        Arc::new(SqliteTransferStore::new(&db, clock))
    }
}

bank_core::transfer_store_conformance_tests!(Harness::default());

fn transfer(clock: &ManualClock, from: AccountId, to: AccountId) -> Transfer {
    let request = TransferRequest {
        id: None,
        from_account_id: from,
        destination: Destination::Internal { account_id: to },
        money: Money::parse("12.34", "USD").expect("money"),
        reference: "durable".into(),
    };
    let now = clock.now();
    Transfer::accepted(TransferId::new(), CustomerId::new(), &request, now, now + TimeDelta::minutes(5))
}

fn enqueue(t: &Transfer) -> OutboxMessage {
    OutboxMessage::Enqueue(QueueMessage::first(t.id, t.from_account_id))
}

fn created(inserted: Inserted) -> Transfer {
    match inserted {
        Inserted::Created(t) => t,
        Inserted::Existing(t) => panic!("expected a new transfer, found {}", t.id),
    }
}

#[tokio::test]
async fn transfers_and_the_unrelayed_outbox_survive_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let (a, b) = (AccountId::new(), AccountId::new());
    let (first, second, pending, last_outbox_seq) = {
        let db = LocalDb::open(dir.path()).await.expect("open");
        let store = SqliteTransferStore::new(&db, Arc::new(clock.clone()));
        let first = transfer(&clock, a, b);
        let first = created(store.insert(first.clone(), vec![enqueue(&first)]).await.expect("insert"));
        let second = transfer(&clock, b, a);
        let second = created(store.insert(second.clone(), vec![enqueue(&second)]).await.expect("insert"));
        let mut processing = second.clone();
        processing.enter(TransferStatus::Processing, clock.now());
        let second = store.update(processing, vec![enqueue(&second)]).await.expect("update");
        let claim = store.outbox_claim(ClaimToken::new(), 10, TimeDelta::seconds(30)).await.expect("claim");
        assert_eq!(claim.len(), 3);
        // The first message was relayed; the other two were claimed, not relayed, when the
        // process stopped.
        store.outbox_done(&[claim[0].seq]).await.expect("done");
        let pending = claim[1..].to_vec();
        drop(store);
        db.close().await;
        (first, second, pending, claim[2].seq)
    };

    clock.advance(TimeDelta::seconds(3));
    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let store = SqliteTransferStore::new(&db, Arc::new(clock.clone()));
    assert_eq!(store.get(first.id).await.expect("get"), first);
    assert_eq!(store.get(second.id).await.expect("get"), second);
    assert_eq!(second.version, 1);
    assert_eq!(store.outbox_lag().await.expect("lag"), (2, Some(3_000)));
    assert!(
        store.outbox_claim(ClaimToken::new(), 10, TimeDelta::seconds(30)).await.expect("claim").is_empty(),
        "the dead process's claim survives the reopen until it runs out"
    );
    clock.advance(TimeDelta::seconds(27));
    let taken_over = store.outbox_claim(ClaimToken::new(), 10, TimeDelta::seconds(30)).await.expect("claim");
    assert_eq!(taken_over, pending, "the unrelayed outbox is kept, in order, and taken over");
    let listed: Vec<TransferId> =
        store.list_for_account(a, 10, None).await.expect("list").iter().map(|t| t.id).collect();
    assert_eq!(listed, [second.id, first.id]);
    let counts = store.count_by_status().await.expect("counts");
    assert!(counts.contains(&(TransferStatus::Accepted, 1)) && counts.contains(&(TransferStatus::Processing, 1)));

    // Positions go on after the reopen, even once the outbox has been emptied.
    store.outbox_done(&taken_over.iter().map(|r| r.seq).collect::<Vec<_>>()).await.expect("done");
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
    let third = transfer(&clock, a, b);
    let third = created(store.insert(third.clone(), vec![enqueue(&third)]).await.expect("insert"));
    assert_eq!(third.seq, second.seq + 1, "seq continues after a reopen");
    let batch = store.outbox_claim(ClaimToken::new(), 10, TimeDelta::seconds(30)).await.expect("claim");
    assert_eq!(batch.len(), 1);
    assert!(batch[0].seq > last_outbox_seq, "outbox positions are never reused");
    assert!(taken_over.iter().all(|r| r.seq <= last_outbox_seq));
    // The CAS still holds against the reopened version.
    let mut stale = second.clone();
    stale.version = 0;
    assert!(matches!(store.update(stale, Vec::new()).await, Err(bank_core::Error::VersionConflict)));
    drop(store);
    db.close().await;
}

/// With direct delivery, a transfer's outbox messages land in the queue and the event log of the
/// same database in the same write: the outbox stays empty, a duplicate message is deduplicated,
/// and a full queue refuses the insert, which then writes nothing.
#[tokio::test]
async fn direct_delivery_writes_queue_and_events_with_the_transfer() {
    use bank_core::events::Event;
    use bank_core::notifications::EventSubscriber;
    use bank_core::ports::TransferQueue;
    use bank_core::queue::QueueConfig;
    use bank_local::events::SqliteEventBus;
    use bank_local::queue::SqliteQueue;

    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let clock = ManualClock::at_epoch();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let config = QueueConfig { capacity: 2, ..QueueConfig::default() };
    let store = SqliteTransferStore::delivering_directly(&db, shared.clone(), config, 100);
    let queue = SqliteQueue::new(&db, shared.clone(), config);
    let bus = SqliteEventBus::new(&db, shared, 100);
    let subscription = bus.subscribe("test").await.expect("subscribe");

    let (a, b) = (AccountId::new(), AccountId::new());
    let first = transfer(&clock, a, b);
    let accepted = Event::of(&first, None, clock.now()).expect("accepted event");
    let stored = created(
        store
            .insert(first.clone(), vec![enqueue(&first), OutboxMessage::Publish(accepted.clone())])
            .await
            .expect("insert"),
    );
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None), "nothing went through the outbox");
    assert!(store.outbox_claim(ClaimToken::new(), 10, TimeDelta::seconds(30)).await.expect("claim").is_empty());
    let deliveries = queue.receive(10, TimeDelta::seconds(30)).await.expect("receive");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message.transfer_id, first.id);
    let events = subscription.poll(10).await.expect("poll");
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![accepted.id]);

    // The same message again (e.g. an update re-sending it) is deduplicated.
    let mut again = stored.clone();
    again.status = TransferStatus::Processing;
    store.update(again, vec![enqueue(&first)]).await.expect("update");
    assert_eq!(queue.stats().await.expect("stats").in_flight + queue.stats().await.expect("stats").visible, 1);

    // Capacity 2: one held, a transfer with two new messages does not fit and is not stored.
    let second = transfer(&clock, b, a);
    let extra = OutboxMessage::Enqueue(QueueMessage::first(TransferId::new(), b));
    let refused = store.insert(second.clone(), vec![enqueue(&second), extra]).await;
    assert!(matches!(refused, Err(bank_core::Error::QueueFull)), "{refused:?}");
    assert!(matches!(store.get(second.id).await, Err(bank_core::Error::TransferNotFound(_))));
}

/// The answer a test records under its key: the stored transfer's `seq`.
fn seq_answer(transfer: &Transfer) -> Vec<u8> {
    transfer.seq.to_be_bytes().to_vec()
}

/// A transfer store completing the keys of `keys`, both on one fresh database.
async fn completing(dir: &TempDir, clock: &ManualClock) -> (SqliteTransferStore, SqliteIdempotencyStore) {
    let db = LocalDb::open(dir.path()).await.expect("open");
    let keys = SqliteIdempotencyStore::new(&db, Arc::new(clock.clone()));
    let transfers = SqliteTransferStore::new(&db, Arc::new(clock.clone())).completing_keys_of(&keys).expect("one db");
    (transfers, keys)
}

/// Begins `key` for a request; its lease token.
async fn begin(keys: &SqliteIdempotencyStore, scope: &IdempotencyScope, lease: TimeDelta) -> (LeaseToken, bool) {
    match keys.begin(scope, Fingerprint([7; 32]), "resource", lease).await.expect("begin") {
        Begin::Started { token, takeover, .. } => (token, takeover),
        Begin::Replay { .. } => panic!("expected the key to start"),
    }
}

fn scope(key: &str) -> IdempotencyScope {
    IdempotencyScope { caller: "customer".into(), key: IdempotencyKey::new(key).expect("key") }
}

#[tokio::test]
async fn an_insert_completing_a_key_of_its_database_records_the_answer_in_the_same_write() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let (store, keys) = completing(&dir, &clock).await;
    let scope = scope("k1");
    let (token, _) = begin(&keys, &scope, TimeDelta::seconds(30)).await;
    let new = transfer(&clock, AccountId::new(), AccountId::new());
    let key = KeyAnswer { scope: scope.clone(), token, answer: seq_answer };
    let (inserted, completed) = store.insert_completing(new.clone(), vec![enqueue(&new)], &key).await.expect("insert");
    let stored = created(inserted);
    assert!(matches!(completed, Some(Ok(()))), "{completed:?}");
    // No `complete` was called: the key answers from the insert's own write.
    match keys.begin(&scope, Fingerprint([7; 32]), "resource", TimeDelta::seconds(30)).await.expect("again") {
        Begin::Replay { response, .. } => assert_eq!(response, seq_answer(&stored)),
        other => panic!("expected a replay, got {other:?}"),
    }
    // A second insert under the id finds the first and leaves the key alone.
    let (again, completed) = store.insert_completing(new.clone(), Vec::new(), &key).await.expect("insert again");
    assert_eq!(again, Inserted::Existing(stored));
    assert!(completed.is_none(), "{completed:?}");
}

#[tokio::test]
async fn a_key_taken_over_meanwhile_keeps_the_insert_and_its_new_lease() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let (store, keys) = completing(&dir, &clock).await;
    let scope = scope("k2");
    let (stale, _) = begin(&keys, &scope, TimeDelta::seconds(1)).await;
    clock.advance(TimeDelta::seconds(2));
    let (current, takeover) = begin(&keys, &scope, TimeDelta::seconds(30)).await;
    assert!(takeover);
    let new = transfer(&clock, AccountId::new(), AccountId::new());
    let key = KeyAnswer { scope: scope.clone(), token: stale, answer: seq_answer };
    let (inserted, completed) = store.insert_completing(new.clone(), vec![enqueue(&new)], &key).await.expect("insert");
    assert!(matches!(completed, Some(Err(bank_core::Error::LeaseLost))), "{completed:?}");
    assert_eq!(store.get(new.id).await.expect("kept"), created(inserted));
    // The attempt that took over still holds the key.
    keys.complete(&scope, current, b"current".to_vec()).await.expect("the current lease completes");
}

#[tokio::test]
async fn keys_of_another_database_are_refused() {
    let (here, there) = (TempDir::new().expect("temp dir"), TempDir::new().expect("temp dir"));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let db = LocalDb::open(here.path()).await.expect("open");
    let other = LocalDb::open(there.path()).await.expect("open");
    let keys = SqliteIdempotencyStore::new(&other, Arc::clone(&clock));
    let refused = SqliteTransferStore::new(&db, clock).completing_keys_of(&keys);
    assert!(matches!(refused, Err(bank_core::Error::InvalidInput(_))), "{refused:?}");
}

/// One transfer stored with its queue message, by a store acknowledging the deliveries of the
/// queue on its database, and that message received once.
struct Delivered {
    _dir: TempDir,
    db: LocalDb,
    clock: ManualClock,
    store: SqliteTransferStore,
    queue: bank_local::queue::SqliteQueue,
    stored: Transfer,
    delivery: bank_core::queue::Delivery,
}

impl Delivered {
    async fn new() -> Delivered {
        use bank_core::ports::TransferQueue;
        use bank_core::queue::QueueConfig;
        let dir = TempDir::new().expect("temp dir");
        let clock = ManualClock::at_epoch();
        let db = LocalDb::open(dir.path()).await.expect("open");
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let queue = bank_local::queue::SqliteQueue::new(&db, shared.clone(), QueueConfig::default());
        let store = SqliteTransferStore::delivering_directly(&db, shared, QueueConfig::default(), 100)
            .acking_deliveries_of(&queue)
            .expect("one database");
        let first = transfer(&clock, AccountId::new(), AccountId::new());
        let stored = created(store.insert(first.clone(), vec![enqueue(&first)]).await.expect("insert"));
        let mut deliveries = queue.receive(10, TimeDelta::seconds(30)).await.expect("receive");
        assert_eq!(deliveries.len(), 1);
        Delivered { _dir: dir, db, clock, store, queue, stored, delivery: deliveries.remove(0) }
    }

    /// The transfer as read, settled now.
    fn settled(&self) -> Transfer {
        let mut settled = self.stored.clone();
        settled.enter(TransferStatus::Settled, self.clock.now());
        settled
    }
}

/// Messages waiting or in flight.
async fn queued(queue: &bank_local::queue::SqliteQueue) -> u64 {
    use bank_core::ports::TransferQueue;
    let stats = queue.stats().await.expect("stats");
    stats.visible + stats.in_flight
}

#[tokio::test]
async fn an_update_acking_a_delivery_of_its_database_deletes_the_message_in_the_same_write() {
    let one = Delivered::new().await;
    let (updated, acked) =
        one.store.update_acking(one.settled(), Vec::new(), &one.delivery.receipt).await.expect("update");
    assert!(matches!(acked, Some(Ok(()))), "{acked:?}");
    assert_eq!(updated.status, TransferStatus::Settled);
    assert_eq!(one.store.get(one.stored.id).await.expect("get"), updated);
    assert_eq!(queued(&one.queue).await, 0, "the message went with the update");
}

#[tokio::test]
async fn a_delivery_taken_over_meanwhile_keeps_the_update_and_its_message() {
    use bank_core::ports::TransferQueue;
    let one = Delivered::new().await;
    one.clock.advance(TimeDelta::seconds(31));
    let current = one.queue.receive(10, TimeDelta::seconds(30)).await.expect("receive again");
    assert_eq!(current.len(), 1, "redelivered once its visibility ran out");
    let stale = &one.delivery.receipt;
    let (updated, acked) = one.store.update_acking(one.settled(), Vec::new(), stale).await.expect("update");
    assert!(matches!(acked, Some(Err(bank_core::Error::StaleReceipt))), "{acked:?}");
    assert_eq!(one.store.get(one.stored.id).await.expect("kept"), updated);
    // The current delivery still holds the message, and acknowledges it.
    assert_eq!(queued(&one.queue).await, 1);
    one.queue.ack(&current[0].receipt).await.expect("the current delivery acknowledges");
    assert_eq!(queued(&one.queue).await, 0);
}

#[tokio::test]
async fn a_refused_update_acknowledges_nothing() {
    let one = Delivered::new().await;
    let mut newer = one.stored.clone();
    newer.enter(TransferStatus::Processing, one.clock.now());
    one.store.update(newer, Vec::new()).await.expect("another delivery's write");
    // An outcome written on the old version loses the compare-and-swap: nothing is written,
    // the message stays for a redelivery to find the transfer as it is.
    let refused = one.store.update_acking(one.settled(), Vec::new(), &one.delivery.receipt).await;
    assert!(matches!(refused, Err(bank_core::Error::VersionConflict)), "{refused:?}");
    assert_eq!(one.store.get(one.stored.id).await.expect("get").status, TransferStatus::Processing);
    assert_eq!(queued(&one.queue).await, 1);
}

#[tokio::test]
async fn a_store_without_the_queue_leaves_the_delivery_to_the_queue() {
    use bank_core::ports::TransferQueue;
    let one = Delivered::new().await;
    // A store of the same database not told the queue is there: the queue acknowledges.
    let plain = SqliteTransferStore::new(&one.db, Arc::new(one.clock.clone()));
    let (_, acked) = plain.update_acking(one.settled(), Vec::new(), &one.delivery.receipt).await.expect("update");
    assert!(acked.is_none(), "{acked:?}");
    assert_eq!(queued(&one.queue).await, 1, "the caller acknowledges through its queue");
    one.queue.ack(&one.delivery.receipt).await.expect("ack");
    assert_eq!(queued(&one.queue).await, 0);
}

#[tokio::test]
async fn a_queue_of_another_database_is_refused() {
    use bank_core::queue::QueueConfig;
    let (here, there) = (TempDir::new().expect("temp dir"), TempDir::new().expect("temp dir"));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let db = LocalDb::open(here.path()).await.expect("open");
    let other = LocalDb::open(there.path()).await.expect("open");
    let queue = bank_local::queue::SqliteQueue::new(&other, Arc::clone(&clock), QueueConfig::default());
    let refused = SqliteTransferStore::new(&db, clock).acking_deliveries_of(&queue);
    assert!(matches!(refused, Err(bank_core::Error::InvalidInput(_))), "{refused:?}");
}
