//! Transfer queue messages (SQS FIFO semantics).
//!
//! Messages are grouped by source account: FIFO within a group, groups in parallel. One receive
//! takes up to [`GROUP_RECEIVE_MAX`] of a group's oldest messages at once (as SQS FIFO does); while
//! any message of a group is in flight, the group delivers nothing else. Delivery is at least once: a message not acknowledged
//! within its visibility timeout is delivered again; after `max_receives` deliveries it moves to
//! the dead-letter queue. Enqueueing a `dedup_id` seen within the deduplication window is a no-op.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, TransferId};

/// Default number of messages a queue holds before refusing more.
pub const QUEUE_CAPACITY_DEFAULT: usize = 100_000;
/// Default deliveries before a message is dead-lettered.
pub const MAX_RECEIVES_DEFAULT: u32 = 10;
/// Default deduplication window (SQS FIFO's is five minutes).
pub const DEDUP_WINDOW_SECONDS_DEFAULT: i64 = 300;
/// Most messages one `receive` returns.
pub const RECEIVE_BATCH_MAX: usize = 256;
/// Most messages of one group one `receive` returns (SQS FIFO returns up to ten of a group, in
/// order): a worker settles a busy account's transfers ten at a time instead of one per round.
pub const GROUP_RECEIVE_MAX: usize = 10;

/// A request to process one transfer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueueMessage {
    /// The transfer.
    pub transfer_id: TransferId,
    /// FIFO group: the source account.
    pub group: AccountId,
    /// Deduplication id: `{transfer_id}` for the first enqueue, `{transfer_id}:{version}` for
    /// re-enqueues by the scheduler.
    pub dedup_id: String,
}

impl QueueMessage {
    /// The first message of a transfer.
    pub fn first(transfer_id: TransferId, group: AccountId) -> Self {
        QueueMessage { transfer_id, group, dedup_id: transfer_id.to_string() }
    }

    /// A re-enqueue by the scheduler; `generation` (the transfer's version) makes it distinct
    /// from earlier messages of the same transfer.
    pub fn retry(transfer_id: TransferId, group: AccountId, generation: u64) -> Self {
        QueueMessage { transfer_id, group, dedup_id: format!("{transfer_id}:{generation}") }
    }
}

/// Opaque handle of one delivery, needed to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt(pub String);

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub message: QueueMessage,
    /// Handle for `ack` / `retry_later`.
    pub receipt: Receipt,
    /// How many times it has been delivered, this one included.
    pub receive_count: u32,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
}

/// Queue limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Messages held (visible + in flight) before `enqueue` refuses with `QueueFull`.
    pub capacity: usize,
    /// Deliveries before dead-lettering.
    pub max_receives: u32,
    /// Deduplication window.
    pub dedup_window_seconds: i64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: QUEUE_CAPACITY_DEFAULT,
            max_receives: MAX_RECEIVES_DEFAULT,
            dedup_window_seconds: DEDUP_WINDOW_SECONDS_DEFAULT,
        }
    }
}

/// Queue depth figures for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages waiting.
    pub visible: u64,
    /// Messages delivered and not yet acknowledged.
    pub in_flight: u64,
    /// Messages in the dead-letter queue.
    pub dead_letters: u64,
    /// Age of the oldest waiting or in-flight message, in milliseconds.
    pub oldest_age_ms: Option<u64>,
}
