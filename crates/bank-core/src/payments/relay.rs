//! [`OutboxRelay`]: moves outbox records to the queue and the event publisher, in order, at
//! least once. A crash before the outbox is marked makes the next run deliver the same records
//! again; the queue deduplicates messages and consumers deduplicate events by id.

use std::sync::Arc;

use super::PaymentsPorts;
use crate::error::Result;
use crate::events::{Event, OutboxMessage};
use crate::faults::FaultPoint;
use crate::ports::EventPublisher;

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
        let mut events: Vec<Event> = Vec::new();
        for record in &batch {
            match &record.message {
                OutboxMessage::Enqueue(message) => {
                    // Keep queue and events in outbox order relative to each other.
                    self.flush(&mut events).await?;
                    self.ports.queue.enqueue(message.clone()).await?;
                }
                OutboxMessage::Publish(event) => events.push(event.clone()),
            }
        }
        self.flush(&mut events).await?;
        self.ports.faults.check(FaultPoint::RelayBeforeDone, None)?;
        self.ports.transfers.outbox_done(last).await?;
        Ok(batch.len())
    }

    async fn flush(&self, events: &mut Vec<Event>) -> Result<()> {
        if !events.is_empty() {
            self.publisher.publish(events).await?;
            events.clear();
        }
        Ok(())
    }
}
