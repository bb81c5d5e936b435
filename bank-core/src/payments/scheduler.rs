//! [`PaymentsScheduler`]: the periodic housekeeping that makes the pipeline converge.
//!
//! - re-enqueues transfers that are due: `pending` ones whose retry time came, and `accepted` or
//!   `processing` ones untouched for `stuck_after` (their message was lost to a crash or the
//!   dead-letter queue);
//! - resolves idempotency keys whose request died ([`super::PaymentsService::recover_abandoned`]);
//! - releases expired holds and forgets expired idempotency keys.

use super::{PaymentsConfig, PaymentsPorts, PaymentsService};
use crate::error::{Error, Result};
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
            // Push the deadline first, so a slow queue does not get the same transfer every tick;
            // the version in the dedup id makes this a new message, not a deduplicated repeat.
            transfer.next_attempt_at = Some(now + self.config.stuck_after);
            let (id, group) = (transfer.id, transfer.from_account_id);
            let updated = match self.ports.transfers.update(transfer, Vec::new()).await {
                Ok(t) => t,
                Err(Error::VersionConflict) => continue,
                Err(other) => return Err(other),
            };
            self.ports.queue.enqueue(QueueMessage::retry(id, group, updated.version)).await?;
            report.requeued += 1;
        }
        report.recovered_keys = self.service.recover_abandoned(SCHEDULER_BATCH_MAX).await?;
        report.expired_holds = self.ports.ledger.expire_holds().await?;
        report.purged_keys = self.ports.idempotency.purge_expired().await?;
        Ok(report)
    }
}
