//! Four eyes on operator deposits: every deposit is stored as a [`DepositRequest`] before it is
//! posted; one above a threshold is stored pending and posted only after a **different** operator
//! approved it, one at or below it is stored approved by its own operator (the policy).
//!
//! This module owns the rule ([`DepositPolicy`], [`check_approver`]) and the
//! [`DepositRequestStore`] port. Posting stays the ledger's: the request's id is the transfer id
//! of the deposit entry, so whoever posts it (the approver, or a retry of the approval after a
//! crash) posts under the same [`crate::ledger::EntryKey`], and the money moves exactly once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::money::Money;

/// Default amount above which a deposit needs a second operator (in the account's currency).
pub const DEPOSIT_APPROVAL_ABOVE_DEFAULT: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);
/// Most pending requests one [`DepositRequestStore::pending`] answers.
pub const PENDING_PAGE_MAX: usize = 100;

/// When a deposit needs a second operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositPolicy {
    /// A deposit of more than this (in its currency's units) waits for approval.
    pub approval_above: Decimal,
}

impl Default for DepositPolicy {
    fn default() -> Self {
        DepositPolicy { approval_above: DEPOSIT_APPROVAL_ABOVE_DEFAULT }
    }
}

impl DepositPolicy {
    /// Whether a deposit of `money` needs a second operator.
    pub fn needs_approval(&self, money: Money) -> bool {
        money.value() > self.approval_above
    }
}

/// Separation of duties: the operator who requested a deposit may not approve it.
pub fn check_approver(request: &DepositRequest, approver: CustomerId) -> Result<()> {
    if request.requested_by == approver {
        return Err(Error::InvalidInput("the operator who requested a deposit may not approve it".into()));
    }
    Ok(())
}

/// Where a request is in its life: `pending` → `approved` (then posted under its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositRequestStatus {
    /// Waiting for a second operator.
    Pending,
    /// Approved by `by` at `at`.
    Approved {
        /// The approving operator.
        by: CustomerId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// A deposit waiting for (or past) its second operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositRequest {
    /// The request's id, which is also the deposit entry's transfer id.
    pub id: TransferId,
    /// The account credited.
    pub account_id: AccountId,
    /// What is credited.
    pub money: Money,
    /// The entry's reference.
    pub reference: String,
    /// The operator who asked.
    pub requested_by: CustomerId,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Pending or approved.
    pub status: DepositRequestStatus,
}

impl DepositRequest {
    /// Whether `other` asks for the same deposit (a replay of the same request).
    pub fn is_same_request(&self, other: &DepositRequest) -> bool {
        self.id == other.id
            && self.account_id == other.account_id
            && self.money == other.money
            && self.reference == other.reference
            && self.requested_by == other.requested_by
    }
}

/// Deposit requests.
///
/// # Contract
/// - `create` stores the request with its status as given (pending, or approved already: a
///   deposit the policy lets through), and is idempotent on the id: the same request again
///   ([`DepositRequest::is_same_request`]) answers the stored one, whatever either's status; a
///   different request under a used id fails with [`Error::KeyReused`].
/// - `approve` moves a pending request to approved, once: approving an approved request answers it
///   unchanged (the first approver stays); an unknown id is [`Error::TransferNotFound`]. The store
///   does not judge who approves ([`check_approver`] does, before).
/// - `pending` answers pending requests, oldest first, at most `min(limit, PENDING_PAGE_MAX)`.
/// - `approved_since` answers requests approved at or after `since`, in approval order (then by
///   id), at most `min(limit, PENDING_PAGE_MAX)`.
#[async_trait]
pub trait DepositRequestStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new request, pending or approved (or answers the stored one).
    async fn create(&self, request: DepositRequest) -> Result<DepositRequest>;

    /// One request.
    async fn get(&self, id: TransferId) -> Result<Option<DepositRequest>>;

    /// Marks `id` approved by `by` at `at` (or answers it as it is, if already approved).
    async fn approve(&self, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest>;

    /// Pending requests, oldest first.
    async fn pending(&self, limit: usize) -> Result<Vec<DepositRequest>>;

    /// Requests approved at or after `since`, oldest approval first (what the sweep that
    /// completes interrupted deposits reads: [`crate::deposits::DepositsSweep`]).
    async fn approved_since(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<DepositRequest>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    #[test]
    fn only_deposits_above_the_threshold_need_approval() {
        let policy = DepositPolicy::default();
        assert_eq!(policy.approval_above, Decimal::new(10_000, 0));
        assert!(!policy.needs_approval(Money::parse("10000.00", "USD").expect("money")));
        assert!(policy.needs_approval(Money::parse("10000.01", "USD").expect("money")));
        let strict = DepositPolicy { approval_above: Decimal::ZERO };
        assert!(strict.needs_approval(Money::parse("0.01", "USD").expect("money")));
    }

    #[test]
    fn the_requester_may_not_approve() {
        let requester = CustomerId::new();
        let request = DepositRequest {
            id: TransferId::new(),
            account_id: AccountId::new(),
            money: Money::parse("20000.00", "USD").expect("money"),
            reference: "r".into(),
            requested_by: requester,
            requested_at: DateTime::<Utc>::UNIX_EPOCH,
            status: DepositRequestStatus::Pending,
        };
        assert!(check_approver(&request, requester).is_err());
        assert!(check_approver(&request, CustomerId::new()).is_ok());
    }
}
