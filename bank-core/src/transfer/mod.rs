//! Transfers: what a customer asks for, and the record of what became of it.
//!
//! A transfer's life: `accepted` (funds held, queued) → `processing` → `settled` | `failed`,
//! with `pending` while the payment rail is unavailable or its outcome is unknown. Internal
//! transfers settle in the ledger; external ones go through a [`crate::ports::PaymentRail`].

mod beneficiary;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use beneficiary::{BENEFICIARY_NAME_CHARS_MAX, Beneficiary, BeneficiaryAccount, normalize_iban};

use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::ledger::{EntryKey, check_reference};
use crate::money::Money;

/// Ledger leg of the entry that settles a transfer (the hold, posted).
pub const LEG_SETTLE: u16 = 0;

/// Where the money goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Destination {
    /// An account of this bank.
    Internal {
        /// The account credited.
        account_id: AccountId,
    },
    /// Someone at another bank, paid through a payment rail.
    External {
        /// Who and where.
        beneficiary: Beneficiary,
    },
}

/// A customer's request to move money, checked for shape (not yet against the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// Client-chosen id (a retry then names the same transfer); generated when absent.
    pub id: Option<TransferId>,
    /// The account debited.
    pub from_account_id: AccountId,
    /// Where the money goes.
    pub destination: Destination,
    /// How much.
    pub money: Money,
    /// Shown to both sides (at most [`crate::ledger::REFERENCE_CHARS_MAX`] characters).
    pub reference: String,
}

impl TransferRequest {
    /// Checks what can be checked without the ledger: the reference, and that the money does not
    /// go back to the account it leaves.
    pub fn validate(&self) -> Result<()> {
        check_reference(&self.reference)?;
        if let Destination::Internal { account_id } = &self.destination
            && *account_id == self.from_account_id
        {
            return Err(Error::invalid("source and destination accounts are the same"));
        }
        if let Destination::External { beneficiary } = &self.destination {
            beneficiary.validate()?;
        }
        Ok(())
    }

    /// SHA-256 over a canonical rendering of every field that defines the request, so "the same
    /// request" does not depend on JSON key order or whitespace.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hasher = Sha256::new();
        let mut field = |name: &str, value: &str| {
            hasher.update(name.as_bytes());
            hasher.update([0x1f]);
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        };
        field("id", &self.id.map(|id| id.to_string()).unwrap_or_default());
        field("from", &self.from_account_id.to_string());
        match &self.destination {
            Destination::Internal { account_id } => field("to", &account_id.to_string()),
            Destination::External { beneficiary } => field("to_external", &beneficiary.canonical()),
        }
        field("amount", &self.money.amount.value().normalize().to_string());
        field("currency", self.money.currency.code());
        field("reference", &self.reference);
        Fingerprint(hasher.finalize().into())
    }
}

/// SHA-256 fingerprint of a canonical request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Where a transfer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Funds held, queued for processing.
    Accepted,
    /// A worker is on it.
    Processing,
    /// Waiting for the payment rail (down, circuit open, or outcome unknown); retried later.
    Pending,
    /// Money moved. Final.
    Settled,
    /// Money did not move; the hold was released. Final.
    Failed,
}

impl TransferStatus {
    /// Settled or failed: nothing will change any more.
    pub const fn is_final(self) -> bool {
        matches!(self, TransferStatus::Settled | TransferStatus::Failed)
    }

    /// All statuses, in life-cycle order.
    pub const ALL: [TransferStatus; 5] = [
        TransferStatus::Accepted,
        TransferStatus::Processing,
        TransferStatus::Pending,
        TransferStatus::Settled,
        TransferStatus::Failed,
    ];

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Accepted => "accepted",
            TransferStatus::Processing => "processing",
            TransferStatus::Pending => "pending",
            TransferStatus::Settled => "settled",
            TransferStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transfer failed: a stable code plus a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    /// Stable code.
    pub code: FailureCode,
    /// Explanation (never contains secrets or internals).
    pub detail: String,
}

/// Stable failure codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureCode {
    /// The destination account was closed by the time the transfer ran (a frozen one still
    /// takes credits).
    DestinationUnavailable,
    /// The source account was frozen or closed before the transfer ran (before anything was
    /// sent, for a payment out of the bank).
    SourceUnavailable,
    /// The reservation lapsed before the transfer could run.
    HoldExpired,
    /// The payment rail refused the payment.
    RailRejected,
    /// The rail stayed unreachable past the retry budget, and every call was refused before it
    /// reached the rail (no submission's outcome was ever unknown).
    RailUnavailable,
}

/// One step of a transfer's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status entered.
    pub status: TransferStatus,
    /// When.
    pub at: DateTime<Utc>,
}

/// Most status changes kept on a transfer (bounds the record; later retries only update counters).
pub const STATUS_HISTORY_MAX: usize = 32;

