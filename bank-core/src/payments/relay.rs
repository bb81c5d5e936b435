//! [`OutboxRelay`]: moves outbox records to the queue and the event publisher, in order, at
//! least once. A crash before the outbox is marked makes the next run deliver the same records
//! again; the queue deduplicates messages and consumers deduplicate events by id.

use std::sync::Arc;

use super::PaymentsPorts;
use crate::error::Result;
use crate::events::{Event, OutboxMessage};
use crate::faults::FaultPoint;
use crate::ports::EventPublisher;
use crate::queue::QueueMessage;

/// Most records one relay run moves.
pub const RELAY_BATCH_MAX: usize = 1024;

/// Relays the transfer outbox.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    ports: PaymentsPorts,
    publisher: Arc<dyn EventPublisher>,
}

impl OutboxRelay {
    /// A relay publishing events to `publisher`.
    pub fn new(ports: PaymentsPorts, publisher: Arc<dyn EventPublisher>) -> Self {
        OutboxRelay { ports, publisher }
    }

    /// Relays up to `limit` records (capped at [`RELAY_BATCH_MAX`]); returns how many.
    pub async fn run_once(&self, limit: usize) -> Result<usize> {
        let batch = self.ports.transfers.outbox_batch(limit.min(RELAY_BATCH_MAX)).await?;
        let Some(last) = batch.last().map(|r| r.seq) else { return Ok(0) };
        // One call for the batch's queue messages, then one for its events, each in outbox
        // order. An event can never overtake an earlier record's message or event: anything the
        // worker does after a message arrives is written to the outbox later, so it is relayed
        // by a later run, after this one has published.
        let mut messages: Vec<QueueMessage> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        for record in &batch {
            match &record.message {
                OutboxMessage::Enqueue(message) => messages.push(message.clone()),
                OutboxMessage::Publish(event) => events.push(event.clone()),
            }
        }
        if !messages.is_empty() {
            self.ports.queue.enqueue_batch(messages).await?;
        }
        if !events.is_empty() {
            self.publisher.publish(&events).await?;
        }
        self.ports.faults.check(FaultPoint::RelayBeforeDone, None)?;
        self.ports.transfers.outbox_done(last).await?;
        Ok(batch.len())
    }
}
