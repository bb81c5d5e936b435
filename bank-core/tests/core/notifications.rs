//! Notifications: the in-memory bus and delivery log run their conformance suites, and the service
//! delivers each (event, channel, recipient) at most once through redeliveries and failures.

use std::sync::Arc;

use bank_core::Error;
use bank_core::events::{Event, EventKind};
use bank_core::ids::CustomerId;
use bank_core::memory::bus::MemoryEventBus;
use bank_core::notifications::render::{self, format_money};
use bank_core::notifications::{
    Channel, DeliveryKey, DeliveryState, EventSubscription, LogNotifier, MemoryNotificationLog, Notification,
    NotificationLog, NotificationsService, Notifier, NotifyError,
};
use bank_core::ports::EventPublisher;
use bank_core::testkit::fixtures::{eur, usd};
use bank_core::testkit::notifications::{MemoryBusHarness, MemoryLogHarness, ScriptedNotifier, transfer_event};

bank_core::notification_log_conformance_tests!(MemoryLogHarness);
bank_core::event_bus_conformance_tests!(MemoryBusHarness);

/// A bus, a log, a service over e-mail and SMS, and one subscription.
struct Setup {
    bus: MemoryEventBus,
    log: Arc<MemoryNotificationLog>,
    email: Arc<ScriptedNotifier>,
    sms: Arc<ScriptedNotifier>,
    service: NotificationsService,
    subscription: Arc<dyn EventSubscription>,
}

impl Setup {
    fn new() -> Setup {
        let bus = MemoryEventBus::new(1_000);
        let log = Arc::new(MemoryNotificationLog::default());
        let email = Arc::new(ScriptedNotifier::new(Channel::Email));
        let sms = Arc::new(ScriptedNotifier::new(Channel::Sms));
        let service = NotificationsService::new(
            vec![email.clone() as Arc<dyn Notifier>, sms.clone() as Arc<dyn Notifier>],
            log.clone() as Arc<dyn NotificationLog>,
        );
        let subscription = bus.subscribe("notifications");
        Setup { bus, log, email, sms, service, subscription }
    }

    async fn publish(&self, events: &[Event]) {
        self.bus.publish(events).await.expect("publish");
    }

    /// Runs the service until the subscription is drained (or an error).
    async fn drain(&self) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let handled = self.service.run_once(self.subscription.as_ref(), 16).await?;
            if handled == 0 {
                return Ok(total);
            }
            total += handled;
        }
    }

    fn all_sent(&self) -> Vec<Notification> {
        self.email.sent().into_iter().chain(self.sms.sent()).collect()
    }
}

fn key(event: &Event, channel: Channel, recipient: CustomerId) -> DeliveryKey {
    DeliveryKey { event_id: event.id, channel, recipient }
}

#[tokio::test]
async fn redelivered_events_notify_once_per_channel_and_recipient() {
    let s = Setup::new();
    let accepted = transfer_event(EventKind::TransferAccepted);
    let settled = transfer_event(EventKind::TransferSettled);
    // The relay retried: each event is published three times.
    for _ in 0..3 {
        s.publish(&[accepted.clone(), settled.clone()]).await;
    }
    // A second consumer group on the same log polls the same events again, uncommitted at first.
    let other = s.bus.subscribe("notifications-replica");
    assert_eq!(other.poll(100).await.expect("poll").len(), 6);
    assert_eq!(s.service.run_once(other.as_ref(), 3).await.expect("run"), 3);
    assert_eq!(s.drain().await.expect("drain"), 6);
    assert_eq!(s.drain().await.expect("drain"), 0, "everything was committed");
    assert_eq!(s.service.run_once(other.as_ref(), 100).await.expect("run"), 3);

    // accepted: sender × 2 channels; settled: (sender + receiver) × 2 channels.
    let sent = s.all_sent();
    assert_eq!(sent.len(), 6, "{sent:#?}");
    let mut keys: Vec<DeliveryKey> = sent.iter().map(Notification::key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 6, "no delivery was made twice");
    assert_eq!(s.email.attempts().len() + s.sms.attempts().len(), 6, "duplicates were not even attempted");
    for (event, recipient) in [(&accepted, accepted.owner), (&settled, settled.owner)] {
        for channel in [Channel::Email, Channel::Sms] {
            let state = s.log.state(key(event, channel, recipient)).await.expect("state");
            assert_eq!(state, Some(DeliveryState::Sent));
        }
    }
}

