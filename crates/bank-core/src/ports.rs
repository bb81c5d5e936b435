//! Ports: the small traits through which `bank-core` reaches storage and the outside world.
//!
//! Each is `Send + Sync`, held as `Arc<dyn Port>`, and has an in-memory implementation in
//! [`crate::memory`] and a conformance suite in `testkit` that every implementation runs.

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::account::{Account, AccountStatus, Balance, NewAccount};
use crate::error::Result;
use crate::ids::{AccountId, CustomerId, HoldId};
use crate::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal,
};
use crate::money::Currency;

pub use crate::clock::Clock;

/// Most accounts one owner may hold (bounds `accounts_of`).
pub const ACCOUNTS_PER_OWNER_MAX: usize = 100;

/// Accounts, postings, holds, balances and history, with every rule of [`crate::ledger::rules`]
/// applied atomically.
///
/// # Contract
/// - Each call is atomic: on error, nothing changed.
/// - `post`, `post_hold` and `reverse` are idempotent on their [`EntryKey`]: the same request
///   again returns the first [`PostedEntry`] and moves no money; a different request under a used
///   key fails with [`crate::Error::KeyReused`]. The same holds for `hold` and `open_account` on
///   their ids.
/// - Entries are append-only; each account's entries get sequence numbers 1, 2, 3, … with no gap.
/// - Holds whose `expires_at` has passed no longer reserve funds, whether or not
///   [`LedgerStore::expire_holds`] has run.
/// - Concurrent calls behave as if run one at a time (serializable per touched account).
#[async_trait]
pub trait LedgerStore: Send + Sync + std::fmt::Debug + 'static {
    /// Opens an account (validated with [`NewAccount::validate`]). Idempotent on the id.
    async fn open_account(&self, new: NewAccount) -> Result<Account>;

    /// One account.
    async fn account(&self, id: AccountId) -> Result<Account>;

    /// The accounts of `owner`, oldest first (at most [`ACCOUNTS_PER_OWNER_MAX`]).
    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>>;

    /// Freezes, reopens or closes an account ([`crate::ledger::rules::check_status_change`]).
    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account>;

    /// Posts a balanced entry.
    async fn post(&self, entry: NewEntry) -> Result<PostedEntry>;

    /// Posts several independent entries, each with its own result, as if posted one after the
    /// other in order. Stores override this to commit the batch together (group commit).
    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            results.push(self.post(entry).await);
        }
        results
    }

    /// The entry posted under `key`.
    async fn entry(&self, key: EntryKey) -> Result<PostedEntry>;

    /// Posts the reversal of an entry (each entry is reversed at most once).
    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry>;

    /// Reserves funds.
    async fn hold(&self, hold: NewHold) -> Result<Hold>;

    /// A hold, as of now.
    async fn get_hold(&self, id: HoldId) -> Result<Hold>;

    /// Posts (part of) an active hold; the rest is released.
    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry>;

    /// Releases an active hold. Voiding a voided or expired hold returns it unchanged; a posted
    /// hold cannot be voided.
    async fn void_hold(&self, id: HoldId) -> Result<Hold>;

    /// Marks every hold past its expiry as expired; returns how many it marked.
    async fn expire_holds(&self) -> Result<u64>;

    /// Balances of one account.
    async fn balance(&self, id: AccountId) -> Result<Balance>;

    /// One page of an account's history, newest first.
    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>>;

    /// The sum of all posted balances per currency (zero for every currency, by double entry);
    /// used by audits and tests.
    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>>;
}
