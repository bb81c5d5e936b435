//! The view cache: the [`ViewCache`] suite on [`MemoryViewCache`], the ledger suite and model
//! check through [`CachedLedger`] (the decorator changes no rule), and what only the decorator
//! does: serve hits, invalidate on every posting in another "process", refuse a fill that raced a
//! posting, skip balances with funds on hold, and keep answering when the cache fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bank_core::account::{AccountKind, NewAccount};
use bank_core::cache::{CachedLedger, CachedView, FillTicket, Lookup, VIEW_TTL_DEFAULT, ViewCache};
use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::{AccountId, CustomerId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry, NewHold};
use bank_core::memory::MemoryLedger;
use bank_core::memory::view_cache::MemoryViewCache;
use bank_core::money::Currency;
use bank_core::ports::LedgerStore;
use bank_core::testkit::fixtures::usd;
use bank_core::testkit::ledger::LedgerHarness;
use bank_core::testkit::ledger_model::run_ledger_model;
use bank_core::testkit::view_cache::MemoryViewCacheHarness;
use bank_core::{Error, Result};
use chrono::TimeDelta;
use rust_decimal::Decimal;

mod view_cache_conformance {
    use super::*;
    bank_core::view_cache_conformance_tests!(MemoryViewCacheHarness);
}

/// A memory ledger behind a cached ledger on a fresh memory cache.
struct CachedHarness;

#[async_trait]
impl LedgerHarness for CachedHarness {
    async fn ledger(&self, clock: Arc<dyn Clock>) -> Arc<dyn LedgerStore> {
        let store: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::clone(&clock)));
        Arc::new(CachedLedger::new(store, Arc::new(MemoryViewCache::default()), clock, VIEW_TTL_DEFAULT))
    }
}

mod ledger_conformance {
    use super::*;
    bank_core::ledger_conformance_tests!(CachedHarness);
}

#[test]
fn cached_ledger_behaves_like_the_model() {
    run_ledger_model(&CachedHarness, 64);
}

/// One database, one shared cache, an "API" and a "worker" process each with its decorator.
struct Deployment {
    clock: ManualClock,
    api: CachedLedger,
    worker: CachedLedger,
    settlement: AccountId,
    alice: AccountId,
}

async fn deployment(cache: Arc<dyn ViewCache>) -> Deployment {
    let clock = ManualClock::at_epoch();
    let store: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::new(clock.clone())));
    let api = CachedLedger::new(Arc::clone(&store), Arc::clone(&cache), Arc::new(clock.clone()), VIEW_TTL_DEFAULT);
    let worker = CachedLedger::new(store, cache, Arc::new(clock.clone()), VIEW_TTL_DEFAULT);
    let bank = CustomerId::new();
    let settlement = worker
        .open_account(NewAccount::internal(bank, "settlement", Currency::Usd, AccountKind::Settlement))
        .await
        .expect("open")
        .id;
    let alice =
        worker.open_account(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd)).await.expect("open").id;
    Deployment { clock, api, worker, settlement, alice }
}

fn deposit(from: AccountId, to: AccountId, amount: &str) -> NewEntry {
    NewEntry::transfer(EntryKey::new(TransferId::new(), 0), from, to, usd(amount), "deposit").expect("entry")
}

fn dec(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

#[tokio::test]
async fn views_are_served_from_the_cache_until_a_posting_elsewhere_invalidates_them() {
    let d = deployment(Arc::new(MemoryViewCache::default())).await;
    d.worker.post(deposit(d.settlement, d.alice, "10.00")).await.expect("post");
    assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("10.00"));
    assert_eq!(d.api.account(d.alice).await.expect("read").id, d.alice);
    assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("10.00"));
    let stats = d.api.stats().snapshot();
    assert_eq!((stats.misses, stats.fills, stats.hits), (1, 1, 2), "{stats:?}");

    // The worker's posting returns only after it invalidated: the next read anywhere sees it.
    d.worker.post(deposit(d.settlement, d.alice, "5.00")).await.expect("post");
    assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("15.00"));
    let hold = NewHold {
        id: HoldId::new(),
        account_id: d.alice,
        money: usd("1.00"),
        expires_at: d.clock.now() + TimeDelta::minutes(5),
        reference: "hold".into(),
    };
    d.worker.hold(hold.clone()).await.expect("hold");
    assert_eq!(d.api.balance(d.alice).await.expect("read").pending, dec("1.00"), "a hold invalidates too");
    d.worker.void_hold(hold.id).await.expect("void");
    assert_eq!(d.api.balance(d.alice).await.expect("read").pending, dec("0"), "and its release");
    d.worker.set_status(d.alice, bank_core::account::AccountStatus::Frozen).await.expect("freeze");
    assert_eq!(d.api.account(d.alice).await.expect("read").status, bank_core::account::AccountStatus::Frozen);
    assert_eq!(d.api.stats().snapshot().errors, 0);
}

