//! Conformance suites for the notification ports, and test doubles for notifiers.
//!
//! - [`NotificationLogHarness`] + [`notification_log_conformance_tests!`](crate::notification_log_conformance_tests):
//!   the [`NotificationLog`] contract (one claim wins under concurrency, outcomes stick, release
//!   allows a retry, keys are independent).
//! - [`EventBusHarness`] + [`event_bus_conformance_tests!`](crate::event_bus_conformance_tests):
//!   an [`EventPublisher`] with its [`EventSubscriber`] (at-least-once polls, commits, independent
//!   and shared cursors, order, capacity).
//! - [`ScriptedNotifier`]: a notifier that fails on request; [`transfer_event`]: a sample event.
//!
//! Use them from an adapter's tests:
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl bank_core::testkit::notifications::NotificationLogHarness for Harness {
//!     async fn log(&self) -> Arc<dyn NotificationLog> { /* fresh, empty log */ }
//! }
//! bank_core::notification_log_conformance_tests!(Harness);
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use parking_lot::Mutex;

use super::fixtures::eur;
use crate::error::Error;
use crate::events::{Event, EventKind};
use crate::ids::{AccountId, CustomerId, EventId, TransferId};
use crate::memory::bus::MemoryEventBus;
use crate::notifications::{
    Channel, DeliveryKey, DeliveryOutcome, DeliveryState, EventSubscriber, EventSubscription, MemoryNotificationLog,
    Notification, NotificationLog, Notifier, NotifyError,
};
use crate::ports::EventPublisher;
use crate::transfer::{FailureCode, FailureReason};

/// Tasks racing in the concurrency cases.
pub const CONCURRENT_TASKS: usize = 50;

// ----------------------------------------------------------------------------------------------
// Fixtures and doubles
// ----------------------------------------------------------------------------------------------

/// An event of `kind` about a new internal transfer of 12.30 EUR with reference "Rent", from a new
/// customer to another; a failure carries a [`FailureCode::RailRejected`] reason.
pub fn transfer_event(kind: EventKind) -> Event {
    Event {
        id: EventId::new(),
        kind,
        occurred_at: DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
        transfer_id: TransferId::new(),
        owner: CustomerId::new(),
        from_account_id: AccountId::new(),
        to_account_id: Some(AccountId::new()),
        to_owner: Some(CustomerId::new()),
        money: Some(eur("12.30")),
        reference: "Rent".to_owned(),
        failure_reason: (kind == EventKind::TransferFailed).then(|| FailureReason {
            code: FailureCode::RailRejected,
            detail: "rail said: code 51 at node 10.0.0.7".to_owned(),
        }),
        statement: None,
    }
}

/// A [`Notifier`] that answers from a script: each queued error fails one send, then sends
/// succeed. It records every attempt and every successful send.
#[derive(Debug)]
pub struct ScriptedNotifier {
    channel: Channel,
    state: Mutex<Script>,
}

#[derive(Debug, Default)]
struct Script {
    failures: VecDeque<NotifyError>,
    attempts: Vec<Notification>,
    sent: Vec<Notification>,
}

impl ScriptedNotifier {
    /// A notifier for `channel` that always succeeds until told otherwise.
    pub fn new(channel: Channel) -> Self {
        ScriptedNotifier { channel, state: Mutex::new(Script::default()) }
    }

    /// Makes the next send fail with `error` (queued after earlier ones).
    pub fn fail_next(&self, error: NotifyError) {
        self.state.lock().failures.push_back(error);
    }

    /// Every send attempted, oldest first.
    pub fn attempts(&self) -> Vec<Notification> {
        self.state.lock().attempts.clone()
    }

    /// Every send that succeeded, oldest first.
    pub fn sent(&self) -> Vec<Notification> {
        self.state.lock().sent.clone()
    }
}

#[async_trait]
impl Notifier for ScriptedNotifier {
    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut state = self.state.lock();
        state.attempts.push(notification.clone());
        if let Some(error) = state.failures.pop_front() {
            return Err(error);
        }
        state.sent.push(notification.clone());
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// NotificationLog suite
// ----------------------------------------------------------------------------------------------

/// How to build a fresh, empty [`NotificationLog`] for one test case.
#[async_trait]
pub trait NotificationLogHarness: Send + Sync {
    /// A new, empty log.
    async fn log(&self) -> Arc<dyn NotificationLog>;
}

/// Expands to one `#[tokio::test]` per [`NotificationLog`] conformance case, each calling
/// `$harness` (an expression implementing [`NotificationLogHarness`]). The calling crate needs
/// `tokio` with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! notification_log_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(notifications, $harness;
            log_claim_is_won_once_under_concurrency,
            log_mark_records_the_outcome_and_keeps_the_claim,
            log_release_allows_a_new_claim,
            log_release_never_frees_a_recorded_outcome,
            log_keys_are_independent,
            log_claim_all_and_mark_all_act_as_one_by_one,
        );
    };
}

