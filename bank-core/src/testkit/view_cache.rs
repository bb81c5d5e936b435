//! The [`ViewCache`] conformance suite: hits and misses, generations (a fill racing an
//! invalidation is refused), TTLs, bad input, and concurrent readers and writers leaving no
//! view older than the last invalidation.
//!
//! Each case gets a fresh cache from a [`ViewCacheHarness`] (an adapter on a shared service gives
//! each case its own key prefix) and uses fresh account ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use crate::account::{Account, AccountState, NewAccount};
use crate::cache::{CachedView, FillTicket, VIEW_TTL_MAX, ViewCache};
use crate::error::Error;
use crate::ids::{AccountId, CustomerId};
use crate::money::Currency;

/// How to build a fresh, empty cache for one test case.
#[async_trait]
pub trait ViewCacheHarness: Send + Sync {
    /// A new cache that shares nothing with other cases.
    async fn cache(&self) -> Arc<dyn ViewCache>;
}

/// Expands to one `#[tokio::test]` per [`ViewCache`] conformance case.
#[macro_export]
macro_rules! view_cache_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(view_cache, $harness;
            an_unknown_account_misses_with_a_ticket,
            a_filled_view_is_served_as_stored,
            lookups_without_invalidation_share_a_generation,
            invalidation_deletes_the_view_and_voids_older_tickets,
            a_fill_that_raced_an_invalidation_is_refused,
            accounts_are_independent,
            views_expire_after_their_ttl,
            bad_fills_are_refused_and_store_nothing,
            concurrent_readers_never_leave_a_view_older_than_the_last_invalidation,
        );
    };
}

/// The harness for [`crate::memory::view_cache::MemoryViewCache`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryViewCacheHarness;

#[async_trait]
impl ViewCacheHarness for MemoryViewCacheHarness {
    async fn cache(&self) -> Arc<dyn ViewCache> {
        Arc::new(crate::memory::view_cache::MemoryViewCache::default())
    }
}

const TTL: Duration = Duration::from_secs(60);

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds)
}

/// A view of a new USD account with `posted` and `sequence`.
fn view_of(id: AccountId, posted: &str, sequence: u64) -> CachedView {
    let mut new = NewAccount::customer(CustomerId::new(), "Cached", Currency::Usd);
    new.id = id;
    let account = Account::from_new(new, at(1));
    let mut state = AccountState::new(account.clone());
    state.posted = posted.parse::<Decimal>().expect("test amounts are valid");
    state.sequence = sequence;
    let balance = state.balance().expect("balance");
    CachedView { account, balance, valid_until: at(3_600) }
}

/// An unknown account: no view, a ticket naming it.
pub async fn an_unknown_account_misses_with_a_ticket(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let lookup = cache.lookup(id).await.expect("lookup");
    assert_eq!(lookup.view, None);
    assert_eq!(lookup.ticket.account, id);
    assert!(!lookup.ticket.generation.is_empty());
}

/// A fill with a current ticket is served back exactly (amounts, status, validity).
pub async fn a_filled_view_is_served_as_stored(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let ticket = cache.lookup(id).await.expect("lookup").ticket;
    let view = view_of(id, "1234567.89", 7);
    assert!(cache.fill(&ticket, &view, TTL).await.expect("fill"), "a current ticket fills");
    let lookup = cache.lookup(id).await.expect("lookup");
    assert_eq!(lookup.view, Some(view.clone()), "served exactly as stored");
    assert_eq!(lookup.ticket, ticket, "a hit keeps the generation");
    assert_eq!(cache.lookup(id).await.expect("again").view, Some(view), "served again");
}

/// Two readers that missed one after the other, with no write between, may both fill.
pub async fn lookups_without_invalidation_share_a_generation(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let first = cache.lookup(id).await.expect("lookup").ticket;
    let second = cache.lookup(id).await.expect("lookup").ticket;
    assert_eq!(first, second);
    assert!(cache.fill(&first, &view_of(id, "1.00", 1), TTL).await.expect("fill"));
    assert!(cache.fill(&second, &view_of(id, "1.00", 1), TTL).await.expect("fill"), "the same generation");
}

