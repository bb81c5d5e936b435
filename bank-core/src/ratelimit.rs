//! Rate limits as a port: [`RateLimiter`] (GCRA, one quota per limiter, keyed by a string the
//! caller builds: a client IP, a user id), [`MemoryRateLimiter`] for one process, and
//! [`FailOpen`], which turns a limiter that fails (a shared store that is down) into one that
//! allows, counts and warns — a limiter must never turn a request into a 5xx.
//!
//! # The algorithm: GCRA
//! The generic cell rate algorithm keeps one instant per key, the *theoretical arrival time*
//! (TAT): a request at `now` is allowed if `max(TAT, now) + interval − now ≤ interval × burst`,
//! and moves the TAT there. It is a token bucket of `burst` tokens refilled one per `interval`,
//! stored as a single number: no window boundary where twice the rate gets through (the flaw of
//! fixed windows), no per-request log (the cost of sliding logs), and a key whose TAT has passed
//! holds nothing, so shared stores can let it expire. It is also what the server's in-process
//! limiter (`governor`) implements, so the local and the shared limits behave alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::cache::WarnEvery;
use crate::clock::Clock;
use crate::error::{Error, Result};

/// Longest key a limiter accepts (bytes).
pub const RATE_KEY_LEN_MAX: usize = 200;

/// Keys a [`MemoryRateLimiter`] tracks at most; past that, keys whose bucket is full again are
/// forgotten first, then new keys are refused a slot (and allowed: they have no history).
pub const MEMORY_RATE_KEYS_MAX: usize = 100_000;

/// `burst` requests at once, then one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval: Duration,
    burst: u32,
}

impl Quota {
    /// `requests` per `per`, with bursts of up to `burst`. `requests`, `burst` and `per` must be
    /// positive, and the interval (`per / requests`) at least a microsecond.
    pub fn new(requests: u32, per: Duration, burst: u32) -> Result<Quota> {
        if requests == 0 || burst == 0 || per.is_zero() {
            return Err(Error::InvalidInput("a quota needs positive requests, burst and period".into()));
        }
        let interval = per / requests;
        if interval < Duration::from_micros(1) {
            return Err(Error::InvalidInput("a quota's interval (period / requests) must be at least 1 µs".into()));
        }
        Ok(Quota { interval, burst })
    }

    /// The time one request "costs".
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Requests allowed at once after a quiet period.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// `interval × burst`: how far ahead of now the TAT may run.
    pub fn tolerance(&self) -> Duration {
        self.interval.saturating_mul(self.burst)
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead (the request was counted).
    Allowed,
    /// Refused (and not counted); the next request is allowed after `retry_after`.
    Limited {
        /// How long to wait.
        retry_after: Duration,
    },
}

impl Decision {
    /// `Err(seconds to wait, rounded up, at least 1)` when limited: what `Retry-After` says.
    pub fn into_retry_after_secs(self) -> std::result::Result<(), u64> {
        match self {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => {
                Err((retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1))
            }
        }
    }
}

/// A keyed rate limit with one quota.
///
/// # Contract
/// - `check(key)` decides by GCRA on `key`'s history under [`RateLimiter::quota`]: after a quiet
///   period `burst` checks in a row are allowed and the next one is limited with a `retry_after`
///   in `(0, interval]`; a limited check is not counted.
/// - Keys are independent; a key is 1 to [`RATE_KEY_LEN_MAX`] bytes, else `InvalidInput`.
/// - A limiter on a shared store gives all its instances (all processes) one budget per key.
/// - A store that cannot be reached answers a retryable `Storage` error quickly (a bounded
///   timeout); wrap the limiter in [`FailOpen`] to let requests through then.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug + 'static {
    /// Counts a request of `key` if the quota allows it.
    async fn check(&self, key: &str) -> Result<Decision>;

    /// The quota.
    fn quota(&self) -> Quota;
}

/// Checks a rate-limit key (shared by the adapters).
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > RATE_KEY_LEN_MAX {
        return Err(Error::InvalidInput(format!("a rate-limit key has 1 to {RATE_KEY_LEN_MAX} bytes")));
    }
    Ok(())
}

/// A limiter that lets requests through when its inner limiter fails, counting the failures and
/// warning at most once per [`crate::cache::WARN_EVERY`].
#[derive(Debug)]
pub struct FailOpen {
    inner: Arc<dyn RateLimiter>,
    failures: Arc<AtomicU64>,
    warn: WarnEvery,
}

impl FailOpen {
    /// `inner`, failing open; `failures` counts the checks let through because `inner` failed
    /// (share one counter among limiters for one metric).
    pub fn new(inner: Arc<dyn RateLimiter>, failures: Arc<AtomicU64>) -> Self {
        FailOpen { inner, failures, warn: WarnEvery::default() }
    }

    /// The inner limiter's decision, or `Allowed` when it failed.
    pub async fn check(&self, key: &str) -> Decision {
        match self.inner.check(key).await {
            Ok(decision) => decision,
            Err(err) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(held_back) = self.warn.due() {
                    tracing::warn!(error = %err, held_back, "rate limiter failed; letting the request through");
                }
                Decision::Allowed
            }
        }
    }

    /// The inner limiter.
    pub fn inner(&self) -> &Arc<dyn RateLimiter> {
        &self.inner
    }
}

/// GCRA in one process, on the injected clock. See the module doc.
#[derive(Debug)]
pub struct MemoryRateLimiter {
    quota: Quota,
    clock: Arc<dyn Clock>,
    tats: Mutex<FxHashMap<String, DateTime<Utc>>>,
}

impl MemoryRateLimiter {
    /// A limiter with `quota` reading time from `clock`.
    pub fn new(quota: Quota, clock: Arc<dyn Clock>) -> Self {
        MemoryRateLimiter { quota, clock, tats: Mutex::new(FxHashMap::default()) }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.tats.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str) -> Result<Decision> {
        check_key(key)?;
        let now = self.clock.now();
        let (interval, tolerance) = (delta(self.quota.interval), delta(self.quota.tolerance()));
        let mut tats = self.tats.lock();
        if tats.len() >= MEMORY_RATE_KEYS_MAX && !tats.contains_key(key) {
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= MEMORY_RATE_KEYS_MAX {
                return Ok(Decision::Allowed);
            }
        }
        let tat = tats.get(key).copied().filter(|tat| *tat > now).unwrap_or(now);
        let new_tat = tat + interval;
        let excess = new_tat - now - tolerance;
        if excess > TimeDelta::zero() {
            return Ok(Decision::Limited { retry_after: excess.to_std().unwrap_or(self.quota.interval) });
        }
        tats.insert(key.to_owned(), new_tat);
        Ok(Decision::Allowed)
    }

    fn quota(&self) -> Quota {
        self.quota
    }
}