/// The harness for [`MemoryNotificationLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryLogHarness;

#[async_trait]
impl NotificationLogHarness for MemoryLogHarness {
    async fn log(&self) -> Arc<dyn NotificationLog> {
        Arc::new(MemoryNotificationLog::default())
    }
}

fn key(channel: Channel) -> DeliveryKey {
    DeliveryKey { event_id: EventId::new(), channel, recipient: CustomerId::new() }
}

/// Of many tasks claiming one delivery at once, exactly one wins; later claims lose.
pub async fn log_claim_is_won_once_under_concurrency(harness: &dyn NotificationLogHarness) {
    let log = harness.log().await;
    let key = key(Channel::Email);
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|_| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.claim(key).await })
        })
        .collect();
    let mut won = 0;
    for result in futures::future::join_all(tasks).await {
        if result.expect("task").expect("claim") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one concurrent claim wins");
    assert!(!log.claim(key).await.expect("claim"), "a later claim loses");
    assert_eq!(log.state(key).await.expect("state"), Some(DeliveryState::Claimed));
}

/// `mark` records Sent or Failed with its reason; the delivery stays claimed.
pub async fn log_mark_records_the_outcome_and_keeps_the_claim(harness: &dyn NotificationLogHarness) {
    let log = harness.log().await;
    let sent = key(Channel::Email);
    let failed = key(Channel::Sms);
    assert_eq!(log.state(sent).await.expect("state"), None, "an unknown delivery has no record");
    assert!(log.claim(sent).await.expect("claim"));
    assert!(log.claim(failed).await.expect("claim"));
    log.mark(sent, DeliveryOutcome::Sent).await.expect("mark sent");
    log.mark(failed, DeliveryOutcome::Failed { reason: "no phone number".into() }).await.expect("mark failed");
    assert_eq!(log.state(sent).await.expect("state"), Some(DeliveryState::Sent));
    assert_eq!(
        log.state(failed).await.expect("state"),
        Some(DeliveryState::Failed { reason: "no phone number".into() })
    );
    assert!(!log.claim(sent).await.expect("claim"), "a sent delivery cannot be claimed again");
    assert!(!log.claim(failed).await.expect("claim"), "a failed delivery is not retried");
}

/// A released claim can be claimed again, once.
pub async fn log_release_allows_a_new_claim(harness: &dyn NotificationLogHarness) {
    let log = harness.log().await;
    let key = key(Channel::Webhook);
    log.release(key).await.expect("releasing an unclaimed delivery changes nothing");
    assert!(log.claim(key).await.expect("claim"));
    log.release(key).await.expect("release");
    assert_eq!(log.state(key).await.expect("state"), None);
    assert!(log.claim(key).await.expect("claim"), "a released claim can be taken again");
    assert!(!log.claim(key).await.expect("claim"), "and only once");
    log.mark(key, DeliveryOutcome::Sent).await.expect("mark");
    assert_eq!(log.state(key).await.expect("state"), Some(DeliveryState::Sent));
}

/// Releasing a delivery with a recorded outcome is refused, and the delivery stays claimed.
pub async fn log_release_never_frees_a_recorded_outcome(harness: &dyn NotificationLogHarness) {
    let log = harness.log().await;
    let sent = key(Channel::Email);
    assert!(log.claim(sent).await.expect("claim"));
    log.mark(sent, DeliveryOutcome::Sent).await.expect("mark");
    assert!(matches!(log.release(sent).await, Err(Error::InvalidInput(_))));
    assert!(!log.claim(sent).await.expect("claim"), "a sent delivery is never sent again");
    assert_eq!(log.state(sent).await.expect("state"), Some(DeliveryState::Sent));
}

