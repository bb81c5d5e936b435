//! One [`Error`] of every variant, for tests that must walk them all (a server's mapping table).
//!
//! [`one_of_each`] is complete by construction: an exhaustive `match` (no wildcard, which only
//! `bank-core` itself can write since [`Error`] is `#[non_exhaustive]`) numbers the variants, so
//! a new variant fails to compile here until it is numbered, and then [`one_of_each`] panics
//! until it has an example.

use rust_decimal::Decimal;

use crate::account::AccountStatus;
use crate::error::Error;
use crate::ids::{AccountId, HoldId, TransferId};
use crate::ledger::{EntryKey, HoldStatus};
use crate::money::{AmountError, Currency};

/// How many cases [`one_of_each`] returns: every variant, [`Error::Storage`] twice (retryable or
/// not).
pub const CASES: usize = 30;

/// The case `error` is an example of, in `0..CASES`.
fn case(error: &Error) -> usize {
    match error {
        Error::InvalidAmount { .. } => 0,
        Error::UnknownCurrency { .. } => 1,
        Error::CurrencyMismatch { .. } => 2,
        Error::UnbalancedEntry { .. } => 3,
        Error::InvalidInput(_) => 4,
        Error::AccountNotFound(_) => 5,
        Error::AccountNotOpen { .. } => 6,
        Error::InsufficientFunds { .. } => 7,
        Error::AccountNotEmpty(_) => 8,
        Error::KeyReused(_) => 9,
        Error::HoldNotFound(_) => 10,
        Error::HoldNotActive { .. } => 11,
        Error::HoldExceeded { .. } => 12,
        Error::EntryNotFound(_) => 13,
        Error::AlreadyReversed(_) => 14,
        Error::IdempotencyMismatch => 15,
        Error::IdempotencyInFlight => 16,
        Error::LeaseLost => 17,
        Error::TransferNotFound(_) => 18,
        Error::VersionConflict => 19,
        Error::QueueFull => 20,
        Error::StaleReceipt => 21,
        Error::BlobNotFound(_) => 22,
        Error::Retained { .. } => 23,
        Error::SeparationOfDuties(_) => 24,
        Error::TooManyAccounts { .. } => 25,
        Error::StatementUnreconciled { .. } => 26,
        Error::Interrupted(_) => 27,
        Error::Storage { retryable: true, .. } => 28,
        Error::Storage { retryable: false, .. } => 29,
    }
}

/// The name of `error`'s variant (`"HoldNotActive"`), for assertion messages and coverage notes.
pub fn variant_name(error: &Error) -> String {
    format!("{error:?}").chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// One error of every variant, in declaration order ([`Error::Storage`] retryable, then not).
///
/// # Panics
///
/// If a case numbered in this module has no example (a variant was added to [`Error`] and
/// numbered, but not given an example here).
pub fn one_of_each() -> Vec<Error> {
    let account = AccountId::new();
    let transfer = TransferId::new();
    let hold = HoldId::from(transfer);
    let entry = EntryKey::new(transfer, 0);
    let examples = vec![
        Error::InvalidAmount { reason: AmountError::Zero },
        Error::UnknownCurrency { code: "XYZ".into() },
        Error::CurrencyMismatch { account, expected: Currency::ALL[0], found: Currency::ALL[1] },
        Error::UnbalancedEntry { currency: Currency::ALL[0] },
        Error::InvalidInput("too many lines".into()),
        Error::AccountNotFound(account),
        Error::AccountNotOpen { account, status: AccountStatus::Frozen },
        Error::InsufficientFunds { account, available: Decimal::ZERO, requested: Decimal::ONE },
        Error::AccountNotEmpty(account),
        Error::KeyReused("account key".into()),
        Error::HoldNotFound(hold),
        Error::HoldNotActive { hold, status: HoldStatus::Voided },
        Error::HoldExceeded { hold, held: Decimal::ONE, requested: Decimal::TWO },
        Error::EntryNotFound(entry),
        Error::AlreadyReversed(entry),
        Error::IdempotencyMismatch,
        Error::IdempotencyInFlight,
        Error::LeaseLost,
        Error::TransferNotFound(transfer),
        Error::VersionConflict,
        Error::QueueFull,
        Error::StaleReceipt,
        Error::BlobNotFound("statements/2026-01.pdf".into()),
        Error::Retained { key: "audit/0001".into(), until: chrono::DateTime::UNIX_EPOCH },
        Error::SeparationOfDuties("an operator cannot approve their own deposit request".into()),
        Error::TooManyAccounts { max: crate::ports::ACCOUNTS_PER_OWNER_MAX },
        Error::StatementUnreconciled { statement: format!("{account}_2026-01"), detail: "SELECT sum".into() },
        Error::Interrupted("worker.after-ledger"),
        Error::storage("SELECT secret FROM users: connection reset", true),
        Error::storage("SELECT secret FROM users: disk full", false),
    ];
    let mut seen = [false; CASES];
    for error in &examples {
        let case = case(error);
        assert!(!seen[case], "two examples of {}", variant_name(error));
        seen[case] = true;
    }
    assert!(
        seen.iter().all(|&s| s),
        "case(s) without an example: {:?}",
        (0..CASES).filter(|&c| !seen[c]).collect::<Vec<_>>()
    );
    examples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorAction;

    #[test]
    fn one_of_each_has_every_case_once_in_order() {
        let all = one_of_each();
        assert_eq!(all.len(), CASES);
        assert!(all.iter().enumerate().all(|(i, e)| case(e) == i), "declaration order");
        assert_eq!(variant_name(&all[11]), "HoldNotActive");
        assert_eq!(variant_name(&Error::QueueFull), "QueueFull");
    }

    /// A code is the action's problem type unless the variant has a problem type of its own
    /// (which the server's table must then name).
    #[test]
    fn codes_follow_the_action_unless_the_variant_has_a_problem_of_its_own() {
        for error in one_of_each() {
            let by_action = match error.action() {
                ErrorAction::FixInput => "invalid-request",
                ErrorAction::Refused => "conflict",
                ErrorAction::NotFound => "not-found",
                ErrorAction::Retry => "unavailable",
                ErrorAction::GiveUp => "internal",
            };
            let own = matches!(
                error,
                Error::CurrencyMismatch { .. }
                    | Error::InsufficientFunds { .. }
                    | Error::AccountNotOpen { .. }
                    | Error::KeyReused(_)
                    | Error::IdempotencyMismatch
                    | Error::IdempotencyInFlight
                    | Error::LeaseLost
                    | Error::VersionConflict
                    | Error::SeparationOfDuties(_)
            );
            assert_eq!(error.code() != by_action, own, "{}: {}", variant_name(&error), error.code());
        }
    }
}