#[tokio::test]
async fn balances_with_funds_on_hold_are_not_cached_and_expire_on_time() {
    let d = deployment(Arc::new(MemoryViewCache::default())).await;
    d.worker.post(deposit(d.settlement, d.alice, "10.00")).await.expect("post");
    let hold = NewHold {
        id: HoldId::new(),
        account_id: d.alice,
        money: usd("4.00"),
        expires_at: d.clock.now() + TimeDelta::minutes(1),
        reference: "hold".into(),
    };
    d.worker.hold(hold).await.expect("hold");
    assert_eq!(d.api.balance(d.alice).await.expect("read").available, Some(dec("6.00")));
    d.clock.advance(TimeDelta::minutes(2));
    // No write happened: the hold lapsed by itself. A cached view would still say 6.00.
    assert_eq!(d.api.balance(d.alice).await.expect("read").available, Some(dec("10.00")));
    assert_eq!(d.api.stats().snapshot().fills, 1, "only the hold-free view was stored");
}

#[tokio::test]
async fn a_view_is_not_served_past_its_validity_on_the_business_clock() {
    let d = deployment(Arc::new(MemoryViewCache::default())).await;
    d.api.balance(d.alice).await.expect("read");
    d.api.balance(d.alice).await.expect("read");
    d.clock.advance(TimeDelta::from_std(VIEW_TTL_DEFAULT).expect("ttl"));
    d.api.balance(d.alice).await.expect("read");
    let stats = d.api.stats().snapshot();
    assert_eq!((stats.hits, stats.misses), (1, 2), "{stats:?}");
}

/// Holds each fill back until a posting went through: the decorator-level fill race.
#[derive(Debug)]
struct SlowFill {
    inner: MemoryViewCache,
    delay: Duration,
}

#[async_trait]
impl ViewCache for SlowFill {
    async fn lookup(&self, id: AccountId) -> Result<Lookup> {
        self.inner.lookup(id).await
    }
    async fn fill(&self, ticket: &FillTicket, view: &CachedView, ttl: Duration) -> Result<bool> {
        tokio::time::sleep(self.delay).await;
        self.inner.fill(ticket, view, ttl).await
    }
    async fn invalidate(&self, ids: &[AccountId]) -> Result<()> {
        self.inner.invalidate(ids).await
    }
}

#[tokio::test]
async fn a_reader_that_read_before_a_posting_cannot_cache_the_old_balance() {
    let cache = Arc::new(SlowFill { inner: MemoryViewCache::default(), delay: Duration::from_millis(200) });
    let d = Arc::new(deployment(cache).await);
    let reader = {
        let d = Arc::clone(&d);
        tokio::spawn(async move { d.api.balance(d.alice).await.expect("read").posted })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    d.worker.post(deposit(d.settlement, d.alice, "7.00")).await.expect("post");
    assert_eq!(reader.await.expect("reader"), dec("0"), "the reader read before the posting");
    assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("7.00"), "and did not cache it");
    assert_eq!(d.api.stats().snapshot().refused_fills, 1);
}

/// A cache that is down (or, with `invalidations_only`, one that loses invalidations).
#[derive(Debug, Default)]
struct Broken {
    inner: MemoryViewCache,
    invalidations_only: bool,
    fail: AtomicBool,
}

impl Broken {
    fn refuse<T>(&self) -> Result<T> {
        Err(Error::Storage { message: "cache unreachable".into(), retryable: true })
    }
}

#[async_trait]
impl ViewCache for Broken {
    async fn lookup(&self, id: AccountId) -> Result<Lookup> {
        if self.fail.load(Ordering::SeqCst) && !self.invalidations_only {
            return self.refuse();
        }
        self.inner.lookup(id).await
    }
    async fn fill(&self, ticket: &FillTicket, view: &CachedView, ttl: Duration) -> Result<bool> {
        if self.fail.load(Ordering::SeqCst) && !self.invalidations_only {
            return self.refuse();
        }
        self.inner.fill(ticket, view, ttl).await
    }
    async fn invalidate(&self, ids: &[AccountId]) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return self.refuse();
        }
        self.inner.invalidate(ids).await
    }
}

#[tokio::test]
async fn a_cache_that_is_down_never_fails_a_read_or_a_write() {
    let cache = Arc::new(Broken::default());
    let d = deployment(Arc::clone(&cache) as Arc<dyn ViewCache>).await;
    cache.fail.store(true, Ordering::SeqCst);
    d.worker.post(deposit(d.settlement, d.alice, "3.00")).await.expect("a posting does not need the cache");
    for _ in 0..3 {
        assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("3.00"));
    }
    assert_eq!(d.api.stats().snapshot().errors, 3, "each failed lookup is counted");
    assert!(d.worker.stats().snapshot().errors >= 1, "the lost invalidation is counted");
}

#[tokio::test]
async fn a_process_whose_invalidation_was_lost_still_reads_its_own_writes() {
    let cache = Arc::new(Broken { invalidations_only: true, ..Broken::default() });
    let d = deployment(Arc::clone(&cache) as Arc<dyn ViewCache>).await;
    assert_eq!(d.worker.balance(d.alice).await.expect("fill").posted, dec("0"));
    cache.fail.store(true, Ordering::SeqCst);
    d.worker.post(deposit(d.settlement, d.alice, "2.00")).await.expect("post");
    assert_eq!(d.worker.balance(d.alice).await.expect("read").posted, dec("2.00"), "bypasses its stale view");
    // Another process may see the old view until the TTL: the documented bound.
    assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("0"));
    d.clock.advance(TimeDelta::from_std(VIEW_TTL_DEFAULT).expect("ttl"));
    assert_eq!(d.api.balance(d.alice).await.expect("read").posted, dec("2.00"), "no longer than the TTL");
}
