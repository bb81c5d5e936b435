//! [`SimulatedRail`]: a payment rail for local runs and tests.
//!
//! **Deterministic for a seed.** Every decision is a hash of (seed, transfer id, attempt number,
//! decision kind), where the attempt number counts the calls *about that transfer id* (submits
//! and status queries separately). So the same calls about one payment get the same answers
//! whatever other payments run alongside and however their calls interleave; only the clock
//! (outage windows) and the manual outage switch add anything.
//!
//! **Idempotent like a real rail.** The transfer id is the idempotency key: once a payment is
//! accepted or rejected, every later submit returns that outcome, and money moves at most once
//! per id ([`SimulatedRail::payments_executed`] tells; an assertion guards it).
//!
//! **Failure modes**, each a rate in parts per million ([`PPM`]; a rate ≥ `PPM` means always):
//! - `failure_rate_ppm`: `Unavailable`, nothing recorded (the payment never reached the rail);
//! - `reject_rate_ppm`: a definite rejection, recorded (later submits get it again);
//! - `timeout_after_success_ppm`: the payment is recorded as accepted, then the answer is lost
//!   (`Timeout`): the "outcome unknown" case, resolved by [`PaymentRail::status`];
//! - `status_timeout_ppm`: status queries that time out;
//! - `late_arrival_ppm`: the request is stuck on its way and the caller times out (`Timeout`);
//!   the rail receives it up to `late_arrival_max` later and then pays (or rejects) it — until
//!   then a status query answers `NotFound`. A re-submission under the same id that the rail
//!   decides first wins, and the late copy is then deduplicated;
//! - outage windows (read from the injected [`Clock`]) and [`SimulatedRail::set_outage`]:
//!   every call is `Unavailable` and nothing is recorded.
//!
//! Latency goes through an optional sleep hook ([`SimulatedRail::with_sleep`]) so `bank-core`
//! needs no async runtime; without one, calls answer at once.
//!
//! The simulator tracks at most [`SIMULATOR_IDS_MAX`] transfer ids; past that it answers
//! `Unavailable` for new ones rather than grow without bound (or forget a payment, which would
//! break idempotency).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::{RailConfirmation, RailError, RailPayment, RailStatus};
use crate::clock::Clock;
use crate::ids::TransferId;
use crate::ports::PaymentRail;

/// One million: rates are parts per million.
pub const PPM: u32 = 1_000_000;

/// Most transfer ids one simulator remembers (bounds its memory in long local runs).
pub const SIMULATOR_IDS_MAX: usize = 1_000_000;

/// The reason code of a simulated rejection (ISO 20022 "incorrect account number").
pub const REJECTION_CODE: &str = "AC01";

