//! The event bus on SNS FIFO and SQS FIFO: [`SnsEventPublisher`] publishes the relay's events to
//! a FIFO topic; [`SqsEventSubscriber`] reads them from FIFO queues subscribed to it, one queue
//! per subscription name. [`create_event_topic`] / [`check_event_topic`] and
//! [`create_subscription_queue`] / [`check_subscription_queue`] make and check the resources.
//!
//! # Publishing
//! `PublishBatch` calls of ten, one after the other (so one relay's events reach the topic in its
//! order), each entry with:
//! - the body: the [`Event`] as JSON, exactly what the in-process bus carries;
//! - `MessageDeduplicationId` = the event id: a relay that publishes again after a failure (at
//!   least once) is deduplicated by SNS for five minutes, and consumers deduplicate on the id
//!   after that;
//! - `MessageGroupId` = the event's source account (`from_account_id`). SNS FIFO and SQS FIFO
//!   keep order only *within* a group, and the order that matters is per account: one transfer's
//!   events (accepted → settled or failed) and one account's transfers come out as the ledger
//!   made them — the same grouping as the transfer queue. A single group for all events would
//!   give a total order but limit the topic and every subscription queue to one group's
//!   throughput (300 messages/s) and one consumer at a time; per account, notifications of
//!   different accounts go in parallel. Events of *different* accounts may come out in another
//!   order than published: no consumer relies on that (the receiver of an internal transfer is
//!   told from the sender's event).

mod subscriber;

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::operation::publish_batch::builders::PublishBatchFluentBuilder;
use aws_sdk_sns::types::{BatchResultErrorEntry, PublishBatchRequestEntry};
use bank_core::events::Event;
use bank_core::ports::EventPublisher;
use bank_core::{Error, Result};

use crate::aws::sdk_err;
pub use subscriber::{
    SUBSCRIPTION_MAX_RECEIVES, SUBSCRIPTION_NAME_LEN_MAX, SUBSCRIPTION_VISIBILITY_DEFAULT, SqsEventSubscriber,
    check_subscription_queue, create_subscription_queue, subscription_queue_name,
};

/// Most entries of one `PublishBatch`.
pub const SNS_BATCH_MAX: usize = 10;
/// Largest message SNS takes, in bytes.
pub const SNS_MESSAGE_BYTES_MAX: usize = 256 * 1024;
/// Longest topic name SNS accepts, `.fifo` included.
pub const SNS_TOPIC_NAME_LEN_MAX: usize = 256;

/// Publishes events to an SNS FIFO topic (see the module docs). Cloning shares the client.
#[derive(Debug, Clone)]
pub struct SnsEventPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsEventPublisher {
    /// The publisher to the FIFO topic `topic_arn` (from [`create_event_topic`]).
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        SnsEventPublisher { client, topic_arn: topic_arn.into() }
    }

    /// The topic's ARN.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// Checks the topic ([`check_event_topic`]): a start-up check.
    pub async fn check(&self) -> Result<()> {
        check_event_topic(&self.client, &self.topic_arn).await
    }
}

/// The `PublishBatch` request of `events` (at most ten); entry ids are the positions.
pub(crate) fn publish_request(client: &Client, topic_arn: &str, events: &[Event]) -> Result<PublishBatchFluentBuilder> {
    debug_assert!(events.len() <= SNS_BATCH_MAX);
    let mut request = client.publish_batch().topic_arn(topic_arn);
    for (index, event) in events.iter().enumerate() {
        let body = serde_json::to_string(event).map_err(|err| Error::storage(format!("event: {err}"), false))?;
        if body.len() > SNS_MESSAGE_BYTES_MAX {
            return Err(Error::storage(
                format!("event {} is larger than SNS's {SNS_MESSAGE_BYTES_MAX} bytes", event.id),
                false,
            ));
        }
        let entry = PublishBatchRequestEntry::builder()
            .id(index.to_string())
            .message(body)
            .message_group_id(event.from_account_id.to_string())
            .message_deduplication_id(event.id.to_string())
            .build()
            .map_err(|err| Error::storage(format!("sns: building a publish entry: {err}"), false))?;
        request = request.publish_batch_request_entries(entry);
    }
    Ok(request)
}

fn publish_failures(failed: &[BatchResultErrorEntry]) -> Error {
    let retryable = failed.iter().any(|entry| !entry.sender_fault());
    let codes: Vec<&str> = failed.iter().map(BatchResultErrorEntry::code).collect();
    Error::storage(format!("sns PublishBatch: {} of the batch failed ({})", failed.len(), codes.join(", ")), retryable)
}