#[tokio::test]
async fn settled_internal_transfer_notifies_sender_and_receiver() {
    let s = Setup::new();
    let event = transfer_event(EventKind::TransferSettled);
    let receiver = event.to_owner.expect("an internal transfer has a receiver");
    s.publish(std::slice::from_ref(&event)).await;
    assert_eq!(s.drain().await.expect("drain"), 1);

    let emails = s.email.sent();
    assert_eq!(emails.len(), 2);
    let to_account = event.to_account_id.expect("internal").to_string();
    let from_account = event.from_account_id.to_string();
    let to_sender = emails.iter().find(|n| n.recipient == event.owner).expect("the sender is told");
    assert_eq!(to_sender.subject, "Transfer settled");
    assert_eq!(
        to_sender.body,
        format!("Your transfer of 12.30 EUR to account ending {} (\"Rent\") was settled.", &to_account[32..])
    );
    let to_receiver = emails.iter().find(|n| n.recipient == receiver).expect("the receiver is told");
    assert_eq!(to_receiver.subject, "Money received");
    assert_eq!(
        to_receiver.body,
        format!("You received 12.30 EUR from account ending {} (\"Rent\").", &from_account[32..])
    );
    for n in &emails {
        assert_eq!((n.event_id, n.channel), (event.id, Channel::Email));
        assert!(!n.body.contains(&to_account) && !n.body.contains(&from_account), "account ids are masked");
    }
    assert_eq!(s.sms.sent().len(), 2, "every channel gets its own copy");
}

#[tokio::test]
async fn only_the_sender_hears_of_non_final_and_failed_transfers() {
    let s = Setup::new();
    let kinds = [EventKind::TransferAccepted, EventKind::TransferPending, EventKind::TransferFailed];
    let events: Vec<Event> = kinds.into_iter().map(transfer_event).collect();
    s.publish(&events).await;
    assert_eq!(s.drain().await.expect("drain"), 3);
    let emails = s.email.sent();
    assert_eq!(emails.len(), 3);
    for (n, event) in emails.iter().zip(&events) {
        assert_eq!((n.event_id, n.recipient), (event.id, event.owner), "in event order, to the sender only");
        assert!(n.body.starts_with("Your transfer of 12.30 EUR to account ending "), "{}", n.body);
    }
    assert_eq!(emails[0].subject, "Transfer accepted");
    assert!(emails[1].body.ends_with("is pending; we keep trying."), "{}", emails[1].body);
    assert!(emails[2].body.ends_with("failed: the receiving bank refused it. The funds are available again."));
    let detail = &events[2].failure_reason.as_ref().expect("failed").detail;
    assert!(!emails[2].body.contains(detail.as_str()), "the internal failure detail is never shown");
}

#[tokio::test]
async fn a_transfer_between_own_accounts_notifies_the_owner_once_per_channel() {
    let s = Setup::new();
    let mut event = transfer_event(EventKind::TransferSettled);
    event.to_owner = Some(event.owner);
    s.publish(&[event.clone()]).await;
    s.drain().await.expect("drain");
    let emails = s.email.sent();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].subject, "Transfer settled");
}

