//! Payment rails: the outside networks external transfers leave through.
//!
//! A rail is called with the transfer id as its idempotency key, so submitting the same payment
//! twice pays once. Its answers fall in three kinds, and the worker treats them differently:
//! a definite rejection fails the transfer; "unavailable" (the payment certainly did not reach
//! the rail) is retried later; a timeout is *outcome unknown*, resolved by asking the rail for the
//! payment's status before trying again.

pub mod breaker;
pub mod simulator;

use serde::{Deserialize, Serialize};

use crate::ids::TransferId;
use crate::money::Money;
use crate::transfer::Beneficiary;

/// A payment sent to a rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailPayment {
    /// The transfer (the rail's idempotency key).
    pub transfer_id: TransferId,
    /// How much.
    pub money: Money,
    /// To whom.
    pub beneficiary: Beneficiary,
    /// Remittance text.
    pub reference: String,
}

/// A rail's acceptance of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailConfirmation {
    /// The rail's own reference for the payment.
    pub rail_reference: String,
}

/// What a rail knows about a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RailStatus {
    /// The rail never received it: safe to submit.
    NotFound,
    /// The rail accepted it.
    Accepted(RailConfirmation),
    /// The rail refused it.
    Rejected {
        /// The rail's reason code.
        code: String,
        /// Its explanation.
        message: String,
    },
}

/// Why a rail call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RailError {
    /// A definite refusal (bad account, compliance, …): do not retry.
    #[error("rejected by the rail ({code}): {message}")]
    Rejected {
        /// The rail's reason code.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The rail could not be reached or refused service before accepting anything: retry later.
    #[error("rail unavailable: {0}")]
    Unavailable(String),
    /// No answer in time: the payment may or may not have been accepted.
    #[error("rail timed out; outcome unknown")]
    Timeout,
}
