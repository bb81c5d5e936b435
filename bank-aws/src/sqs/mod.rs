//! [`SqsTransferQueue`]: `bank_core`'s [`TransferQueue`] on an SQS FIFO queue with a FIFO
//! dead-letter queue ([`create_transfer_queue`] makes both, [`check_transfer_queue`] checks them).
//!
//! # Mapping
//! - A message is sent with `MessageGroupId` = its group (the source account), so SQS keeps each
//!   account's transfers in order and hands different accounts to different workers;
//!   `MessageDeduplicationId` = its `dedup_id`; the body is the [`QueueMessage`] as JSON.
//!   [`TransferQueue::enqueue_batch`] sends `SendMessageBatch` calls of ten, one after the other.
//! - [`TransferQueue::receive`] calls `ReceiveMessage` (ten at most per call, short polling) until
//!   it has `max` messages or SQS has none to give, asking for `ApproximateReceiveCount`
//!   (`receive_count`) and `SentTimestamp` (`enqueued_at`). SQS FIFO itself gives a group's oldest
//!   messages (up to ten) and nothing more of a group while any of it is in flight. Each call
//!   carries a fresh `ReceiveRequestAttemptId`, so the SDK's retry of a call whose answer was
//!   lost gets the same messages back instead of leaving them hidden for their visibility.
//! - [`TransferQueue::ack`] is `DeleteMessage`; [`TransferQueue::retry_later`] is
//!   `ChangeMessageVisibility`. The receipt is SQS's receipt handle.
//! - Dead-lettering is SQS's redrive policy (`maxReceiveCount`, set when the queue is made): SQS
//!   moves a message when a receive would exceed it. [`TransferQueue::dead_letters`] receives from
//!   the dead-letter queue and makes what it saw visible again at once: it reads, never consumes.
//!
//! # What SQS decides, not this adapter
//! - **Time** is SQS's: visibility timeouts and delays run on the service's clock, in whole
//!   seconds (a fraction is rounded up), at most twelve hours; `enqueued_at` is SQS's
//!   `SentTimestamp`. No [`bank_core::clock::Clock`] is involved.
//! - **Duplicates**: SQS accepts a send whose deduplication id it saw within five minutes and
//!   drops it without saying so. So [`TransferQueue::enqueue`] answers `true` for every message
//!   SQS accepted, and `false` only for a repeat of an earlier message of the same batch (which is
//!   not sent). Nothing in `bank-core` acts on the answer. The window is SQS's five minutes.
//! - **Stale receipts**: deleting with a receipt handle of an earlier delivery *succeeds* on SQS
//!   and deletes nothing ("you must provide the most recently received ReceiptHandle …
//!   otherwise, the request succeeds, but the message will not be deleted"), and deleting a
//!   message twice succeeds too. So `ack` reports [`Error::StaleReceipt`] only when SQS says the
//!   handle is invalid; the worker treats both answers alike (the current delivery finds the
//!   work done). `retry_later` with a stale handle fails on SQS (`MessageNotInflight`, or the
//!   handle is invalid or expired): that is `StaleReceipt`.
//! - **Capacity**: an SQS queue holds any number of messages; a FIFO queue refuses receives past
//!   120,000 messages in flight (`OverLimit`, retryable here). `QueueConfig::capacity` does not
//!   apply, nor does the dead-letter list's bound: SQS keeps dead letters for the retention
//!   period (14 days as made here).
//! - **Depth**: [`TransferQueue::stats`] reads the queues' approximate counters. SQS publishes
//!   the age of the oldest message only as the CloudWatch metric
//!   `ApproximateAgeOfOldestMessage`, so `oldest_age_ms` is `None`: alarm on that metric.
//!
//! # Visibility while a message is worked on
//! The port has no heartbeat (extend the visibility of a delivery still being processed), and
//! `bank_core::payments::worker` needs none: it receives with a visibility longer than a
//! processing attempt, and every step of an attempt is keyed, so a delivery that overran its
//! visibility and came back is harmless (the second attempt finds the work done or loses the
//! compare-and-swap). A long-running consumer can call `retry_later` with the time it still
//! needs: that is `ChangeMessageVisibility`, the SQS heartbeat.
//!
//! A failure of SQS itself (no answer, a 5xx, throttling) is a retryable
//! [`Error::Storage`](bank_core::Error) (`aws::sdk_err`): the worker and the relay retry.

