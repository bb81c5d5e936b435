//! Fault-injection points in the transfer pipeline.
//!
//! The services call [`Faults::check`] at each step where a real process could die. In
//! production the injector is [`NoFaults`] and every check passes; simulations inject
//! [`crate::Error::Interrupted`] to stop a step exactly there, as a crash would: nothing after the
//! point runs, nothing is acknowledged, and the pipeline must still converge.

use std::fmt;

use crate::error::Result;
use crate::ids::TransferId;

/// Where a step can be interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultPoint {
    /// Accept: the hold is placed, the transfer not yet stored.
    AcceptAfterHold,
    /// Accept: the transfer is stored, the idempotency key not yet completed.
    AcceptAfterInsert,
    /// Worker: a delivery was received, nothing done yet.
    WorkerStart,
    /// Worker: the transfer is marked processing.
    WorkerAfterMark,
    /// Worker: about to call the payment rail.
    WorkerBeforeRail,
    /// Worker: the rail answered, nothing recorded yet.
    WorkerAfterRail,
    /// Worker: the ledger posting is done, the transfer not yet updated.
    WorkerAfterLedger,
    /// Worker: the transfer is updated, the message not yet acknowledged.
    WorkerBeforeAck,
    /// Relay: messages were delivered, the outbox not yet marked.
    RelayBeforeDone,
}

impl FaultPoint {
    /// A stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultPoint::AcceptAfterHold => "accept-after-hold",
            FaultPoint::AcceptAfterInsert => "accept-after-insert",
            FaultPoint::WorkerStart => "worker-start",
            FaultPoint::WorkerAfterMark => "worker-after-mark",
            FaultPoint::WorkerBeforeRail => "worker-before-rail",
            FaultPoint::WorkerAfterRail => "worker-after-rail",
            FaultPoint::WorkerAfterLedger => "worker-after-ledger",
            FaultPoint::WorkerBeforeAck => "worker-before-ack",
            FaultPoint::RelayBeforeDone => "relay-before-done",
        }
    }
}

/// Decides whether a step is interrupted.
pub trait Faults: Send + Sync + fmt::Debug + 'static {
    /// `Err(Error::Interrupted(..))` to stop the step at `point` (about `transfer`, when known).
    fn check(&self, point: FaultPoint, transfer: Option<TransferId>) -> Result<()>;
}

/// Production: nothing is ever interrupted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl Faults for NoFaults {
    fn check(&self, _point: FaultPoint, _transfer: Option<TransferId>) -> Result<()> {
        Ok(())
    }
}