#[async_trait]
impl EventPublisher for SnsEventPublisher {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        for batch in events.chunks(SNS_BATCH_MAX) {
            let published = publish_request(&self.client, &self.topic_arn, batch)?
                .send()
                .await
                .map_err(|err| sdk_err("sns PublishBatch", err))?;
            if !published.failed().is_empty() {
                return Err(publish_failures(published.failed()));
            }
        }
        Ok(())
    }
}

/// The topic's attributes as [`create_event_topic`] sets them.
fn topic_attributes() -> [(&'static str, &'static str); 2] {
    [("FifoTopic", "true"), ("ContentBasedDeduplication", "false")]
}

/// Creates the FIFO event topic `name` (ending in `.fifo`; an existing one with the same
/// attributes is fine) and answers its ARN. For first installs and emulators.
pub async fn create_event_topic(client: &Client, name: &str) -> Result<String> {
    let stem = name.strip_suffix(".fifo").unwrap_or_default();
    if stem.is_empty()
        || name.len() > SNS_TOPIC_NAME_LEN_MAX
        || !stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::InvalidInput(format!(
            "SNS FIFO topic name {name:?}: up to {SNS_TOPIC_NAME_LEN_MAX} characters of A-Z, a-z, 0-9, '-', '_', ending in .fifo"
        )));
    }
    let request = topic_attributes()
        .into_iter()
        .fold(client.create_topic().name(name), |request, (key, value)| request.attributes(key, value));
    let created = request.send().await.map_err(|err| sdk_err("sns CreateTopic", err))?;
    created.topic_arn().map(str::to_owned).ok_or_else(|| Error::storage("sns CreateTopic answered no ARN", true))
}

/// Checks that `topic_arn` is a FIFO topic with explicit deduplication: a start-up check.
pub async fn check_event_topic(client: &Client, topic_arn: &str) -> Result<()> {
    let answer = client
        .get_topic_attributes()
        .topic_arn(topic_arn)
        .send()
        .await
        .map_err(|err| sdk_err("sns GetTopicAttributes", err))?;
    let attributes = answer.attributes().cloned().unwrap_or_default();
    for (key, expected) in topic_attributes() {
        // SNS leaves ContentBasedDeduplication out when it was never set: off.
        let actual = attributes.get(key).map(String::as_str).unwrap_or("false");
        if actual != expected {
            return Err(Error::storage(
                format!("SNS topic {topic_arn}: {key} is {actual}, expected {expected}"),
                false,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn offline_client() -> Client {
    use aws_sdk_sns::config::{BehaviorVersion, Region};
    Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use bank_core::events::EventKind;
    use bank_core::testkit::notifications::transfer_event;

    use super::*;

    #[test]
    fn a_publish_groups_by_source_account_and_dedups_on_the_event_id() {
        let events: Vec<Event> = (0..3).map(|_| transfer_event(EventKind::TransferSettled)).collect();
        let request =
            publish_request(&offline_client(), "arn:aws:sns:us-east-1:0:events.fifo", &events).expect("request");
        let input = request.as_input();
        assert_eq!(input.get_topic_arn().as_deref(), Some("arn:aws:sns:us-east-1:0:events.fifo"));
        let entries = input.get_publish_batch_request_entries().clone().expect("entries");
        assert_eq!(entries.len(), 3);
        for (index, (entry, event)) in entries.iter().zip(&events).enumerate() {
            assert_eq!(entry.id(), index.to_string());
            assert_eq!(entry.message_group_id(), Some(event.from_account_id.to_string().as_str()));
            assert_eq!(entry.message_deduplication_id(), Some(event.id.to_string().as_str()));
            let body: Event = serde_json::from_str(entry.message()).expect("the event as JSON");
            assert_eq!(&body, event);
            assert!(entry.message_structure().is_none(), "one body for every protocol");
        }
    }

    #[test]
    fn publish_failures_are_retryable_only_when_not_the_senders_fault() {
        let entry = |code: &str, sender_fault: bool| {
            BatchResultErrorEntry::builder().id("0").code(code).sender_fault(sender_fault).build().expect("entry")
        };
        assert!(matches!(
            publish_failures(&[entry("InvalidParameter", true)]),
            Error::Storage { retryable: false, .. }
        ));
        assert!(matches!(publish_failures(&[entry("InternalError", false)]), Error::Storage { retryable: true, .. }));
    }

    #[tokio::test]
    async fn a_bad_topic_name_is_refused_before_any_call() {
        for name in ["events", ".fifo", "with space.fifo", &format!("{}.fifo", "a".repeat(252))] {
            assert!(matches!(create_event_topic(&offline_client(), name).await, Err(Error::InvalidInput(_))), "{name}");
        }
    }
}
