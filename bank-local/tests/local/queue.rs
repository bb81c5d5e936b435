//! `SqliteQueue` against the `TransferQueue` conformance suite, plus what only a durable queue
//! must show (messages, in-flight state and dead letters survive a reopen), and the rules of the
//! reference `MemoryQueue`'s own tests: oldest head first, input limits, late acks, the bound on
//! dead letters, and `receive` as one writer job.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::Error;
use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::{AccountId, TransferId};
use bank_core::memory::queue::{DEDUP_ID_BYTES_MAX, VISIBILITY_MAX_SECONDS};
use bank_core::ports::TransferQueue;
use bank_core::queue::{QueueConfig, QueueMessage, QueueStats, Receipt};
use bank_core::testkit::queue::QueueHarness;
use bank_local::db::LocalDb;
use bank_local::db::writer::WriterHandle;
use bank_local::queue::SqliteQueue;
use chrono::TimeDelta;
use parking_lot::Mutex;
use tempfile::TempDir;

/// Builds each case's queue in a fresh temporary directory, kept alive for the whole case.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl QueueHarness for Harness {
    async fn queue(&self, clock: Arc<dyn Clock>, config: QueueConfig) -> Arc<dyn TransferQueue> {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        self.dirs.lock().push(dir);
        Arc::new(SqliteQueue::new(&db, clock, config))
    }
}

bank_core::queue_conformance_tests!(Harness::default());

const VISIBILITY: TimeDelta = TimeDelta::seconds(30);

async fn push(queue: &SqliteQueue, group: AccountId) -> QueueMessage {
    let message = QueueMessage::first(TransferId::new(), group);
    assert!(queue.enqueue(message.clone()).await.expect("enqueue"));
    message
}

#[tokio::test]
async fn messages_in_flight_state_and_dead_letters_survive_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let budget_one = QueueConfig { max_receives: 1, ..QueueConfig::default() };
    let (a, b, d) = (AccountId::new(), AccountId::new(), AccountId::new());

    let db = LocalDb::open(dir.path()).await.expect("open");
    let queue = SqliteQueue::new(&db, Arc::new(clock.clone()), budget_one);
    let a1 = push(&queue, a).await;
    let a2 = push(&queue, a).await;
    let b1 = push(&queue, b).await;
    let d1 = push(&queue, d).await;
    let first = queue.receive(1, VISIBILITY).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].message, a1);
    let long = queue.receive(1, TimeDelta::hours(1)).await.expect("receive").remove(0);
    assert_eq!(long.message, b1);
    drop(queue);
    db.close().await;
    drop(db); // releases the data directory's lock, so it can be reopened

    // a1's visibility runs out while the process is down; b1 is still in flight.
    clock.advance(VISIBILITY);
    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let queue = SqliteQueue::new(&db, Arc::new(clock.clone()), budget_one);
    assert_eq!(
        queue.stats().await.expect("stats"),
        QueueStats { visible: 3, in_flight: 1, dead_letters: 0, oldest_age_ms: Some(30_000) },
        "messages and the in-flight delivery survived"
    );
    // a1, visible again, is past its budget of one: dead-lettered at receive time, and group A
    // moves on to a2 in the same call. Group B stays blocked by b1.
    let delivered = queue.receive(10, VISIBILITY).await.expect("receive");
    let got: Vec<(QueueMessage, u32)> = delivered.iter().map(|d| (d.message.clone(), d.receive_count)).collect();
    assert_eq!(got, vec![(a2.clone(), 1), (d1.clone(), 1)]);
    let stale = queue.ack(&first[0].receipt).await;
    assert!(matches!(stale, Err(Error::StaleReceipt)), "a dead-lettered message's receipt is stale: {stale:?}");
    queue.ack(&long.receipt).await.expect("the in-flight receipt survived the reopen");
    drop(queue);
    db.close().await;
    drop(db); // releases the data directory's lock, so it can be reopened

    // a2's and d1's visibility runs out while closed: reopened with a larger budget (the config
    // is given at construction), they are redelivered.
    clock.advance(VISIBILITY);
    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let queue = SqliteQueue::new(&db, Arc::new(clock.clone()), QueueConfig::default());
    assert_eq!(queue.dead_letters(10).await.expect("dead letters"), vec![a1], "dead letters survived");
    let stats = queue.stats().await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight, stats.dead_letters), (2, 0, 1), "{stats:?}");
    let again = queue.receive(10, VISIBILITY).await.expect("receive");
    let got: Vec<(QueueMessage, u32)> = again.iter().map(|d| (d.message.clone(), d.receive_count)).collect();
    assert_eq!(got, vec![(a2, 2), (d1, 2)], "redelivered after the reopen");
    for delivery in &again {
        queue.ack(&delivery.receipt).await.expect("ack");
    }
    let stats = queue.stats().await.expect("stats");
    assert_eq!(stats, QueueStats { visible: 0, in_flight: 0, dead_letters: 1, oldest_age_ms: None });
    drop(queue);
    db.close().await;
}

