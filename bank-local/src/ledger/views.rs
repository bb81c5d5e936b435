//! [`AccountViews`]: the bounded read cache (moka) of account and balance views.
//!
//! Only the writer thread fills it: after each batch COMMITs, it puts the state of every account
//! the batch loaded or changed, as its own cache holds it, and drops the entry of any account it
//! no longer holds (a failed command evicts what it touched). Since the writer is the only writer
//! of the database (the data directory's lock keeps other processes out) and the one thread that
//! inserts, a view is always the state as of some commit, and never older than the last commit
//! of that account the reader could have seen answered: no reader ever inserts what it read, so
//! the classic "stale read re-inserted after the invalidation" race cannot happen.
//!
//! Readers that miss read SQLite (a point lookup) and leave the cache alone.

use std::sync::Arc;

use bank_core::Result;
use bank_core::account::{Account, AccountState, Balance};
use bank_core::ids::AccountId;
use bank_core::money::checked_sub;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// Account views kept (about 300 bytes each).
pub(crate) const VIEW_CACHE_ACCOUNTS: u64 = 100_000;

/// An account as of a commit: its state and its active holds (expiry, amount).
#[derive(Debug, Clone)]
pub(crate) struct AccountView {
    pub(crate) state: AccountState,
    pub(crate) holds: Vec<(DateTime<Utc>, Decimal)>,
}

impl AccountView {
    /// The account.
    pub(crate) fn account(&self) -> Account {
        self.state.account.clone()
    }

    /// The balance as of `now`: holds past their expiry no longer count, exactly as if the
    /// writer had released them (which it does lazily).
    pub(crate) fn balance(&self, now: DateTime<Utc>) -> Result<Balance> {
        let mut state = self.state.clone();
        for (expires_at, amount) in &self.holds {
            if *expires_at <= now {
                state.held = checked_sub(state.held, *amount)?;
            }
        }
        state.balance()
    }
}

/// The shared cache of one database.
#[derive(Debug, Clone)]
pub(crate) struct AccountViews {
    cache: moka::sync::Cache<AccountId, Arc<AccountView>>,
}

impl Default for AccountViews {
    fn default() -> Self {
        AccountViews { cache: moka::sync::Cache::new(VIEW_CACHE_ACCOUNTS) }
    }
}

impl AccountViews {
    pub(crate) fn get(&self, id: AccountId) -> Option<Arc<AccountView>> {
        self.cache.get(&id)
    }

    /// Writer only, after COMMIT.
    pub(crate) fn put(&self, id: AccountId, view: AccountView) {
        self.cache.insert(id, Arc::new(view));
    }

    /// Writer only, after COMMIT.
    pub(crate) fn forget(&self, id: AccountId) {
        self.cache.invalidate(&id);
    }
}
