//! [`PaymentsScheduler`]: the periodic housekeeping that makes the pipeline converge.
//!
//! - re-enqueues transfers that are due: `pending` ones whose retry time came, and `accepted` or
//!   `processing` ones untouched for `stuck_after` (their message was lost to a crash or the
//!   dead-letter queue), through the outbox, with the pushed deadline;
//! - resolves idempotency keys whose request died ([`super::PaymentsService::recover_abandoned`]),
//!   then voids holds that landed after their request was given up
//!   ([`super::PaymentsService::void_orphan_holds`]);
//! - releases expired holds and forgets expired idempotency keys.

use super::{PaymentsConfig, PaymentsPorts, PaymentsService};
use crate::error::{Error, Result};
use crate::events::OutboxMessage;
use crate::queue::QueueMessage;

/// Most transfers one scheduler run re-enqueues.
pub const SCHEDULER_BATCH_MAX: usize = 1024;

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerReport {
    /// Transfers put back on the queue.
    pub requeued: usize,
    /// Abandoned idempotency keys resolved.
    pub recovered_keys: usize,
    /// Holds voided because they landed after their request was given up.
    pub orphan_holds: usize,
    /// Holds released by expiry.
    pub expired_holds: u64,
    /// Idempotency records forgotten.
    pub purged_keys: u64,
}

/// Re-drives due transfers and cleans up.
#[derive(Debug, Clone)]
pub struct PaymentsScheduler {
    ports: PaymentsPorts,
    config: PaymentsConfig,
    service: PaymentsService,
}

impl PaymentsScheduler {
    /// A scheduler for the pipeline over `ports`.
    pub fn new(ports: PaymentsPorts, config: PaymentsConfig) -> Self {
        let service = PaymentsService::new(ports.clone(), config.clone());
        PaymentsScheduler { ports, config, service }
    }

    /// One round of housekeeping.
    pub async fn run_once(&self) -> Result<SchedulerReport> {
        let now = self.ports.clock.now();
        let mut report = SchedulerReport::default();
        for mut transfer in self.ports.transfers.due(now, SCHEDULER_BATCH_MAX).await? {
            // The deadline is pushed (so a slow queue does not get the same transfer every tick)
            // and the message written to the outbox in one write: both or neither. Enqueued
            // apart, a failure between the two (a crash, a lost answer) left the deadline pushed
            // and no message, and the account's next due transfer, re-driven by the next run,
            // overtook this one (found by the fault simulation's lost answers). Through the
            // outbox, re-drives reach the queue in the order they were written, behind the
            // account's earlier messages. The version after this update, in the dedup id, makes
            // each a new message, not a deduplicated repeat.
            transfer.next_attempt_at = Some(now + self.config.stuck_after);
            let (id, group) = (transfer.id, transfer.from_account_id);
            let generation = transfer.version.checked_add(1).ok_or_else(|| Error::invalid("version overflow"))?;
            let message = OutboxMessage::Enqueue(QueueMessage::retry(id, group, generation));
            match self.ports.transfers.update(transfer, vec![message]).await {
                Ok(_) => report.requeued += 1,
                Err(Error::VersionConflict) => continue,
                Err(other) => return Err(other),
            }
        }
        report.recovered_keys = self.service.recover_abandoned(SCHEDULER_BATCH_MAX).await?;
        report.orphan_holds = self.service.void_orphan_holds().await?;
        report.expired_holds = self.ports.ledger.expire_holds().await?;
        report.purged_keys = self.ports.idempotency.purge_expired().await?;
        Ok(report)
    }
}
