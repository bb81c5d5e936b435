//! [`SqsEventSubscriber`]: named subscriptions to the event topic, each an SQS FIFO queue
//! subscribed to it with raw message delivery (the queue body is the published event JSON).
//!
//! # Queues
//! The subscription `name` reads the queue `<prefix>-<name>.fifo`. [`SqsEventSubscriber::new`]
//! makes it at first use, with [`create_subscription_queue`]: the queue and its dead-letter queue
//! (a message received [`SUBSCRIPTION_MAX_RECEIVES`] times without being committed — a poison
//! message, or one whose consumer kept dying — moves there instead of blocking its account's
//! group for good), a queue policy letting the topic send to it, and the raw-delivery
//! subscription. All of it is idempotent, so processes racing to make it agree. A deployment whose
//! processes may not create queues makes them beforehand (`bank-server migrate
//! --create-aws-resources`) and uses [`SqsEventSubscriber::existing_only`], which finds and checks
//! the queue ([`check_subscription_queue`]) instead. Events published before a subscription's
//! queue was subscribed are not delivered to it (as the contract allows).
//!
//! # Cursor
//! SQS has no cursor; a queue has messages, received ones hidden for their visibility timeout.
//! A subscription keeps, in this process, the messages it received and has not committed, in
//! the order received (*pending*): [`EventSubscription::poll`] answers the pending ones first and
//! receives more only to fill `max` — so polling again before a commit answers the same events.
//! [`EventSubscription::commit`] deletes the pending messages up to the event (receiving on when
//! the event was not received yet, so a commit of an event never polled still moves past it).
//! Handles to one name in one subscriber share the pending list.
//!
//! Received messages stay hidden for the visibility (default
//! [`SUBSCRIPTION_VISIBILITY_DEFAULT`]): if this process dies, they come back to whoever polls
//! next once it runs out — the at-least-once half of the contract across crashes. A consumer that
//! holds events longer than the visibility may see them again (the same message is then kept
//! once, with its new receipt), and another process reading the same queue may get them too:
//! consumers deduplicate on the event id (the notification log does).
//!
//! Several processes reading one subscription are competing consumers: each gets other messages
//! (one account group goes to one of them at a time), and each commits what it received.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, QueueAttributeName};
use bank_core::events::Event;
use bank_core::ids::EventId;
use bank_core::notifications::{EVENT_POLL_MAX, EventSubscriber, EventSubscription};
use bank_core::{Error, Result};
use chrono::TimeDelta;
use tokio::sync::Mutex;

use crate::aws::sdk_err;
use crate::sqs::{
    QueueUrls, SQS_BATCH_MAX, batch_failures, check_fifo_queue, check_queue_name, create_fifo_queue, queue_arn,
    visibility_seconds,
};

/// Receives of one event before it moves to the subscription's dead-letter queue.
pub const SUBSCRIPTION_MAX_RECEIVES: u32 = 10;
/// How long received, uncommitted events stay hidden from other readers of the queue.
pub const SUBSCRIPTION_VISIBILITY_DEFAULT: TimeDelta = TimeDelta::seconds(60);
/// Longest subscription name.
pub const SUBSCRIPTION_NAME_LEN_MAX: usize = 32;

/// Subscriptions to the event topic as SQS FIFO queues (see the module docs).
#[derive(Debug)]
pub struct SqsEventSubscriber {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    queue_prefix: String,
    visibility_seconds: i32,
    create_missing: bool,
    /// Subscription name → its shared state (one per name: handles share the pending list).
    subscriptions: Mutex<HashMap<String, Arc<Shared>>>,
}

/// The queue of the subscription `name` under `queue_prefix`: `<prefix>-<name>.fifo`.
pub fn subscription_queue_name(queue_prefix: &str, name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > SUBSCRIPTION_NAME_LEN_MAX
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::InvalidInput(format!(
            "subscription name {name:?}: 1 to {SUBSCRIPTION_NAME_LEN_MAX} characters of A-Z, a-z, 0-9, '-', '_'"
        )));
    }
    let queue = format!("{queue_prefix}-{name}.fifo");
    check_queue_name(&queue)?;
    Ok(queue)
}

/// The access policy letting the topic `topic_arn` (and nothing else) send to the queue
/// `queue_arn`: without it, real SNS cannot deliver (moto does not check).
pub(crate) fn queue_policy(queue_arn: &str, topic_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "bank-events-from-sns",
            "Effect": "Allow",
            "Principal": { "Service": "sns.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": topic_arn } }
        }]
    })
    .to_string()
}