mod fifo;

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::operation::receive_message::builders::ReceiveMessageFluentBuilder;
use aws_sdk_sqs::operation::send_message_batch::builders::SendMessageBatchFluentBuilder;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use bank_core::ports::TransferQueue;
use bank_core::queue::{Delivery, QueueMessage, QueueStats, RECEIVE_BATCH_MAX, Receipt};
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};

use crate::aws::sdk_err;
pub use fifo::{
    QueueUrls, RETENTION_SECONDS, SQS_BATCH_MAX, SQS_ID_BYTES_MAX, SQS_MAX_RECEIVE_COUNT_RANGE, SQS_QUEUE_NAME_LEN_MAX,
    SQS_VISIBILITY_MAX_SECONDS,
};
pub(crate) use fifo::{
    batch_failures, check_fifo_queue, check_queue_name, create_fifo_queue, queue_arn, queue_attributes,
    visibility_seconds,
};

/// Most dead letters one [`TransferQueue::dead_letters`] reads.
pub const DEAD_LETTERS_READ_MAX: usize = 1_000;
/// How long `dead_letters` hides what it reads before making it visible again (a failed release
/// still ends then).
const DEAD_LETTERS_HOLD_SECONDS: i32 = 10;

/// The transfer queue on SQS FIFO (see the module docs). Cloning shares the client.
#[derive(Debug, Clone)]
pub struct SqsTransferQueue {
    client: Client,
    urls: QueueUrls,
}

/// Creates the transfer queue `name` (ending in `.fifo`) and its dead-letter queue
/// `<stem>-dlq.fifo`, moving a message there after `max_receives` receives (1 to 1000; the
/// core's default is [`bank_core::queue::MAX_RECEIVES_DEFAULT`]). Idempotent. For first installs
/// and emulators (`bank-server migrate --create-aws-resources`).
pub async fn create_transfer_queue(client: &Client, name: &str, max_receives: u32) -> Result<QueueUrls> {
    create_fifo_queue(client, name, max_receives).await
}

/// Checks that `urls` name a transfer queue as [`create_transfer_queue`] makes it (FIFO, explicit
/// deduplication per queue, a redrive policy to the FIFO dead-letter queue); answers its
/// `maxReceiveCount`. A start-up check.
pub async fn check_transfer_queue(client: &Client, urls: &QueueUrls) -> Result<u32> {
    check_fifo_queue(client, urls).await
}

/// The URLs of the FIFO queue `name` (the transfer queue, or a subscription queue) and of its
/// dead-letter queue `<stem>-dlq.fifo`, when both exist.
pub async fn queue_urls(client: &Client, name: &str) -> Result<QueueUrls> {
    check_queue_name(name)?;
    let url_of = |queue: String| async move {
        client
            .get_queue_url()
            .queue_name(&queue)
            .send()
            .await
            .map_err(|err| sdk_err(&format!("sqs GetQueueUrl {queue}"), err))?
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| Error::storage(format!("sqs GetQueueUrl {queue} answered no URL"), false))
    };
    Ok(QueueUrls {
        queue_url: url_of(name.to_owned()).await?,
        dead_letter_queue_url: url_of(fifo::dead_letter_name(name)).await?,
    })
}

impl SqsTransferQueue {
    /// The queue at `urls` (from [`create_transfer_queue`] or [`queue_urls`]).
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        SqsTransferQueue { client, urls }
    }

    /// The queue's URLs.
    pub fn urls(&self) -> &QueueUrls {
        &self.urls
    }

    /// Checks the queue ([`check_transfer_queue`]): a start-up check.
    pub async fn check(&self) -> Result<u32> {
        check_transfer_queue(&self.client, &self.urls).await
    }

    /// One `SendMessageBatch` of at most ten `(index, message)`; entry ids are the indexes.
    fn send_request(&self, batch: &[(usize, &QueueMessage)]) -> Result<SendMessageBatchFluentBuilder> {
        send_request(&self.client, &self.urls.queue_url, batch)
    }
}

