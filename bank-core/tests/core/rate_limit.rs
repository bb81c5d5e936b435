//! The rate-limit suite on [`MemoryRateLimiter`], and [`FailOpen`] over a limiter that fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bank_core::ratelimit::{Decision, FailOpen, Quota, RateLimiter};
use bank_core::testkit::rate_limit::MemoryRateLimiterHarness;
use bank_core::{Error, Result};

mod rate_limit_conformance {
    use super::*;
    bank_core::rate_limit_conformance_tests!(MemoryRateLimiterHarness);
}

#[derive(Debug)]
struct Down;

#[async_trait]
impl RateLimiter for Down {
    async fn check(&self, _key: &str) -> Result<Decision> {
        Err(Error::Storage { message: "unreachable".into(), retryable: true })
    }
    fn quota(&self) -> Quota {
        Quota::new(1, Duration::from_secs(1), 1).expect("quota")
    }
}

#[tokio::test]
async fn a_failing_limiter_fails_open_and_counts() {
    let failures = Arc::new(AtomicU64::new(0));
    let limiter = FailOpen::new(Arc::new(Down), Arc::clone(&failures));
    for _ in 0..5 {
        assert_eq!(limiter.check("ip:192.0.2.1").await, Decision::Allowed);
    }
    assert_eq!(failures.load(Ordering::Relaxed), 5);
}

#[test]
fn quotas_refuse_nonsense() {
    assert!(Quota::new(0, Duration::from_secs(1), 1).is_err());
    assert!(Quota::new(1, Duration::ZERO, 1).is_err());
    assert!(Quota::new(1, Duration::from_secs(1), 0).is_err());
    assert!(Quota::new(u32::MAX, Duration::from_millis(1), 1).is_err(), "sub-microsecond interval");
    let quota = Quota::new(300, Duration::from_secs(60), 300).expect("login quota");
    assert_eq!(quota.interval(), Duration::from_millis(200));
    assert_eq!(quota.tolerance(), Duration::from_secs(60));
}