/// The `Subscribe` request of the queue `queue_arn` to `topic_arn`, with raw delivery.
fn subscribe_request(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    queue_arn: &str,
) -> aws_sdk_sns::operation::subscribe::builders::SubscribeFluentBuilder {
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .return_subscription_arn(true)
}

/// Creates the subscription queue `queue_name` (with its dead-letter queue, after
/// [`SUBSCRIPTION_MAX_RECEIVES`] receives), lets `topic_arn` send to it and subscribes it with raw
/// message delivery. Idempotent. Answers the queue's URLs.
pub async fn create_subscription_queue(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    queue_name: &str,
) -> Result<QueueUrls> {
    let urls = create_fifo_queue(sqs, queue_name, SUBSCRIPTION_MAX_RECEIVES).await?;
    let arn = queue_arn(sqs, &urls.queue_url).await?;
    sqs.set_queue_attributes()
        .queue_url(&urls.queue_url)
        .attributes(QueueAttributeName::Policy, queue_policy(&arn, topic_arn))
        .send()
        .await
        .map_err(|err| sdk_err("sqs SetQueueAttributes", err))?;
    subscribe_request(sns, topic_arn, &arn).send().await.map_err(|err| sdk_err("sns Subscribe", err))?;
    Ok(urls)
}

/// Checks that the queue at `urls` is a FIFO queue with its dead-letter queue, that its policy
/// names the topic, and that it is subscribed to `topic_arn` with raw message delivery: a
/// start-up check.
pub async fn check_subscription_queue(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    urls: &QueueUrls,
) -> Result<()> {
    check_fifo_queue(sqs, urls).await?;
    let refused = |why: String| Error::storage(format!("subscription queue {}: {why}", urls.queue_url), false);
    let attributes =
        crate::sqs::queue_attributes(sqs, &urls.queue_url, &[QueueAttributeName::QueueArn, QueueAttributeName::Policy])
            .await?;
    let arn = attributes.get(&QueueAttributeName::QueueArn).ok_or_else(|| refused("no ARN".into()))?;
    if !attributes.get(&QueueAttributeName::Policy).is_some_and(|policy| policy.contains(topic_arn)) {
        return Err(refused(format!("its policy does not let {topic_arn} send to it")));
    }
    let mut token = None;
    loop {
        let page = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .set_next_token(token)
            .send()
            .await
            .map_err(|err| sdk_err("sns ListSubscriptionsByTopic", err))?;
        for subscription in page.subscriptions() {
            if subscription.protocol() == Some("sqs") && subscription.endpoint() == Some(arn.as_str()) {
                let subscription_arn = subscription.subscription_arn().unwrap_or_default();
                let answer = sns
                    .get_subscription_attributes()
                    .subscription_arn(subscription_arn)
                    .send()
                    .await
                    .map_err(|err| sdk_err("sns GetSubscriptionAttributes", err))?;
                let raw = answer.attributes().and_then(|a| a.get("RawMessageDelivery")).map(String::as_str);
                return match raw {
                    Some("true") => Ok(()),
                    _ => Err(refused(format!("subscription {subscription_arn} does not use raw message delivery"))),
                };
            }
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => return Err(refused(format!("not subscribed to {topic_arn}"))),
        }
    }
}