/// The `SendMessageBatch` request of `batch` (at most ten `(index, message)`).
fn send_request(client: &Client, url: &str, batch: &[(usize, &QueueMessage)]) -> Result<SendMessageBatchFluentBuilder> {
    debug_assert!(batch.len() <= SQS_BATCH_MAX);
    let mut request = client.send_message_batch().queue_url(url);
    for (index, message) in batch {
        let body =
            serde_json::to_string(message).map_err(|err| Error::storage(format!("queue message: {err}"), false))?;
        let entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body)
            .message_group_id(message.group.to_string())
            .message_deduplication_id(&message.dedup_id)
            .build()
            .map_err(|err| Error::storage(format!("sqs: building a send entry: {err}"), false))?;
        request = request.entries(entry);
    }
    Ok(request)
}

/// The `ReceiveMessage` request of at most `count` messages hidden for `visibility_seconds`.
fn receive_request(client: &Client, url: &str, count: usize, visibility_seconds: i32) -> ReceiveMessageFluentBuilder {
    client
        .receive_message()
        .queue_url(url)
        // At most ten: fits.
        .max_number_of_messages(i32::try_from(count.min(SQS_BATCH_MAX)).unwrap_or(1))
        .visibility_timeout(visibility_seconds)
        .wait_time_seconds(0)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .receive_request_attempt_id(uuid::Uuid::now_v7().simple().to_string())
}

/// A message's `SentTimestamp` in milliseconds (0 when absent).
fn sent_millis(message: &Message) -> i64 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// A received SQS message as a delivery; `None` (with a warning) for a body that is not a queue
/// message: it stays in flight, and the redrive policy moves it to the dead-letter queue.
fn delivery(message: &Message) -> Option<Delivery> {
    let id = message.message_id().unwrap_or("?");
    let parsed = message.body().and_then(|body| serde_json::from_str::<QueueMessage>(body).ok());
    let (Some(queue_message), Some(receipt)) = (parsed, message.receipt_handle()) else {
        tracing::warn!(
            message_id = id,
            "SQS message without a queue message body or receipt; left to the redrive policy"
        );
        return None;
    };
    let attribute = |name: MessageSystemAttributeName| message.attributes().and_then(|a| a.get(&name));
    let receive_count =
        attribute(MessageSystemAttributeName::ApproximateReceiveCount).and_then(|n| n.parse::<u32>().ok()).unwrap_or(1);
    let enqueued_at =
        DateTime::<Utc>::from_timestamp_millis(sent_millis(message)).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Some(Delivery { message: queue_message, receipt: Receipt(receipt.to_owned()), receive_count, enqueued_at })
}

fn check_receipt(receipt: &Receipt) -> Result<()> {
    if receipt.0.is_empty() {
        return Err(Error::InvalidInput("an empty queue receipt".to_owned()));
    }
    Ok(())
}