/// A transfer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Its id.
    pub id: TransferId,
    /// The customer who asked for it.
    pub owner: CustomerId,
    /// The account debited.
    pub from_account_id: AccountId,
    /// Where the money goes.
    pub destination: Destination,
    /// How much.
    pub money: Money,
    /// Free text.
    pub reference: String,
    /// Current status.
    pub status: TransferStatus,
    /// Why it failed, when it did.
    pub failure_reason: Option<FailureReason>,
    /// Every status entered, oldest first.
    pub history: Vec<StatusChange>,
    /// When accepted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Processing attempts so far.
    pub attempts: u32,
    /// When a non-final transfer is next due for (re)processing; the scheduler re-enqueues it
    /// then, which also recovers a message lost to a crash or a dead-letter queue.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A rail call may have reached the rail without a definite answer (a timeout, or a worker
    /// that died after marking the transfer for a call): the rail is asked before any retry, and
    /// the transfer is never failed until the rail accepts or rejects the payment.
    pub outcome_unknown: bool,
    /// Optimistic-concurrency version, bumped by every store update.
    pub version: u64,
    /// Acceptance order, assigned by the store on insert (per-account order follows it).
    pub seq: u64,
}

impl Transfer {
    /// A newly accepted transfer.
    pub fn accepted(
        id: TransferId,
        owner: CustomerId,
        request: &TransferRequest,
        now: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
    ) -> Self {
        Transfer {
            id,
            owner,
            from_account_id: request.from_account_id,
            destination: request.destination.clone(),
            money: request.money,
            reference: request.reference.clone(),
            status: TransferStatus::Accepted,
            failure_reason: None,
            history: vec![StatusChange { status: TransferStatus::Accepted, at: now }],
            created_at: now,
            updated_at: now,
            attempts: 0,
            next_attempt_at: Some(next_attempt_at),
            outcome_unknown: false,
            version: 0,
            seq: 0,
        }
    }

    /// The ledger key of the entry that settles it.
    pub fn settle_key(&self) -> EntryKey {
        EntryKey::new(self.id, LEG_SETTLE)
    }

    /// The internal destination account, if any.
    pub fn to_account_id(&self) -> Option<AccountId> {
        match &self.destination {
            Destination::Internal { account_id } => Some(*account_id),
            Destination::External { .. } => None,
        }
    }

    /// Moves to `status` at `now`, recording it in the history (bounded).
    pub fn enter(&mut self, status: TransferStatus, now: DateTime<Utc>) {
        debug_assert!(!self.status.is_final(), "a final transfer never changes status");
        if self.status != status && self.history.len() < STATUS_HISTORY_MAX {
            self.history.push(StatusChange { status, at: now });
        }
        self.status = status;
        self.updated_at = now;
        if status.is_final() {
            self.next_attempt_at = None;
        }
    }

    /// Fails the transfer with `code`.
    pub fn fail(&mut self, code: FailureCode, detail: impl Into<String>, now: DateTime<Utc>) {
        self.failure_reason = Some(FailureReason { code, detail: detail.into() });
        self.outcome_unknown = false;
        self.enter(TransferStatus::Failed, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> TransferRequest {
        TransferRequest {
            id: None,
            from_account_id: AccountId::new(),
            destination: Destination::Internal { account_id: AccountId::new() },
            money: Money::parse("10.00", "EUR").expect("money"),
            reference: "rent".into(),
        }
    }

    #[test]
    fn fingerprint_changes_with_every_field_and_ignores_trailing_zeros() {
        let base = request();
        let fp = base.fingerprint();
        assert_eq!(fp, base.clone().fingerprint());
        let same_value = TransferRequest { money: Money::parse("10", "EUR").expect("money"), ..base.clone() };
        assert_eq!(same_value.fingerprint(), fp);
        let variants = [
            TransferRequest { id: Some(TransferId::new()), ..base.clone() },
            TransferRequest { from_account_id: AccountId::new(), ..base.clone() },
            TransferRequest { destination: Destination::Internal { account_id: AccountId::new() }, ..base.clone() },
            TransferRequest { money: Money::parse("10.01", "EUR").expect("money"), ..base.clone() },
            TransferRequest { money: Money::parse("10.00", "USD").expect("money"), ..base.clone() },
            TransferRequest { reference: "rent ".into(), ..base.clone() },
        ];
        for v in variants {
            assert_ne!(v.fingerprint(), fp, "{v:?}");
        }
    }

    #[test]
    fn same_account_and_long_reference_are_refused() {
        let mut r = request();
        r.destination = Destination::Internal { account_id: r.from_account_id };
        assert!(matches!(r.validate(), Err(Error::InvalidInput(_))));
        let long = TransferRequest { reference: "x".repeat(141), ..request() };
        assert!(long.validate().is_err());
        assert!(request().validate().is_ok());
    }
}