#[tokio::test]
async fn a_retryable_failure_is_retried_on_the_next_run_then_delivered_once() {
    let s = Setup::new();
    let event = transfer_event(EventKind::TransferSettled);
    let receiver = event.to_owner.expect("internal");
    s.sms.fail_next(NotifyError::Retryable("gateway throttled".into()));
    s.publish(std::slice::from_ref(&event)).await;

    let err = s.service.run_once(s.subscription.as_ref(), 10).await.expect_err("the SMS must be retried");
    assert!(err.is_retryable(), "{err:?}");
    // The first SMS (to the sender) failed and was released; everything else went out.
    assert_eq!(s.email.sent().len(), 2);
    assert_eq!(s.sms.sent().iter().map(|n| n.recipient).collect::<Vec<_>>(), vec![receiver]);
    assert_eq!(s.log.state(key(&event, Channel::Sms, event.owner)).await.expect("state"), None);
    assert_eq!(s.subscription.poll(10).await.expect("poll"), vec![event.clone()], "the event was not committed");

    assert_eq!(s.service.run_once(s.subscription.as_ref(), 10).await.expect("retry"), 1);
    assert_eq!(s.email.attempts().len(), 2, "e-mails already sent are not attempted again");
    assert_eq!(s.sms.attempts().len(), 3, "only the released SMS is attempted again");
    assert_eq!(s.log.state(key(&event, Channel::Sms, event.owner)).await.expect("state"), Some(DeliveryState::Sent));

    // A late duplicate changes nothing.
    s.publish(std::slice::from_ref(&event)).await;
    assert_eq!(s.drain().await.expect("drain"), 1);
    assert_eq!(s.all_sent().len(), 4, "one per channel and recipient");
    assert_eq!(s.sms.sent().iter().filter(|n| n.recipient == event.owner).count(), 1);
}

#[tokio::test]
async fn a_permanent_failure_is_recorded_and_never_retried() {
    let s = Setup::new();
    let event = transfer_event(EventKind::TransferAccepted);
    s.sms.fail_next(NotifyError::Permanent("no phone number on file".into()));
    s.publish(std::slice::from_ref(&event)).await;
    assert_eq!(s.drain().await.expect("a refusal does not block the stream"), 1);
    assert_eq!(
        s.log.state(key(&event, Channel::Sms, event.owner)).await.expect("state"),
        Some(DeliveryState::Failed { reason: "no phone number on file".into() })
    );
    assert_eq!(s.email.sent().len(), 1, "other channels still deliver");

    s.publish(&[event.clone(), event.clone()]).await;
    assert_eq!(s.drain().await.expect("drain"), 2);
    assert_eq!(s.sms.attempts().len(), 1, "a refused delivery is never attempted again");
    assert!(s.sms.sent().is_empty());
    assert_eq!(s.email.sent().len(), 1);
}

#[tokio::test]
async fn a_failing_event_blocks_later_events_until_it_goes_through() {
    let s = Setup::new();
    let first = transfer_event(EventKind::TransferAccepted);
    let second = transfer_event(EventKind::TransferAccepted);
    s.email.fail_next(NotifyError::Retryable("timeout before connect".into()));
    s.publish(&[first.clone(), second.clone()]).await;
    assert!(s.service.run_once(s.subscription.as_ref(), 10).await.is_err());
    assert!(s.email.sent().is_empty(), "the second event waits for the first: per-stream order holds");
    assert_eq!(s.drain().await.expect("drain"), 2);
    let order: Vec<_> = s.email.sent().iter().map(|n| n.event_id).collect();
    assert_eq!(order, vec![first.id, second.id]);
}

#[tokio::test]
async fn run_once_handles_at_most_max_events() {
    let s = Setup::new();
    let events: Vec<Event> = (0..5).map(|_| transfer_event(EventKind::TransferPending)).collect();
    s.publish(&events).await;
    assert_eq!(s.service.run_once(s.subscription.as_ref(), 2).await.expect("run"), 2);
    assert_eq!(s.service.run_once(s.subscription.as_ref(), 0).await.expect("run"), 0);
    assert_eq!(s.subscription.poll(10).await.expect("poll").len(), 3, "the handled ones were committed");
}

