//! `PgNotificationLog` against the `NotificationLog` conformance suite, plus what several
//! notifications processes sharing one database add: of claims of one delivery from two stores
//! on two pools, exactly one wins; records are purged by age, never before their retention.

use std::sync::Arc;

use async_trait::async_trait;
use bank_aws::postgres::PgDb;
use bank_aws::postgres::notifications::{NOTIFICATION_RETENTION_DEFAULT, PgNotificationLog};
use bank_aws::postgres::testing::test_db;
use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::{CustomerId, EventId};
use bank_core::notifications::{Channel, DeliveryKey, DeliveryOutcome, DeliveryState, NotificationLog};
use bank_core::testkit::notifications::NotificationLogHarness;
use chrono::TimeDelta;

use crate::harness::reconnect;

/// Builds each case's log on the case's own fresh schema.
struct Harness(PgDb);

#[async_trait]
impl NotificationLogHarness for Harness {
    async fn log(&self) -> Arc<dyn NotificationLog> {
        Arc::new(PgNotificationLog::new(&self.0, Arc::new(ManualClock::at_epoch())))
    }
}

bank_core::notification_log_conformance_tests!(match test_db().await {
    Some(db) => Harness(db),
    None => return,
});

fn key(channel: Channel) -> DeliveryKey {
    DeliveryKey { event_id: EventId::new(), channel, recipient: CustomerId::new() }
}

/// Two notifications processes (two stores on two pools), 25 claims each of the same delivery
/// at once: exactly one wins, in one process; a later claim from either loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_claiming_one_delivery_one_wins() {
    let Some(db) = test_db().await else { return };
    let other = reconnect(&db).await;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let logs: [Arc<dyn NotificationLog>; 2] =
        [Arc::new(PgNotificationLog::new(&db, Arc::clone(&clock))), Arc::new(PgNotificationLog::new(&other, clock))];
    for _ in 0..5 {
        let key = key(Channel::Email);
        let tasks: Vec<_> = (0..50)
            .map(|n| {
                let log = Arc::clone(&logs[n % 2]);
                tokio::spawn(async move { log.claim(key).await.expect("claim") })
            })
            .collect();
        let won = futures::future::join_all(tasks).await.into_iter().filter(|r| *r.as_ref().expect("task")).count();
        assert_eq!(won, 1, "exactly one claim of one delivery wins across processes");
        for log in &logs {
            assert!(!log.claim(key).await.expect("claim"), "a later claim loses");
        }
        logs[1].mark(key, DeliveryOutcome::Sent).await.expect("mark");
        assert_eq!(logs[0].state(key).await.expect("state"), Some(DeliveryState::Sent), "seen by the other process");
    }
}

/// `purge_expired` deletes records last changed more than the retention ago, and only those (the
/// log runs it itself before a claim once per period); a purged delivery could be claimed again
/// (which is why the retention is long).
#[tokio::test]
async fn purge_forgets_only_records_past_their_retention() {
    let Some(db) = test_db().await else { return };
    let clock = ManualClock::at_epoch();
    clock.advance(TimeDelta::days(20_000));
    let log = PgNotificationLog::new(&db, Arc::new(clock.clone()));
    assert_eq!(log.retention(), NOTIFICATION_RETENTION_DEFAULT);
    let (old, marked_later, fresh) = (key(Channel::Email), key(Channel::Sms), key(Channel::Webhook));
    assert!(log.claim(old).await.expect("claim"));
    assert!(log.claim(marked_later).await.expect("claim"));
    clock.advance(TimeDelta::days(10));
    log.mark(marked_later, DeliveryOutcome::Sent).await.expect("mark");
    clock.advance(NOTIFICATION_RETENTION_DEFAULT - TimeDelta::days(10));
    assert_eq!(log.purge_expired().await.expect("purge"), 0, "nothing is older than the retention yet");
    clock.advance(TimeDelta::seconds(1));
    assert!(log.claim(fresh).await.expect("claim"));
    // The first claim after the purge period purged, by itself, only the record untouched for the
    // retention.
    assert_eq!(log.state(old).await.expect("state"), None);
    assert_eq!(log.purge_expired().await.expect("purge"), 0, "nothing left to purge");
    assert_eq!(log.state(marked_later).await.expect("state"), Some(DeliveryState::Sent), "its mark counts");
    assert_eq!(log.state(fresh).await.expect("state"), Some(DeliveryState::Claimed));
    let short = PgNotificationLog::with_retention(&db, Arc::new(clock), TimeDelta::minutes(1));
    assert_eq!(short.retention(), TimeDelta::days(1), "a retention under a day is raised to one");
}

/// A failure reason PostgreSQL text cannot hold is refused as bad input, and the claim stays.
#[tokio::test]
async fn a_reason_with_nul_is_refused() {
    let Some(db) = test_db().await else { return };
    let log = PgNotificationLog::new(&db, Arc::new(ManualClock::at_epoch()));
    let key = key(Channel::Sms);
    assert!(log.claim(key).await.expect("claim"));
    let refused = log.mark(key, DeliveryOutcome::Failed { reason: "bad\0number".into() }).await;
    assert!(matches!(refused, Err(bank_core::Error::InvalidInput(_))), "{refused:?}");
    assert_eq!(log.state(key).await.expect("state"), Some(DeliveryState::Claimed));
}
