//! [`AccountFacts`]: what never changes about an account — its owner and its currency —
//! remembered per process, so the pipeline's hot path does not read an account again for them.
//!
//! Both are fixed when the account is opened (every store refuses to change them; PostgreSQL by
//! trigger) and accounts are never deleted, so a remembered pair is never stale and nothing has
//! to invalidate it, in this process or any other. What can change is never remembered: the
//! status (frozen, closed) is checked atomically by the hold for the source, and acceptance still
//! reads an internal destination for its status. Only accounts that exist are remembered (a miss
//! reads the store, whose "not found" is passed on).
//!
//! Bounded ([`ACCOUNT_FACTS_MAX`] accounts, moka's TinyLFU admission keeps the busy ones).

use crate::error::Result;
use crate::ids::{AccountId, CustomerId};
use crate::money::Currency;
use crate::ports::LedgerStore;

/// Accounts whose facts one [`AccountFacts`] remembers at most (~100 bytes each).
pub const ACCOUNT_FACTS_MAX: u64 = 100_000;

/// An account's owner and currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Its owner.
    pub(crate) owner: CustomerId,
    /// Its currency.
    pub(crate) currency: Currency,
}

/// The remembered facts (see the module doc). Cheap to clone: clones share the memory.
#[derive(Debug, Clone)]
pub(crate) struct AccountFacts {
    cache: moka::sync::Cache<AccountId, Facts>,
}

impl Default for AccountFacts {
    fn default() -> Self {
        AccountFacts { cache: moka::sync::Cache::new(ACCOUNT_FACTS_MAX) }
    }
}

impl AccountFacts {
    /// The facts of account `id`: remembered, or read from `ledger` (and then remembered).
    pub(crate) async fn of(&self, ledger: &dyn LedgerStore, id: AccountId) -> Result<Facts> {
        if let Some(facts) = self.cache.get(&id) {
            return Ok(facts);
        }
        let account = ledger.account(id).await?;
        Ok(self.remember(&account))
    }

    /// Remembers the facts of an account just read; returns them.
    pub(crate) fn remember(&self, account: &crate::account::Account) -> Facts {
        let facts = Facts { owner: account.owner, currency: account.currency };
        self.cache.insert(account.id, facts);
        facts
    }
}