/// A sleep function (the server passes `tokio::time::sleep`), so latency needs no runtime here.
pub type SleepFn = Arc<dyn Fn(std::time::Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// How the simulated rail behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatorConfig {
    /// Rail name.
    pub name: String,
    /// Seed of every decision.
    pub seed: u64,
    /// Added to each call when a sleep hook is set.
    pub latency: TimeDelta,
    /// Submits answered `Unavailable` without recording anything.
    pub failure_rate_ppm: u32,
    /// Payments definitely rejected.
    pub reject_rate_ppm: u32,
    /// Payments accepted whose answer is then lost (`Timeout`).
    pub timeout_after_success_ppm: u32,
    /// Status queries that time out.
    pub status_timeout_ppm: u32,
    /// Submits that time out and reach the rail later (within `late_arrival_max`).
    pub late_arrival_ppm: u32,
    /// Longest delay of a late request.
    pub late_arrival_max: TimeDelta,
    /// Windows `[from, to)` during which every call is `Unavailable`.
    pub outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Default for SimulatorConfig {
    /// A rail that accepts everything at once.
    fn default() -> Self {
        SimulatorConfig {
            name: "simulated-rail".into(),
            seed: 0,
            latency: TimeDelta::zero(),
            failure_rate_ppm: 0,
            reject_rate_ppm: 0,
            timeout_after_success_ppm: 0,
            status_timeout_ppm: 0,
            late_arrival_ppm: 0,
            late_arrival_max: TimeDelta::minutes(5),
            outages: Vec::new(),
        }
    }
}

/// What a decision is about: each kind gets its own independent draw.
#[derive(Debug, Clone, Copy)]
enum Decision {
    Unavailable = 1,
    Reject = 2,
    LoseAnswer = 3,
    StatusTimeout = 4,
    LateArrival = 5,
    LateDelay = 6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Recorded {
    Accepted(RailConfirmation),
    Rejected { code: String, message: String },
}

/// What the rail knows about one transfer id.
#[derive(Debug, Default)]
struct Track {
    outcome: Option<Recorded>,
    submit_attempts: u64,
    status_queries: u64,
    /// Times money moved: 0 or 1.
    executed: u32,
    /// A request on its way, arriving then (see `late_arrival_ppm`).
    arrives_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Book {
    ids: FxHashMap<TransferId, Track>,
    accepted: usize,
}

impl Book {
    /// The track of `id`, created if there is room.
    fn track(&mut self, id: TransferId) -> Option<&mut Track> {
        if self.ids.len() >= SIMULATOR_IDS_MAX && !self.ids.contains_key(&id) {
            return None;
        }
        Some(self.ids.entry(id).or_default())
    }
}

/// A deterministic, idempotent payment rail.
pub struct SimulatedRail {
    config: SimulatorConfig,
    clock: Arc<dyn Clock>,
    sleep: Option<SleepFn>,
    outage: AtomicBool,
    submit_calls: AtomicU64,
    status_calls: AtomicU64,
    book: Mutex<Book>,
}

impl fmt::Debug for SimulatedRail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedRail")
            .field("config", &self.config)
            .field("sleep", &self.sleep.as_ref().map(|_| "<fn>"))
            .field("outage", &self.outage.load(Ordering::Relaxed))
            .field("submit_calls", &self.submit_calls.load(Ordering::Relaxed))
            .field("status_calls", &self.status_calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The SplitMix64 finaliser: a cheap, well-mixing 64-bit hash step.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimulatedRail {
    /// A rail behaving as `config` says, reading outage windows against `clock`.
    pub fn new(config: SimulatorConfig, clock: Arc<dyn Clock>) -> Self {
        SimulatedRail {
            config,
            clock,
            sleep: None,
            outage: AtomicBool::new(false),
            submit_calls: AtomicU64::new(0),
            status_calls: AtomicU64::new(0),
            book: Mutex::new(Book::default()),
        }
    }

    /// Adds `config.latency` to every call through `sleep` (e.g. `tokio::time::sleep`).
    pub fn with_sleep(mut self, sleep: SleepFn) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Switches a manual outage on or off. While on, every call is `Unavailable` whatever the
    /// configured windows say; while off, the windows apply.
    pub fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// How many times money actually moved for `id` (never more than 1).
    pub fn payments_executed(&self, id: TransferId) -> u32 {
        let now = self.clock.now();
        let mut book = self.book.lock();
        self.land(&mut book, id, now);
        book.ids.get(&id).map_or(0, |t| t.executed)
    }

    /// Whether a late request about `id` is still on its way.
    pub fn in_transit(&self, id: TransferId) -> bool {
        let now = self.clock.now();
        let mut book = self.book.lock();
        self.land(&mut book, id, now);
        book.ids.get(&id).is_some_and(|t| t.arrives_at.is_some())
    }

    /// Decides a payment the rail receives (a new one: no outcome yet); returns the outcome.
    fn decide(&self, book: &mut Book, id: TransferId, attempt: u64) -> Recorded {
        let Some(track) = book.ids.get_mut(&id) else {
            return Recorded::Rejected { code: REJECTION_CODE.into(), message: "unknown".into() };
        };
        let outcome = if self.hits(self.config.reject_rate_ppm, id, attempt, Decision::Reject) {
            Recorded::Rejected { code: REJECTION_CODE.into(), message: "incorrect account number".into() }
        } else {
            track.executed += 1;
            Recorded::Accepted(RailConfirmation { rail_reference: format!("SIM-{}", id.as_uuid().simple()) })
        };
        assert!(track.executed <= 1, "a rail pays at most once per transfer id");
        track.outcome = Some(outcome.clone());
        track.arrives_at = None; // a late copy still on its way is now a duplicate
        if matches!(outcome, Recorded::Accepted(_)) {
            book.accepted += 1;
        }
        outcome
    }

    /// Lets a late request about `id` arrive if its time has come.
    fn land(&self, book: &mut Book, id: TransferId, now: DateTime<Utc>) {
        let Some(track) = book.ids.get_mut(&id) else { return };
        let Some(at) = track.arrives_at else { return };
        if track.outcome.is_some() {
            track.arrives_at = None;
        } else if at <= now {
            // Decided as the attempt it was sent as (attempt 0 is never a submit's number).
            self.decide(book, id, 0);
        }
    }

    /// Payments accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.book.lock().accepted
    }

    /// `submit` calls so far (including refused ones).
    pub fn submit_calls(&self) -> u64 {
        self.submit_calls.load(Ordering::SeqCst)
    }

    /// `status` calls so far (including refused ones).
    pub fn status_calls(&self) -> u64 {
        self.status_calls.load(Ordering::SeqCst)
    }

    fn is_down(&self) -> bool {
        if self.outage.load(Ordering::SeqCst) {
            return true;
        }
        let now = self.clock.now();
        self.config.outages.iter().any(|(from, to)| *from <= now && now < *to)
    }

    fn down(&self) -> RailError {
        RailError::Unavailable(format!("{} is down", self.config.name))
    }

    /// Whether the `attempt`-th call about `id` hits a rate of `rate_ppm` for `decision`.
    fn hits(&self, rate_ppm: u32, id: TransferId, attempt: u64, decision: Decision) -> bool {
        if rate_ppm == 0 {
            return false;
        }
        // `draw % PPM` is below one million, so it always fits in a u32.
        let draw = u32::try_from(self.draw(id, attempt, decision) % u64::from(PPM)).unwrap_or(0);
        draw < rate_ppm
    }

    /// The deterministic 64-bit draw for one decision about one call.
    fn draw(&self, id: TransferId, attempt: u64, decision: Decision) -> u64 {
        let (hi, lo) = id.as_uuid().as_u64_pair();
        let mut h = mix(self.config.seed);
        for word in [hi, lo, attempt, decision as u64] {
            h = mix(h ^ word);
        }
        h
    }

    async fn latency(&self) {
        if let Some(sleep) = &self.sleep
            && self.config.latency > TimeDelta::zero()
            && let Ok(latency) = self.config.latency.to_std()
        {
            sleep(latency).await;
        }
    }
}

#[async_trait]
impl PaymentRail for SimulatedRail {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn submit(&self, payment: &RailPayment) -> Result<RailConfirmation, RailError> {
        self.submit_calls.fetch_add(1, Ordering::SeqCst);
        self.latency().await;
        if self.is_down() {
            return Err(self.down());
        }
        let id = payment.transfer_id;
        let now = self.clock.now();
        let (outcome, lost_answer) = {
            let mut book = self.book.lock();
            self.land(&mut book, id, now);
            let Some(track) = book.track(id) else {
                return Err(RailError::Unavailable(format!("{} is full", self.config.name)));
            };
            track.submit_attempts += 1;
            let attempt = track.submit_attempts;
            if let Some(outcome) = &track.outcome {
                // Idempotent replay: the first outcome, and no money moves.
                (outcome.clone(), false)
            } else {
                if self.hits(self.config.failure_rate_ppm, id, attempt, Decision::Unavailable) {
                    return Err(RailError::Unavailable(format!("{} refused the connection", self.config.name)));
                }
                if self.hits(self.config.late_arrival_ppm, id, attempt, Decision::LateArrival) {
                    let max_ms = u64::try_from(self.config.late_arrival_max.num_milliseconds()).unwrap_or(0).max(1);
                    let delay_ms = self.draw(id, attempt, Decision::LateDelay) % max_ms + 1;
                    let arrives = now + TimeDelta::milliseconds(i64::try_from(delay_ms).unwrap_or(1));
                    // The earliest copy on its way is the one that lands first.
                    track.arrives_at = Some(track.arrives_at.map_or(arrives, |at| at.min(arrives)));
                    return Err(RailError::Timeout);
                }
                let outcome = self.decide(&mut book, id, attempt);
                let accepted = matches!(outcome, Recorded::Accepted(_));
                let lost =
                    accepted && self.hits(self.config.timeout_after_success_ppm, id, attempt, Decision::LoseAnswer);
                (outcome, lost)
            }
        };
        if lost_answer {
            return Err(RailError::Timeout);
        }
        match outcome {
            Recorded::Accepted(confirmation) => Ok(confirmation),
            Recorded::Rejected { code, message } => Err(RailError::Rejected { code, message }),
        }
    }

    async fn status(&self, transfer_id: TransferId) -> Result<RailStatus, RailError> {
        self.status_calls.fetch_add(1, Ordering::SeqCst);
        self.latency().await;
        if self.is_down() {
            return Err(self.down());
        }
        let now = self.clock.now();
        let mut book = self.book.lock();
        self.land(&mut book, transfer_id, now);
        let Some(track) = book.track(transfer_id) else {
            return Err(RailError::Unavailable(format!("{} is full", self.config.name)));
        };
        track.status_queries += 1;
        if self.hits(self.config.status_timeout_ppm, transfer_id, track.status_queries, Decision::StatusTimeout) {
            return Err(RailError::Timeout);
        }
        Ok(match &track.outcome {
            None => RailStatus::NotFound,
            Some(Recorded::Accepted(c)) => RailStatus::Accepted(c.clone()),
            Some(Recorded::Rejected { code, message }) => {
                RailStatus::Rejected { code: code.clone(), message: message.clone() }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_the_reference_splitmix64() {
        // First outputs of the reference SplitMix64 generator seeded with 0 (state += golden
        // ratio, then the finaliser): a typo in a constant would change them.
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn rates_are_roughly_honoured_and_bounded() {
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::at_epoch());
        let rail = SimulatedRail::new(SimulatorConfig { seed: 42, ..SimulatorConfig::default() }, clock);
        let ids: Vec<TransferId> =
            (1..=10_000u128).map(|n| TransferId::from_uuid(uuid::Uuid::from_u128(n)).expect("non-nil")).collect();
        let count = |rate| ids.iter().filter(|id| rail.hits(rate, **id, 1, Decision::Reject)).count();
        assert_eq!(count(0), 0);
        assert_eq!(count(PPM), ids.len());
        assert_eq!(count(u32::MAX), ids.len());
        let quarter = count(PPM / 4);
        assert!((2_300..=2_700).contains(&quarter), "25% of 10,000 draws gave {quarter}");
    }
}