/// The count `name` of `attributes` (0 when absent or not a number).
fn count(attributes: &std::collections::HashMap<QueueAttributeName, String>, name: QueueAttributeName) -> u64 {
    attributes.get(&name).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[async_trait]
impl TransferQueue for SqsTransferQueue {
    async fn enqueue(&self, message: QueueMessage) -> Result<bool> {
        Ok(self.enqueue_batch(vec![message]).await?.first().copied().unwrap_or(false))
    }

    async fn enqueue_batch(&self, messages: Vec<QueueMessage>) -> Result<Vec<bool>> {
        for message in &messages {
            fifo::check_sqs_id("dedup id", &message.dedup_id)?;
        }
        let mut seen = HashSet::with_capacity(messages.len());
        let added: Vec<bool> = messages.iter().map(|m| seen.insert(m.dedup_id.as_str())).collect();
        let to_send: Vec<(usize, &QueueMessage)> = messages.iter().enumerate().filter(|(i, _)| added[*i]).collect();
        // One call after the other, so that a group's messages reach SQS in order.
        for batch in to_send.chunks(SQS_BATCH_MAX) {
            let sent = self.send_request(batch)?.send().await.map_err(|err| sdk_err("sqs SendMessageBatch", err))?;
            if !sent.failed().is_empty() {
                return Err(batch_failures("sqs SendMessageBatch", sent.failed()));
            }
        }
        Ok(added)
    }

    async fn receive(&self, max: usize, visibility: TimeDelta) -> Result<Vec<Delivery>> {
        let seconds = visibility_seconds(visibility, "a visibility timeout")?;
        let max = max.min(RECEIVE_BATCH_MAX);
        let mut deliveries = Vec::with_capacity(max.min(SQS_BATCH_MAX));
        while deliveries.len() < max {
            let answer = receive_request(&self.client, &self.urls.queue_url, max - deliveries.len(), seconds)
                .send()
                .await
                .map_err(|err| sdk_err("sqs ReceiveMessage", err))?;
            if answer.messages().is_empty() {
                break;
            }
            deliveries.extend(answer.messages().iter().filter_map(delivery));
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        check_receipt(receipt)?;
        match self.client.delete_message().queue_url(&self.urls.queue_url).receipt_handle(&receipt.0).send().await {
            Ok(_) => Ok(()),
            Err(err) if matches!(err.as_service_error(), Some(DeleteMessageError::ReceiptHandleIsInvalid(_))) => {
                Err(Error::StaleReceipt)
            }
            Err(err) => Err(sdk_err("sqs DeleteMessage", err)),
        }
    }

    async fn retry_later(&self, receipt: &Receipt, delay: TimeDelta) -> Result<()> {
        check_receipt(receipt)?;
        let seconds = visibility_seconds(delay, "a retry delay")?;
        let changed = self
            .client
            .change_message_visibility()
            .queue_url(&self.urls.queue_url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(seconds)
            .send()
            .await;
        match changed {
            Ok(_) => Ok(()),
            Err(err) if is_stale_visibility_change(&err) => Err(Error::StaleReceipt),
            Err(err) => Err(sdk_err("sqs ChangeMessageVisibility", err)),
        }
    }

    async fn stats(&self) -> Result<QueueStats> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let queue = queue_attributes(&self.client, &self.urls.queue_url, &names).await?;
        let dead = queue_attributes(&self.client, &self.urls.dead_letter_queue_url, &names).await?;
        let total = |attributes: &std::collections::HashMap<QueueAttributeName, String>| {
            names.iter().map(|name| count(attributes, name.clone())).sum::<u64>()
        };
        Ok(QueueStats {
            // Delayed messages (none are sent delayed here) wait too.
            visible: count(&queue, QueueAttributeName::ApproximateNumberOfMessages)
                + count(&queue, QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            in_flight: count(&queue, QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            dead_letters: total(&dead),
            // Only in CloudWatch (ApproximateAgeOfOldestMessage); see the module docs.
            oldest_age_ms: None,
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<QueueMessage>> {
        let limit = limit.min(DEAD_LETTERS_READ_MAX);
        let url = &self.urls.dead_letter_queue_url;
        // (SentTimestamp, message): SQS FIFO answers group by group; sorted by send time below.
        let mut read: Vec<(i64, QueueMessage)> = Vec::new();
        let mut seen = HashSet::new();
        let mut receipts = Vec::new();
        while read.len() < limit {
            let answer = receive_request(&self.client, url, limit - read.len(), DEAD_LETTERS_HOLD_SECONDS)
                .send()
                .await
                .map_err(|err| sdk_err("sqs ReceiveMessage (dead letters)", err))?;
            if answer.messages().is_empty() {
                break;
            }
            for message in answer.messages() {
                receipts.extend(message.receipt_handle().map(str::to_owned));
                let id = message.message_id().unwrap_or_default().to_owned();
                if !seen.insert(id.clone()) {
                    continue;
                }
                match message.body().map(serde_json::from_str::<QueueMessage>) {
                    Some(Ok(parsed)) => read.push((sent_millis(message), parsed)),
                    _ => tracing::warn!(message_id = %id, "dead letter without a queue message body; not listed"),
                }
            }
        }
        self.release(url, receipts).await;
        // Oldest first (stable: a group's order stays as SQS gave it).
        read.sort_by_key(|(sent, _)| *sent);
        Ok(read.into_iter().take(limit).map(|(_, message)| message).collect())
    }
}

impl SqsTransferQueue {
    /// Makes the messages behind `receipts` visible again at once (best effort: what fails comes
    /// back when its hold ends).
    async fn release(&self, url: &str, receipts: Vec<String>) {
        for chunk in receipts.chunks(SQS_BATCH_MAX) {
            let mut request = self.client.change_message_visibility_batch().queue_url(url);
            for (index, receipt) in chunk.iter().enumerate() {
                match ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
                {
                    Ok(entry) => request = request.entries(entry),
                    Err(err) => tracing::warn!(error = %err, "building a visibility entry"),
                }
            }
            match request.send().await {
                Ok(answer) if answer.failed().is_empty() => {}
                Ok(answer) => tracing::warn!(
                    error = %batch_failures("sqs ChangeMessageVisibilityBatch", answer.failed()),
                    "dead letters stay hidden until their hold ends"
                ),
                Err(err) => tracing::warn!(
                    error = %sdk_err("sqs ChangeMessageVisibilityBatch", err),
                    "dead letters stay hidden until their hold ends"
                ),
            }
        }
    }
}

/// Whether a refused `ChangeMessageVisibility` says the receipt no longer names a message in
/// flight: `MessageNotInflight`, an invalid handle, or (what SQS answers for an expired handle or
/// a deleted message) `InvalidParameterValue` about the receipt handle.
fn is_stale_visibility_change<R>(err: &aws_sdk_sqs::error::SdkError<ChangeMessageVisibilityError, R>) -> bool {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    match err.as_service_error() {
        Some(
            ChangeMessageVisibilityError::MessageNotInflight(_)
            | ChangeMessageVisibilityError::ReceiptHandleIsInvalid(_),
        ) => true,
        Some(other) => {
            let message = other.message().unwrap_or_default();
            matches!(other.code(), Some("InvalidParameterValue" | "AWS.SimpleQueueService.InvalidParameterValue"))
                && (message.contains("ReceiptHandle") || message.contains("receipt handle"))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use bank_core::ids::{AccountId, TransferId};

    use super::fifo::offline_client;
    use super::*;

    #[test]
    fn a_send_groups_by_account_and_dedups_on_the_dedup_id() {
        let group = AccountId::new();
        let first = QueueMessage::first(TransferId::new(), group);
        let retry = QueueMessage::retry(first.transfer_id, group, 4);
        let request =
            send_request(&offline_client(), "https://sqs/q.fifo", &[(0, &first), (3, &retry)]).expect("request");
        let entries = request.as_input().get_entries().clone().expect("entries");
        assert_eq!(entries.len(), 2);
        for (entry, (id, message)) in entries.iter().zip([("0", &first), ("3", &retry)]) {
            assert_eq!(entry.id(), id);
            assert_eq!(entry.message_group_id(), Some(group.to_string().as_str()));
            assert_eq!(entry.message_deduplication_id(), Some(message.dedup_id.as_str()));
            let body: QueueMessage = serde_json::from_str(entry.message_body()).expect("JSON body");
            assert_eq!(&body, message);
            assert_eq!(entry.delay_seconds(), None, "no per-message delay: FIFO queues refuse one");
        }
    }

    #[test]
    fn a_receive_asks_for_the_counts_and_a_fresh_attempt_id() {
        let request = receive_request(&offline_client(), "https://sqs/q.fifo", 25, 30);
        let input = request.as_input();
        assert_eq!(*input.get_max_number_of_messages(), Some(10), "SQS's most per call");
        assert_eq!(*input.get_visibility_timeout(), Some(30));
        assert_eq!(*input.get_wait_time_seconds(), Some(0));
        let names = input.get_message_system_attribute_names().clone().expect("attribute names");
        assert!(names.contains(&MessageSystemAttributeName::ApproximateReceiveCount));
        assert!(names.contains(&MessageSystemAttributeName::SentTimestamp));
        let attempt = input.get_receive_request_attempt_id().clone().expect("attempt id");
        assert!(attempt.len() <= 128 && attempt.bytes().all(|b| b.is_ascii_alphanumeric()));
        let again = receive_request(&offline_client(), "https://sqs/q.fifo", 1, 30);
        assert_ne!(again.as_input().get_receive_request_attempt_id().as_deref(), Some(attempt.as_str()));
    }

    #[test]
    fn a_received_message_becomes_a_delivery_and_garbage_does_not() {
        let message = QueueMessage::first(TransferId::new(), AccountId::new());
        let received = Message::builder()
            .message_id("m-1")
            .receipt_handle("handle-1")
            .body(serde_json::to_string(&message).expect("JSON"))
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1767225600123")
            .build();
        let delivery = delivery(&received).expect("a delivery");
        assert_eq!(delivery.message, message);
        assert_eq!(delivery.receipt, Receipt("handle-1".into()));
        assert_eq!(delivery.receive_count, 3);
        assert_eq!(delivery.enqueued_at.timestamp_millis(), 1_767_225_600_123);
        let garbage = Message::builder().message_id("m-2").receipt_handle("h").body("{\"not\":1}").build();
        assert!(super::delivery(&garbage).is_none());
    }

    #[test]
    fn a_visibility_change_refused_for_the_receipt_is_stale_and_others_are_not() {
        use aws_sdk_s3::primitives::SdkBody;
        use aws_sdk_sqs::config::http::HttpResponse;
        use aws_sdk_sqs::error::{ErrorMetadata, SdkError};
        let refused = |code: &str, message: &str| {
            let meta = ErrorMetadata::builder().code(code).message(message).build();
            let raw = HttpResponse::new(400.try_into().expect("status"), SdkBody::empty());
            SdkError::service_error(ChangeMessageVisibilityError::generic(meta), raw)
        };
        // What AWS answers for an expired handle or a deleted message.
        let expired = "Value AQEB for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not \
                       available for visibility timeout change.";
        assert!(is_stale_visibility_change(&refused("InvalidParameterValue", expired)));
        assert!(is_stale_visibility_change(&refused("AWS.SimpleQueueService.InvalidParameterValue", expired)));
        let too_long = "Value 43200 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout \
                        for the message is beyond the limit [43200 seconds]";
        assert!(!is_stale_visibility_change(&refused("InvalidParameterValue", too_long)));
        assert!(!is_stale_visibility_change(&refused("AWS.SimpleQueueService.NonExistentQueue", "no queue")));
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_any_call() {
        // No endpoint answers the offline client: reaching SQS would be a storage error instead.
        let queue = SqsTransferQueue::new(
            offline_client(),
            QueueUrls { queue_url: "http://127.0.0.1:9/q.fifo".into(), dead_letter_queue_url: "x".into() },
        );
        let bad =
            QueueMessage { dedup_id: "has space".into(), ..QueueMessage::first(TransferId::new(), AccountId::new()) };
        assert!(matches!(queue.enqueue(bad).await, Err(Error::InvalidInput(_))));
        assert!(matches!(queue.receive(1, TimeDelta::hours(13)).await, Err(Error::InvalidInput(_))));
        assert!(matches!(queue.receive(1, TimeDelta::seconds(-1)).await, Err(Error::InvalidInput(_))));
        assert!(matches!(queue.ack(&Receipt(String::new())).await, Err(Error::InvalidInput(_))));
        let receipt = Receipt("h".into());
        assert!(matches!(queue.retry_later(&receipt, TimeDelta::hours(13)).await, Err(Error::InvalidInput(_))));
        assert!(queue.enqueue_batch(Vec::new()).await.expect("an empty batch sends nothing").is_empty());
    }
}
