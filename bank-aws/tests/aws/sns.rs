//! [`SnsEventPublisher`] and [`SqsEventSubscriber`] on the emulator: the event bus conformance
//! suite (a fresh FIFO topic and queue prefix per case; SNS has no capacity, so
//! `is_bounded` = false), and what only SNS and SQS show — uncommitted events coming back to the
//! next process after a crash, one account's events in order with duplicates dropped, two
//! processes sharing one subscription, the resource checks, and the services out of reach.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bank_aws::aws::testing::{emulator_config, unique_name};
use bank_aws::aws::{AwsSettings, StaticCredentials, sdk_config};
use bank_aws::sns::{
    SnsEventPublisher, SqsEventSubscriber, check_event_topic, check_subscription_queue, create_event_topic,
    subscription_queue_name,
};
use bank_aws::sqs::queue_urls;
use bank_core::Error;
use bank_core::events::{Event, EventKind};
use bank_core::ids::{AccountId, EventId};
use bank_core::memory::bus::MemoryEventBus;
use bank_core::notifications::{EventSubscriber, EventSubscription};
use bank_core::ports::EventPublisher;
use bank_core::testkit::notifications::{BusUnderTest, EventBusHarness, transfer_event};
use chrono::TimeDelta;
use parking_lot::Mutex;

/// The emulator's SQS and SNS clients (each call: new connections, as another process would).
async fn clients() -> Option<(aws_sdk_sqs::Client, aws_sdk_sns::Client)> {
    let config = emulator_config().await?;
    Some((aws_sdk_sqs::Client::new(&config), aws_sdk_sns::Client::new(&config)))
}

/// A new topic: the publisher, the topic ARN and a fresh queue prefix.
async fn topic() -> Option<(SnsEventPublisher, String, String)> {
    let (_, sns) = clients().await?;
    let arn = create_event_topic(&sns, &format!("{}.fifo", unique_name("bank-events"))).await.expect("create topic");
    Some((SnsEventPublisher::new(sns, arn.clone()), arn, unique_name("bank-ev")))
}

async fn subscriber(topic_arn: &str, prefix: &str) -> SqsEventSubscriber {
    let (sqs, sns) = clients().await.expect("emulator");
    SqsEventSubscriber::new(sqs, sns, topic_arn, prefix)
}

struct SnsHarness;

#[async_trait]
impl EventBusHarness for SnsHarness {
    async fn bus(&self, capacity: usize) -> BusUnderTest {
        match topic().await {
            Some((publisher, arn, prefix)) => {
                BusUnderTest { publisher: Arc::new(publisher), subscriber: Arc::new(subscriber(&arn, &prefix).await) }
            }
            // No emulator (and services not required): the cases pass vacuously on an unbounded
            // memory bus; `emulator_config` printed why.
            None => {
                let bus = Arc::new(MemoryEventBus::new(capacity.max(1_000)));
                BusUnderTest { publisher: bus.clone(), subscriber: bus }
            }
        }
    }

    fn is_bounded(&self) -> bool {
        false
    }
}

mod conformance {
    bank_core::event_bus_conformance_tests!(super::SnsHarness);
}

