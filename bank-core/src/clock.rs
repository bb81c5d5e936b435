//! Time, as a port: the system clock in production, a manual clock in tests and simulations.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;

/// Where the current time comes from.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: deterministic tests and virtual-time simulations.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock { now: Arc::new(Mutex::new(start)) }
    }

    /// A clock at 2026-01-01T00:00:00Z.
    pub fn at_epoch() -> Self {
        ManualClock::new(DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }

    /// Moves the clock forward by `delta` (a negative delta is ignored: time never runs back).
    pub fn advance(&self, delta: TimeDelta) {
        if delta > TimeDelta::zero() {
            *self.now.lock() += delta;
        }
    }

    /// Sets the time, if it is not earlier than the current one.
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.lock();
        if to > *now {
            *now = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock()
    }
}
