//! Rate limiters (GCRA, `governor`) keyed by client IP or by subject, each bounded: past
//! [`RATE_LIMIT_KEYS_MAX`] keys the ones whose bucket is full again are forgotten.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank_core::ids::CustomerId;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{HttpConfig, RATE_LIMIT_KEYS_MAX, RateLimit};

/// Checks between two looks at a limiter's size.
const SWEEP_EVERY_CHECKS: u64 = 1024;

/// One keyed limiter.
pub(crate) struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(limit: RateLimit) -> Self {
        Keyed { limiter: RateLimiter::keyed(quota(limit)), checks: AtomicU64::new(0) }
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

fn quota(limit: RateLimit) -> Quota {
    let requests = limit.requests.max(1);
    let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let period = (limit.per / requests).max(Duration::from_nanos(1));
    // `with_period` refuses only a zero period, which `max` above rules out.
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

/// The limiters of one server.
pub(crate) struct Limits {
    pub(crate) per_ip: Keyed<IpAddr>,
    pub(crate) login_per_ip: Keyed<IpAddr>,
    pub(crate) per_subject: Keyed<CustomerId>,
}

impl Limits {
    pub(crate) fn new(config: &HttpConfig) -> Self {
        Limits {
            per_ip: Keyed::new(config.rate_per_ip),
            login_per_ip: Keyed::new(config.login_rate_per_ip),
            per_subject: Keyed::new(config.rate_per_subject),
        }
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
}
