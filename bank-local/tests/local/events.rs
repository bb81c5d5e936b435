//! `SqliteEventBus` and `SqliteNotificationLog` against the event bus and notification log
//! conformance suites, plus what only durable ones must show: a subscription resumes after a
//! reopen exactly after its last commit, and a claim survives a reopen.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::{Clock, ManualClock};
use bank_core::events::EventKind;
use bank_core::ids::{CustomerId, EventId};
use bank_core::notifications::{
    Channel, DeliveryKey, DeliveryOutcome, DeliveryState, EventSubscriber, NotificationLog,
};
use bank_core::ports::EventPublisher;
use bank_core::testkit::notifications::{BusUnderTest, EventBusHarness, NotificationLogHarness, transfer_event};
use bank_local::db::LocalDb;
use bank_local::events::{EVENT_BUS_CAPACITY_DEFAULT, SqliteEventBus};
use bank_local::notification_log::{NOTIFICATION_LOG_CAPACITY_DEFAULT, SqliteNotificationLog};
use tempfile::TempDir;

use crate::fresh::KeptDbs;

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::at_epoch())
}

/// Builds each case's bus or log in a fresh temporary directory, kept alive for the whole case.
#[derive(Default)]
struct Harness {
    dbs: KeptDbs,
}

impl Harness {
    async fn db(&self) -> LocalDb {
        self.dbs.open().await
    }
}

#[async_trait]
impl EventBusHarness for Harness {
    async fn bus(&self, capacity: usize) -> BusUnderTest {
        let bus = Arc::new(SqliteEventBus::new(&self.db().await, clock(), capacity));
        BusUnderTest { publisher: bus.clone(), subscriber: bus }
    }
}

#[async_trait]
impl NotificationLogHarness for Harness {
    async fn log(&self) -> Arc<dyn NotificationLog> {
        Arc::new(SqliteNotificationLog::new(&self.db().await, clock(), NOTIFICATION_LOG_CAPACITY_DEFAULT))
    }
}

mod bus {
    bank_core::event_bus_conformance_tests!(super::Harness::default());
}

mod log {
    bank_core::notification_log_conformance_tests!(super::Harness::default());
}

fn ids(events: &[bank_core::events::Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn a_subscription_resumes_after_a_reopen_exactly_where_it_committed() {
    let dir = TempDir::new().expect("temp dir");
    let published: Vec<_> = (0..5).map(|_| transfer_event(EventKind::TransferAccepted)).collect();

    let db = LocalDb::open(dir.path()).await.expect("open");
    let bus = SqliteEventBus::new(&db, clock(), EVENT_BUS_CAPACITY_DEFAULT);
    let sub = EventSubscriber::subscribe(&bus, "notifications").await.expect("subscribe");
    bus.publish(&published).await.expect("publish");
    let first = sub.poll(3).await.expect("poll");
    assert_eq!(ids(&first), ids(&published[..3]));
    sub.commit(first[2].id).await.expect("commit");
    drop(sub);
    drop(bus);
    db.close().await;
    drop(db); // releases the data directory's lock, so it can be reopened

    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let bus = SqliteEventBus::new(&db, clock(), EVENT_BUS_CAPACITY_DEFAULT);
    let sub = EventSubscriber::subscribe(&bus, "notifications").await.expect("subscribe again");
    assert_eq!(
        ids(&sub.poll(10).await.expect("poll")),
        ids(&published[3..]),
        "exactly the 2 uncommitted events, none of the committed ones"
    );
    // A subscription first created after the reopen starts at the oldest event held.
    let late = EventSubscriber::subscribe(&bus, "audit").await.expect("subscribe");
    assert_eq!(ids(&late.poll(10).await.expect("poll")), ids(&published));
    assert_eq!(ids(&bus.published().await.expect("published")), ids(&published));
}

#[tokio::test]
async fn a_cursor_survives_trimming_and_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let bus = SqliteEventBus::new(&db, clock(), 4);
    let sub = EventSubscriber::subscribe(&bus, "slow").await.expect("subscribe");
    let first: Vec<_> = (0..4).map(|_| transfer_event(EventKind::TransferSettled)).collect();
    bus.publish(&first).await.expect("publish");
    sub.commit(first[3].id).await.expect("commit");
    let second: Vec<_> = (0..3).map(|_| transfer_event(EventKind::TransferSettled)).collect();
    bus.publish(&second).await.expect("the committed events are trimmed to make room");
    assert_eq!(ids(&bus.published().await.expect("published")), ids(&second));
    drop(sub);
    drop(bus);
    db.close().await;
    drop(db); // releases the data directory's lock, so it can be reopened

    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let bus = SqliteEventBus::new(&db, clock(), 4);
    let sub = EventSubscriber::subscribe(&bus, "slow").await.expect("subscribe again");
    assert_eq!(ids(&sub.poll(10).await.expect("poll")), ids(&second));
    sub.commit(second[2].id).await.expect("commit");
    bus.publish(&(0..4).map(|_| transfer_event(EventKind::TransferFailed)).collect::<Vec<_>>())
        .await
        .expect("room: everything held was committed");
    let fresh = EventSubscriber::subscribe(&bus, "fresh").await.expect("subscribe");
    assert_eq!(fresh.poll(10).await.expect("poll").len(), 4, "starts at the oldest event held");
}

#[tokio::test]
async fn a_claim_and_its_outcome_survive_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let claimed = DeliveryKey { event_id: EventId::new(), channel: Channel::Email, recipient: CustomerId::new() };
    let sent = DeliveryKey { channel: Channel::Sms, ..claimed };

    let db = LocalDb::open(dir.path()).await.expect("open");
    let log = SqliteNotificationLog::new(&db, clock(), NOTIFICATION_LOG_CAPACITY_DEFAULT);
    assert!(log.claim(claimed).await.expect("claim"));
    assert!(log.claim(sent).await.expect("claim"));
    log.mark(sent, DeliveryOutcome::Sent).await.expect("mark");
    drop(log);
    db.close().await;
    drop(db); // releases the data directory's lock, so it can be reopened

    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let log = SqliteNotificationLog::new(&db, clock(), NOTIFICATION_LOG_CAPACITY_DEFAULT);
    assert!(!log.claim(claimed).await.expect("claim"), "a claim made before the restart still wins");
    assert!(!log.claim(sent).await.expect("claim"));
    assert_eq!(log.state(claimed).await.expect("state"), Some(DeliveryState::Claimed));
    assert_eq!(log.state(sent).await.expect("state"), Some(DeliveryState::Sent));
}

#[tokio::test]
async fn the_log_forgets_its_oldest_records_past_its_capacity() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let log = SqliteNotificationLog::new(&db, clock(), 2);
    let keys: Vec<_> = (0..3)
        .map(|_| DeliveryKey { event_id: EventId::new(), channel: Channel::Webhook, recipient: CustomerId::new() })
        .collect();
    for key in &keys {
        assert!(log.claim(*key).await.expect("claim"));
    }
    assert_eq!(log.state(keys[0]).await.expect("state"), None, "the oldest is forgotten");
    assert_eq!(log.state(keys[2]).await.expect("state"), Some(DeliveryState::Claimed));
    // Marking a forgotten key records it anew, so it stays claimed.
    log.mark(keys[0], DeliveryOutcome::Failed { reason: "refused".into() }).await.expect("mark");
    assert!(!log.claim(keys[0]).await.expect("claim"));
}
