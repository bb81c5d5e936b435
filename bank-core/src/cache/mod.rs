//! The account-view cache: the [`ViewCache`] port, what it stores ([`CachedView`]), and
//! [`CachedLedger`], the [`LedgerStore`](crate::ports::LedgerStore) decorator that reads account
//! views through it and invalidates them after every write.
//!
//! # Where it sits
//! API processes read accounts and balances (`GET /v1/accounts`, `/v1/accounts/{id}`); worker
//! processes post. Both wrap their ledger in a [`CachedLedger`] over one shared cache (Redis in
//! the AWS assembly, [`crate::memory::view_cache::MemoryViewCache`] in one process): readers fill
//! the cache on a miss, and every write — post, post_batch, reverse, hold, post_hold, void_hold,
//! set_status — deletes the views of the accounts it touched once it returns, in whichever
//! process it ran.
//!
//! # The fill race, and how it is closed
//! A reader that misses reads the database and then stores what it read. Without care, a
//! posting can commit and invalidate *between* the reader's database read and its store, and the
//! reader then stores a value older than the posting, which every later reader sees until the
//! TTL ends — even the caller whose posting already returned. Here each account has a
//! **generation** in the cache: [`ViewCache::lookup`] hands out a [`FillTicket`] naming the
//! current one *before* the database read, [`ViewCache::invalidate`] replaces it (and deletes the
//! view) after the write commits, and [`ViewCache::fill`] stores the view only if the generation
//! is still the ticket's — atomically in the cache (a Lua script in Redis, a lock in memory). A
//! fill carrying a value read before a commit therefore holds a ticket issued before that
//! commit's invalidation, and is refused. Generations are fresh random values, never reused, so
//! a generation that expired and came back cannot match an old ticket.
//!
//! # What staleness a reader can see
//! - While a write is committed but has not returned yet (between its commit and its
//!   invalidation): the view from before it. A write that returned is never hidden — the
//!   read-your-own-write rule of the database stores holds through the cache.
//! - When an invalidation fails (the cache unreachable at that moment, or the writer died
//!   between commit and invalidation): the old view until its TTL ends (at most the
//!   [`CachedLedger`]'s TTL, [`VIEW_TTL_DEFAULT`] unless configured). The process whose
//!   invalidation failed bypasses the cache for that long, so it still reads its own writes.
//! - Balances with funds on hold are not cached at all: a hold stops reserving funds when it
//!   expires, with no write to invalidate anything, and the view does not say when that is.
//!
//! A cache that fails (unreachable, slow, corrupt entry) never fails a read: the decorator falls
//! through to the store, counts the failure ([`CacheStats::errors`]) and warns at most once per
//! [`WARN_EVERY`].

mod ledger;
mod warn;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::{Account, Balance};
use crate::error::{Error, Result};
use crate::ids::AccountId;

pub use ledger::{CacheStats, CacheStatsSnapshot, CachedLedger};
pub use warn::{WARN_EVERY, WarnEvery};

/// How long a view is served unless configured otherwise: the staleness bound when an
/// invalidation is lost.
pub const VIEW_TTL_DEFAULT: Duration = Duration::from_secs(5);

/// The longest TTL a cache accepts for a view ([`ViewCache::fill`] refuses more).
pub const VIEW_TTL_MAX: Duration = Duration::from_secs(3_600);

/// Longest generation a [`FillTicket`] carries (bytes); adapters refuse longer ones.
pub const GENERATION_LEN_MAX: usize = 64;

/// An account as readers see it, as stored in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedView {
    /// The account.
    pub account: Account,
    /// Its balances when read.
    pub balance: Balance,
    /// Business time (the reader's [`crate::clock::Clock`]) after which the view must not be
    /// served, whatever the cache's own TTL says.
    pub valid_until: DateTime<Utc>,
}

impl CachedView {
    /// Checks that the parts belong together: the balance is the account's.
    pub fn check(&self) -> Result<()> {
        if self.balance.account_id != self.account.id || self.balance.currency != self.account.currency {
            return Err(Error::invalid("a cached view's balance must be its account's"));
        }
        Ok(())
    }
}

/// Permission to store one account's view, valid until the account's next invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillTicket {
    /// The account.
    pub account: AccountId,
    /// The account's generation when the ticket was issued (opaque to callers).
    pub generation: String,
}

/// What [`ViewCache::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The stored view, if any (the caller still checks `valid_until`).
    pub view: Option<CachedView>,
    /// A ticket to (re)fill the view with what the caller reads next.
    pub ticket: FillTicket,
}

/// A shared, bounded cache of account views with per-account generations (see the module doc).
///
/// # Contract
/// - `lookup(id)` answers the view last stored by a `fill` of `id` if no `invalidate` of `id`
///   came after it and its TTL has not run out, and always a ticket naming `id`'s current
///   generation (creating one if there is none).
/// - `fill(ticket, view, ttl)` stores `view` for `ttl` and answers `true` only if no
///   `invalidate` of the account happened since `ticket` was issued; otherwise it stores nothing
///   and answers `false`. Of two tickets of one generation, both may fill (the last one wins).
///   `view.account.id` must be the ticket's account and `ttl` in `(0, VIEW_TTL_MAX]`, else
///   `InvalidInput` and nothing stored.
/// - `invalidate(ids)` deletes the views of `ids` and voids every ticket issued for them before.
///   Unknown ids are fine.
/// - Every method fails fast (a bounded timeout) with a retryable `Storage` error when the cache
///   cannot be reached; callers fall through to the database.
#[async_trait]
pub trait ViewCache: Send + Sync + std::fmt::Debug + 'static {
    /// The stored view of `id`, if any, and a ticket to fill it.
    async fn lookup(&self, id: AccountId) -> Result<Lookup>;

    /// Stores `view` if `ticket` is still current; answers whether it did.
    async fn fill(&self, ticket: &FillTicket, view: &CachedView, ttl: Duration) -> Result<bool>;

    /// Forgets the views of `ids` and voids their outstanding tickets.
    async fn invalidate(&self, ids: &[AccountId]) -> Result<()>;
}

/// Checks the arguments of [`ViewCache::fill`] (shared by the adapters).
pub fn check_fill(ticket: &FillTicket, view: &CachedView, ttl: Duration) -> Result<()> {
    if view.account.id != ticket.account {
        return Err(Error::invalid("a view must fill its own account's ticket"));
    }
    if ttl.is_zero() || ttl > VIEW_TTL_MAX {
        return Err(Error::invalid(format!("a view's TTL must be positive and at most {} s", VIEW_TTL_MAX.as_secs())));
    }
    if ticket.generation.is_empty() || ticket.generation.len() > GENERATION_LEN_MAX {
        return Err(Error::invalid(format!("a ticket's generation has 1 to {GENERATION_LEN_MAX} bytes")));
    }
    view.check()
}

/// A fresh generation: a UUID v7 (time and 74 random bits), never reused.
pub fn new_generation() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
