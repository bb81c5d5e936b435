//! A per-rail circuit breaker: closed → open after consecutive failures → half-open after a
//! pause, where a few trial calls decide between closed and open again.
//!
//! ```text
//!            failures ≥ threshold                 open_duration elapsed
//!   Closed ─────────────────────────▶ Open{until} ───────────────────────▶ HalfOpen
//!     ▲                                   ▲                                   │
//!     │                                   └───────── trial failed ────────────┤
//!     └────────────────────────────────────────────── trial succeeded ────────┘
//! ```
//!
//! While open, callers do not call the rail at all; they get the time to try again
//! ([`BreakerOpen::retry_at`]) and leave the transfer `pending` until then. Every call holds a
//! [`Permit`] that is handed back with its outcome. What counts as a failure is the caller's
//! choice: the worker counts `Unavailable` and `Timeout`, and counts a definite rejection as a
//! success (the rail answered).
//!
//! Each state change starts a new *generation*; a permit only decides the state it was issued
//! in, so a slow call that started before the breaker opened cannot close (or reopen) a later
//! half-open phase, nor free one of its trial slots.
//!
//! Time comes only from the injected [`Clock`]; the breaker owns no timer and no thread.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;

use crate::clock::Clock;

/// How long a caller refused while every half-open trial slot is taken should wait: a trial call
/// is about one rail round trip, so the answer is usually known by then.
pub const TRIAL_BUSY_RETRY_MS: i64 = 1_000;

/// Thresholds. A zero `failure_threshold` or `half_open_max_calls` is treated as 1.
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

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: the value of a Prometheus gauge.
    pub const fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        }
    }
}

/// Permission to make one call; hand it back with the outcome. A permit dropped without an
/// outcome (the caller crashed or gave up mid-call) frees its half-open trial slot.
#[derive(Debug)]
#[must_use = "report the call's outcome with record_success or record_failure"]
pub struct Permit {
    /// Whether this call is a half-open trial (holds one of the trial slots).
    trial: bool,
    /// The generation of the state it was issued in.
    generation: u64,
    inner: Arc<Mutex<Inner>>,
}

impl Permit {
    /// Takes the permit back for [`CircuitBreaker::record_success`] / `record_failure`, which free
    /// its trial slot under the same lock as the state change (so no other caller can slip into
    /// the slot between the two). Returns (trial, generation).
    fn disarm(mut self) -> (bool, u64) {
        let trial = self.trial;
        self.trial = false; // `Drop` now has nothing to do
        (trial, self.generation)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.trial {
            self.inner.lock().end_trial(self.generation);
        }
    }
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    /// When to try again.
    pub retry_at: DateTime<Utc>,
}

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
    /// Trial permits of the current generation not yet handed back (only non-zero half-open).
    trials_in_flight: u32,
    /// Bumped on every state change.
    generation: u64,
}

