//! The HTTP layer's rate limits: per client IP, per IP on login and registration, per
//! authenticated subject. Each is a [`RateLimiter`] port (GCRA) behind [`FailOpen`]:
//!
//! - in one process, [`RateLimiters::local`]: `governor` keyed limiters, each bounded (past
//!   [`RATE_LIMIT_KEYS_MAX`] keys the ones whose bucket is full again are forgotten);
//! - across several API processes, shared limiters (Redis: `bank_aws::redis::RedisRateLimiter`)
//!   passed in through [`RateLimiters`], so a limit holds whichever process a client reaches.
//!
//! A limiter that fails (a shared store down) lets the request through — a limit never turns a
//! request into a 5xx — counts it (`rate_limiter_failures` on `/metrics`) and warns at most every
//! [`bank_core::cache::WARN_EVERY`].

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bank_core::ids::CustomerId;
use bank_core::ratelimit::{Decision, FailOpen, Quota, RateLimiter};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, RateLimiter as Governor};

use super::{HttpConfig, RATE_LIMIT_KEYS_MAX, RateLimit};

/// Checks between two looks at a limiter's size.
const SWEEP_EVERY_CHECKS: u64 = 1024;

/// One keyed in-process limiter.
pub(crate) struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(limit: RateLimit) -> Self {
        Keyed { limiter: Governor::keyed(governor_quota(limit)), checks: AtomicU64::new(0) }
    }

    /// `Ok` if `key` may make a request now, else the seconds to wait (at least 1).
    pub(crate) fn check(&self, key: &K) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY_CHECKS)
            && self.limiter.len() > RATE_LIMIT_KEYS_MAX
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

fn governor_quota(limit: RateLimit) -> governor::Quota {
    let requests = limit.requests.max(1);
    let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let period = (limit.per / requests).max(Duration::from_nanos(1));
    // `with_period` refuses only a zero period, which `max` above rules out.
    governor::Quota::with_period(period)
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// `limit` as the port's quota (zero requests or burst count as one, as in-process; a period
/// too short for a microsecond interval as one request per microsecond).
pub fn quota(limit: RateLimit) -> Quota {
    let requests = limit.requests.max(1);
    let per = limit.per.max(Duration::from_micros(u64::from(requests)));
    Quota::new(requests, per, limit.burst.max(1)).unwrap_or_else(|_| {
        // Unreachable by the clamps above; the mildest quota if it ever were.
        Quota::new(1, Duration::from_micros(1), 1).unwrap_or_else(|_| unreachable!("a 1 µs quota is valid"))
    })
}

/// The in-process limiter as the port (never fails).
struct LocalLimiter {
    keyed: Keyed<String>,
    quota: Quota,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter").field("quota", &self.quota).finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, key: &str) -> bank_core::Result<Decision> {
        Ok(match self.keyed.check(&key.to_owned()) {
            Ok(()) => Decision::Allowed,
            Err(secs) => Decision::Limited { retry_after: Duration::from_secs(secs) },
        })
    }

    fn quota(&self) -> Quota {
        self.quota
    }
}

/// The three limiters a server checks, by name: `per_ip`, `login_per_ip`, `per_subject`.
#[derive(Debug, Clone)]
pub struct RateLimiters {
    /// Per client IP, on every route but health and metrics.
    pub per_ip: Arc<dyn RateLimiter>,
    /// Per client IP on login and registration.
    pub login_per_ip: Arc<dyn RateLimiter>,
    /// Per authenticated subject.
    pub per_subject: Arc<dyn RateLimiter>,
}

impl RateLimiters {
    /// In-process limiters with the quotas of `config`: one process's budget.
    pub fn local(config: &HttpConfig) -> Self {
        let local = |limit: RateLimit| -> Arc<dyn RateLimiter> {
            Arc::new(LocalLimiter { keyed: Keyed::new(limit), quota: quota(limit) })
        };
        RateLimiters {
            per_ip: local(config.rate_per_ip),
            login_per_ip: local(config.login_rate_per_ip),
            per_subject: local(config.rate_per_subject),
        }
    }