#[tokio::test]
async fn a_second_notifier_for_a_channel_is_ignored() {
    let first = Arc::new(ScriptedNotifier::new(Channel::Email));
    let second = Arc::new(ScriptedNotifier::new(Channel::Email));
    let service = NotificationsService::new(
        vec![first.clone() as Arc<dyn Notifier>, second.clone() as Arc<dyn Notifier>],
        Arc::new(MemoryNotificationLog::default()),
    );
    assert_eq!(service.channels(), vec![Channel::Email]);
    service.handle(&transfer_event(EventKind::TransferAccepted)).await.expect("handle");
    assert_eq!((first.sent().len(), second.attempts().len()), (1, 0));
}

#[tokio::test]
async fn log_notifier_keeps_a_bounded_record() {
    let notifier = Arc::new(LogNotifier::with_kept_max(Channel::Webhook, 2));
    let service =
        NotificationsService::new(vec![notifier.clone() as Arc<dyn Notifier>], Arc::new(MemoryNotificationLog::new(8)));
    let events: Vec<Event> = (0..3).map(|_| transfer_event(EventKind::TransferAccepted)).collect();
    for event in &events {
        service.handle(event).await.expect("handle");
    }
    let kept: Vec<_> = notifier.sent().iter().map(|n| n.event_id).collect();
    assert_eq!(kept, vec![events[1].id, events[2].id], "the oldest is dropped past the bound");
    assert_eq!(notifier.channel(), Channel::Webhook);
}

#[tokio::test]
async fn memory_log_forgets_its_oldest_records_past_capacity() {
    let log = MemoryNotificationLog::new(2);
    let keys: Vec<DeliveryKey> =
        (0..3).map(|_| key(&transfer_event(EventKind::TransferAccepted), Channel::Email, CustomerId::new())).collect();
    for k in &keys {
        assert!(log.claim(*k).await.expect("claim"));
    }
    assert_eq!(log.len(), 2);
    assert_eq!(log.state(keys[0]).await.expect("state"), None, "the oldest record was forgotten");
    assert_eq!(log.state(keys[2]).await.expect("state"), Some(DeliveryState::Claimed));
}

#[tokio::test]
async fn memory_bus_commits_duplicates_one_occurrence_at_a_time() {
    let bus = MemoryEventBus::new(100);
    let sub = bus.subscribe("consumer");
    let a = transfer_event(EventKind::TransferAccepted);
    let b = transfer_event(EventKind::TransferSettled);
    bus.publish(&[a.clone(), b.clone()]).await.expect("publish");
    bus.publish(std::slice::from_ref(&a)).await.expect("the relay retried");
    assert_eq!(sub.poll(10).await.expect("poll"), vec![a.clone(), b.clone(), a.clone()]);
    sub.commit(a.id).await.expect("commit");
    assert_eq!(sub.poll(10).await.expect("poll"), vec![b.clone(), a.clone()], "b was not skipped");
    sub.commit(b.id).await.expect("commit");
    sub.commit(a.id).await.expect("commit");
    assert!(sub.poll(10).await.expect("poll").is_empty());
}

#[tokio::test]
async fn memory_bus_trims_what_every_subscription_committed() {
    let bus = MemoryEventBus::new(3);
    let fast = bus.subscribe("fast");
    let slow = bus.subscribe("slow");
    let first: Vec<Event> = (0..3).map(|_| transfer_event(EventKind::TransferAccepted)).collect();
    bus.publish(&first).await.expect("publish");
    fast.commit(first[2].id).await.expect("commit");
    let one = transfer_event(EventKind::TransferSettled);
    let err = bus.publish(std::slice::from_ref(&one)).await.expect_err("the slow subscription holds the log");
    assert!(err.is_retryable() && err.to_string().contains("slow"), "{err}");
    slow.commit(first[0].id).await.expect("commit");
    bus.publish(std::slice::from_ref(&one)).await.expect("room after the slow one committed");
    assert_eq!(bus.published(), vec![first[1].clone(), first[2].clone(), one.clone()], "the committed one is gone");
    assert_eq!(fast.poll(10).await.expect("poll"), vec![one.clone()]);
    assert_eq!(slow.poll(10).await.expect("poll"), vec![first[1].clone(), first[2].clone(), one]);
}

