//! [`OutboxRelay`]: moves outbox records to the queue, the event publisher and the audit log
//! (once per record key), in order, at least once. Several relays (one per server process) may
//! run at once: each run *claims* its records for a lease
//! ([`crate::ports::TransferStore::outbox_claim`]) under a token it chose, delivers them and
//! deletes them. A run that fails anywhere after choosing its token — the claim's answer lost, a
//! delivery refused, `done` not answered — gives the claim back at once (whether or not it was
//! made), so the next run of any relay retries; a relay that dies leaves its claim to run out, and
//! another relay delivers the records again. The queue deduplicates messages and
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
use parking_lot::Mutex;

use super::PaymentsPorts;
use crate::audit::{AuditLog, NewAuditRecord};
use crate::error::{Error, Result};
use crate::events::{Event, OutboxMessage};
use crate::faults::FaultPoint;
use crate::ids::ClaimToken;
use crate::ports::EventPublisher;
use crate::queue::QueueMessage;

/// Most records one relay run moves.
pub const RELAY_BATCH_MAX: usize = 1024;

/// How long a relay run holds its records by default: far more than delivering
/// [`RELAY_BATCH_MAX`] records takes, and the most a dead relay delays them.
pub const RELAY_LEASE_SECONDS_DEFAULT: i64 = 30;

/// Claims a relay keeps trying to give back (their release failed too); past this, the oldest is
/// left to its lease.
pub const RELAY_UNRELEASED_MAX: usize = 64;

/// Relays the transfer outbox. Clones share the claims still to give back.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    ports: PaymentsPorts,
    publisher: Arc<dyn EventPublisher>,
    lease: TimeDelta,
    /// Tokens of failed runs whose release failed as well (the store was unreachable): every
    /// run first tries again, so a claim outlives its failed run by one run, not by its lease.
    unreleased: Arc<Mutex<Vec<ClaimToken>>>,
    /// Where [`OutboxMessage::Audit`] records go.
    audit: Option<Arc<dyn AuditLog>>,
}

impl OutboxRelay {
    /// A relay publishing events to `publisher`, holding its records for
    /// [`RELAY_LEASE_SECONDS_DEFAULT`].
    pub fn new(ports: PaymentsPorts, publisher: Arc<dyn EventPublisher>) -> Self {
        OutboxRelay {
            ports,
            publisher,
            lease: TimeDelta::seconds(RELAY_LEASE_SECONDS_DEFAULT),
            unreleased: Arc::default(),
            audit: None,
        }
    }

    /// The same relay appending the outbox's audit records to `audit` (once per key). A relay
    /// without one refuses a claim holding an audit record (nothing is lost: the records stay in
    /// the outbox for a relay that has it).
    pub fn with_audit(self, audit: Arc<dyn AuditLog>) -> Self {
        OutboxRelay { audit: Some(audit), ..self }
    }

    /// The same relay holding its records for `lease` (positive) per run.
    pub fn with_lease(self, lease: TimeDelta) -> Self {
        OutboxRelay { lease, ..self }
    }

    /// Relays up to `limit` records (capped at [`RELAY_BATCH_MAX`]); returns how many.
    pub async fn run_once(&self, limit: usize) -> Result<usize> {
        self.release_leftovers().await?;
        let transfers = &self.ports.transfers;
        let token = ClaimToken::new();
        let records = match transfers.outbox_claim(token, limit.min(RELAY_BATCH_MAX), self.lease).await {
            Ok(records) => records,
            Err(error) => return Err(self.give_back(token, error).await),
        };
        if records.is_empty() {
            return Ok(0);
        }
        if let Err(error) = self.deliver(&records).await {
            return Err(self.give_back(token, error).await);
        }
        self.ports.faults.check(FaultPoint::RelayBeforeDone, None)?;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        if let Err(error) = transfers.outbox_done(&seqs).await {
            // Delivered, maybe not deleted: giving the claim back delivers again now rather than
            // after the lease (at least once either way).
            return Err(self.give_back(token, error).await);
        }
        Ok(records.len())
    }

    /// Gives the claim under `token` back after `error` (the claim may not exist: then nothing
    /// changes), so the records are claimable now; if that fails too, the next run tries again.
    async fn give_back(&self, token: ClaimToken, error: Error) -> Error {
        if let Err(release) = self.ports.transfers.outbox_release(token).await {
            tracing::warn!(error = %release, "cannot give back an outbox claim yet; the next run tries again");
            let mut unreleased = self.unreleased.lock();
            if unreleased.len() >= RELAY_UNRELEASED_MAX {
                // The oldest has been failing longest; its lease ends soonest.
                unreleased.remove(0);
            }
            unreleased.push(token);
        }
        error
    }

    /// Gives back the claims earlier runs could not; stops at the first failure (the store is
    /// still unreachable: this run would fail anyway).
    async fn release_leftovers(&self) -> Result<()> {
        let leftovers = std::mem::take(&mut *self.unreleased.lock());
        for (i, token) in leftovers.iter().enumerate() {
            if let Err(error) = self.ports.transfers.outbox_release(*token).await {
                let mut unreleased = self.unreleased.lock();
                let mut kept = leftovers[i..].to_vec();
                kept.append(&mut unreleased);
                let excess = kept.len().saturating_sub(RELAY_UNRELEASED_MAX);
                kept.drain(..excess);
                *unreleased = kept;
                return Err(error);
            }
        }
        Ok(())
    }

    /// One call for the records' queue messages, then one for their events, then one for their
    /// audit records, each in outbox order. An event can never overtake an earlier record's
    /// message or event: anything the worker does after a message arrives is written to the
    /// outbox later, in the message's group, so no relay can claim it before this claim is done
    /// (see the module docs).
    async fn deliver(&self, records: &[crate::events::OutboxRecord]) -> Result<()> {
        let mut messages: Vec<QueueMessage> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut audits: Vec<(String, NewAuditRecord)> = Vec::new();
        for record in records {
            match &record.message {
                OutboxMessage::Enqueue(message) => messages.push(message.clone()),
                OutboxMessage::Publish(event) => events.push(event.clone()),
                OutboxMessage::Audit(audit) => audits.push((audit.key.clone(), audit.record.clone())),
            }
        }
        let audit = match (&self.audit, audits.is_empty()) {
            (_, true) => None,
            (Some(audit), false) => Some(audit),
            (None, false) => {
                return Err(Error::Storage {
                    message: "the outbox holds audit records and this relay has no audit log".into(),
                    retryable: false,
                });
            }
        };
        if !messages.is_empty() {
            self.ports.queue.enqueue_batch(messages).await?;
        }
        if !events.is_empty() {
            self.publisher.publish(&events).await?;
        }
        if let Some(audit) = audit {
            audit.append_once_batch(audits).await?;
        }
        Ok(())
    }
}