/// A fresh queue in its own directory (returned, to keep it alive).
async fn fresh(config: QueueConfig) -> (SqliteQueue, LocalDb, ManualClock, TempDir) {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let clock = ManualClock::at_epoch();
    let queue = SqliteQueue::new(&db, Arc::new(clock.clone()), config);
    (queue, db, clock, dir)
}

#[tokio::test]
async fn bad_input_is_refused_and_records_nothing() {
    let (queue, _db, _clock, _dir) = fresh(QueueConfig::default()).await;
    let group = AccountId::new();
    for dedup_id in [String::new(), "x".repeat(DEDUP_ID_BYTES_MAX + 1)] {
        let message = QueueMessage { transfer_id: TransferId::new(), group, dedup_id };
        assert!(matches!(queue.enqueue(message).await, Err(Error::InvalidInput(_))));
    }
    let longest = QueueMessage { transfer_id: TransferId::new(), group, dedup_id: "x".repeat(DEDUP_ID_BYTES_MAX) };
    assert!(queue.enqueue(longest).await.expect("a 128-byte dedup id is fine"));
    let too_long = TimeDelta::seconds(VISIBILITY_MAX_SECONDS + 1);
    for visibility in [TimeDelta::seconds(-1), too_long] {
        assert!(matches!(queue.receive(1, visibility).await, Err(Error::InvalidInput(_))));
    }
    assert_eq!(queue.stats().await.expect("stats").in_flight, 0, "a refused receive delivers nothing");
    let delivery = queue.receive(1, VISIBILITY).await.expect("receive").remove(0);
    for delay in [TimeDelta::seconds(-1), too_long] {
        assert!(matches!(queue.retry_later(&delivery.receipt, delay).await, Err(Error::InvalidInput(_))));
    }
    for text in ["", "nonsense", &format!("{group}/1")] {
        assert!(matches!(queue.ack(&Receipt(text.into())).await, Err(Error::InvalidInput(_))));
    }
    let unknown = Receipt(format!("999.{}", uuid::Uuid::new_v4()));
    assert!(matches!(queue.ack(&unknown).await, Err(Error::StaleReceipt)));
    queue.ack(&delivery.receipt).await.expect("the real receipt still works");
    let stale = queue.ack(&delivery.receipt).await;
    assert!(matches!(stale, Err(Error::StaleReceipt)), "{stale:?}");
}

#[tokio::test]
async fn each_call_is_one_writer_job() {
    let (queue, db, clock, _dir) = fresh(QueueConfig { max_receives: 1, ..QueueConfig::default() }).await;
    let writer = WriterHandle::for_db(&db, Arc::new(clock.clone()));
    for _ in 0..5 {
        push(&queue, AccountId::new()).await;
    }
    let before = writer.stats().commands;
    let delivered = queue.receive(10, VISIBILITY).await.expect("receive");
    assert_eq!(delivered.len(), 5);
    assert_eq!(writer.stats().commands, before + 1, "one receive, one job");
    clock.advance(VISIBILITY);
    // Dead-lettering all five and finding nothing else is still one job.
    assert!(queue.receive(10, VISIBILITY).await.expect("receive").is_empty());
    assert_eq!(writer.stats().commands, before + 2);
    assert_eq!(queue.stats().await.expect("stats").dead_letters, 5);
}
