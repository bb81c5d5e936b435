//! Accounts: who owns them, their currency, kind, status, overdraft limit and balances.
//!
//! Balances follow one sign convention across the ledger: a **credit raises** an account's
//! `posted` balance and a **debit lowers** it. Every entry balances, so the sum of all `posted`
//! balances in one currency is always exactly zero: customer accounts hold positive balances,
//! the settlement accounts that money enters through hold the matching negative ones.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId};
use crate::money::{Currency, TRANSFER_AMOUNT_MAX, checked_add, checked_sub};

/// Longest account name accepted.
pub const ACCOUNT_NAME_CHARS_MAX: usize = 100;

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccountKind {
    /// A customer's account. Its overdraft limit is always finite.
    Customer,
    /// The bank's side of money entering or leaving through a payment rail or a deposit.
    Settlement,
    /// Money in transit between a debit and its settlement on a rail.
    Clearing,
    /// Where unexplained or disputed money is parked until an operator resolves it.
    Suspense,
}

/// Whether an account can move money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Debits and credits allowed.
    Open,
    /// Credits allowed, debits and new holds refused (a debit freeze, as banks apply for
    /// investigations). Can be reopened.
    Frozen,
    /// Terminal: nothing is posted to it any more.
    Closed,
}

impl AccountKind {
    /// Every kind.
    pub const ALL: [AccountKind; 4] =
        [AccountKind::Customer, AccountKind::Settlement, AccountKind::Clearing, AccountKind::Suspense];

