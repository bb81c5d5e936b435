//! [`WarnEvery`]: at most one warning per interval for a failure that can repeat on every
//! request (a cache or a shared limiter that is down), with the count of the ones it held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a repeated failure warns at most.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Rate-limits one warning.
#[derive(Debug)]
pub struct WarnEvery {
    start: Instant,
    every: Duration,
    /// Milliseconds since `start` of the last warning, plus one (0: never warned).
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Default for WarnEvery {
    fn default() -> Self {
        WarnEvery::new(WARN_EVERY)
    }
}

impl WarnEvery {
    /// At most one warning per `every`.
    pub fn new(every: Duration) -> Self {
        WarnEvery { start: Instant::now(), every, last_ms: AtomicU64::new(0), held_back: AtomicU64::new(0) }
    }

    /// `Some(held back since the last one)` when the caller should warn now, else `None` (and
    /// the occurrence is counted for the next warning).
    pub fn due(&self) -> Option<u64> {
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let every_ms = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= every_ms)
            && self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_interval_and_counts_the_rest() {
        let warn = WarnEvery::new(Duration::from_millis(50));
        assert_eq!(warn.due(), Some(0));
        assert_eq!(warn.due(), None);
        assert_eq!(warn.due(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(warn.due(), Some(2), "the next warning says how many were held back");
    }
}