impl SqsEventSubscriber {
    /// Subscriptions to `topic_arn` as the queues `<queue_prefix>-<name>.fifo`, made at first use
    /// (see the module docs).
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
        topic_arn: impl Into<String>,
        queue_prefix: impl Into<String>,
    ) -> Self {
        SqsEventSubscriber {
            sqs,
            sns,
            topic_arn: topic_arn.into(),
            queue_prefix: queue_prefix.into(),
            // 60 s: fits.
            visibility_seconds: i32::try_from(SUBSCRIPTION_VISIBILITY_DEFAULT.num_seconds()).unwrap_or(60),
            create_missing: true,
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    /// Never creates a queue: `subscribe` finds the queue and checks it
    /// ([`check_subscription_queue`]), and fails when it is missing or wrong.
    pub fn existing_only(mut self) -> Self {
        self.create_missing = false;
        self
    }

    /// Hides received, uncommitted events for `visibility` (whole seconds, up to 12 hours).
    pub fn with_visibility(mut self, visibility: TimeDelta) -> Result<Self> {
        self.visibility_seconds = visibility_seconds(visibility, "a subscription's visibility")?;
        Ok(self)
    }

    async fn queue_urls(&self, queue_name: &str) -> Result<QueueUrls> {
        if self.create_missing {
            return create_subscription_queue(&self.sqs, &self.sns, &self.topic_arn, queue_name).await;
        }
        let urls = crate::sqs::queue_urls(&self.sqs, queue_name).await?;
        check_subscription_queue(&self.sqs, &self.sns, &self.topic_arn, &urls).await?;
        Ok(urls)
    }
}

#[async_trait]
impl EventSubscriber for SqsEventSubscriber {
    async fn subscribe(&self, name: &str) -> Result<Arc<dyn EventSubscription>> {
        let queue_name = subscription_queue_name(&self.queue_prefix, name)?;
        let mut subscriptions = self.subscriptions.lock().await;
        if let Some(shared) = subscriptions.get(name) {
            return Ok(Arc::new(SqsSubscription { shared: Arc::clone(shared) }));
        }
        let urls = self.queue_urls(&queue_name).await?;
        let shared = Arc::new(Shared {
            sqs: self.sqs.clone(),
            queue_url: urls.queue_url,
            visibility_seconds: self.visibility_seconds,
            pending: Mutex::new(VecDeque::new()),
        });
        subscriptions.insert(name.to_owned(), Arc::clone(&shared));
        Ok(Arc::new(SqsSubscription { shared }))
    }
}

/// One subscription's state, shared by its handles.
#[derive(Debug)]
struct Shared {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_seconds: i32,
    /// Received, not yet committed, in the order received; at most [`EVENT_POLL_MAX`].
    pending: Mutex<VecDeque<Pending>>,
}

#[derive(Debug)]
struct Pending {
    event: Event,
    message_id: String,
    receipt: String,
}

/// A handle to a subscription.
#[derive(Debug)]
struct SqsSubscription {
    shared: Arc<Shared>,
}

/// The event a raw-delivered message carries; `None` (with a warning) otherwise: the message is
/// left in flight and its redrive policy moves it to the dead-letter queue.
fn parse_pending(message: &Message) -> Option<Pending> {
    let message_id = message.message_id().unwrap_or_default().to_owned();
    let event = message.body().and_then(|body| serde_json::from_str::<Event>(body).ok());
    match (event, message.receipt_handle()) {
        (Some(event), Some(receipt)) => Some(Pending { event, message_id, receipt: receipt.to_owned() }),
        _ => {
            tracing::warn!(message_id = %message_id, "subscription message is not an event (raw delivery off?); left to the redrive policy");
            None
        }
    }
}

impl Shared {
    /// Receives into `pending` until it holds `want` events or the queue has none to give.
    async fn fill(&self, pending: &mut VecDeque<Pending>, want: usize) -> Result<()> {
        while pending.len() < want {
            let answer = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                // At most ten: fits.
                .max_number_of_messages(i32::try_from((want - pending.len()).min(SQS_BATCH_MAX)).unwrap_or(1))
                .visibility_timeout(self.visibility_seconds)
                .wait_time_seconds(0)
                .receive_request_attempt_id(uuid::Uuid::now_v7().simple().to_string())
                .send()
                .await
                .map_err(|err| sdk_err("sqs ReceiveMessage (events)", err))?;
            if answer.messages().is_empty() {
                return Ok(());
            }
            for received in answer.messages().iter().filter_map(parse_pending) {
                // The same message again (its visibility ran out while we held it): keep one,
                // with the newer receipt.
                match pending.iter_mut().find(|p| p.message_id == received.message_id) {
                    Some(held) => held.receipt = received.receipt,
                    None => pending.push_back(received),
                }
            }
        }
        Ok(())
    }

    /// Deletes the first `count` pending messages; on failure nothing is taken off the list.
    async fn delete_first(&self, pending: &mut VecDeque<Pending>, count: usize) -> Result<()> {
        let receipts: Vec<&str> = pending.iter().take(count).map(|p| p.receipt.as_str()).collect();
        for chunk in receipts.chunks(SQS_BATCH_MAX) {
            let mut request = self.sqs.delete_message_batch().queue_url(&self.queue_url);
            for (index, receipt) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(*receipt)
                    .build()
                    .map_err(|err| Error::storage(format!("sqs: building a delete entry: {err}"), false))?;
                request = request.entries(entry);
            }
            let answer = request.send().await.map_err(|err| sdk_err("sqs DeleteMessageBatch", err))?;
            let (stale, failed): (Vec<_>, Vec<_>) =
                answer.failed().iter().cloned().partition(|entry| entry.code().contains("ReceiptHandleIsInvalid"));
            if !failed.is_empty() {
                return Err(batch_failures("sqs DeleteMessageBatch", &failed));
            }
            if !stale.is_empty() {
                // Deleted already, or received by another reader since: that reader commits it.
                tracing::info!(count = stale.len(), "committed events whose receipts were no longer current");
            }
        }
        pending.drain(..count);
        Ok(())
    }
}