/// An invalidation deletes the view; a ticket issued before it never fills again; a new one does.
pub async fn invalidation_deletes_the_view_and_voids_older_tickets(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let old = cache.lookup(id).await.expect("lookup").ticket;
    assert!(cache.fill(&old, &view_of(id, "5.00", 1), TTL).await.expect("fill"));
    cache.invalidate(&[id]).await.expect("invalidate");
    let lookup = cache.lookup(id).await.expect("lookup");
    assert_eq!(lookup.view, None, "the view is gone");
    assert_ne!(lookup.ticket.generation, old.generation, "a new generation");
    assert!(!cache.fill(&old, &view_of(id, "5.00", 1), TTL).await.expect("fill"), "the old ticket is void");
    assert_eq!(cache.lookup(id).await.expect("lookup").view, None, "and stored nothing");
    assert!(cache.fill(&lookup.ticket, &view_of(id, "9.00", 2), TTL).await.expect("fill"), "the new one fills");
    view_of_like(id, "9.00", 2, &cache).await;
    cache.invalidate(&[]).await.expect("an empty invalidation is fine");
    cache.invalidate(&[AccountId::new(), AccountId::new()]).await.expect("unknown ids are fine");
}

/// The stored view of `id` if it has `posted` and `sequence` (for comparisons that ignore the
/// fresh account's random owner).
async fn view_of_like(id: AccountId, posted: &str, sequence: u64, cache: &Arc<dyn ViewCache>) -> CachedView {
    let view = cache.lookup(id).await.expect("lookup").view.expect("a view");
    assert_eq!(view.balance.posted, posted.parse::<Decimal>().expect("amount"));
    assert_eq!(view.balance.sequence, sequence);
    view
}

/// The race: a reader takes its ticket, reads the old balance, a posting commits and
/// invalidates, then the reader fills — refused, so nobody is served the pre-posting balance.
pub async fn a_fill_that_raced_an_invalidation_is_refused(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let reader = cache.lookup(id).await.expect("lookup").ticket;
    let read_before_the_posting = view_of(id, "10.00", 1);
    cache.invalidate(&[id]).await.expect("the posting's invalidation");
    assert!(!cache.fill(&reader, &read_before_the_posting, TTL).await.expect("fill"));
    assert_eq!(cache.lookup(id).await.expect("lookup").view, None);
    // Also when the view had been filled before the posting.
    let ticket = cache.lookup(id).await.expect("lookup").ticket;
    assert!(cache.fill(&ticket, &view_of(id, "20.00", 2), TTL).await.expect("fill"));
    let late = cache.lookup(id).await.expect("lookup").ticket;
    cache.invalidate(&[id]).await.expect("invalidate");
    assert!(!cache.fill(&late, &view_of(id, "20.00", 2), TTL).await.expect("fill"));
    assert_eq!(cache.lookup(id).await.expect("lookup").view, None);
}

/// Filling or invalidating one account leaves the others alone.
pub async fn accounts_are_independent(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let (a, b, c) = (AccountId::new(), AccountId::new(), AccountId::new());
    for id in [a, b, c] {
        let ticket = cache.lookup(id).await.expect("lookup").ticket;
        assert!(cache.fill(&ticket, &view_of(id, "3.00", 1), TTL).await.expect("fill"));
    }
    let b_ticket = cache.lookup(b).await.expect("lookup").ticket;
    cache.invalidate(&[a, c]).await.expect("invalidate");
    assert_eq!(cache.lookup(a).await.expect("a").view, None);
    assert_eq!(cache.lookup(c).await.expect("c").view, None);
    assert!(cache.lookup(b).await.expect("b").view.is_some(), "b keeps its view");
    assert!(cache.fill(&b_ticket, &view_of(b, "4.00", 2), TTL).await.expect("fill"), "and its generation");
}