    /// The kind's name, as serialized and as stores keep it (`customer`, `settlement`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Settlement => "settlement",
            AccountKind::Clearing => "clearing",
            AccountKind::Suspense => "suspense",
        }
    }

    /// The kind named `text` ([`AccountKind::as_str`]); `None` for any other text.
    pub fn parse(text: &str) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl AccountStatus {
    /// Every status.
    pub const ALL: [AccountStatus; 3] = [AccountStatus::Open, AccountStatus::Frozen, AccountStatus::Closed];

    /// The status's name, as serialized and as stores keep it (`open`, `frozen`, `closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Open => "open",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }

    /// The status named `text` ([`AccountStatus::as_str`]); `None` for any other text.
    pub fn parse(text: &str) -> Option<AccountStatus> {
        AccountStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far below zero an account's available balance may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "amount")]
pub enum OverdraftLimit {
    /// `available` may not go below `-limit` (0 = no overdraft, the default).
    Limited(#[serde(with = "crate::money::decimal_string")] Decimal),
    /// No limit: only for the bank's own settlement, clearing and suspense accounts.
    Unlimited,
}

impl Default for OverdraftLimit {
    fn default() -> Self {
        OverdraftLimit::Limited(Decimal::ZERO)
    }
}

/// A request to open an account; [`NewAccount::validate`] runs before any store sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    /// Id to use; a client-chosen id makes opening idempotent.
    pub id: AccountId,
    /// The owner. The bank's own accounts are owned by a system customer id.
    pub owner: CustomerId,
    /// Display name (1..=100 characters).
    pub name: String,
    /// The one currency this account holds.
    pub currency: Currency,
    /// What it is for.
    pub kind: AccountKind,
    /// Its overdraft limit.
    pub overdraft_limit: OverdraftLimit,
}

impl NewAccount {
    /// A customer account with no overdraft and a fresh id.
    pub fn customer(owner: CustomerId, name: impl Into<String>, currency: Currency) -> Self {
        NewAccount {
            id: AccountId::new(),
            owner,
            name: name.into(),
            currency,
            kind: AccountKind::Customer,
            overdraft_limit: OverdraftLimit::default(),
        }
    }

    /// One of the bank's own accounts of `kind`, with no overdraft limit and a fresh id.
    pub fn internal(owner: CustomerId, name: impl Into<String>, currency: Currency, kind: AccountKind) -> Self {
        NewAccount {
            id: AccountId::new(),
            owner,
            name: name.into(),
            currency,
            kind,
            overdraft_limit: OverdraftLimit::Unlimited,
        }
    }

    /// Sets the overdraft limit.
    pub fn with_overdraft(mut self, limit: OverdraftLimit) -> Self {
        self.overdraft_limit = limit;
        self
    }

    /// Checks the request: a name of sensible length, a finite, non-negative, correctly scaled
    /// limit, and no unlimited overdraft on a customer account.
    pub fn validate(&self) -> Result<()> {
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > ACCOUNT_NAME_CHARS_MAX {
            return Err(Error::invalid(format!("account name must be 1 to {ACCOUNT_NAME_CHARS_MAX} characters")));
        }
        if self.name.chars().any(char::is_control) {
            return Err(Error::invalid("account name must not contain control characters"));
        }
        match self.overdraft_limit {
            OverdraftLimit::Limited(limit) => {
                if limit.is_sign_negative() || limit > TRANSFER_AMOUNT_MAX {
                    return Err(Error::invalid("overdraft limit must be between 0 and the amount maximum"));
                }
                if limit.normalize().scale() > self.currency.exponent() {
                    return Err(Error::invalid("overdraft limit has more decimals than the currency"));
                }
            }
            OverdraftLimit::Unlimited if self.kind == AccountKind::Customer => {
                return Err(Error::invalid("a customer account cannot have an unlimited overdraft"));
            }
            OverdraftLimit::Unlimited => {}
        }
        Ok(())
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Its owner.
    pub owner: CustomerId,
    /// Display name.
    pub name: String,
    /// Its currency.
    pub currency: Currency,
    /// What it is for.
    pub kind: AccountKind,
    /// Current status.
    pub status: AccountStatus,
    /// Overdraft limit.
    pub overdraft_limit: OverdraftLimit,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// The account a validated request opens at `now`.
    pub fn from_new(new: NewAccount, now: DateTime<Utc>) -> Self {
        Account {
            id: new.id,
            owner: new.owner,
            name: new.name,
            currency: new.currency,
            kind: new.kind,
            status: AccountStatus::Open,
            overdraft_limit: new.overdraft_limit,
            created_at: now,
        }
    }

    /// Whether this account was opened by `new` (an idempotent re-open is then harmless).
    pub fn matches(&self, new: &NewAccount) -> bool {
        self.id == new.id
            && self.owner == new.owner
            && self.name == new.name
            && self.currency == new.currency
            && self.kind == new.kind
            && self.overdraft_limit == new.overdraft_limit
    }
}

/// An account's balances.
///
/// `available = posted − pending + overdraft_limit` (`None` when the limit is unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The account.
    pub account_id: AccountId,
    /// Its currency.
    pub currency: Currency,
    /// Sum of posted credits minus posted debits.
    #[serde(with = "crate::money::decimal_string")]
    pub posted: Decimal,
    /// Funds reserved by active holds.
    #[serde(with = "crate::money::decimal_string")]
    pub pending: Decimal,
    /// What can still be debited or held; `None` for an unlimited account.
    #[serde(with = "crate::money::decimal_string_option")]
    pub available: Option<Decimal>,
    /// Number of entries posted to the account (its last sequence number).
    pub sequence: u64,
}

/// The mutable state of one account that the posting rules read and change.
///
/// Stores keep one per account and pass them to [`crate::ledger::rules`] while holding whatever
/// lock makes check-and-write atomic for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The account.
    pub account: Account,
    /// Posted balance.
    pub posted: Decimal,
    /// Sum of active, unexpired holds.
    pub held: Decimal,
    /// Sequence number of the last entry posted to this account (0 = none).
    pub sequence: u64,
}

impl AccountState {
    /// A freshly opened account.
    pub fn new(account: Account) -> Self {
        AccountState { account, posted: Decimal::ZERO, held: Decimal::ZERO, sequence: 0 }
    }

    /// `posted − held + limit`; `None` when unlimited.
    pub fn available(&self) -> Result<Option<Decimal>> {
        self.available_if_held(self.held)
    }

    /// What `available` would be with `held` reserved instead of the current holds.
    pub fn available_if_held(&self, held: Decimal) -> Result<Option<Decimal>> {
        match self.account.overdraft_limit {
            OverdraftLimit::Unlimited => Ok(None),
            OverdraftLimit::Limited(limit) => Ok(Some(checked_add(checked_sub(self.posted, held)?, limit)?)),
        }
    }

    /// The balances view.
    pub fn balance(&self) -> Result<Balance> {
        Ok(Balance {
            account_id: self.account.id,
            currency: self.account.currency,
            posted: self.posted,
            pending: self.held,
            available: self.available()?,
            sequence: self.sequence,
        })
    }

    /// Refuses a debit or new hold of `amount` that the status or the limit forbids.
    pub fn check_debit(&self, amount: Decimal) -> Result<()> {
        self.check_debit_if_held(amount, self.held)
    }

    /// Like [`AccountState::check_debit`], with `held` reserved instead of the current holds (used
    /// when posting a hold, which releases its own reservation in the same step).
    pub fn check_debit_if_held(&self, amount: Decimal, held: Decimal) -> Result<()> {
        self.check_can_debit()?;
        if let Some(available) = self.available_if_held(held)?
            && available < amount
        {
            return Err(Error::InsufficientFunds { account: self.account.id, available, requested: amount });
        }
        Ok(())
    }

    /// Refuses any debit while the account is not open.
    pub fn check_can_debit(&self) -> Result<()> {
        match self.account.status {
            AccountStatus::Open => Ok(()),
            status => Err(Error::AccountNotOpen { account: self.account.id, status }),
        }
    }

    /// Refuses any credit to a closed account.
    pub fn check_can_credit(&self) -> Result<()> {
        match self.account.status {
            AccountStatus::Open | AccountStatus::Frozen => Ok(()),
            status => Err(Error::AccountNotOpen { account: self.account.id, status }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AccountKind, AccountStatus};

    #[test]
    fn kind_and_status_names_round_trip_and_match_serde() {
        for kind in AccountKind::ALL {
            assert_eq!(AccountKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).expect("json"), serde_json::json!(kind.as_str()));
        }
        for status in AccountStatus::ALL {
            assert_eq!(AccountStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).expect("json"), serde_json::json!(status.as_str()));
        }
        assert_eq!(AccountKind::parse("Customer"), None);
        assert_eq!(AccountStatus::parse(""), None);
    }
}