/// `claim_all` answers as claims one after another would (a key already claimed, or given twice,
/// loses); `mark_all` records every outcome, and the claims stay.
pub async fn log_claim_all_and_mark_all_act_as_one_by_one(harness: &dyn NotificationLogHarness) {
    let log = harness.log().await;
    let (taken, fresh, twice) = (key(Channel::Email), key(Channel::Sms), key(Channel::Webhook));
    assert!(log.claim(taken).await.expect("claim"));
    assert_eq!(log.claim_all(&[]).await.expect("claim none"), Vec::<bool>::new());
    let claimed = log.claim_all(&[taken, fresh, twice, twice]).await.expect("claim all");
    assert_eq!(claimed, vec![false, true, true, false]);
    log.mark_all(Vec::new()).await.expect("mark none");
    log.mark_all(vec![(fresh, DeliveryOutcome::Sent), (twice, DeliveryOutcome::Failed { reason: "bounced".into() })])
        .await
        .expect("mark all");
    assert_eq!(log.state(taken).await.expect("state"), Some(DeliveryState::Claimed), "left as it was");
    assert_eq!(log.state(fresh).await.expect("state"), Some(DeliveryState::Sent));
    assert_eq!(log.state(twice).await.expect("state"), Some(DeliveryState::Failed { reason: "bounced".into() }));
    assert_eq!(log.claim_all(&[fresh, twice]).await.expect("claim all"), vec![false, false], "never sent again");
}

/// Another channel, recipient or event is another delivery.
pub async fn log_keys_are_independent(harness: &dyn NotificationLogHarness) {
    let log = harness.log().await;
    let base = key(Channel::Email);
    assert!(log.claim(base).await.expect("claim"));
    let others = [
        DeliveryKey { channel: Channel::Sms, ..base },
        DeliveryKey { channel: Channel::Webhook, ..base },
        DeliveryKey { recipient: CustomerId::new(), ..base },
        DeliveryKey { event_id: EventId::new(), ..base },
    ];
    for other in others {
        assert!(log.claim(other).await.expect("claim"), "{other:?} is independent of {base:?}");
    }
    log.release(others[0]).await.expect("release");
    assert!(!log.claim(base).await.expect("claim"), "releasing another key leaves this one claimed");
    log.mark(others[1], DeliveryOutcome::Failed { reason: "refused".into() }).await.expect("mark");
    assert_eq!(log.state(base).await.expect("state"), Some(DeliveryState::Claimed));
}

// ----------------------------------------------------------------------------------------------
// Event bus suite
// ----------------------------------------------------------------------------------------------

/// A bus under test: its publishing and subscribing sides.
#[derive(Debug, Clone)]
pub struct BusUnderTest {
    /// Where events are published.
    pub publisher: Arc<dyn EventPublisher>,
    /// Where subscriptions come from (the same bus).
    pub subscriber: Arc<dyn EventSubscriber>,
}

/// How to build a fresh, empty event bus for one test case.
#[async_trait]
pub trait EventBusHarness: Send + Sync {
    /// A new bus holding at most `capacity` events not yet committed by every subscription.
    async fn bus(&self, capacity: usize) -> BusUnderTest;

    /// Whether the bus refuses publishes past its capacity (a managed bus may have none; the
    /// capacity case then only checks that publishing still works).
    fn is_bounded(&self) -> bool {
        true
    }
}

/// Expands to one `#[tokio::test]` per event bus conformance case, each calling `$harness` (an
/// expression implementing [`EventBusHarness`]). The calling crate needs `tokio` with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! event_bus_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(notifications, $harness;
            bus_poll_without_commit_redelivers,
            bus_commit_advances_the_cursor,
            bus_subscriptions_are_independent,
            bus_same_name_shares_a_cursor,
            bus_order_is_preserved_across_batches_and_polls,
            bus_poll_respects_max,
            bus_commit_of_an_unknown_event_changes_nothing,
            bus_concurrent_publishes_are_all_delivered_in_order,
            bus_full_bus_refuses_retryably_until_consumed,
        );
    };
}

/// The harness for [`MemoryEventBus`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBusHarness;