impl Inner {
    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.trials_in_flight = 0;
        self.generation = self.generation.wrapping_add(1);
    }

    /// An open breaker whose pause is over is half-open (the transition happens lazily, on the
    /// first look after `until`).
    fn refresh(&mut self, now: DateTime<Utc>, name: &str) {
        if let BreakerState::Open { until } = self.state
            && now >= until
        {
            self.enter(BreakerState::HalfOpen);
            tracing::info!(rail = %name, "circuit breaker half-open");
        }
    }

    /// A trial permit of `generation` is over: free its slot, unless the state moved on since.
    fn end_trial(&mut self, generation: u64) {
        if generation == self.generation {
            self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("state", &self.inner.lock().state)
            .finish_non_exhaustive()
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
                generation: 0,
            })),
        }
    }

    /// The rail's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks to make a call: a [`Permit`] to hand back with the outcome, or when to try again.
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.refresh(now, &self.name);
        match inner.state {
            BreakerState::Closed => {
                Ok(Permit { trial: false, generation: inner.generation, inner: self.inner.clone() })
            }
            BreakerState::Open { until } => Err(BreakerOpen { retry_at: until }),
            BreakerState::HalfOpen if inner.trials_in_flight < self.config.half_open_max_calls.max(1) => {
                inner.trials_in_flight += 1;
                Ok(Permit { trial: true, generation: inner.generation, inner: self.inner.clone() })
            }
            BreakerState::HalfOpen => Err(BreakerOpen { retry_at: now + TimeDelta::milliseconds(TRIAL_BUSY_RETRY_MS) }),
        }
    }

    /// The call succeeded (or the rail gave a definite answer). Resets the failure count; a trial
    /// success closes a half-open breaker.
    pub fn record_success(&self, permit: Permit) {
        let (trial, generation) = permit.disarm();
        let mut inner = self.inner.lock();
        if trial {
            inner.end_trial(generation);
        }
        inner.consecutive_failures = 0;
        if inner.state == BreakerState::HalfOpen && trial && generation == inner.generation {
            inner.enter(BreakerState::Closed);
            tracing::info!(rail = %self.name, "circuit breaker closed");
        }
    }

    /// The call failed (unreachable, timed out). Enough consecutive failures open a closed
    /// breaker; a failed trial reopens a half-open one for another `open_duration`.
    pub fn record_failure(&self, permit: Permit) {
        let (trial, generation) = permit.disarm();
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if trial {
            inner.end_trial(generation);
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let open = match inner.state {
            BreakerState::Closed => inner.consecutive_failures >= self.config.failure_threshold.max(1),
            // Only a trial of this half-open phase decides it; a call begun while closed that
            // fails late says nothing about the rail since the pause.
            BreakerState::HalfOpen => trial && generation == inner.generation,
            BreakerState::Open { .. } => false,
        };
        if open {
            inner.enter(BreakerState::Open { until: now + self.config.open_duration });
            tracing::warn!(rail = %self.name, failures = inner.consecutive_failures, "circuit breaker opened");
        }
    }

    /// The current state, for metrics (an open breaker whose pause is over reads half-open).
    pub fn state(&self) -> BreakerState {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.refresh(now, &self.name);
        inner.state
    }

    /// 0 closed, 1 half-open, 2 open: for a Prometheus gauge.
    pub fn state_code(&self) -> u8 {
        self.state().code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const PAUSE: TimeDelta = TimeDelta::seconds(30);

    fn breaker_with(half_open_max_calls: u32) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::at_epoch();
        let config = BreakerConfig { failure_threshold: 3, open_duration: PAUSE, half_open_max_calls };
        (CircuitBreaker::new("test", config, Arc::new(clock.clone())), clock)
    }

    fn breaker() -> (CircuitBreaker, ManualClock) {
        breaker_with(1)
    }

    fn fail(b: &CircuitBreaker, times: usize) {
        for _ in 0..times {
            b.record_failure(b.try_acquire().expect("closed: a permit"));
        }
    }

    /// Opens the breaker and lets its pause run out.
    fn half_open(b: &CircuitBreaker, clock: &ManualClock) {
        fail(b, 3);
        clock.advance(PAUSE);
    }

    #[test]
    fn default_config_is_five_failures_thirty_seconds_one_trial() {
        assert_eq!(
            BreakerConfig::default(),
            BreakerConfig { failure_threshold: 5, open_duration: TimeDelta::seconds(30), half_open_max_calls: 1 }
        );
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, clock) = breaker();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.state_code(), 0);
        fail(&b, 2);
        b.record_success(b.try_acquire().expect("closed"));
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed, "a success resets the count");
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open { until: clock.now() + PAUSE });
        assert_eq!(b.state_code(), 2);
    }

    #[test]
    fn open_refuses_until_the_pause_ends() {
        let (b, clock) = breaker();
        fail(&b, 3);
        let until = clock.now() + PAUSE;
        assert_eq!(b.try_acquire().map(drop), Err(BreakerOpen { retry_at: until }));
        clock.advance(PAUSE - TimeDelta::milliseconds(1));
        assert_eq!(b.try_acquire().map(drop), Err(BreakerOpen { retry_at: until }), "still open 1 ms before");
        assert_eq!(b.state_code(), 2);
        clock.advance(TimeDelta::milliseconds(1));
        assert_eq!(b.state(), BreakerState::HalfOpen, "metrics see half-open as soon as the pause ends");
        assert_eq!(b.state_code(), 1);
        let _trial = b.try_acquire().expect("a trial at `until` exactly");
    }

    #[test]
    fn half_open_allows_only_the_configured_trials_and_asks_the_rest_to_wait_briefly() {
        let (b, clock) = breaker();
        half_open(&b, &clock);
        let trial = b.try_acquire().expect("one trial");
        assert_eq!(
            b.try_acquire().map(drop),
            Err(BreakerOpen { retry_at: clock.now() + TimeDelta::milliseconds(TRIAL_BUSY_RETRY_MS) })
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_success(trial);

        let (b, clock) = breaker_with(2);
        half_open(&b, &clock);
        let first = b.try_acquire().expect("first trial");
        let second = b.try_acquire().expect("second trial");
        assert!(b.try_acquire().is_err(), "a third trial exceeds half_open_max_calls");
        b.record_success(first);
        assert_eq!(b.state(), BreakerState::Closed, "one trial success closes it");
        b.record_failure(second);
        assert_eq!(b.state(), BreakerState::Closed, "a late trial of a finished phase counts as one failure only");
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert!(matches!(b.state(), BreakerState::Open { .. }), "third consecutive failure");
    }

    #[test]
    fn a_trial_success_closes_and_resets_the_count() {
        let (b, clock) = breaker();
        half_open(&b, &clock);
        b.record_success(b.try_acquire().expect("trial"));
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed, "the count restarted from zero");
        fail(&b, 1);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn a_trial_failure_reopens_for_another_pause_from_the_failure() {
        let (b, clock) = breaker();
        half_open(&b, &clock);
        let trial = b.try_acquire().expect("trial");
        clock.advance(TimeDelta::seconds(5)); // the trial call takes a while
        b.record_failure(trial);
        let until = clock.now() + PAUSE;
        assert_eq!(b.state(), BreakerState::Open { until });
        assert_eq!(b.try_acquire().map(drop), Err(BreakerOpen { retry_at: until }));
        clock.advance(PAUSE);
        b.record_success(b.try_acquire().expect("next trial"));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_trial_abandoned_mid_call_frees_its_slot() {
        let (b, clock) = breaker();
        half_open(&b, &clock);
        let trial = b.try_acquire().expect("trial");
        assert!(b.try_acquire().is_err());
        drop(trial); // the caller crashed before the rail answered
        assert_eq!(b.state(), BreakerState::HalfOpen, "an abandoned trial decides nothing");
        b.record_success(b.try_acquire().expect("the slot is free again"));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn calls_begun_while_closed_do_not_decide_a_half_open_phase() {
        let (b, clock) = breaker();
        let slow_ok = b.try_acquire().expect("closed");
        let slow_err = b.try_acquire().expect("closed");
        half_open(&b, &clock);
        let trial = b.try_acquire().expect("trial");
        b.record_success(slow_ok);
        assert_eq!(b.state(), BreakerState::HalfOpen, "a call from before the opening cannot close it");
        b.record_failure(slow_err);
        assert_eq!(b.state(), BreakerState::HalfOpen, "nor reopen it");
        assert!(b.try_acquire().is_err(), "nor free the trial slot");
        b.record_success(trial);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_stale_trial_neither_frees_a_slot_nor_decides_the_next_phase() {
        let (b, clock) = breaker_with(4);
        half_open(&b, &clock);
        let [failed, dropped, succeeded, failed_late] = [(); 4].map(|()| b.try_acquire().expect("phase 1 trial"));
        b.record_failure(failed); // reopens while three trials of phase 1 are still out
        clock.advance(PAUSE);
        let current: Vec<Permit> = (0..4).map(|_| b.try_acquire().expect("phase 2 trial")).collect();
        assert!(b.try_acquire().is_err(), "phase 2 slots are all taken");
        drop(dropped);
        assert!(b.try_acquire().is_err(), "dropping a stale trial must not free a slot of phase 2");
        b.record_success(succeeded);
        assert_eq!(b.state(), BreakerState::HalfOpen, "a stale trial's success must not close phase 2");
        assert!(b.try_acquire().is_err(), "nor free a slot");
        b.record_failure(failed_late);
        assert_eq!(b.state(), BreakerState::HalfOpen, "a stale trial's failure must not reopen phase 2");
        let mut current = current.into_iter();
        b.record_success(current.next().expect("a phase 2 trial"));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let clock = ManualClock::at_epoch();
        let config = BreakerConfig { failure_threshold: 0, open_duration: PAUSE, half_open_max_calls: 0 };
        let b = CircuitBreaker::new("zero", config, Arc::new(clock.clone()));
        fail(&b, 1);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        clock.advance(PAUSE);
        let trial = b.try_acquire().expect("one trial even with half_open_max_calls 0");
        assert!(b.try_acquire().is_err());
        b.record_success(trial);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn concurrent_callers_get_at_most_the_trial_slots() {
        let (b, clock) = breaker_with(3);
        half_open(&b, &clock);
        let granted: Vec<Permit> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16).map(|_| s.spawn(|| b.try_acquire().ok())).collect();
            handles.into_iter().filter_map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(granted.len(), 3);
        assert!(granted.iter().all(|p| p.trial));
    }
}
