//! [`OutboxRelay`]: moves outbox records to the queue and the event publisher, in order, at
//! least once. Several relays (one per server process) may run at once: each run *claims* its
//! records for a lease ([`crate::ports::TransferStore::outbox_claim`]), delivers them and deletes
//! them. A relay that fails to deliver gives its claim back at once; one that dies leaves it to run
//! out, and another relay delivers the records again. The queue deduplicates messages and
//! consumers deduplicate events by id.
//!
//! # Order
//! A claim holds every earlier unrelayed record of each group it takes, and no other relay gets a
//! later record of such a group while the claim is live; a transfer's records, and whatever its
//! queue message causes, are all of one group (its source account). So per group records are
//! delivered in outbox order, by one relay at a time, in the normal case (a relay slower than its
//! lease may deliver after the one that took over: a duplicate, out of order, that consumers
//! drop by id).

use std::sync::Arc;

use chrono::TimeDelta;

use super::PaymentsPorts;
use crate::error::Result;
use crate::events::{Event, OutboxMessage};
use crate::faults::FaultPoint;
use crate::ports::EventPublisher;
use crate::queue::QueueMessage;

/// Most records one relay run moves.
pub const RELAY_BATCH_MAX: usize = 1024;

/// How long a relay run holds its records by default: far more than delivering
/// [`RELAY_BATCH_MAX`] records takes, and the most a dead relay delays them.
pub const RELAY_LEASE_SECONDS_DEFAULT: i64 = 30;

/// Relays the transfer outbox.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    ports: PaymentsPorts,
    publisher: Arc<dyn EventPublisher>,
    lease: TimeDelta,
}

impl OutboxRelay {
    /// A relay publishing events to `publisher`, holding its records for
    /// [`RELAY_LEASE_SECONDS_DEFAULT`].
    pub fn new(ports: PaymentsPorts, publisher: Arc<dyn EventPublisher>) -> Self {
        OutboxRelay { ports, publisher, lease: TimeDelta::seconds(RELAY_LEASE_SECONDS_DEFAULT) }
    }

    /// The same relay holding its records for `lease` (positive) per run.
    pub fn with_lease(self, lease: TimeDelta) -> Self {
        OutboxRelay { lease, ..self }
    }

    /// Relays up to `limit` records (capped at [`RELAY_BATCH_MAX`]); returns how many.
    pub async fn run_once(&self, limit: usize) -> Result<usize> {
        let transfers = &self.ports.transfers;
        let claim = transfers.outbox_claim(limit.min(RELAY_BATCH_MAX), self.lease).await?;
        if claim.records.is_empty() {
            return Ok(0);
        }
        if let Err(error) = self.deliver(&claim.records).await {
            // Give the records back so the next run (of any relay) retries them now rather than
            // after the lease; if that fails too, the lease runs out.
            if let Err(release) = transfers.outbox_release(claim.token).await {
                tracing::warn!(error = %release, "cannot give back an outbox claim; it will run out");
            }
            return Err(error);
        }
        self.ports.faults.check(FaultPoint::RelayBeforeDone, None)?;
        transfers.outbox_done(&claim.seqs()).await?;
        Ok(claim.records.len())
    }

    /// One call for the records' queue messages, then one for their events, each in outbox
    /// order. An event can never overtake an earlier record's message or event: anything the
    /// worker does after a message arrives is written to the outbox later, in the message's
    /// group, so no relay can claim it before this claim is done (see the module docs).
    async fn deliver(&self, records: &[crate::events::OutboxRecord]) -> Result<()> {
        let mut messages: Vec<QueueMessage> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        for record in records {
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
        Ok(())
    }
}