#[async_trait]
impl EventSubscription for SqsSubscription {
    async fn poll(&self, max: usize) -> Result<Vec<Event>> {
        let max = max.min(EVENT_POLL_MAX);
        let mut pending = self.shared.pending.lock().await;
        self.shared.fill(&mut pending, max).await?;
        Ok(pending.iter().take(max).map(|p| p.event.clone()).collect())
    }

    async fn commit(&self, through: EventId) -> Result<()> {
        let mut pending = self.shared.pending.lock().await;
        let mut position = pending.iter().position(|p| p.event.id == through);
        if position.is_none() {
            // Not received yet: receive on (up to the pending bound) to find it.
            self.shared.fill(&mut pending, EVENT_POLL_MAX).await?;
            position = pending.iter().position(|p| p.event.id == through);
        }
        match position {
            Some(position) => self.shared.delete_first(&mut pending, position + 1).await,
            // Not pending: committed already, or never published here. Nothing moves.
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_names_map_to_fifo_queue_names() {
        assert_eq!(
            subscription_queue_name("bank-events", "notifications").expect("name"),
            "bank-events-notifications.fifo"
        );
        for bad in ["", "with space", "dots.no", &"a".repeat(SUBSCRIPTION_NAME_LEN_MAX + 1)] {
            assert!(matches!(subscription_queue_name("bank", bad), Err(Error::InvalidInput(_))), "{bad:?}");
        }
        assert!(subscription_queue_name(&"p".repeat(60), "notifications").is_err(), "too long for SQS with -dlq");
    }

    #[test]
    fn the_queue_policy_lets_only_the_topic_send() {
        let policy: serde_json::Value =
            serde_json::from_str(&queue_policy("arn:aws:sqs:r:1:q.fifo", "arn:aws:sns:r:1:t.fifo")).expect("JSON");
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Principal"]["Service"], "sns.amazonaws.com");
        assert_eq!(statement["Action"], "sqs:SendMessage");
        assert_eq!(statement["Resource"], "arn:aws:sqs:r:1:q.fifo");
        assert_eq!(statement["Condition"]["ArnEquals"]["aws:SourceArn"], "arn:aws:sns:r:1:t.fifo");
    }

    #[test]
    fn the_subscription_uses_raw_delivery() {
        let request =
            subscribe_request(&crate::sns::offline_client(), "arn:aws:sns:r:1:t.fifo", "arn:aws:sqs:r:1:q.fifo");
        let input = request.as_input();
        assert_eq!(input.get_protocol().as_deref(), Some("sqs"));
        assert_eq!(input.get_endpoint().as_deref(), Some("arn:aws:sqs:r:1:q.fifo"));
        let attributes = input.get_attributes().clone().expect("attributes");
        assert_eq!(attributes.get("RawMessageDelivery").map(String::as_str), Some("true"));
    }

    #[test]
    fn only_a_raw_event_body_is_pending() {
        let event = bank_core::testkit::notifications::transfer_event(bank_core::events::EventKind::TransferAccepted);
        let raw = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .body(serde_json::to_string(&event).expect("JSON"))
            .build();
        assert_eq!(parse_pending(&raw).expect("pending").event, event);
        let wrapped =
            serde_json::json!({ "Type": "Notification", "Message": serde_json::to_string(&event).expect("JSON") });
        let enveloped = Message::builder().message_id("m").receipt_handle("r").body(wrapped.to_string()).build();
        assert!(parse_pending(&enveloped).is_none(), "an SNS envelope means raw delivery is off");
    }
}
