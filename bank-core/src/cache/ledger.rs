//! [`CachedLedger`]: a [`LedgerStore`] that serves `account` and `balance` from a [`ViewCache`]
//! and invalidates the touched accounts after every write; everything else passes through.
//!
//! See the parent module for the fill race and the staleness a reader can see.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::{CachedView, FillTicket, VIEW_TTL_MAX, ViewCache, WarnEvery};
use crate::account::{Account, AccountStatus, Balance, NewAccount};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId, HoldId};
use crate::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, HoldMark, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal,
};
use crate::money::Currency;
use crate::ports::LedgerStore;

/// What the cache did, since the decorator was built (for metrics).
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    refused_fills: AtomicU64,
    errors: AtomicU64,
}

/// A copy of [`CacheStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStatsSnapshot {
    /// Views served from the cache.
    pub hits: u64,
    /// Views read from the store (no view, an expired one, or the cache bypassed).
    pub misses: u64,
    /// Views stored after a miss.
    pub fills: u64,
    /// Fills the cache refused because the account was invalidated meanwhile (the race closed).
    pub refused_fills: u64,
    /// Cache calls that failed (unreachable, timeout, bad entry): the read fell through to the
    /// store, or an invalidation was lost.
    pub errors: u64,
}

impl CacheStats {
    /// The counts now.
    pub fn snapshot(&self) -> CacheStatsSnapshot {
        CacheStatsSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fills: self.fills.load(Ordering::Relaxed),
            refused_fills: self.refused_fills.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The ledger with a read-through view cache. Build one per process over the process's store
/// and the shared cache: `CachedLedger::new(store, cache, clock, VIEW_TTL_DEFAULT)`.
#[derive(Debug)]
pub struct CachedLedger {
    inner: Arc<dyn LedgerStore>,
    cache: Arc<dyn ViewCache>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    stats: Arc<CacheStats>,
    warn: WarnEvery,
    started: Instant,
    /// Milliseconds since `started` until which this process reads past the cache (an
    /// invalidation of its own was lost); 0: never.
    bypass_until_ms: AtomicU64,
}

impl CachedLedger {
    /// `inner` read through `cache`; views live `ttl` (clamped to 1 ms ..= [`VIEW_TTL_MAX`]),
    /// measured both by the cache and by `clock`.
    pub fn new(inner: Arc<dyn LedgerStore>, cache: Arc<dyn ViewCache>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        CachedLedger {
            inner,
            cache,
            clock,
            ttl: ttl.clamp(Duration::from_millis(1), VIEW_TTL_MAX),
            stats: Arc::new(CacheStats::default()),
            warn: WarnEvery::default(),
            started: Instant::now(),
            bypass_until_ms: AtomicU64::new(0),
        }
    }

    /// The counters (shared: keep the `Arc` for a metrics exporter).
    pub fn stats(&self) -> Arc<CacheStats> {
        Arc::clone(&self.stats)
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &Arc<dyn LedgerStore> {
        &self.inner
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn bypassing(&self) -> bool {
        self.elapsed_ms() < self.bypass_until_ms.load(Ordering::Relaxed)
    }

    fn cache_failed(&self, what: &str, err: &Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.warn.due() {
            tracing::warn!(error = %err, held_back, "view cache {what} failed; reading the database instead");
        }
    }

    /// An invalidation may have been lost: read past the cache in this process for one TTL, so
    /// that this process at least keeps reading its own writes.
    fn bypass_for_a_ttl(&self) {
        let until = self.elapsed_ms().saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        self.bypass_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    async fn invalidate(&self, ids: &mut Vec<AccountId>) {
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        if let Err(err) = self.cache.invalidate(ids).await {
            self.bypass_for_a_ttl();
            self.cache_failed("invalidation", &err);
        }
    }

    /// After a write whose accounts are known only from its answer: on success the answer's,
    /// on a failure whose outcome is unknown (the store's commit may have happened) `known`
    /// plus a bypass for one TTL; on a refusal (nothing changed, by the port's contract)
    /// nothing.
    async fn after_write<T>(&self, result: &Result<T>, touched: impl Fn(&T) -> Vec<AccountId>, known: Vec<AccountId>) {
        match result {
            Ok(value) => {
                let mut ids = touched(value);
                ids.extend(known);
                self.invalidate(&mut ids).await;
            }
            Err(err) if outcome_unknown(err) => {
                self.bypass_for_a_ttl();
                let mut ids = known;
                self.invalidate(&mut ids).await;
            }
            Err(_) => {}
        }
    }

    /// The view of `id`: from the cache when it holds a valid one, else from the store (and then
    /// stored, if the ticket is still current and nothing is on hold).
    async fn view(&self, id: AccountId) -> Result<CachedView> {
        let ticket = if self.bypassing() {
            None
        } else {
            match self.cache.lookup(id).await {
                Ok(lookup) => {
                    if let Some(view) = lookup.view
                        && view.account.id == id
                        && self.clock.now() < view.valid_until
                    {
                        self.stats.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(view);
                    }
                    Some(lookup.ticket)
                }
                Err(err) => {
                    self.cache_failed("lookup", &err);
                    None
                }
            }
        };
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let read_at = self.clock.now();
        let account = self.inner.account(id).await?;
        let balance = self.inner.balance(id).await?;
        let view = CachedView { account, balance, valid_until: read_at + ttl_delta(self.ttl) };
        if let Some(ticket) = ticket
            && view.balance.pending.is_zero()
        {
            self.fill(&ticket, &view).await;
        }
        Ok(view)
    }

    async fn fill(&self, ticket: &FillTicket, view: &CachedView) {
        match self.cache.fill(ticket, view, self.ttl).await {
            Ok(true) => {
                self.stats.fills.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                self.stats.refused_fills.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => self.cache_failed("fill", &err),
        }
    }
}

/// Whether a failed write may still have committed (so its accounts must be invalidated).
fn outcome_unknown(err: &Error) -> bool {
    matches!(err, Error::Storage { .. } | Error::Interrupted(_))
}

fn ttl_delta(ttl: Duration) -> TimeDelta {
    TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX)
}

fn entry_accounts(entry: &PostedEntry) -> Vec<AccountId> {
    entry.lines.iter().map(|line| line.account_id).collect()
}

#[async_trait]
impl LedgerStore for CachedLedger {
    async fn open_account(&self, new: NewAccount) -> Result<Account> {
        // A new account has no view; a reader that asked before got `AccountNotFound`, which is
        // never cached.
        self.inner.open_account(new).await
    }

    async fn account(&self, id: AccountId) -> Result<Account> {
        Ok(self.view(id).await?.account)
    }

    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>> {
        self.inner.accounts_of(owner).await
    }

    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account> {
        let result = self.inner.set_status(id, status).await;
        self.after_write(&result, |_| Vec::new(), vec![id]).await;
        result
    }

    async fn post(&self, entry: NewEntry) -> Result<PostedEntry> {
        let known = entry.lines().iter().map(|line| line.account_id).collect();
        let result = self.inner.post(entry).await;
        self.after_write(&result, entry_accounts, known).await;
        result
    }

    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        let mut ids: Vec<AccountId> =
            entries.iter().flat_map(|entry| entry.lines().iter().map(|line| line.account_id)).collect();
        let results = self.inner.post_batch(entries).await;
        if results.iter().any(|result| result.as_ref().is_err_and(outcome_unknown)) {
            self.bypass_for_a_ttl();
        }
        // Every account of the batch, posted or not: one round trip, and a refused entry's
        // accounts losing their view costs one read each.
        self.invalidate(&mut ids).await;
        results
    }

    async fn entry(&self, key: EntryKey) -> Result<PostedEntry> {
        self.inner.entry(key).await
    }

    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry> {
        let result = self.inner.reverse(reversal).await;
        self.after_write(&result, entry_accounts, Vec::new()).await;
        result
    }

    async fn hold(&self, hold: NewHold) -> Result<Hold> {
        let account = hold.account_id;
        let result = self.inner.hold(hold).await;
        self.after_write(&result, |_| Vec::new(), vec![account]).await;
        result
    }

    async fn get_hold(&self, id: HoldId) -> Result<Hold> {
        self.inner.get_hold(id).await
    }

    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry> {
        let credit = request.credit_account;
        let result = self.inner.post_hold(request).await;
        self.after_write(&result, entry_accounts, vec![credit]).await;
        result
    }

    async fn void_hold(&self, id: HoldId) -> Result<Hold> {
        let result = self.inner.void_hold(id).await;
        self.after_write(&result, |hold: &Hold| vec![hold.account_id], Vec::new()).await;
        result
    }

    async fn expire_holds(&self) -> Result<u64> {
        // Views with funds on hold are never cached, and an expired hold already stopped counting
        // in every balance read after its expiry: marking it changes no view.
        self.inner.expire_holds().await
    }

    async fn mark_hold(&self, id: HoldId) -> Result<()> {
        // A mark changes no balance.
        self.inner.mark_hold(id).await
    }

    async fn marked_holds(&self, after: Option<HoldId>, limit: usize) -> Result<Vec<HoldMark>> {
        self.inner.marked_holds(after, limit).await
    }

    async fn unmark_holds(&self, ids: &[HoldId]) -> Result<()> {
        self.inner.unmark_holds(ids).await
    }

    async fn balance(&self, id: AccountId) -> Result<Balance> {
        Ok(self.view(id).await?.balance)
    }

    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>> {
        self.inner.history(id, query).await
    }

    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>> {
        self.inner.trial_balance().await
    }

    async fn balance_at(&self, id: AccountId, at: DateTime<Utc>) -> Result<Decimal> {
        self.inner.balance_at(id, at).await
    }

    async fn accounts_after(&self, after: Option<AccountId>, limit: usize) -> Result<Vec<Account>> {
        self.inner.accounts_after(after, limit).await
    }
}
