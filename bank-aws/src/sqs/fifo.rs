//! SQS FIFO queues as both adapters of this crate use them (the transfer queue, and the queues
//! subscribed to the event topic): their names, the attributes [`create_fifo_queue`] gives them
//! and [`check_fifo_queue`] expects, their dead-letter queue, the limits SQS puts on requests,
//! and how a batch answer's per-entry failures become one [`bank_core::Error`].
//!
//! Every queue is made with a FIFO dead-letter queue named `<stem>-dlq.fifo` and a redrive policy
//! moving a message there after `max_receives` receives, explicit (not content-based)
//! deduplication, deduplication and throughput per queue, and the longest retention (14 days):
//! an accepted transfer or an event must not silently expire.

use std::collections::HashMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::operation::create_queue::builders::CreateQueueFluentBuilder;
use aws_sdk_sqs::types::{BatchResultErrorEntry, QueueAttributeName};
use bank_core::{Error, Result};
use chrono::TimeDelta;

use crate::aws::sdk_err;

/// Most entries of one SQS batch call (`SendMessageBatch`, `DeleteMessageBatch`, …) and most
/// messages one `ReceiveMessage` returns.
pub const SQS_BATCH_MAX: usize = 10;
/// Longest visibility timeout SQS accepts (twelve hours), in seconds.
pub const SQS_VISIBILITY_MAX_SECONDS: i64 = 12 * 60 * 60;
/// Longest queue name SQS accepts, `.fifo` included.
pub const SQS_QUEUE_NAME_LEN_MAX: usize = 80;
/// Longest message group or deduplication id SQS accepts, in bytes.
pub const SQS_ID_BYTES_MAX: usize = 128;
/// The range of a redrive policy's `maxReceiveCount` SQS accepts.
pub const SQS_MAX_RECEIVE_COUNT_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
/// Retention of every queue made here: SQS's longest, 14 days.
pub const RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;
/// The suffix SQS requires of a FIFO queue's name.
const FIFO_SUFFIX: &str = ".fifo";

/// The two URLs of a FIFO queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// The queue.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dead_letter_queue_url: String,
}

/// Refuses a queue name SQS would refuse ([`crate::backend::check_queue_name`]: `A-Za-z0-9_-`
/// ending in `.fifo`, leaving room for the dead-letter queue's `-dlq`), as bad input.
pub(crate) fn check_queue_name(name: &str) -> Result<()> {
    crate::backend::check_queue_name(name).map_err(|why| Error::InvalidInput(format!("{name:?}: {why}")))
}

/// The dead-letter queue's name of the FIFO queue `name`: `<stem>-dlq.fifo`.
pub(crate) fn dead_letter_name(name: &str) -> String {
    format!("{}-dlq{FIFO_SUFFIX}", name.strip_suffix(FIFO_SUFFIX).unwrap_or(name))
}

/// Refuses a message group or deduplication id SQS would refuse: 1 to 128 bytes of printable
/// ASCII without space (letters, digits and punctuation). moto does not check the characters.
pub(crate) fn check_sqs_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > SQS_ID_BYTES_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidInput(format!(
            "a {what} must have 1 to {SQS_ID_BYTES_MAX} bytes of letters, digits and punctuation"
        )));
    }
    Ok(())
}

/// `span` as whole seconds for a visibility timeout (rounded up: a message never comes back
/// early), refusing what SQS refuses: negative or longer than twelve hours.
pub(crate) fn visibility_seconds(span: TimeDelta, what: &str) -> Result<i32> {
    if span < TimeDelta::zero() || span > TimeDelta::seconds(SQS_VISIBILITY_MAX_SECONDS) {
        return Err(Error::InvalidInput(format!("{what} must be between 0 and {SQS_VISIBILITY_MAX_SECONDS} seconds")));
    }
    let seconds = span.num_seconds() + i64::from(span.subsec_nanos() > 0);
    // At most 43,200: fits.
    Ok(i32::try_from(seconds).unwrap_or(i32::MAX))
}

