//! Redis: the view-cache and rate-limit suites on a real Redis (`BANK_TEST_REDIS_URL`, a unique
//! key prefix per case), the TTLs that keep Redis bounded, and failure — Redis unreachable or
//! killed mid-test: views still answer from the store, limits fail open, both count it, and
//! both recover when Redis is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bank_aws::redis::testing::{PrivateRedis, client_at, free_port, test_client, unique_prefix};
use bank_aws::redis::{GENERATION_TTL, RedisRateLimiter, RedisViewCache};
use bank_core::account::NewAccount;
use bank_core::cache::{CachedLedger, VIEW_TTL_DEFAULT, ViewCache};
use bank_core::clock::{Clock, SystemClock};
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::memory::MemoryLedger;
use bank_core::memory::view_cache::MemoryViewCache;
use bank_core::money::Currency;
use bank_core::ports::LedgerStore;
use bank_core::ratelimit::{Decision, FailOpen, MemoryRateLimiter, Quota, RateLimiter};
use bank_core::testkit::fixtures::usd;
use bank_core::testkit::rate_limit::RateLimiterHarness;
use bank_core::testkit::view_cache::ViewCacheHarness;

/// A Redis cache per case; without Redis (services not required) the memory cache, so the case
/// passes vacuously after `test_client` printed why.
struct RedisCacheHarness;

#[async_trait]
impl ViewCacheHarness for RedisCacheHarness {
    async fn cache(&self) -> Arc<dyn ViewCache> {
        match test_client().await {
            Some(client) => Arc::new(RedisViewCache::new(client)),
            None => Arc::new(MemoryViewCache::default()),
        }
    }
}

mod view_cache_conformance {
    use super::*;
    bank_core::view_cache_conformance_tests!(RedisCacheHarness);
}

/// Two clients (two connections, as two processes) on one prefix.
struct RedisLimiterHarness;

#[async_trait]
impl RateLimiterHarness for RedisLimiterHarness {
    async fn pair(&self, quota: Quota) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) {
        match test_client().await {
            Some(first) => {
                let url = std::env::var("BANK_TEST_REDIS_URL").expect("set when test_client answered");
                let second = client_at(&url, first.prefix());
                (
                    Arc::new(RedisRateLimiter::new(first, "test", quota).expect("limiter")),
                    Arc::new(RedisRateLimiter::new(second, "test", quota).expect("limiter")),
                )
            }
            None => {
                let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(quota, Arc::new(SystemClock)));
                (Arc::clone(&limiter), limiter)
            }
        }
    }
}

mod rate_limit_conformance {
    use super::*;
    bank_core::rate_limit_conformance_tests!(RedisLimiterHarness);
}

/// The key's TTL in ms as Redis reports it (-1: none, -2: no key), on a connection of its own.
async fn pttl(key: &str) -> i64 {
    let url = std::env::var("BANK_TEST_REDIS_URL").expect("url");
    let raw = ::redis::Client::open(url.as_str()).expect("client");
    let mut conn = raw.get_multiplexed_async_connection().await.expect("connect");
    ::redis::cmd("PTTL").arg(key).query_async(&mut conn).await.expect("PTTL")
}

#[tokio::test]
async fn every_key_expires() {
    let Some(client) = test_client().await else { return };
    let cache = RedisViewCache::new(client.clone());
    let id = AccountId::new();
    cache.lookup(id).await.expect("lookup");
    let generation_ttl = pttl(&cache.generation_key(id)).await;
    assert!(generation_ttl > 0 && generation_ttl <= i64::try_from(GENERATION_TTL.as_millis()).expect("ms"));
    let ledger_clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = MemoryLedger::new(Arc::clone(&ledger_clock));
    let account =
        ledger.open_account(NewAccount::customer(CustomerId::new(), "Keys", Currency::Usd)).await.expect("open");
    let ticket = cache.lookup(account.id).await.expect("lookup").ticket;
    let view = bank_core::cache::CachedView {
        balance: ledger.balance(account.id).await.expect("balance"),
        account,
        valid_until: ledger_clock.now() + chrono::TimeDelta::seconds(5),
    };
    assert!(cache.fill(&ticket, &view, Duration::from_secs(5)).await.expect("fill"));
    let view_ttl = pttl(&cache.view_key(view.account.id)).await;
    assert!(view_ttl > 0 && view_ttl <= 5_000, "{view_ttl}");

    let quota = Quota::new(1, Duration::from_secs(2), 3).expect("quota");
    let limiter = RedisRateLimiter::new(client.clone(), "ttl", quota).expect("limiter");
    assert_eq!(limiter.check("ip:192.0.2.7").await.expect("check"), Decision::Allowed);
    let limit_ttl = pttl(&limiter.redis_key("ip:192.0.2.7")).await;
    assert!(limit_ttl > 0 && limit_ttl <= 2_000, "one interval ahead at most after one request: {limit_ttl}");
}

