//! Failed-login counters: fixed windows per key (an account's email, an (IP, account) pair, or a
//! client IP), in one bounded map per kind of key.
//!
//! A key with `limit` failures inside its window is refused until the window ends. Only failures
//! are counted: a successful login never fills a window. Which counters a login consults, and
//! why one client cannot lock out the others behind the same IP, is the policy of
//! [`super::issuer`]. Time comes from the injected clock, so tests need no sleeps.

use std::sync::Arc;

use bank_core::clock::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// Keys tracked at most; past that, expired windows are dropped, then the oldest.
pub const THROTTLE_KEYS_MAX: usize = 100_000;

/// Counts failures per key in fixed windows.
#[derive(Debug)]
pub struct FailureThrottle {
    limit: u32,
    window: TimeDelta,
    clock: Arc<dyn Clock>,
    windows: Mutex<FxHashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: DateTime<Utc>,
    failures: u32,
}

impl FailureThrottle {
    /// At most `limit` failures per `window`.
    pub fn new(limit: u32, window: TimeDelta, clock: Arc<dyn Clock>) -> Self {
        FailureThrottle { limit, window, clock, windows: Mutex::new(FxHashMap::default()) }
    }

    /// `Err(retry_after_secs)` if `key` used up its failures in the current window.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = self.clock.now();
        let windows = self.windows.lock();
        match windows.get(key) {
            Some(w) if w.failures >= self.limit && now < w.started + self.window => {
                let left = (w.started + self.window - now).num_seconds().max(1);
                Err(u64::try_from(left).unwrap_or(1))
            }
            _ => Ok(()),
        }
    }

    /// The failures of `key` in its current window (0 once the window ended).
    pub fn failures(&self, key: &str) -> u32 {
        let now = self.clock.now();
        self.windows.lock().get(key).filter(|w| now < w.started + self.window).map_or(0, |w| w.failures)
    }

    /// Counts one failure of `key`.
    pub fn fail(&self, key: &str) {
        let now = self.clock.now();
        let mut windows = self.windows.lock();
        if windows.len() >= THROTTLE_KEYS_MAX && !windows.contains_key(key) {
            windows.retain(|_, w| now < w.started + self.window);
            if windows.len() >= THROTTLE_KEYS_MAX
                && let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| k.clone())
            {
                windows.remove(&oldest);
            }
        }
        let window = windows.entry(key.to_owned()).or_insert(Window { started: now, failures: 0 });
        if now >= window.started + self.window {
            *window = Window { started: now, failures: 0 };
        }
        window.failures = window.failures.saturating_add(1);
    }

    /// Forgets `key`'s failures (after a successful login).
    pub fn reset(&self, key: &str) {
        self.windows.lock().remove(key);
    }
}
