//! The transfers pipeline: accept ([`PaymentsService`]), process ([`PaymentsWorker`]), relay the
//! outbox ([`OutboxRelay`]) and re-drive what is due ([`PaymentsScheduler`]).
//!
//! Exactly-once *effect* comes from every step being idempotent rather than from any step running
//! once: the idempotency key names one transfer id; the hold, the ledger posting and the rail call
//! are all keyed by that id; the transfer record changes only by compare-and-swap; and messages
//! and events leave through an outbox written with each change. Any step may die and run again.

mod config;
mod facts;
mod relay;
mod scheduler;
mod service;
mod system;
mod worker;

pub use config::PaymentsConfig;
pub use facts::ACCOUNT_FACTS_MAX;
pub use relay::{OutboxRelay, RELAY_BATCH_MAX, RELAY_LEASE_SECONDS_DEFAULT, RELAY_UNRELEASED_MAX};
pub use scheduler::{PaymentsScheduler, SCHEDULER_BATCH_MAX, SchedulerReport};
pub use service::{Accepted, Caller, PaymentsService};
pub use system::SystemAccounts;
pub use worker::{PaymentsWorker, TRANSIENT_RETRY_DELAY, WORKER_AUDIT_SUBJECT, WorkerReport, transient_retry_delay};

use std::sync::Arc;

use crate::clock::Clock;
use crate::faults::Faults;
use crate::ports::{IdempotencyStore, LedgerStore, TransferQueue, TransferStore};

/// The ports the pipeline runs on, shared by its parts.
#[derive(Debug, Clone)]
pub struct PaymentsPorts {
    /// Accounts, holds and postings.
    pub ledger: Arc<dyn LedgerStore>,
    /// Transfers and the outbox.
    pub transfers: Arc<dyn TransferStore>,
    /// Idempotency keys.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The FIFO queue.
    pub queue: Arc<dyn TransferQueue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Fault injection (`NoFaults` in production).
    pub faults: Arc<dyn Faults>,
}
