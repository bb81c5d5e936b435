//! [`SimulatedRail`]: a payment rail for local runs and tests.
//!
//! Deterministic for a seed: every decision is a hash of (seed, transfer id, call number), so the
//! same calls get the same answers whatever else runs. Like a real rail it is idempotent on the
//! transfer id: once a payment is accepted or rejected, every later submit returns that outcome,
//! and money moves at most once per id ([`SimulatedRail::payments_executed`] tells).
//!
//! Failure modes, each a rate in parts per million: unavailable (nothing recorded), definite
//! rejection, timeout *after* accepting (the "outcome unknown" case), status queries timing out,
//! plus outage windows and a manual outage switch.

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
    /// Calls answered `Unavailable` without recording anything.
    pub failure_rate_ppm: u32,
    /// Payments definitely rejected.
    pub reject_rate_ppm: u32,
    /// Payments accepted whose answer is then lost (`Timeout`).
    pub timeout_after_success_ppm: u32,
    /// Status queries that time out.
    pub status_timeout_ppm: u32,
    /// Windows during which every call is `Unavailable`.
    pub outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            name: "simulated-rail".into(),
            seed: 0,
            latency: TimeDelta::zero(),
            failure_rate_ppm: 0,
            reject_rate_ppm: 0,
            timeout_after_success_ppm: 0,
            status_timeout_ppm: 0,
            outages: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Recorded {
    Accepted(RailConfirmation),
    Rejected { code: String, message: String },
}

#[derive(Debug, Default)]
struct Book {
    payments: FxHashMap<TransferId, Recorded>,
    calls: FxHashMap<TransferId, u64>,
    executed: FxHashMap<TransferId, u32>,
}

/// A deterministic, idempotent payment rail.
pub struct SimulatedRail {
    config: SimulatorConfig,
    clock: Arc<dyn Clock>,
    sleep: Option<SleepFn>,
    outage: AtomicBool,
    submit_calls: AtomicU64,
    book: Mutex<Book>,
}

impl fmt::Debug for SimulatedRail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedRail")
            .field("config", &self.config)
            .field("outage", &self.outage.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
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
            book: Mutex::new(Book::default()),
        }
    }

    /// Adds latency through `sleep`.
    pub fn with_sleep(mut self, sleep: SleepFn) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// Switches a manual outage on or off.
    pub fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// How many times money actually moved for `id` (never more than 1).
    pub fn payments_executed(&self, id: TransferId) -> u32 {
        self.book.lock().executed.get(&id).copied().unwrap_or(0)
    }

    /// Payments accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.book.lock().payments.values().filter(|p| matches!(p, Recorded::Accepted(_))).count()
    }

    /// `submit` calls so far (including refused ones).
    pub fn submit_calls(&self) -> u64 {
        self.submit_calls.load(Ordering::SeqCst)
    }

    fn is_down(&self) -> bool {
        let now = self.clock.now();
        self.outage.load(Ordering::SeqCst) || self.config.outages.iter().any(|(from, to)| *from <= now && now < *to)
    }

    /// A draw in `0..PPM` for call `call` about `id`, and a second independent one.
    fn draws(&self, id: TransferId, call: u64, salt: u64) -> u32 {
        let (hi, lo) = id.as_uuid().as_u64_pair();
        let h = mix(self.config.seed ^ mix(hi ^ mix(lo ^ mix(call.wrapping_mul(31).wrapping_add(salt)))));
        u32::try_from(h % u64::from(PPM)).unwrap_or(0)
    }

    async fn latency(&self) {
        if let (Some(sleep), Ok(latency)) = (&self.sleep, self.config.latency.to_std()) {
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
            return Err(RailError::Unavailable(format!("{} is down", self.config.name)));
        }
        let id = payment.transfer_id;
        let mut book = self.book.lock();
        let call = {
            let calls = book.calls.entry(id).or_default();
            *calls += 1;
            *calls
        };
        let (lost_answer, recorded) = match book.payments.get(&id) {
            Some(recorded) => (false, recorded.clone()),
            None => {
                if self.draws(id, call, 1) < self.config.failure_rate_ppm {
                    return Err(RailError::Unavailable(format!("{} refused the connection", self.config.name)));
                }
                let recorded = if self.draws(id, call, 2) < self.config.reject_rate_ppm {
                    Recorded::Rejected { code: "AC01".into(), message: "incorrect account number".into() }
                } else {
                    *book.executed.entry(id).or_default() += 1;
                    Recorded::Accepted(RailConfirmation { rail_reference: format!("SIM-{}", id.as_uuid().simple()) })
                };
                book.payments.insert(id, recorded.clone());
                let lost = matches!(recorded, Recorded::Accepted(_))
                    && self.draws(id, call, 3) < self.config.timeout_after_success_ppm;
                (lost, recorded)
            }
        };
        debug_assert!(book.executed.get(&id).copied().unwrap_or(0) <= 1, "a rail pays at most once per id");
        drop(book);
        if lost_answer {
            return Err(RailError::Timeout);
        }
        match recorded {
            Recorded::Accepted(confirmation) => Ok(confirmation),
            Recorded::Rejected { code, message } => Err(RailError::Rejected { code, message }),
        }
    }

    async fn status(&self, transfer_id: TransferId) -> Result<RailStatus, RailError> {
        self.latency().await;
        if self.is_down() {
            return Err(RailError::Unavailable(format!("{} is down", self.config.name)));
        }
        let mut book = self.book.lock();
        let call = {
            let calls = book.calls.entry(transfer_id).or_default();
            *calls += 1;
            *calls
        };
        if self.draws(transfer_id, call, 4) < self.config.status_timeout_ppm {
            return Err(RailError::Timeout);
        }
        Ok(match book.payments.get(&transfer_id) {
            None => RailStatus::NotFound,
            Some(Recorded::Accepted(c)) => RailStatus::Accepted(c.clone()),
            Some(Recorded::Rejected { code, message }) => {
                RailStatus::Rejected { code: code.clone(), message: message.clone() }
            }
        })
    }
}
