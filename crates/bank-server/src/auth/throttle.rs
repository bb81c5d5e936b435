//! Failed-login counters: fixed windows per key (an account's email, or a client IP), in one
//! bounded map.
//!
//! A key with `limit` failures inside its window is refused until the window ends. Time comes from
//! the injected clock, so tests need no sleeps.

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