fn events_of(account: AccountId, count: usize) -> Vec<Event> {
    (0..count).map(|_| Event { from_account_id: account, ..transfer_event(EventKind::TransferSettled) }).collect()
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// Events polled and not committed by a process that died come back to the next process once
/// their visibility runs out, not before.
#[tokio::test]
async fn uncommitted_events_come_back_after_a_crash() {
    let Some((publisher, arn, prefix)) = topic().await else { return };
    let crashed = subscriber(&arn, &prefix).await.with_visibility(TimeDelta::seconds(1)).expect("visibility");
    let sub = crashed.subscribe("notifications").await.expect("subscribe");
    let published: Vec<Event> = (0..3).map(|_| transfer_event(EventKind::TransferAccepted)).collect();
    publisher.publish(&published).await.expect("publish");
    assert_eq!(ids(&sub.poll(10).await.expect("poll")), ids(&published));
    drop((sub, crashed));

    let next = subscriber(&arn, &prefix).await.subscribe("notifications").await.expect("subscribe again");
    assert!(next.poll(10).await.expect("poll").is_empty(), "hidden while the dead process's visibility runs");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = next.poll(10).await.expect("poll");
    assert_eq!(ids(&again), ids(&published), "back, in order");
    next.commit(again[2].id).await.expect("commit");
    assert!(next.poll(10).await.expect("poll").is_empty());
}

/// One account's events come out in publish order, ten per poll at most while uncommitted (SQS
/// FIFO blocks a group with messages in flight), and a repeat of an event is dropped.
#[tokio::test]
async fn one_accounts_events_keep_their_order_and_repeats_are_dropped() {
    let Some((publisher, arn, prefix)) = topic().await else { return };
    let sub = subscriber(&arn, &prefix).await.subscribe("notifications").await.expect("subscribe");
    let published = events_of(AccountId::new(), 15);
    publisher.publish(&published[..8]).await.expect("publish");
    // A relay retrying a batch that partly went out.
    publisher.publish(&published[5..]).await.expect("publish again");
    let first = sub.poll(100).await.expect("poll");
    assert_eq!(ids(&first), ids(&published[..10]), "the group's ten oldest");
    assert_eq!(ids(&sub.poll(100).await.expect("poll")), ids(&first), "uncommitted: the same again");
    sub.commit(first[9].id).await.expect("commit");
    let rest = sub.poll(100).await.expect("poll");
    assert_eq!(ids(&rest), ids(&published[10..]), "then the rest, each once");
}

/// Two processes reading one subscription share its messages: each event is handled once in
/// all, and each account's events in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_subscription() {
    const ACCOUNTS: usize = 6;
    const PER_ACCOUNT: usize = 5;
    let Some((publisher, arn, prefix)) = topic().await else { return };
    let mut subscriptions: Vec<Arc<dyn EventSubscription>> = Vec::new();
    for _ in 0..2 {
        subscriptions.push(subscriber(&arn, &prefix).await.subscribe("notifications").await.expect("subscribe"));
    }
    let plan: Vec<Vec<Event>> = (0..ACCOUNTS).map(|_| events_of(AccountId::new(), PER_ACCOUNT)).collect();
    for index in 0..PER_ACCOUNT {
        let batch: Vec<Event> = plan.iter().map(|events| events[index].clone()).collect();
        publisher.publish(&batch).await.expect("publish");
    }
    let handled: Arc<Mutex<Vec<Event>>> = Arc::default();
    let tasks: Vec<_> = subscriptions
        .into_iter()
        .map(|sub| {
            let handled = Arc::clone(&handled);
            tokio::spawn(async move {
                let mut idle = 0;
                while handled.lock().len() < ACCOUNTS * PER_ACCOUNT && idle < 100 {
                    let batch = sub.poll(3).await.expect("poll");
                    let Some(last) = batch.last() else {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    idle = 0;
                    handled.lock().extend(batch.iter().cloned());
                    sub.commit(last.id).await.expect("commit");
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), async {
        for task in tasks {
            task.await.expect("consumer");
        }
    })
    .await
    .expect("every event handled in time");
    let handled = std::mem::take(&mut *handled.lock());
    assert_eq!(handled.len(), ACCOUNTS * PER_ACCOUNT, "each event handled once");
    let mut per_account: HashMap<AccountId, Vec<EventId>> = HashMap::new();
    for event in &handled {
        per_account.entry(event.from_account_id).or_default().push(event.id);
    }
    for events in &plan {
        assert_eq!(per_account.get(&events[0].from_account_id), Some(&ids(events)), "an account's events in order");
    }
}

/// The checks accept what the helpers made and refuse what they did not; a subscriber that may
/// not create queues refuses an unknown name and reads a made one.
#[tokio::test]
async fn the_checks_accept_created_resources_and_refuse_others() {
    let Some((publisher, arn, prefix)) = topic().await else { return };
    let (sqs, sns) = clients().await.expect("emulator");
    check_event_topic(&sns, &arn).await.expect("the topic");
    publisher.check().await.expect("the publisher's check");
    let standard = sns.create_topic().name(unique_name("bank-standard")).send().await.expect("a standard topic");
    assert!(check_event_topic(&sns, standard.topic_arn().expect("arn")).await.is_err(), "not FIFO");

    let strict = subscriber(&arn, &prefix).await.existing_only();
    assert!(strict.subscribe("audit").await.is_err(), "no queue yet, and it may not make one");
    let made = subscriber(&arn, &prefix).await.subscribe("audit").await.expect("made at first use");
    let urls = queue_urls(&sqs, &subscription_queue_name(&prefix, "audit").expect("name")).await.expect("urls");
    check_subscription_queue(&sqs, &sns, &arn, &urls).await.expect("subscribed with raw delivery");
    let other_topic = create_event_topic(&sns, &format!("{}.fifo", unique_name("bank-other"))).await.expect("topic");
    assert!(check_subscription_queue(&sqs, &sns, &other_topic, &urls).await.is_err(), "not subscribed to it");

    let strict = subscriber(&arn, &prefix).await.existing_only().subscribe("audit").await.expect("found and checked");
    let event = transfer_event(EventKind::TransferFailed);
    publisher.publish(std::slice::from_ref(&event)).await.expect("publish");
    assert_eq!(strict.poll(10).await.expect("poll"), vec![event.clone()], "the failure reason and all, as published");
    drop(made);
}

/// SNS and SQS out of reach (the emulator stopped): publishing, subscribing and polling are
/// retryable storage errors, not panics.
#[tokio::test]
async fn services_out_of_reach_are_retryable_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let settings = AwsSettings { region: "us-east-1".into(), endpoint: Some(format!("http://127.0.0.1:{port}")) };
    let credentials = StaticCredentials { access_key_id: "testing".into(), secret_access_key: "testing".into() };
    let config = sdk_config(&settings, Some(credentials)).await;
    let arn = "arn:aws:sns:us-east-1:000000000000:events.fifo";
    let publisher = SnsEventPublisher::new(aws_sdk_sns::Client::new(&config), arn);
    let retryable = |result: Result<(), Error>| matches!(result, Err(Error::Storage { retryable: true, .. }));
    assert!(retryable(publisher.publish(&[transfer_event(EventKind::TransferAccepted)]).await));
    let subscriber =
        SqsEventSubscriber::new(aws_sdk_sqs::Client::new(&config), aws_sdk_sns::Client::new(&config), arn, "bank-ev");
    assert!(retryable(subscriber.subscribe("notifications").await.map(drop)));
}