/// The attributes of a queue made here; `redrive` is the dead-letter queue's ARN and the
/// `maxReceiveCount`, for the queue itself (none for a dead-letter queue).
pub(crate) fn fifo_attributes(redrive: Option<(&str, u32)>) -> Vec<(QueueAttributeName, String)> {
    let mut attributes = vec![
        (QueueAttributeName::FifoQueue, "true".to_owned()),
        (QueueAttributeName::ContentBasedDeduplication, "false".to_owned()),
        (QueueAttributeName::DeduplicationScope, "queue".to_owned()),
        (QueueAttributeName::FifoThroughputLimit, "perQueue".to_owned()),
        (QueueAttributeName::MessageRetentionPeriod, RETENTION_SECONDS.to_string()),
    ];
    if let Some((dead_letter_arn, max_receives)) = redrive {
        attributes.push((QueueAttributeName::RedrivePolicy, redrive_policy(dead_letter_arn, max_receives)));
    }
    attributes
}

/// A redrive policy's JSON.
pub(crate) fn redrive_policy(dead_letter_arn: &str, max_receives: u32) -> String {
    serde_json::json!({ "deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receives }).to_string()
}

/// The `CreateQueue` request of the queue `name` with `attributes`.
pub(crate) fn create_queue_request(
    client: &Client,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> CreateQueueFluentBuilder {
    attributes
        .into_iter()
        .fold(client.create_queue().queue_name(name), |request, (key, value)| request.attributes(key, value))
}

/// Creates the queue `name` (an existing one with the same attributes is fine); answers its URL.
async fn create_queue(client: &Client, name: &str, attributes: Vec<(QueueAttributeName, String)>) -> Result<String> {
    let created = create_queue_request(client, name, attributes).send().await.map_err(|err| {
        if matches!(err.as_service_error(), Some(CreateQueueError::QueueNameExists(_))) {
            Error::storage(format!("SQS queue {name} exists with other attributes"), false)
        } else {
            sdk_err("sqs CreateQueue", err)
        }
    })?;
    created.queue_url().map(str::to_owned).ok_or_else(|| Error::storage("sqs CreateQueue answered no URL", true))
}

/// The attributes `names` of the queue at `url`.
pub(crate) async fn queue_attributes(
    client: &Client,
    url: &str,
    names: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>> {
    let answer = client
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|err| sdk_err("sqs GetQueueAttributes", err))?;
    Ok(answer.attributes().cloned().unwrap_or_default())
}

/// The ARN of the queue at `url`.
pub(crate) async fn queue_arn(client: &Client, url: &str) -> Result<String> {
    queue_attributes(client, url, &[QueueAttributeName::QueueArn])
        .await?
        .remove(&QueueAttributeName::QueueArn)
        .ok_or_else(|| Error::storage(format!("SQS queue {url} has no ARN"), false))
}

/// Creates the FIFO queue `name` and its dead-letter queue `<stem>-dlq.fifo`, with the redrive
/// policy moving a message there after `max_receives` receives (1 to 1000). Idempotent: existing
/// queues with the same attributes are fine; ones with other attributes are refused.
pub(crate) async fn create_fifo_queue(client: &Client, name: &str, max_receives: u32) -> Result<QueueUrls> {
    check_queue_name(name)?;
    if !SQS_MAX_RECEIVE_COUNT_RANGE.contains(&max_receives) {
        return Err(Error::InvalidInput(format!(
            "max_receives {max_receives}: SQS's redrive policy takes {SQS_MAX_RECEIVE_COUNT_RANGE:?}"
        )));
    }
    let dead_letter_queue_url = create_queue(client, &dead_letter_name(name), fifo_attributes(None)).await?;
    let dead_letter_arn = queue_arn(client, &dead_letter_queue_url).await?;
    let queue_url = create_queue(client, name, fifo_attributes(Some((&dead_letter_arn, max_receives)))).await?;
    Ok(QueueUrls { queue_url, dead_letter_queue_url })
}

/// Checks that `urls` name a FIFO queue made as [`create_fifo_queue`] makes them — explicit
/// deduplication per queue, its redrive policy pointing at the FIFO dead-letter queue — so a
/// wrong name or a hand-made queue stops a process at start-up. Answers the `maxReceiveCount`.
pub(crate) async fn check_fifo_queue(client: &Client, urls: &QueueUrls) -> Result<u32> {
    let queue = queue_attributes(client, &urls.queue_url, &[QueueAttributeName::All]).await?;
    let dead_letters = queue_attributes(client, &urls.dead_letter_queue_url, &[QueueAttributeName::All]).await?;
    check_attributes(&queue, &dead_letters)
        .map_err(|why| Error::storage(format!("SQS queue {}: {why}", urls.queue_url), false))
}

fn get(attributes: &HashMap<QueueAttributeName, String>, name: QueueAttributeName) -> Option<&str> {
    attributes.get(&name).map(String::as_str)
}

/// Why `queue` (with its dead-letter queue `dead_letters`) is not a queue [`create_fifo_queue`]
/// makes, if it is not; else its `maxReceiveCount`.
pub(crate) fn check_attributes(
    queue: &HashMap<QueueAttributeName, String>,
    dead_letters: &HashMap<QueueAttributeName, String>,
) -> std::result::Result<u32, String> {
    for (which, attributes) in [("queue", queue), ("dead-letter queue", dead_letters)] {
        if get(attributes, QueueAttributeName::FifoQueue) != Some("true") {
            return Err(format!("the {which} is not a FIFO queue"));
        }
    }
    if get(queue, QueueAttributeName::ContentBasedDeduplication) != Some("false") {
        return Err("content-based deduplication is on (messages carry their own deduplication id)".to_owned());
    }
    // Absent on queues made before high-throughput FIFO existed: those deduplicate per queue.
    if let Some(scope) = get(queue, QueueAttributeName::DeduplicationScope)
        && scope != "queue"
    {
        return Err(format!("deduplication scope is {scope:?}, not per queue"));
    }
    let policy = get(queue, QueueAttributeName::RedrivePolicy).ok_or("no redrive policy")?;
    let policy: serde_json::Value =
        serde_json::from_str(policy).map_err(|err| format!("redrive policy is not JSON: {err}"))?;
    let target = policy.get("deadLetterTargetArn").and_then(serde_json::Value::as_str);
    let dead_letter_arn = get(dead_letters, QueueAttributeName::QueueArn);
    if target.is_none() || target != dead_letter_arn {
        return Err(format!("redrive policy targets {target:?}, not the dead-letter queue {dead_letter_arn:?}"));
    }
    // SQS answers the count as a number; a string is accepted too.
    let max_receives = match policy.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    max_receives
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| SQS_MAX_RECEIVE_COUNT_RANGE.contains(n))
        .ok_or_else(|| format!("redrive policy's maxReceiveCount {:?} is not 1 to 1000", policy.get("maxReceiveCount")))
}

/// One error for the failed entries of a batch answer: retryable when any failure was not the
/// sender's fault (throttling, a server failure), else a refusal naming the codes.
pub(crate) fn batch_failures(what: &str, failed: &[BatchResultErrorEntry]) -> Error {
    let retryable = failed.iter().any(|entry| !entry.sender_fault());
    let codes: Vec<&str> = failed.iter().map(BatchResultErrorEntry::code).collect();
    Error::storage(format!("{what}: {} of the batch failed ({})", failed.len(), codes.join(", ")), retryable)
}

#[cfg(test)]
pub(crate) fn offline_client() -> Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Region};
    Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_sqs_rules() {
        for good in ["transfers.fifo", "bank_events-notifications.fifo", &format!("{}.fifo", "a".repeat(71))] {
            check_queue_name(good).unwrap_or_else(|err| panic!("{good}: {err}"));
        }
        for bad in ["transfers", ".fifo", "with space.fifo", "dots.in.name.fifo", &format!("{}.fifo", "a".repeat(72))] {
            assert!(matches!(check_queue_name(bad), Err(Error::InvalidInput(_))), "{bad}");
        }
        assert_eq!(dead_letter_name("transfers.fifo"), "transfers-dlq.fifo");
    }

    #[test]
    fn ids_are_what_sqs_accepts() {
        check_sqs_id("dedup id", "0190e2b4-5d2c-7cc0-9d7e-000000000001:3").expect("a retry's dedup id");
        check_sqs_id("dedup id", &"!".repeat(SQS_ID_BYTES_MAX)).expect("punctuation, 128 bytes");
        for bad in [String::new(), "x".repeat(SQS_ID_BYTES_MAX + 1), "a b".into(), "é".into(), "a\nb".into()] {
            assert!(matches!(check_sqs_id("dedup id", &bad), Err(Error::InvalidInput(_))), "{bad:?}");
        }
    }

    #[test]
    fn visibility_is_rounded_up_and_bounded() {
        assert_eq!(visibility_seconds(TimeDelta::zero(), "v").expect("zero"), 0);
        assert_eq!(visibility_seconds(TimeDelta::milliseconds(1), "v").expect("1 ms"), 1);
        assert_eq!(visibility_seconds(TimeDelta::milliseconds(1_500), "v").expect("1.5 s"), 2);
        assert_eq!(visibility_seconds(TimeDelta::seconds(SQS_VISIBILITY_MAX_SECONDS), "v").expect("12 h"), 43_200);
        for bad in
            [TimeDelta::milliseconds(-1), TimeDelta::seconds(SQS_VISIBILITY_MAX_SECONDS) + TimeDelta::nanoseconds(1)]
        {
            assert!(matches!(visibility_seconds(bad, "v"), Err(Error::InvalidInput(_))), "{bad}");
        }
    }

    #[test]
    fn create_requests_a_fifo_queue_with_explicit_dedup_and_the_redrive_policy() {
        let arn = "arn:aws:sqs:us-east-1:000000000000:transfers-dlq.fifo";
        let request = create_queue_request(&offline_client(), "transfers.fifo", fifo_attributes(Some((arn, 5))));
        let input = request.as_input();
        assert_eq!(input.get_queue_name().as_deref(), Some("transfers.fifo"));
        let attributes = input.get_attributes().clone().expect("attributes");
        assert_eq!(attributes[&QueueAttributeName::FifoQueue], "true");
        assert_eq!(attributes[&QueueAttributeName::ContentBasedDeduplication], "false");
        assert_eq!(attributes[&QueueAttributeName::DeduplicationScope], "queue");
        assert_eq!(attributes[&QueueAttributeName::MessageRetentionPeriod], "1209600");
        let policy: serde_json::Value =
            serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).expect("policy JSON");
        assert_eq!(policy, serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": 5 }));
        assert!(!fifo_attributes(None).iter().any(|(k, _)| *k == QueueAttributeName::RedrivePolicy));
    }

    #[test]
    fn the_check_accepts_what_create_makes_and_names_what_differs() {
        let arn = "arn:aws:sqs:us-east-1:000000000000:q-dlq.fifo";
        let queue: HashMap<_, _> = fifo_attributes(Some((arn, 7))).into_iter().collect();
        let dead: HashMap<_, _> =
            fifo_attributes(None).into_iter().chain([(QueueAttributeName::QueueArn, arn.to_owned())]).collect();
        assert_eq!(check_attributes(&queue, &dead), Ok(7));
        let with = |key: QueueAttributeName, value: &str| {
            let mut changed = queue.clone();
            changed.insert(key, value.to_owned());
            changed
        };
        let bad = [
            with(QueueAttributeName::FifoQueue, "false"),
            with(QueueAttributeName::ContentBasedDeduplication, "true"),
            with(QueueAttributeName::DeduplicationScope, "messageGroup"),
            with(QueueAttributeName::RedrivePolicy, &redrive_policy("arn:aws:sqs:us-east-1:0:other.fifo", 7)),
            with(QueueAttributeName::RedrivePolicy, &redrive_policy(arn, 0)),
            with(QueueAttributeName::RedrivePolicy, "not json"),
        ];
        for attributes in &bad {
            assert!(check_attributes(attributes, &dead).is_err(), "{attributes:?}");
        }
        let mut no_policy = queue.clone();
        no_policy.remove(&QueueAttributeName::RedrivePolicy);
        assert!(check_attributes(&no_policy, &dead).is_err());
        let mut standard_dead = dead.clone();
        standard_dead.remove(&QueueAttributeName::FifoQueue);
        assert!(check_attributes(&queue, &standard_dead).is_err(), "a standard dead-letter queue");
        let string_count = with(
            QueueAttributeName::RedrivePolicy,
            &format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"3"}}"#),
        );
        assert_eq!(check_attributes(&string_count, &dead), Ok(3));
    }

    #[test]
    fn batch_failures_are_retryable_only_when_not_the_senders_fault() {
        let entry = |code: &str, sender_fault: bool| {
            BatchResultErrorEntry::builder().id("0").code(code).sender_fault(sender_fault).build().expect("entry")
        };
        let refused = batch_failures("send", &[entry("InvalidParameterValue", true)]);
        assert!(matches!(refused, Error::Storage { retryable: false, .. }), "{refused:?}");
        let mixed = batch_failures("send", &[entry("InvalidParameterValue", true), entry("InternalError", false)]);
        assert!(matches!(mixed, Error::Storage { retryable: true, .. }), "{mixed:?}");
    }
}
