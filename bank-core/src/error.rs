//! The one error type of `bank-core`.
//!
//! Every variant says what the caller can do about it ([`Error::action`]): fix the input, retry
//! later, or give up. Adapters map their own failures into [`Error::Storage`] with a retryable
//! flag. [`Error::code`] is the one spelling of an error's kind: the suffix of the problem
//! `type` URI `bank-server` answers it with, also used in logs and metrics. A server that meets
//! a variant it does not know answers by [`Error::action`].

use rust_decimal::Decimal;

use crate::account::AccountStatus;
use crate::ids::{AccountId, HoldId, TransferId};
use crate::ledger::{EntryKey, HoldStatus};
use crate::money::{AmountError, Currency};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// The request is wrong; retrying it unchanged will fail the same way.
    FixInput,
    /// The request is valid but the state of the bank refuses it now (funds, status); it may
    /// succeed later once the state changes.
    Refused,
    /// Something referenced does not exist.
    NotFound,
    /// A transient failure: retrying the same request (with the same idempotency key) is safe.
    Retry,
    /// An internal failure that retrying will not fix.
    GiveUp,
}

/// Every failure `bank-core` reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An amount is zero, negative, too precise for its currency, too large, or not a number.
    #[error("invalid amount: {reason}")]
    InvalidAmount {
        /// Why.
        reason: AmountError,
    },
    /// The currency code is not a supported ISO 4217 code.
    #[error("unknown currency {code:?}")]
    UnknownCurrency {
        /// The code as given (truncated).
        code: String,
    },
    /// A line or request names a currency other than the account's.
    #[error("currency mismatch: account {account} is in {expected}, not {found}")]
    CurrencyMismatch {
        /// The account concerned.
        account: AccountId,
        /// The account's currency.
        expected: Currency,
        /// The currency given.
        found: Currency,
    },
    /// A journal entry's debits and credits differ in some currency.
    #[error("unbalanced entry: debits and credits differ in {currency}")]
    UnbalancedEntry {
        /// The first currency found unbalanced.
        currency: Currency,
    },
    /// A malformed request: bad id, too many lines, an over-long text, a bad cursor or limit.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No such account.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The account's status forbids this operation (a debit from a frozen account, anything on
    /// a closed one).
    #[error("account {account} is {status}")]
    AccountNotOpen {
        /// The account concerned.
        account: AccountId,
        /// Its status.
        status: AccountStatus,
    },
    /// The debit would take the account below its overdraft limit.
    #[error("insufficient funds in account {account}: available {available}, requested {requested}")]
    InsufficientFunds {
        /// The account concerned.
        account: AccountId,
        /// What was available (including the overdraft limit).
        available: Decimal,
        /// What the operation needed.
        requested: Decimal,
    },
    /// The account cannot be closed while it holds money or funds are on hold.
    #[error("account {0} still has a balance or holds")]
    AccountNotEmpty(AccountId),
    /// A key or id was used before for a *different* request (entry, hold, account, reversal).
    #[error("{0} was already used for a different request")]
    KeyReused(String),
    /// No such hold.
    #[error("hold {0} not found")]
    HoldNotFound(HoldId),
    /// The hold was already posted, voided or has expired.
    #[error("hold {hold} is {status}")]
    HoldNotActive {
        /// The hold concerned.
        hold: HoldId,
        /// Its status.
        status: HoldStatus,
    },
    /// A hold was posted for more than it reserves.
    #[error("hold {hold} reserves {held}, cannot post {requested}")]
    HoldExceeded {
        /// The hold concerned.
        hold: HoldId,
        /// What it reserves.
        held: Decimal,
        /// What was asked.
        requested: Decimal,
    },
    /// No entry was posted under this key.
    #[error("entry {0} not found")]
    EntryNotFound(EntryKey),
    /// The entry was already reversed (by another key).
    #[error("entry {0} was already reversed")]
    AlreadyReversed(EntryKey),
    /// The idempotency key was used before with a different request.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyMismatch,
    /// A request with this idempotency key is still being processed.
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyInFlight,
    /// The lease on an idempotency key ran out and another attempt took it over.
    #[error("the idempotency key's lease was lost to another attempt")]
    LeaseLost,
    /// No such transfer.
    #[error("transfer {0} not found")]
    TransferNotFound(TransferId),
    /// A record changed since it was read (optimistic concurrency); re-read and retry.
    #[error("concurrent update; re-read and retry")]
    VersionConflict,
    /// The queue is at capacity.
    #[error("the transfer queue is full")]
    QueueFull,
    /// A queue receipt no longer names an in-flight delivery (it was redelivered or acknowledged).
    #[error("stale queue receipt")]
    StaleReceipt,
    /// No object under this key.
    #[error("object {0} not found")]
    BlobNotFound(String),
    /// The object is under retention: it cannot be overwritten or deleted yet.
    #[error("object {key} is retained until {until}")]
    Retained {
        /// The object.
        key: String,
        /// End of retention.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// An operator asked for what separation of duties forbids (owning a customer account,
    /// crediting an account of their own, approving their own request).
    #[error("separation of duties: {0}")]
    SeparationOfDuties(String),
    /// The owner already holds [`crate::ports::ACCOUNTS_PER_OWNER_MAX`] accounts.
    #[error("an owner may hold at most {max} accounts")]
    TooManyAccounts {
        /// The most one owner may hold.
        max: usize,
    },
    /// A statement did not reconcile (opening + movements ≠ closing ≠ the ledger's balance at the
    /// period's end, or an entry outside the period or currency): it was not published. A bug or
    /// a damaged ledger; retrying will not fix it.
    #[error("statement {statement} does not reconcile: {detail}")]
    StatementUnreconciled {
        /// The statement (`<account id>_<YYYY-MM>`).
        statement: String,
        /// What did not add up.
        detail: String,
    },
    /// Processing stopped at a fault-injection point (tests and simulations only).
    #[error("interrupted at {0}")]
    Interrupted(&'static str),
    /// The storage backend failed. `retryable` says whether the same call may succeed later.
    #[error("storage failure: {message}")]
    Storage {
        /// A description safe to log (no secrets, no SQL with values).
        message: String,
        /// Whether retrying may succeed (connection loss, busy database, timeout).
        retryable: bool,
    },
}

impl Error {
    /// What the caller can do about this error.
    pub fn action(&self) -> ErrorAction {
        match self {
            Error::InvalidAmount { .. }
            | Error::UnknownCurrency { .. }
            | Error::CurrencyMismatch { .. }
            | Error::UnbalancedEntry { .. }
            | Error::InvalidInput(_)
            | Error::KeyReused(_)
            | Error::HoldExceeded { .. }
            | Error::IdempotencyMismatch => ErrorAction::FixInput,
            Error::AccountNotOpen { .. }
            | Error::InsufficientFunds { .. }
            | Error::AccountNotEmpty(_)
            | Error::HoldNotActive { .. }
            | Error::AlreadyReversed(_)
            | Error::StaleReceipt
            | Error::Retained { .. }
            | Error::SeparationOfDuties(_)
            | Error::TooManyAccounts { .. } => ErrorAction::Refused,
            Error::AccountNotFound(_)
            | Error::HoldNotFound(_)
            | Error::EntryNotFound(_)
            | Error::TransferNotFound(_)
            | Error::BlobNotFound(_) => ErrorAction::NotFound,
            Error::IdempotencyInFlight
            | Error::LeaseLost
            | Error::VersionConflict
            | Error::QueueFull
            | Error::Interrupted(_) => ErrorAction::Retry,
            Error::Storage { retryable: true, .. } => ErrorAction::Retry,
            Error::Storage { retryable: false, .. } | Error::StatementUnreconciled { .. } => ErrorAction::GiveUp,
        }
    }

    /// Whether the same call may succeed if retried unchanged.
    pub fn is_retryable(&self) -> bool {
        self.action() == ErrorAction::Retry
    }

    /// The error's code: exactly the suffix of the RFC 9457 problem `type` a server answers it
    /// with (`https://bank.example/problems/<code>`), and the one spelling used in logs and
    /// metrics. Several variants share a code when clients need not tell them apart (every
    /// missing resource is `not-found`); [`Display`](std::fmt::Display) says which one it was.
    ///
    /// The codes follow from [`Error::action`] unless a variant has a problem type of its own:
    /// fix input → `invalid-request`, refused → `conflict`, not found → `not-found`, retry →
    /// `unavailable`, give up → `internal`. `bank-server`'s mapping table builds its problem
    /// types from these codes, and its tests walk every variant.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidAmount { .. }
            | Error::UnknownCurrency { .. }
            | Error::UnbalancedEntry { .. }
            | Error::InvalidInput(_)
            | Error::HoldExceeded { .. } => "invalid-request",
            Error::CurrencyMismatch { .. } => "currency-mismatch",
            Error::InsufficientFunds { .. } => "insufficient-funds",
            Error::AccountNotOpen { .. } => "account-not-open",
            Error::AccountNotFound(_)
            | Error::TransferNotFound(_)
            | Error::HoldNotFound(_)
            | Error::EntryNotFound(_)
            | Error::BlobNotFound(_) => "not-found",
            Error::KeyReused(_) | Error::IdempotencyMismatch => "idempotency-key-reused",
            Error::IdempotencyInFlight | Error::LeaseLost => "idempotency-in-flight",
            Error::AccountNotEmpty(_)
            | Error::HoldNotActive { .. }
            | Error::AlreadyReversed(_)
            | Error::StaleReceipt
            | Error::Retained { .. }
            | Error::TooManyAccounts { .. }
            | Error::VersionConflict => "conflict",
            Error::SeparationOfDuties(_) => "separation-of-duties",
            Error::QueueFull | Error::Interrupted(_) | Error::Storage { retryable: true, .. } => "unavailable",
            Error::Storage { retryable: false, .. } | Error::StatementUnreconciled { .. } => "internal",
        }
    }

    /// A storage failure built from any error, for adapters.
    pub fn storage(err: impl std::fmt::Display, retryable: bool) -> Self {
        Error::Storage { message: err.to_string(), retryable }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}