/// A view is served for its TTL, then no more.
pub async fn views_expire_after_their_ttl(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let ticket = cache.lookup(id).await.expect("lookup").ticket;
    assert!(cache.fill(&ticket, &view_of(id, "1.00", 1), Duration::from_millis(300)).await.expect("fill"));
    assert!(cache.lookup(id).await.expect("lookup").view.is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(cache.lookup(id).await.expect("lookup").view, None, "expired");
}

/// A view for another account, a balance of another account, or a TTL of zero or past the
/// maximum: `InvalidInput`, and nothing stored.
pub async fn bad_fills_are_refused_and_store_nothing(harness: &dyn ViewCacheHarness) {
    let cache = harness.cache().await;
    let id = AccountId::new();
    let ticket = cache.lookup(id).await.expect("lookup").ticket;
    let other = view_of(AccountId::new(), "1.00", 1);
    let mut mixed = view_of(id, "1.00", 1);
    mixed.balance.account_id = AccountId::new();
    let good = view_of(id, "1.00", 1);
    let too_long = VIEW_TTL_MAX + Duration::from_secs(1);
    let empty = FillTicket { account: id, generation: String::new() };
    for (view, ttl, ticket) in [
        (&other, TTL, &ticket),
        (&mixed, TTL, &ticket),
        (&good, Duration::ZERO, &ticket),
        (&good, too_long, &ticket),
        (&good, TTL, &empty),
    ] {
        let refused = cache.fill(ticket, view, ttl).await;
        assert!(matches!(refused, Err(Error::InvalidInput(_))), "{refused:?}");
    }
    assert_eq!(cache.lookup(id).await.expect("lookup").view, None, "nothing stored");
    assert_eq!(cache.lookup(other.account.id).await.expect("lookup").view, None, "nothing stored");
}

/// A writer bumps a "database" version and invalidates, many readers look up, read the
/// version, and fill with it, all at once. Once the writer's last invalidation returned, no
/// reader can store an older version, and every view ever served was at least the version the
/// writer had finished invalidating before the lookup.
pub async fn concurrent_readers_never_leave_a_view_older_than_the_last_invalidation(harness: &dyn ViewCacheHarness) {
    const WRITES: u64 = 60;
    const READERS: usize = 6;
    let cache = harness.cache().await;
    let id = AccountId::new();
    // `committed`: the database; `invalidated`: versions whose invalidation returned.
    let committed = Arc::new(AtomicU64::new(0));
    let invalidated = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (cache, committed, invalidated, done) =
            (Arc::clone(&cache), Arc::clone(&committed), Arc::clone(&invalidated), Arc::clone(&done));
        readers.push(tokio::spawn(async move {
            let mut served = 0u64;
            while done.load(Ordering::SeqCst) == 0 {
                // An in-memory cache answers without ever suspending: yield, or the readers
                // would hold every worker thread (and the timer) forever.
                tokio::task::yield_now().await;
                let floor = invalidated.load(Ordering::SeqCst);
                let lookup = cache.lookup(id).await.expect("lookup");
                if let Some(view) = lookup.view {
                    assert!(
                        view.balance.sequence >= floor,
                        "served {} after {floor} was invalidated",
                        view.balance.sequence
                    );
                    served += 1;
                    continue;
                }
                let version = committed.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                cache.fill(&lookup.ticket, &view_of(id, "1.00", version), TTL).await.expect("fill");
            }
            served
        }));
    }
    for version in 1..=WRITES {
        committed.store(version, Ordering::SeqCst);
        cache.invalidate(&[id]).await.expect("invalidate");
        invalidated.store(version, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done.store(1, Ordering::SeqCst);
    for reader in readers {
        reader.await.expect("reader");
    }
    if let Some(view) = cache.lookup(id).await.expect("lookup").view {
        assert_eq!(view.balance.sequence, WRITES, "the view left is the last version");
    }
}