#[tokio::test]
async fn memory_bus_without_subscribers_never_fills_and_late_subscribers_see_what_is_held() {
    let bus = MemoryEventBus::new(2);
    let events: Vec<Event> = (0..5).map(|_| transfer_event(EventKind::TransferAccepted)).collect();
    for event in &events {
        bus.publish(std::slice::from_ref(event)).await.expect("nobody needs old events");
    }
    // Full at the third and fifth publish: everything held was dropped each time.
    let held = bus.published();
    assert_eq!(held, vec![events[4].clone()]);
    let late = bus.subscribe("late");
    assert_eq!(late.poll(10).await.expect("poll"), held, "a new subscription starts at the oldest event held");
    let too_big: Vec<Event> = (0..3).map(|_| transfer_event(EventKind::TransferAccepted)).collect();
    let err = bus.publish(&too_big).await.expect_err("a batch larger than the bus never fits");
    assert!(!err.is_retryable(), "{err:?}");
    bus.publish(&[]).await.expect("an empty batch is a no-op");
}

#[test]
fn amounts_are_shown_with_the_currency_decimals_and_never_rounded() {
    assert_eq!(format_money(eur("12.3")), "12.30 EUR");
    assert_eq!(format_money(usd("1000")), "1000.00 USD");
    assert_eq!(format_money(eur("0.01")), "0.01 EUR");
    let yen = bank_core::money::Money::parse("1500", "JPY").expect("jpy");
    assert_eq!(format_money(yen), "1500 JPY");
}

#[test]
fn rendering_is_deterministic_short_and_shortens_references() {
    let mut event = transfer_event(EventKind::TransferFailed);
    event.reference = "x".repeat(140);
    event.to_account_id = None;
    event.to_owner = None;
    let once = render::messages(&event);
    assert_eq!(once, render::messages(&event), "the same event renders the same text");
    assert_eq!(once.len(), 1);
    let body = &once[0].body;
    assert!(body.contains("to an external account"), "{body}");
    assert!(body.contains(&format!("(\"{}…\")", "x".repeat(render::REFERENCE_SHOWN_CHARS_MAX - 1))), "{body}");
    assert!(body.chars().count() <= render::BODY_CHARS_MAX);
}

/// A `StatementReady` event tells the account's owner, and only them, which month is ready
/// and for which account (masked); never the statement's hash or an amount. Announcing the same
/// statement again is the same event (same id), which consumers deduplicate on.
#[test]
fn a_statement_ready_event_tells_the_owner_only() {
    use bank_core::events::{Event, EventKind};
    use bank_core::ids::{AccountId, CustomerId};
    use bank_core::notifications::render::messages;
    use bank_core::statements::StatementId;

    let owner = CustomerId::new();
    let account = AccountId::new();
    let id = StatementId::new(account, "2026-01".parse().expect("period"));
    let at = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    let event = Event::statement_ready(id, owner, "ab".repeat(32), at);
    assert_eq!(event.kind, EventKind::StatementReady);
    assert_eq!(event.kind.as_str(), "statement.ready");
    assert_eq!(Event::statement_ready(id, owner, "ab".repeat(32), at).id, event.id, "a repeat is the same event");
    let out = messages(&event);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].recipient, owner);
    assert_eq!(out[0].subject, "Statement ready");
    assert!(out[0].body.contains("2026-01"), "{}", out[0].body);
    let text = account.to_string();
    assert!(out[0].body.contains(&text[text.len() - 4..]) && !out[0].body.contains(&text), "masked: {}", out[0].body);
    assert!(!out[0].body.contains("abab"), "no hash in the message");
    let json = serde_json::to_string(&event).expect("serialize");
    let back: Event = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, event);
}