fn dec(text: &str) -> rust_decimal::Decimal {
    text.parse().expect("a decimal")
}

/// A ledger with one funded account behind a cached ledger on `cache`.
async fn cached_ledger(cache: Arc<dyn ViewCache>) -> (CachedLedger, AccountId) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::clone(&clock)));
    let bank = store
        .open_account(NewAccount::internal(
            CustomerId::new(),
            "settlement",
            Currency::Usd,
            bank_core::account::AccountKind::Settlement,
        ))
        .await
        .expect("open");
    let alice =
        store.open_account(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd)).await.expect("open");
    let deposit = NewEntry::transfer(EntryKey::new(TransferId::new(), 0), bank.id, alice.id, usd("12.00"), "deposit")
        .expect("entry");
    store.post(deposit).await.expect("deposit");
    (CachedLedger::new(store, cache, clock, VIEW_TTL_DEFAULT), alice.id)
}

#[tokio::test]
async fn unreachable_redis_views_still_answer_quickly_and_limits_fail_open() {
    // Nothing listens on this port: every call fails at once (connection refused).
    let client = client_at(&format!("redis://127.0.0.1:{}", free_port()), &unique_prefix());
    let (ledger, alice) = cached_ledger(Arc::new(RedisViewCache::new(client.clone()))).await;
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(ledger.balance(alice).await.expect("a view without Redis").posted, dec("12.00"));
    }
    assert!(started.elapsed() < Duration::from_secs(3), "each read waits at most the timeout: {:?}", started.elapsed());
    assert_eq!(ledger.stats().snapshot().errors, 5);

    let failures = Arc::new(AtomicU64::new(0));
    let quota = Quota::new(1, Duration::from_secs(60), 1).expect("quota");
    let limiter = FailOpen::new(
        Arc::new(RedisRateLimiter::new(client, "per_ip", quota).expect("limiter")),
        Arc::clone(&failures),
    );
    for _ in 0..3 {
        assert_eq!(limiter.check("ip:192.0.2.1").await, Decision::Allowed, "fails open");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn redis_killed_mid_test_views_answer_limits_fail_open_and_both_recover() {
    let Some(mut server) = PrivateRedis::start().await else { return };
    let client = client_at(&server.url(), &unique_prefix());
    let (ledger, alice) = cached_ledger(Arc::new(RedisViewCache::new(client.clone()))).await;
    let failures = Arc::new(AtomicU64::new(0));
    let quota = Quota::new(1, Duration::from_secs(60), 2).expect("quota");
    let limiter = FailOpen::new(
        Arc::new(RedisRateLimiter::new(client.clone(), "per_ip", quota).expect("limiter")),
        Arc::clone(&failures),
    );

    ledger.balance(alice).await.expect("fill");
    ledger.balance(alice).await.expect("hit");
    assert_eq!(ledger.stats().snapshot().hits, 1);
    assert_eq!(limiter.check("ip:a").await, Decision::Allowed);
    assert_eq!(limiter.check("ip:a").await, Decision::Allowed);
    assert!(matches!(limiter.check("ip:a").await, Decision::Limited { .. }), "the limit holds while Redis is up");

    server.kill();
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(ledger.balance(alice).await.expect("views still answer").posted, dec("12.00"));
        assert_eq!(limiter.check("ip:a").await, Decision::Allowed, "limits fail open");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(ledger.stats().snapshot().errors >= 3);
    assert_eq!(failures.load(Ordering::Relaxed), 3);

    // Back on the same port (empty: no persistence): the same clients reconnect by themselves.
    let _server = PrivateRedis::start_on(server.port()).await.expect("restart");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the client did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = ledger.stats().snapshot();
    ledger.balance(alice).await.expect("fill again");
    ledger.balance(alice).await.expect("hit again");
    let after = ledger.stats().snapshot();
    assert_eq!((after.hits - before.hits, after.errors - before.errors), (1, 0), "{before:?} → {after:?}");
    assert_eq!(limiter.check("ip:b").await, Decision::Allowed);
    assert_eq!(failures.load(Ordering::Relaxed), 3, "no failure once Redis is back");
}

#[tokio::test]
async fn a_posting_in_one_process_invalidates_the_view_another_process_cached() {
    let Some(first) = test_client().await else { return };
    let url = std::env::var("BANK_TEST_REDIS_URL").expect("url");
    let second = client_at(&url, first.prefix());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::clone(&clock)));
    let api = CachedLedger::new(
        Arc::clone(&store),
        Arc::new(RedisViewCache::new(first)),
        Arc::clone(&clock),
        VIEW_TTL_DEFAULT,
    );
    let worker = CachedLedger::new(store, Arc::new(RedisViewCache::new(second)), clock, VIEW_TTL_DEFAULT);
    let bank = worker
        .open_account(NewAccount::internal(
            CustomerId::new(),
            "s",
            Currency::Usd,
            bank_core::account::AccountKind::Settlement,
        ))
        .await
        .expect("open");
    let alice = worker.open_account(NewAccount::customer(CustomerId::new(), "A", Currency::Usd)).await.expect("open");
    for (i, expected) in ["1.00", "2.00", "3.00"].into_iter().enumerate() {
        let entry =
            NewEntry::transfer(EntryKey::new(TransferId::new(), 0), bank.id, alice.id, usd("1.00"), "d").expect("e");
        worker.post(entry).await.expect("post");
        assert_eq!(api.balance(alice.id).await.expect("read").posted, dec(expected), "after posting {i}");
        assert_eq!(api.balance(alice.id).await.expect("read").posted, dec(expected), "cached");
    }
    let stats = api.stats().snapshot();
    assert_eq!((stats.hits, stats.misses, stats.errors), (3, 3, 0), "{stats:?}");
}

