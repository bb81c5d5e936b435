//! A per-rail circuit breaker: closed → open after consecutive failures → half-open after a
//! pause, where a few trial calls decide between closed and open again.
//!
//! While open, callers do not call the rail at all; they get the time to try again and leave the
//! transfer `pending` until then. What counts as a failure is the caller's choice: the worker
//! counts `Unavailable` and `Timeout`, and counts a definite rejection as a success (the rail
//! answered).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;

use crate::clock::Clock;

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before letting trial calls through.
    pub open_duration: TimeDelta,
    /// Trial calls allowed at once while half-open.
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, open_duration: TimeDelta::seconds(30), half_open_max_calls: 1 }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `until`.
    Open {
        /// When trial calls may start.
        until: DateTime<Utc>,
    },
    /// A few trial calls decide.
    HalfOpen,
}

/// Permission to make one call; hand it back with the outcome. A permit dropped without an
/// outcome (the caller crashed or gave up mid-call) frees its half-open trial slot.
#[derive(Debug)]
#[must_use = "report the call's outcome with record_success or record_failure"]
pub struct Permit {
    trial: bool,
    inner: Arc<Mutex<Inner>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.trial {
            let mut inner = self.inner.lock();
            inner.trials_in_flight = inner.trials_in_flight.saturating_sub(1);
        }
    }
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    /// When to try again.
    pub retry_at: DateTime<Utc>,
}

/// How long a caller refused while all half-open trial slots are taken should wait.
const TRIAL_BUSY_RETRY_SECONDS: i64 = 1;

/// A circuit breaker guarding one rail.
pub struct CircuitBreaker {
    name: String,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    trials_in_flight: u32,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker").field("name", &self.name).field("state", &self.inner.lock().state).finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(name: impl Into<String>, config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        CircuitBreaker {
            name: name.into(),
            config,
            clock,
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                trials_in_flight: 0,
            })),
        }
    }

    /// The rail's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks to make a call.
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if let BreakerState::Open { until } = inner.state {
            if now < until {
                return Err(BreakerOpen { retry_at: until });
            }
            inner.state = BreakerState::HalfOpen;
            inner.trials_in_flight = 0;
        }
        match inner.state {
            BreakerState::Closed => Ok(Permit { trial: false, inner: Arc::clone(&self.inner) }),
            BreakerState::HalfOpen if inner.trials_in_flight < self.config.half_open_max_calls.max(1) => {
                inner.trials_in_flight += 1;
                Ok(Permit { trial: true, inner: Arc::clone(&self.inner) })
            }
            _ => Err(BreakerOpen { retry_at: now + TimeDelta::seconds(TRIAL_BUSY_RETRY_SECONDS) }),
        }
    }

    /// The call succeeded (or the rail gave a definite answer).
    pub fn record_success(&self, permit: Permit) {
        let trial = permit.trial;
        drop(permit); // frees the trial slot
        let mut inner = self.inner.lock();
        inner.consecutive_failures = 0;
        if inner.state == BreakerState::HalfOpen && trial {
            inner.state = BreakerState::Closed;
            inner.trials_in_flight = 0;
        }
    }

    /// The call failed (unreachable, timed out).
    pub fn record_failure(&self, permit: Permit) {
        let trial = permit.trial;
        drop(permit); // frees the trial slot
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let reopen = match inner.state {
            BreakerState::HalfOpen => trial,
            BreakerState::Closed => inner.consecutive_failures >= self.config.failure_threshold.max(1),
            BreakerState::Open { .. } => false,
        };
        if reopen {
            inner.state = BreakerState::Open { until: now + self.config.open_duration };
            inner.trials_in_flight = 0;
            tracing::warn!(rail = %self.name, failures = inner.consecutive_failures, "circuit breaker opened");
        }
    }

    /// The current state (an open breaker past its pause still reads open until the next call).
    pub fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    /// 0 closed, 1 half-open, 2 open: for a Prometheus gauge.
    pub fn state_code(&self) -> u8 {
        match self.state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker() -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::at_epoch();
        let config =
            BreakerConfig { failure_threshold: 3, open_duration: TimeDelta::seconds(30), half_open_max_calls: 1 };
        (CircuitBreaker::new("test", config, Arc::new(clock.clone())), clock)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, _) = breaker();
        for _ in 0..2 {
            b.record_failure(b.try_acquire().unwrap());
        }
        b.record_success(b.try_acquire().unwrap());
        for _ in 0..2 {
            b.record_failure(b.try_acquire().unwrap());
        }
        assert_eq!(b.state(), BreakerState::Closed, "a success resets the count");
        b.record_failure(b.try_acquire().unwrap());
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert_eq!(b.state_code(), 2);
    }

    #[test]
    fn open_refuses_until_the_pause_ends_then_one_trial_decides() {
        let (b, clock) = breaker();
        for _ in 0..3 {
            b.record_failure(b.try_acquire().unwrap());
        }
        let refused = b.try_acquire().unwrap_err();
        assert_eq!(refused.retry_at, clock.now() + TimeDelta::seconds(30));
        clock.advance(TimeDelta::seconds(29));
        assert!(b.try_acquire().is_err());
        clock.advance(TimeDelta::seconds(1));
        let trial = b.try_acquire().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.state_code(), 1);
        assert!(b.try_acquire().is_err(), "only one trial at a time");
        b.record_failure(trial);
        assert_eq!(b.state(), BreakerState::Open { until: clock.now() + TimeDelta::seconds(30) });
        clock.advance(TimeDelta::seconds(30));
        let trial = b.try_acquire().unwrap();
        b.record_success(trial);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.state_code(), 0);
        b.record_success(b.try_acquire().unwrap());
    }

    #[test]
    fn a_trial_abandoned_mid_call_frees_its_slot() {
        let (b, clock) = breaker();
        for _ in 0..3 {
            b.record_failure(b.try_acquire().unwrap());
        }
        clock.advance(TimeDelta::seconds(30));
        let trial = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(trial); // the caller crashed before the rail answered
        b.record_success(b.try_acquire().expect("the slot is free again"));
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