#[async_trait]
impl EventBusHarness for MemoryBusHarness {
    async fn bus(&self, capacity: usize) -> BusUnderTest {
        let bus = Arc::new(MemoryEventBus::new(capacity));
        BusUnderTest { publisher: bus.clone(), subscriber: bus }
    }
}

/// Room for every case but the capacity one.
const ROOMY: usize = 1_000;

fn events(count: usize) -> Vec<Event> {
    (0..count).map(|_| transfer_event(EventKind::TransferAccepted)).collect()
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

async fn subscribe(bus: &BusUnderTest, name: &str) -> Arc<dyn EventSubscription> {
    bus.subscriber.subscribe(name).await.expect("subscribe")
}

async fn poll_ids(subscription: &dyn EventSubscription, max: usize) -> Vec<EventId> {
    ids(&subscription.poll(max).await.expect("poll"))
}

/// Polling again before a commit returns the same events: delivery is at least once.
pub async fn bus_poll_without_commit_redelivers(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let sub = subscribe(&bus, "consumer").await;
    assert!(sub.poll(10).await.expect("poll").is_empty(), "a new subscription on an empty bus has nothing");
    let published = events(3);
    bus.publisher.publish(&published).await.expect("publish");
    let first = sub.poll(10).await.expect("poll");
    assert_eq!(first, published, "events arrive whole and in order");
    assert_eq!(sub.poll(10).await.expect("poll"), first, "an uncommitted poll is delivered again");
}

/// Committing an event moves the cursor past it and everything before it.
pub async fn bus_commit_advances_the_cursor(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let sub = subscribe(&bus, "consumer").await;
    let published = events(3);
    bus.publisher.publish(&published).await.expect("publish");
    sub.commit(published[1].id).await.expect("commit");
    assert_eq!(poll_ids(sub.as_ref(), 10).await, vec![published[2].id]);
    sub.commit(published[2].id).await.expect("commit");
    assert!(sub.poll(10).await.expect("poll").is_empty());
    let later = events(1);
    bus.publisher.publish(&later).await.expect("publish");
    assert_eq!(poll_ids(sub.as_ref(), 10).await, ids(&later), "only what came after the commit");
}

/// Two subscriptions have their own cursors.
pub async fn bus_subscriptions_are_independent(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let notifications = subscribe(&bus, "notifications").await;
    let audit = subscribe(&bus, "audit").await;
    let published = events(4);
    bus.publisher.publish(&published).await.expect("publish");
    notifications.commit(published[3].id).await.expect("commit");
    assert!(notifications.poll(10).await.expect("poll").is_empty());
    assert_eq!(poll_ids(audit.as_ref(), 10).await, ids(&published), "the other cursor did not move");
    audit.commit(published[0].id).await.expect("commit");
    assert_eq!(poll_ids(audit.as_ref(), 10).await, ids(&published[1..]));
    assert!(notifications.poll(10).await.expect("poll").is_empty());
}

/// Handles to one name share its cursor.
pub async fn bus_same_name_shares_a_cursor(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let one = subscribe(&bus, "workers").await;
    let two = subscribe(&bus, "workers").await;
    let published = events(3);
    bus.publisher.publish(&published).await.expect("publish");
    assert_eq!(poll_ids(two.as_ref(), 10).await, ids(&published));
    one.commit(published[1].id).await.expect("commit");
    assert_eq!(poll_ids(two.as_ref(), 10).await, vec![published[2].id], "a commit through one handle moves both");
    let three = subscribe(&bus, "workers").await;
    assert_eq!(poll_ids(three.as_ref(), 10).await, vec![published[2].id], "a new handle resumes the cursor");
}

/// Events come out in publish order, across batches and small polls.
pub async fn bus_order_is_preserved_across_batches_and_polls(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let sub = subscribe(&bus, "consumer").await;
    let mut published = Vec::new();
    for size in [1, 7, 3, 14] {
        let batch = events(size);
        bus.publisher.publish(&batch).await.expect("publish");
        published.extend(batch);
    }
    let mut received = Vec::new();
    loop {
        let batch = sub.poll(4).await.expect("poll");
        assert!(batch.len() <= 4, "a poll returns at most `max` events");
        let Some(last) = batch.last() else { break };
        sub.commit(last.id).await.expect("commit");
        received.extend(ids(&batch));
    }
    assert_eq!(received, ids(&published));
}

/// `poll(max)` returns at most `max` events, the oldest ones.
pub async fn bus_poll_respects_max(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let sub = subscribe(&bus, "consumer").await;
    let published = events(5);
    bus.publisher.publish(&published).await.expect("publish");
    assert!(sub.poll(0).await.expect("poll").is_empty());
    assert_eq!(poll_ids(sub.as_ref(), 2).await, ids(&published[..2]));
    assert_eq!(poll_ids(sub.as_ref(), 5).await, ids(&published));
}

/// Committing an id that is not pending (never published, or already committed) moves nothing.
pub async fn bus_commit_of_an_unknown_event_changes_nothing(harness: &dyn EventBusHarness) {
    let bus = harness.bus(ROOMY).await;
    let sub = subscribe(&bus, "consumer").await;
    let published = events(3);
    bus.publisher.publish(&published).await.expect("publish");
    sub.commit(EventId::new()).await.expect("committing an unknown id is harmless");
    assert_eq!(poll_ids(sub.as_ref(), 10).await, ids(&published));
    sub.commit(published[1].id).await.expect("commit");
    sub.commit(published[0].id).await.expect("committing an already committed id is harmless");
    assert_eq!(poll_ids(sub.as_ref(), 10).await, vec![published[2].id]);
}

/// Many publishers at once: every event is delivered, each publisher's events in its order.
pub async fn bus_concurrent_publishes_are_all_delivered_in_order(harness: &dyn EventBusHarness) {
    const PER_TASK: usize = 4;
    let bus = harness.bus(ROOMY).await;
    let sub = subscribe(&bus, "consumer").await;
    let batches: Vec<Vec<Event>> = (0..CONCURRENT_TASKS / 5).map(|_| events(PER_TASK)).collect();
    let tasks: Vec<_> = batches
        .iter()
        .cloned()
        .map(|batch| {
            let publisher = Arc::clone(&bus.publisher);
            tokio::spawn(async move {
                // Two publishes per task, so tasks can interleave between them.
                let (a, b) = batch.split_at(PER_TASK / 2);
                publisher.publish(a).await?;
                publisher.publish(b).await
            })
        })
        .collect();
    for result in futures::future::join_all(tasks).await {
        result.expect("task").expect("publish");
    }
    let mut received = Vec::new();
    loop {
        let batch = sub.poll(7).await.expect("poll");
        let Some(last) = batch.last() else { break };
        sub.commit(last.id).await.expect("commit");
        received.extend(ids(&batch));
    }
    assert_eq!(received.len(), batches.len() * PER_TASK, "every event, once");
    for batch in &batches {
        let positions: Vec<usize> = batch
            .iter()
            .map(|e| received.iter().position(|id| *id == e.id).expect("every event is delivered"))
            .collect();
        assert!(positions.is_sorted(), "one publisher's events keep their order");
    }
}

/// A bus full of uncommitted events refuses a publish with a retryable error, without losing or
/// adding anything, and takes it once the subscriber has committed.
pub async fn bus_full_bus_refuses_retryably_until_consumed(harness: &dyn EventBusHarness) {
    let bus = harness.bus(4).await;
    let sub = subscribe(&bus, "slow").await;
    let published = events(4);
    bus.publisher.publish(&published).await.expect("publish");
    let more = events(2);
    if !harness.is_bounded() {
        bus.publisher.publish(&more).await.expect("an unbounded bus takes more");
        return;
    }
    match bus.publisher.publish(&more).await {
        Err(err @ Error::Storage { retryable: true, .. }) => assert!(err.is_retryable()),
        other => panic!("a full bus must refuse retryably, got {other:?}"),
    }
    assert_eq!(poll_ids(sub.as_ref(), 10).await, ids(&published), "nothing lost, nothing half-added");
    sub.commit(published[1].id).await.expect("commit");
    bus.publisher.publish(&more).await.expect("room once the subscriber committed");
    let expected: Vec<EventId> = ids(&published[2..]).into_iter().chain(ids(&more)).collect();
    assert_eq!(poll_ids(sub.as_ref(), 10).await, expected);
}