/// Cached account reads per second (run by hand: `cargo test -p bank-aws --features testkit
/// --test aws cached_account_reads -- --ignored --nocapture`): `account` + `balance` of random
/// accounts of [`MemoryLedger`]'s 1,000, by 64 concurrent callers, through no cache, the memory
/// cache and Redis. After the first pass every view is a hit (nothing writes): two cache round
/// trips per view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check"]
async fn cached_account_reads_per_second() {
    const ACCOUNTS: usize = 1_000;
    const CALLERS: usize = 64;
    const VIEWS_PER_CALLER: usize = 500;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::clone(&clock)));
    let mut ids = Vec::with_capacity(ACCOUNTS);
    for i in 0..ACCOUNTS {
        let new = NewAccount::customer(CustomerId::new(), format!("a{i}"), Currency::Usd);
        ids.push(store.open_account(new).await.expect("open").id);
    }
    let ids = Arc::new(ids);
    let mut cases: Vec<(&str, Arc<dyn LedgerStore>)> = vec![("memory ledger, no cache", Arc::clone(&store))];
    let cached = |cache: Arc<dyn ViewCache>| -> Arc<dyn LedgerStore> {
        Arc::new(CachedLedger::new(Arc::clone(&store), cache, Arc::clone(&clock), bank_core::cache::VIEW_TTL_MAX))
    };
    cases.push(("memory cache", cached(Arc::new(MemoryViewCache::default()))));
    if let Some(client) = test_client().await {
        cases.push(("redis cache", cached(Arc::new(RedisViewCache::new(client)))));
    }
    for (name, ledger) in cases {
        for pass in ["fill", "hits"] {
            let started = Instant::now();
            let tasks: Vec<_> = (0..CALLERS)
                .map(|caller| {
                    let (ledger, ids) = (Arc::clone(&ledger), Arc::clone(&ids));
                    tokio::spawn(async move {
                        for i in 0..VIEWS_PER_CALLER {
                            let id = ids[(caller * 7_919 + i * 104_729) % ids.len()];
                            ledger.account(id).await.expect("account");
                            ledger.balance(id).await.expect("balance");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("caller");
            }
            let elapsed = started.elapsed();
            let views = u32::try_from(CALLERS * VIEWS_PER_CALLER).expect("fits");
            println!(
                "{name} ({pass}): {views} views in {elapsed:.2?}: {:.0} views/s",
                f64::from(views) / elapsed.as_secs_f64()
            );
        }
    }
}
