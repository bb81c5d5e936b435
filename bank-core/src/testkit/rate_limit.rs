//! The [`RateLimiter`] conformance suite: GCRA bursts and refill, independent keys, limited
//! checks not counted, exactly `burst` of many concurrent checks, one budget shared by two
//! limiter instances on one store, bad keys refused. Real time (short intervals), so a shared
//! store's own clock can decide.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::SystemClock;
use crate::error::Error;
use crate::ids::CustomerId;
use crate::ratelimit::{Decision, MemoryRateLimiter, Quota, RATE_KEY_LEN_MAX, RateLimiter};

/// How to build limiters for one test case.
#[async_trait]
pub trait RateLimiterHarness: Send + Sync {
    /// Two limiter instances with `quota` on one fresh store (for a shared store: two clients,
    /// as two processes would have), sharing nothing with other cases.
    async fn pair(&self, quota: Quota) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>);
}

/// Expands to one `#[tokio::test]` per [`RateLimiter`] conformance case.
#[macro_export]
macro_rules! rate_limit_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(rate_limit, $harness;
            a_burst_is_allowed_then_limited_with_a_wait,
            keys_are_independent,
            the_budget_refills_over_time,
            limited_checks_are_not_counted,
            two_instances_on_one_store_share_the_budget,
            concurrent_checks_allow_exactly_the_burst,
            bad_keys_are_refused,
        );
    };
}

/// The harness for [`MemoryRateLimiter`]: "two instances" are one (a process shares its memory).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryRateLimiterHarness;

#[async_trait]
impl RateLimiterHarness for MemoryRateLimiterHarness {
    async fn pair(&self, quota: Quota) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) {
        let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(quota, Arc::new(SystemClock)));
        (Arc::clone(&limiter), limiter)
    }
}

fn key() -> String {
    format!("client:{}", CustomerId::new())
}

fn quota(requests: u32, per: Duration, burst: u32) -> Quota {
    Quota::new(requests, per, burst).expect("a valid quota")
}

async fn allowed(limiter: &Arc<dyn RateLimiter>, key: &str) -> bool {
    matches!(limiter.check(key).await.expect("check"), Decision::Allowed)
}

/// After a quiet period `burst` checks pass; the next is limited for at most one interval.
pub async fn a_burst_is_allowed_then_limited_with_a_wait(harness: &dyn RateLimiterHarness) {
    let (limiter, _) = harness.pair(quota(1, Duration::from_secs(10), 3)).await;
    let key = key();
    for i in 0..3 {
        assert!(allowed(&limiter, &key).await, "request {i} of the burst");
    }
    match limiter.check(&key).await.expect("check") {
        Decision::Limited { retry_after } => {
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(10), "{retry_after:?}");
            let secs = Decision::Limited { retry_after }.into_retry_after_secs().expect_err("limited");
            assert!((1..=10).contains(&secs), "Retry-After {secs}");
        }
        Decision::Allowed => panic!("the request past the burst must be limited"),
    }
}

/// One key's budget does not touch another's.
pub async fn keys_are_independent(harness: &dyn RateLimiterHarness) {
    let (limiter, _) = harness.pair(quota(1, Duration::from_secs(60), 1)).await;
    let (a, b) = (key(), key());
    assert!(allowed(&limiter, &a).await);
    assert!(!allowed(&limiter, &a).await);
    assert!(allowed(&limiter, &b).await, "b has its own budget");
}

/// One request per interval comes back.
pub async fn the_budget_refills_over_time(harness: &dyn RateLimiterHarness) {
    let (limiter, _) = harness.pair(quota(4, Duration::from_secs(1), 1)).await;
    let key = key();
    assert!(allowed(&limiter, &key).await);
    assert!(!allowed(&limiter, &key).await, "interval not over");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(allowed(&limiter, &key).await, "one interval (250 ms) later");
}

/// Hammering while limited does not push the next allowed request further away.
pub async fn limited_checks_are_not_counted(harness: &dyn RateLimiterHarness) {
    let (limiter, _) = harness.pair(quota(4, Duration::from_secs(1), 1)).await;
    let key = key();
    assert!(allowed(&limiter, &key).await);
    for _ in 0..20 {
        assert!(!allowed(&limiter, &key).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(allowed(&limiter, &key).await, "the refused checks cost nothing");
}

/// Two instances (two processes) draw from one budget per key.
pub async fn two_instances_on_one_store_share_the_budget(harness: &dyn RateLimiterHarness) {
    let (first, second) = harness.pair(quota(1, Duration::from_secs(60), 4)).await;
    let key = key();
    for limiter in [&first, &second, &first, &second] {
        assert!(allowed(limiter, &key).await);
    }
    assert!(!allowed(&first, &key).await, "the burst of 4 is used up across both");
    assert!(!allowed(&second, &key).await, "for both");
}

/// Of many checks at once, exactly `burst` pass.
pub async fn concurrent_checks_allow_exactly_the_burst(harness: &dyn RateLimiterHarness) {
    let (first, second) = harness.pair(quota(1, Duration::from_secs(60), 10)).await;
    let key = Arc::new(key());
    let mut tasks = Vec::new();
    for i in 0..60 {
        let limiter = if i % 2 == 0 { Arc::clone(&first) } else { Arc::clone(&second) };
        let key = Arc::clone(&key);
        tasks.push(tokio::spawn(async move { allowed(&limiter, &key).await }));
    }
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.expect("task"));
    }
    assert_eq!(passed, 10);
}

/// Empty or overlong keys: `InvalidInput`.
pub async fn bad_keys_are_refused(harness: &dyn RateLimiterHarness) {
    let (limiter, _) = harness.pair(quota(1, Duration::from_secs(1), 1)).await;
    for bad in [String::new(), "k".repeat(RATE_KEY_LEN_MAX + 1)] {
        assert!(matches!(limiter.check(&bad).await, Err(Error::InvalidInput(_))));
    }
    assert!(allowed(&limiter, &"k".repeat(RATE_KEY_LEN_MAX)).await, "the longest key is fine");
}