    /// Limiters made by `make(name, quota)` with the quotas of `config` (shared ones: `make`
    /// builds e.g. a `RedisRateLimiter` named `name`).
    pub fn build<E>(
        config: &HttpConfig,
        mut make: impl FnMut(&str, Quota) -> Result<Arc<dyn RateLimiter>, E>,
    ) -> Result<Self, E> {
        Ok(RateLimiters {
            per_ip: make("per_ip", quota(config.rate_per_ip))?,
            login_per_ip: make("login_per_ip", quota(config.login_rate_per_ip))?,
            per_subject: make("per_subject", quota(config.rate_per_subject))?,
        })
    }
}

/// The limiters of one server, failing open.
pub(crate) struct Limits {
    per_ip: FailOpen,
    login_per_ip: FailOpen,
    per_subject: FailOpen,
    failures: Arc<AtomicU64>,
}

impl Limits {
    pub(crate) fn new(limiters: RateLimiters) -> Self {
        let failures = Arc::new(AtomicU64::new(0));
        Limits {
            per_ip: FailOpen::new(limiters.per_ip, Arc::clone(&failures)),
            login_per_ip: FailOpen::new(limiters.login_per_ip, Arc::clone(&failures)),
            per_subject: FailOpen::new(limiters.per_subject, Arc::clone(&failures)),
            failures,
        }
    }

    /// `Err(Retry-After seconds)` if `ip` is over its limit.
    pub(crate) async fn per_ip(&self, ip: &IpAddr) -> Result<(), u64> {
        self.per_ip.check(&ip.to_string()).await.into_retry_after_secs()
    }

    /// `Err(Retry-After seconds)` if `ip` is over its login limit.
    pub(crate) async fn login_per_ip(&self, ip: &IpAddr) -> Result<(), u64> {
        self.login_per_ip.check(&ip.to_string()).await.into_retry_after_secs()
    }

    /// `Err(Retry-After seconds)` if `subject` is over its limit.
    pub(crate) async fn per_subject(&self, subject: &CustomerId) -> Result<(), u64> {
        self.per_subject.check(&subject.to_string()).await.into_retry_after_secs()
    }

    /// Checks let through because a limiter failed, since start.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let keyed = Keyed::new(RateLimit::per_minute(2, 2));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(keyed.check(&ip).is_ok());
        assert!(keyed.check(&ip).is_ok());
        let wait = keyed.check(&ip).expect_err("third is refused");
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(keyed.check(&other).is_ok(), "keys are independent");
    }

    #[derive(Debug)]
    struct Down;

    #[async_trait]
    impl RateLimiter for Down {
        async fn check(&self, _key: &str) -> bank_core::Result<Decision> {
            Err(bank_core::Error::Storage { message: "redis: connection refused".into(), retryable: true })
        }
        fn quota(&self) -> Quota {
            quota(RateLimit::per_second(1, 1))
        }
    }

    #[tokio::test]
    async fn local_limits_refuse_with_retry_after_and_failing_ones_let_through_and_count() {
        let config = HttpConfig { rate_per_ip: RateLimit::per_minute(1, 1), ..HttpConfig::default() };
        let local = Limits::new(RateLimiters::local(&config));
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        assert_eq!(local.per_ip(&ip).await, Ok(()));
        let wait = local.per_ip(&ip).await.expect_err("limited");
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(local.failures(), 0);

        let down = Limits::new(
            RateLimiters::build(&config, |_, _| Ok::<_, ()>(Arc::new(Down) as Arc<dyn RateLimiter>)).expect("build"),
        );
        for _ in 0..3 {
            assert_eq!(down.per_ip(&ip).await, Ok(()), "fails open");
        }
        assert_eq!(down.per_subject(&CustomerId::new()).await, Ok(()));
        assert_eq!(down.failures(), 4);
    }

    #[test]
    fn quotas_match_the_configured_limits() {
        let q = quota(RateLimit::per_minute(300, 300));
        assert_eq!((q.interval(), q.burst()), (Duration::from_millis(200), 300));
        let q = quota(RateLimit { requests: 0, per: Duration::ZERO, burst: 0 });
        assert_eq!(q.burst(), 1);
    }
}
