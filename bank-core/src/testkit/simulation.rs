//! Deterministic fault simulation of the whole transfers pipeline.
//!
//! One seed drives everything: which clients call, with which idempotency keys (fresh, reused
//! with the same request, reused with a different one, several at once), which worker step
//! crashes, when the rail is down or times out after accepting, when messages are duplicated and
//! how far virtual time jumps. After the chaos, faults stop, the pipeline runs to quiescence, and
//! the invariants are checked:
//!
//! - the ledger sums to zero per currency, and the rail settlement accounts hold exactly what was
//!   paid out;
//! - no transfer moved money twice (one settle entry at most, one rail execution at most);
//! - every accepted transfer ended `settled` or `failed`, and failed ones moved nothing;
//! - per source account, transfers started processing in the order they were accepted;
//! - no hold is left behind, and sequence numbers are gap-free;
//! - every event was notified exactly once per channel and recipient;
//! - one idempotency key never produced two transfers, and replays returned the first response;
//! - the store's counts per status agree with its transfers.
//!
//! A failing seed is reported by number; `SIM_SEED=k` (or [`run_seed`]) replays it alone, with
//! the same ids (they come from the seed, see [`crate::ids::seeded`]) and so the same run.
//!
//! Faults injected besides crashes: rail outages, unavailable answers, rejections, answers lost
//! after success, status queries that time out, requests that reach the rail late (after the
//! worker gave up waiting), breakers that open between a submit and a status query, slow rail
//! calls during which time runs past the visibility timeout and a second worker and the
//! scheduler take the same transfer over, duplicate deliveries, long clock jumps across short
//! holds and idempotency leases, two relays claiming the outbox at once (a crashed relay's
//! claim runs out and the records go to the next claim), the second worker and relay running on
//! a clock up to two minutes off (in half the seeds), acceptances that stall after their hold
//! past their key's lease (2% while the chaos lasts; a retry may take the key over), accounts
//! opened and closed while transfers to them are on their way, source accounts frozen and
//! unfrozen by an operator while their transfers are anywhere in the pipeline, and *stubborn*
//! transfers (one in 40) whose worker crashes at every start, chaos over or not, more times than
//! the queue delivers a message: their messages are dead-lettered and the scheduler's stuck sweep
//! must bring them back (the summary line counts the dead letters left). An adapter adds faults
//! of its own during the chaos ([`SimHarness::chaos`]): the PostgreSQL run terminates the stores'
//! connections at random moments, mid-batch and mid-commit. Every store call and every relay's publish may also fail as
//! over a dropped connection (0–3% of calls per seed, during the chaos; [`super::lossy`]): before
//! the store acted, or after it (done, the answer lost), or — a write, in 30% of the cuts — late:
//! it lands after up to 400 further store calls (a commit the database finished after its client
//! gave up), across clock jumps, takeovers and recovery sweeps; what is still on its way when the
//! chaos ends lands at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use parking_lot::Mutex;
use rust_decimal::Decimal;

use crate::account::{AccountStatus, NewAccount};
use crate::audit::{AuditLog, AuditOutcome, NewAuditRecord};
use crate::clock::{Clock, ManualClock};
use crate::error::{Error, Result};
use crate::faults::{FaultPoint, Faults};
use crate::idempotency::IdempotencyKey;
use crate::ids::{AccountId, CustomerId, HoldId, TransferId};
use crate::ledger::{EntryKey, HistoryQuery, HoldStatus, NewEntry, PAGE_LIMIT_MAX};
use crate::memory::bus::MemoryEventBus;
use crate::money::{Currency, Money};
use crate::notifications::{Channel, LogNotifier, MemoryNotificationLog, NotificationsService, Notifier};
use crate::payments::{
    Caller, OutboxRelay, PaymentsConfig, PaymentsPorts, PaymentsScheduler, PaymentsService, PaymentsWorker,
    SystemAccounts,
};
use crate::ports::{EventPublisher, IdempotencyStore, LedgerStore, TransferQueue, TransferStore};
use crate::queue::{QueueConfig, QueueMessage};
use crate::rail::breaker::{BreakerConfig, CircuitBreaker};
use crate::rail::simulator::{SimulatedRail, SimulatorConfig};
use crate::transfer::{Beneficiary, Destination, TransferRequest, TransferStatus};

use super::lossy;

/// The stores a simulation runs on; adapters provide fresh ones per seed.
#[derive(Debug, Clone)]
pub struct SimStores {
    /// Ledger.
    pub ledger: Arc<dyn LedgerStore>,
    /// Transfers and outbox.
    pub transfers: Arc<dyn TransferStore>,
    /// Idempotency keys.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Queue.
    pub queue: Arc<dyn TransferQueue>,
}

/// Builds fresh stores for one seed.
#[async_trait]
pub trait SimHarness: Send + Sync {
    /// Empty stores reading time from `clock`; the queue must use `queue_config`.
    async fn stores(&self, clock: Arc<dyn Clock>, queue_config: QueueConfig) -> SimStores;

    /// Switches the adapter's own faults (a database's connections terminated, say) on when the
    /// seed's chaos starts and off before it runs to quiescence. None by default.
    async fn chaos(&self, on: bool) {
        let _ = on;
    }
}

/// In-memory stores.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemorySimHarness;

#[async_trait]
impl SimHarness for MemorySimHarness {
    async fn stores(&self, clock: Arc<dyn Clock>, queue_config: QueueConfig) -> SimStores {
        SimStores {
            ledger: Arc::new(crate::memory::MemoryLedger::new(clock.clone())),
            transfers: Arc::new(crate::memory::transfers::MemoryTransferStore::new(clock.clone())),
            idempotency: Arc::new(crate::memory::idempotency::MemoryIdempotencyStore::new(clock.clone())),
            queue: Arc::new(crate::memory::queue::MemoryQueue::new(clock, queue_config)),
        }
    }
}

/// Another process's clock: the simulation's, off by `skew`.
#[derive(Debug)]
struct SkewedClock {
    clock: ManualClock,
    skew: TimeDelta,
}

impl Clock for SkewedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now() + self.skew
    }
}

/// What a seed did, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Transfers accepted.
    pub accepted: usize,
    /// Of which settled.
    pub settled: usize,
    /// Of which failed.
    pub failed: usize,
    /// Requests refused at acceptance (funds, keys, accounts).
    pub refused: usize,
    /// Crashes injected.
    pub crashes: usize,
    /// Store calls failed as over a dropped connection (before or after the store acted).
    pub cuts: usize,
    /// Of the cut calls, writes cut late (to land after other calls).
    pub late: usize,
    /// Acceptances stalled past their key's lease.
    pub stalls: usize,
    /// Holds that landed after their request was given up, voided by the scheduler.
    pub orphan_holds: usize,
    /// Rounds needed to reach quiescence.
    pub quiescence_rounds: usize,
    /// Messages in the dead-letter queue at the end (their transfers came back by the scheduler).
    pub dead_letters: u64,
}

/// The simulations' random numbers: SplitMix64 — small, seedable, and a seed replays exactly.
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A dropped connection in `percent` of draws: [`LATE_PERCENT_OF_CUTS`] of them late (for a
    /// write), the rest before or after the store acted, evenly.
    pub(super) fn cut(&mut self, percent: u64) -> lossy::Cut {
        if !self.chance(percent) {
            return lossy::Cut::No;
        }
        if self.chance(LATE_PERCENT_OF_CUTS) {
            return lossy::Cut::Late;
        }
        if self.chance(50) { lossy::Cut::Before } else { lossy::Cut::After }
    }

    /// After how many further calls a late write lands: 1..=[`LATE_CALLS_MAX`].
    pub(super) fn late_calls(&mut self) -> u64 {
        1 + self.below(LATE_CALLS_MAX)
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[index]
    }
}

pub(super) fn rng_index(rng: &mut Rng, len: usize) -> usize {
    usize::try_from(rng.below(len as u64)).unwrap_or(0)
}

/// Crashes steps at random while enabled; never crashes one transfer more than
/// [`CRASHES_PER_TRANSFER_MAX`] times (below the queue's dead-letter threshold), except the
/// *stubborn* ones: one transfer in [`STUBBORN_ONE_IN`] crashes at every worker start, up to
/// [`STUBBORN_CRASHES_MAX`] times, past the queue's deliveries, during the chaos and after it — its
/// message is dead-lettered, and only the scheduler's stuck sweep brings the transfer back.
#[derive(Debug)]
struct SimFaults {
    state: Mutex<FaultState>,
    /// The simulation's clock, which a stalled request moves on.
    clock: ManualClock,
}

/// Percentage of cut store calls that are writes landing late ([`lossy::Cut::Late`]).
pub(super) const LATE_PERCENT_OF_CUTS: u64 = 30;
/// A late write lands after up to this many further store calls (while the chaos lasts; the rest
/// land as soon as it ends).
pub(super) const LATE_CALLS_MAX: u64 = 400;

/// Percentage of acceptances, while the chaos lasts, that stall after their hold for longer than
/// their key's lease (a pause, a failover): a retry may take the key over meanwhile.
const STALL_PERCENT: u64 = 2;

const CRASHES_PER_TRANSFER_MAX: u32 = 3;
/// One started transfer in this many is stubborn (see [`SimFaults`]).
const STUBBORN_ONE_IN: u64 = 40;
/// Crashes of a stubborn transfer: more than the queue's `max_receives` (10).
const STUBBORN_CRASHES_MAX: u32 = 12;

#[derive(Debug)]
struct FaultState {
    rng: Rng,
    /// Whether the chaos lasts: crashes and cut store calls happen only then (stubborn transfers
    /// crash regardless).
    enabled: bool,
    crash_percent: u64,
    crashes: usize,
    per_transfer: HashMap<TransferId, u32>,
    /// Transfers in the order a worker first started on them.
    started: Vec<TransferId>,
    started_set: BTreeSet<TransferId>,
    /// The stubborn ones among them.
    stubborn: BTreeSet<TransferId>,
    /// In what percentage of calls, while the chaos lasts (`enabled`), a store call fails as over
    /// a dropped connection.
    cut_percent: u64,
    cuts: usize,
    /// Writes cut late, waiting to land.
    late: lossy::LateQueue,
    /// How long a stalled acceptance stalls (past the key's lease).
    stall_by: TimeDelta,
    stalls: usize,
}

impl lossy::Cutter for SimFaults {
    fn cut(&self) -> lossy::Cut {
        let mut s = self.state.lock();
        if !s.enabled {
            return lossy::Cut::No;
        }
        let percent = s.cut_percent;
        let cut = s.rng.cut(percent);
        if cut != lossy::Cut::No {
            s.cuts += 1;
        }
        cut
    }

    fn defer(&self, write: lossy::LateWrite) {
        let mut s = self.state.lock();
        let calls = s.rng.late_calls();
        s.late.push(calls, write);
    }

    fn landing(&self) -> Vec<lossy::LateWrite> {
        self.state.lock().late.due()
    }
}

impl Faults for SimFaults {
    fn check(&self, point: FaultPoint, transfer: Option<TransferId>) -> Result<()> {
        let mut s = self.state.lock();
        if s.enabled && point == FaultPoint::AcceptAfterHold && s.rng.chance(STALL_PERCENT) {
            self.clock.advance(s.stall_by);
            s.stalls += 1;
        }
        if point == FaultPoint::WorkerStart
            && let Some(id) = transfer
            && s.started_set.insert(id)
        {
            s.started.push(id);
            if s.rng.below(STUBBORN_ONE_IN) == 0 {
                s.stubborn.insert(id);
            }
        }
        // A stubborn transfer crashes at every worker start, after the chaos too, so its message
        // runs out of deliveries whatever the seed's chaos did.
        let stubborn = point == FaultPoint::WorkerStart && transfer.is_some_and(|id| s.stubborn.contains(&id));
        if !stubborn {
            if !s.enabled {
                return Ok(());
            }
            let percent = s.crash_percent;
            if !s.rng.chance(percent) {
                return Ok(());
            }
        }
        let cap = if stubborn { STUBBORN_CRASHES_MAX } else { CRASHES_PER_TRANSFER_MAX };
        if let Some(id) = transfer {
            let count = s.per_transfer.entry(id).or_default();
            if *count >= cap {
                return Ok(());
            }
            *count += 1;
        }
        s.crashes += 1;
        Err(Error::Interrupted(point.as_str()))
    }
}

/// The simulated rail's latency hook: when switched on, each rail call may move virtual time
/// forward (past visibility timeouts and re-drive deadlines) and yield, so concurrent workers
/// interleave with the call.
struct SlowRail {
    clock: ManualClock,
    state: Mutex<(Rng, bool)>,
}

impl SlowRail {
    fn set(&self, on: bool) {
        self.state.lock().1 = on;
    }

    fn hook(self: Arc<Self>) -> crate::rail::simulator::SleepFn {
        Arc::new(move |_| {
            let this = self.clone();
            Box::pin(async move {
                let (jump, yields) = {
                    let mut state = this.state.lock();
                    if !state.1 {
                        return;
                    }
                    let jump = if state.0.chance(50) { state.0.below(400) } else { 0 };
                    (jump, 1 + state.0.below(4))
                };
                this.clock.advance(TimeDelta::seconds(i64::try_from(jump).unwrap_or(0)));
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            })
        })
    }
}

struct Customer {
    id: CustomerId,
    accounts: Vec<AccountId>,
}

/// A request a client made, and what it got.
struct Call {
    caller: CustomerId,
    key: IdempotencyKey,
    request: TransferRequest,
}

/// Number of seeds the default test runs (`SIM_SEEDS` overrides).
pub const DEFAULT_SEEDS: u64 = 2_000;

/// The seeds to run: `SIM_SEED=k` alone, or `SIM_SEEDS=n` seeds (default `default_count`)
/// starting at `SIM_FROM` (default 0).
pub fn seeds_from_env(default_count: u64) -> std::ops::Range<u64> {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| v.trim().parse::<u64>().unwrap_or_else(|_| panic!("{name} must be a number")))
    };
    if let Some(seed) = var("SIM_SEED") {
        return seed..seed.saturating_add(1);
    }
    let from = var("SIM_FROM").unwrap_or(0);
    from..from.saturating_add(var("SIM_SEEDS").unwrap_or(default_count))
}

/// Runs the seeds [`seeds_from_env`] names, panicking with the first failing seed.
pub async fn run_seeds(harness: &dyn SimHarness, default_count: u64) {
    run_seed_range("simulation", default_count, |seed| run_seed(harness, seed)).await;
}

/// Runs the seeds [`seeds_from_env`] names with `run`, prints the sum of their reports under
/// `label`, and panics with the first failing seed.
pub(super) async fn run_seed_range<R, F, Fut>(label: &str, default_count: u64, run: F)
where
    R: Default + std::fmt::Debug + std::ops::AddAssign,
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<R, String>>,
{
    let seeds = seeds_from_env(default_count);
    println!("{label}: seeds {}..{}", seeds.start, seeds.end);
    let mut total = R::default();
    for seed in seeds.clone() {
        match run(seed).await {
            Ok(report) => total += report,
            Err(why) => panic!("{label} seed {seed} failed: {why}\nreplay it alone with SIM_SEED={seed}"),
        }
    }
    println!("{label}: {} seeds passed, {total:?}", seeds.end - seeds.start);
}

impl std::ops::AddAssign for SimReport {
    fn add_assign(&mut self, r: SimReport) {
        self.accepted += r.accepted;
        self.settled += r.settled;
        self.failed += r.failed;
        self.refused += r.refused;
        self.crashes += r.crashes;
        self.cuts += r.cuts;
        self.late += r.late;
        self.stalls += r.stalls;
        self.orphan_holds += r.orphan_holds;
        self.quiescence_rounds = self.quiescence_rounds.max(r.quiescence_rounds);
        self.dead_letters += r.dead_letters;
    }
}

/// Runs one seed; `Err` names the broken invariant.
pub async fn run_seed(harness: &dyn SimHarness, seed: u64) -> std::result::Result<SimReport, String> {
    // Every id this seed makes comes from the seed: a replay makes the same ids, so the rail
    // (which hashes the transfer id) answers the same way.
    let _ids = crate::ids::seeded::seed_ids(seed);
    let mut rng = Rng(seed);
    let clock = ManualClock::at_epoch();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let queue_config = QueueConfig { capacity: 10_000, max_receives: 10, dedup_window_seconds: 300 };
    let faults = Arc::new(SimFaults {
        state: Mutex::new(FaultState {
            rng: Rng(seed ^ 0xFA17),
            enabled: false,
            crash_percent: 2 + rng.below(8),
            crashes: 0,
            per_transfer: HashMap::new(),
            started: Vec::new(),
            started_set: BTreeSet::new(),
            stubborn: BTreeSet::new(),
            cut_percent: rng.below(4),
            cuts: 0,
            late: lossy::LateQueue::default(),
            stall_by: TimeDelta::zero(),
            stalls: 0,
        }),
        clock: clock.clone(),
    });
    let stores = lossy::wrap(harness.stores(dyn_clock.clone(), queue_config).await, faults.clone());
    let ports = PaymentsPorts {
        ledger: stores.ledger.clone(),
        transfers: stores.transfers.clone(),
        idempotency: stores.idempotency.clone(),
        queue: stores.queue.clone(),
        clock: dyn_clock.clone(),
        faults: faults.clone(),
    };
    // Short holds and leases in some seeds, so clock jumps cross their expiry mid-flight.
    let hold_duration = if rng.chance(30) {
        TimeDelta::minutes(i64::try_from(3 + rng.below(28)).unwrap_or(3))
    } else {
        PaymentsConfig::default().hold_duration
    };
    let config = PaymentsConfig {
        worker_batch: 8,
        max_attempts: u32::try_from(2 + rng.below(7)).unwrap_or(6),
        hold_duration,
        idempotency_lease: TimeDelta::seconds(i64::try_from(5 + rng.below(56)).unwrap_or(30)),
        ..PaymentsConfig::default()
    };
    faults.state.lock().stall_by = config.idempotency_lease + TimeDelta::seconds(1);
    let system = SystemAccounts::ensure(ports.ledger.as_ref(), &[Currency::Usd, Currency::Eur])
        .await
        .map_err(|e| format!("system accounts: {e}"))?;
    // A slow rail call: while it is out, virtual time may run past the queue's visibility
    // timeout and the scheduler's re-drive deadline, and the other worker may take the same
    // transfer over (see `SlowRail`).
    let slow = Arc::new(SlowRail { clock: clock.clone(), state: Mutex::new((Rng(seed ^ 0x510E), false)) });
    let late_arrival_max = TimeDelta::seconds(i64::try_from(30 + rng.below(600)).unwrap_or(60));
    let rail = Arc::new(
        SimulatedRail::new(
            SimulatorConfig {
                seed,
                latency: TimeDelta::milliseconds(1),
                failure_rate_ppm: u32::try_from(rng.below(200_000)).unwrap_or(0),
                reject_rate_ppm: 50_000,
                timeout_after_success_ppm: u32::try_from(rng.below(150_000)).unwrap_or(0),
                status_timeout_ppm: u32::try_from(rng.below(150_000)).unwrap_or(0),
                late_arrival_ppm: u32::try_from(rng.below(150_000)).unwrap_or(0),
                late_arrival_max,
                ..SimulatorConfig::default()
            },
            dyn_clock.clone(),
        )
        .with_sleep(slow.clone().hook()),
    );
    let breaker_config = BreakerConfig {
        failure_threshold: u32::try_from(1 + rng.below(4)).unwrap_or(3),
        open_duration: TimeDelta::seconds(i64::try_from(5 + rng.below(120)).unwrap_or(30)),
        half_open_max_calls: 1,
    };
    let breaker = Arc::new(CircuitBreaker::new("sim-rail", breaker_config, dyn_clock.clone()));
    // A second worker and relay process, whose clock is off by up to two minutes either way in
    // half the seeds (the stores keep the first clock: a database's own time).
    let skew = if rng.chance(50) {
        TimeDelta::seconds(i64::try_from(rng.below(241)).unwrap_or(0) - 120)
    } else {
        TimeDelta::zero()
    };
    let other_clock: Arc<dyn Clock> = Arc::new(SkewedClock { clock: clock.clone(), skew });
    let other_ports = PaymentsPorts { clock: other_clock.clone(), ..ports.clone() };
    let other_breaker = Arc::new(CircuitBreaker::new("sim-rail-2", breaker_config, other_clock));
    let service = PaymentsService::new(ports.clone(), config.clone());
    // The audit log (whole, for the checks) behind a connection that may drop.
    let audit_log = Arc::new(crate::memory::audit::MemoryAuditLog::new());
    let audit: Arc<dyn AuditLog> = Arc::new(lossy::Lossy::new(audit_log.clone() as Arc<dyn AuditLog>, faults.clone()));
    let worker = PaymentsWorker::new(ports.clone(), config.clone(), system.clone(), rail.clone(), breaker)
        .with_audit(audit.clone());
    let other_worker =
        PaymentsWorker::new(other_ports.clone(), config.clone(), system.clone(), rail.clone(), other_breaker)
            .with_audit(audit.clone());
    let bus = Arc::new(MemoryEventBus::new(100_000));
    // The relays publish over a connection that may drop too (the bus itself stays whole: the
    // notifications read it, the checks count what reached it).
    let publisher: Arc<dyn EventPublisher> =
        Arc::new(lossy::Lossy::new(bus.clone() as Arc<dyn EventPublisher>, faults.clone()));
    let relay = OutboxRelay::new(ports.clone(), publisher.clone()).with_audit(audit.clone());
    // A second relay process: the two claim the outbox at once.
    let other_relay = OutboxRelay::new(other_ports, publisher).with_audit(audit.clone());
    let scheduler = PaymentsScheduler::new(ports.clone(), config.clone());
    let notifier = Arc::new(LogNotifier::new(Channel::Email));
    let notifications = NotificationsService::new(
        vec![notifier.clone() as Arc<dyn Notifier>],
        Arc::new(MemoryNotificationLog::default()),
    );
    let subscription = bus.subscribe("notifications");

    // Customers with funded accounts (USD, one EUR), and one closed account.
    let mut customers = Vec::new();
    let mut deposited: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for c in 0..4 {
        let owner = CustomerId::new();
        let mut accounts = Vec::new();
        let currencies: &[Currency] = if c == 0 { &[Currency::Usd, Currency::Eur] } else { &[Currency::Usd] };
        for (i, &currency) in currencies.iter().chain(if c == 1 { &[Currency::Usd][..] } else { &[][..] }).enumerate() {
            let account = ports
                .ledger
                .open_account(NewAccount::customer(owner, format!("c{c}a{i}"), currency))
                .await
                .map_err(|e| format!("open: {e}"))?;
            let amount = Money::new(Decimal::from(100 + rng.below(400)), currency).map_err(|e| e.to_string())?;
            let entry = NewEntry::transfer(
                EntryKey::new(TransferId::new(), 0),
                system.deposits(currency).map_err(|e| e.to_string())?,
                account.id,
                amount,
                "deposit",
            )
            .map_err(|e| e.to_string())?;
            ports.ledger.post(entry).await.map_err(|e| format!("deposit: {e}"))?;
            *deposited.entry(currency).or_default() += amount.value();
            accounts.push(account.id);
        }
        customers.push(Customer { id: owner, accounts });
    }
    let closed = ports
        .ledger
        .open_account(NewAccount::customer(customers[1].id, "closed", Currency::Usd))
        .await
        .map_err(|e| format!("open: {e}"))?;
    ports.ledger.set_status(closed.id, AccountStatus::Closed).await.map_err(|e| format!("close: {e}"))?;
    let customer_accounts: Vec<AccountId> = customers.iter().flat_map(|c| c.accounts.iter().copied()).collect();
    // Grows as customers open accounts during the chaos.
    let mut all_accounts: Vec<AccountId> = customer_accounts.iter().copied().chain([closed.id]).collect();
    let mut opened: Vec<AccountId> = Vec::new();

    let mut report = SimReport::default();
    let mut calls: Vec<Call> = Vec::new();
    // (caller, key) → transfer ids returned with success.
    let mut by_key: BTreeMap<(CustomerId, IdempotencyKey), BTreeSet<TransferId>> = BTreeMap::new();
    let mut first_response: BTreeMap<(CustomerId, IdempotencyKey), crate::transfer::Transfer> = BTreeMap::new();
    let mut accepted: BTreeSet<TransferId> = BTreeSet::new();
    let steps = 40 + rng.below(40);

    harness.chaos(true).await;
    faults.state.lock().enabled = true;
    for _ in 0..steps {
        match rng.below(100) {
            0..=34 => {
                // One client call, or several at once with the same key.
                let burst = if rng.chance(15) { 2 + rng.below(3) } else { 1 };
                let (caller, key, request) = if !calls.is_empty() && rng.chance(25) {
                    let previous = rng.pick(&calls);
                    let mut request = previous.request.clone();
                    if rng.chance(30) {
                        request.reference = format!("changed {}", rng.below(1000));
                    }
                    (previous.caller, previous.key.clone(), request)
                } else {
                    let customer = rng.pick(&customers);
                    let from = if rng.chance(5) { *rng.pick(&all_accounts) } else { *rng.pick(&customer.accounts) };
                    let from_currency = ports.ledger.account(from).await.map(|a| a.currency).unwrap_or(Currency::Usd);
                    let destination = if rng.chance(40) {
                        let iban: [&str; 3] =
                            ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606"];
                        Destination::External {
                            beneficiary: Beneficiary::iban("Payee", iban[rng_index(&mut rng, iban.len())])
                                .map_err(|e| e.to_string())?,
                        }
                    } else {
                        Destination::Internal { account_id: *rng.pick(&all_accounts) }
                    };
                    let amount = Decimal::new(i64::try_from(1 + rng.below(30_000)).unwrap_or(1), 2);
                    let request = TransferRequest {
                        id: None,
                        from_account_id: from,
                        destination,
                        money: Money::new(amount, from_currency).map_err(|e| e.to_string())?,
                        reference: format!("sim {}", rng.below(1_000_000)),
                    };
                    let key = IdempotencyKey::new(format!("k-{seed}-{}", rng.next())).map_err(|e| e.to_string())?;
                    (customer.id, key, request)
                };
                let caller_value = Caller { customer: caller };
                let record = |id: TransferId, replayed: bool| {
                    let action = if replayed { "transfer.create.replayed" } else { "transfer.created" };
                    NewAuditRecord::new(
                        clock.now(),
                        caller.to_string(),
                        action,
                        format!("transfer:{id}"),
                        AuditOutcome::Done,
                    )
                };
                let results = futures::future::join_all(
                    (0..burst).map(|_| service.accept_audited(&caller_value, key.clone(), request.clone(), record)),
                )
                .await;
                for result in results {
                    match result {
                        Ok((outcome, unwritten)) => {
                            if let Some(record) = unwritten {
                                // What the server writes before answering a replay (a failed
                                // write is its 503; the checks count only the other records).
                                let _ = audit.append(record).await;
                            }
                            let entry = (caller, key.clone());
                            if outcome.replayed {
                                let first = first_response.get(&entry);
                                if first.is_some_and(|f| f != &outcome.transfer) {
                                    return Err(format!("replay of {key:?} differs from the first response"));
                                }
                            } else {
                                first_response.insert(entry.clone(), outcome.transfer.clone());
                            }
                            by_key.entry(entry).or_default().insert(outcome.transfer.id);
                            accepted.insert(outcome.transfer.id);
                        }
                        Err(_) => report.refused += 1,
                    }
                }
                calls.push(Call { caller, key, request });
            }
            35..=54 => {
                let _ = worker.run_once().await;
            }
            55..=64 => {
                let (_, _) = futures::join!(relay.run_once(64), other_relay.run_once(16));
            }
            65..=71 => {
                if let Ok(run) = scheduler.run_once().await {
                    report.orphan_holds += run.orphan_holds;
                }
            }
            72..=77 => {
                let _ = notifications.run_once(subscription.as_ref(), 64).await;
            }
            78..=84 => clock.advance(TimeDelta::seconds(i64::try_from(1 + rng.below(90)).unwrap_or(1))),
            85..=86 => {
                // A long jump: across leases, holds, breaker windows and late arrivals.
                clock.advance(TimeDelta::seconds(i64::try_from(60 + rng.below(1_800)).unwrap_or(60)));
            }
            87 => {
                // Two workers and the scheduler at once, the rail slow: deliveries of one
                // transfer race each other and its re-drive.
                slow.set(true);
                let (_, _, run) = futures::join!(worker.run_once(), other_worker.run_once(), scheduler.run_once());
                report.orphan_holds += run.map_or(0, |run| run.orphan_holds);
                slow.set(false);
            }
            88..=91 => rail.set_outage(rng.chance(50)),
            92 => {
                // An operator freezes a customer account (a debit freeze) or lifts one, while its
                // transfers are anywhere in the pipeline. Over a dropped connection the call may
                // fail either side of the change, as any store call.
                let account = *rng.pick(&customer_accounts);
                if let Ok(found) = ports.ledger.account(account).await {
                    let status =
                        if found.status == AccountStatus::Open { AccountStatus::Frozen } else { AccountStatus::Open };
                    let _ = ports.ledger.set_status(account, status).await;
                }
            }
            93 => {
                // A customer opens an account (a new destination), or closes one of those while
                // it is empty (refused otherwise): transfers accepted to it before the close
                // find it closed when they run.
                if !opened.is_empty() && rng.chance(50) {
                    let _ = ports.ledger.set_status(*rng.pick(&opened), AccountStatus::Closed).await;
                } else {
                    let owner = rng.pick(&customers).id;
                    let new = NewAccount::customer(owner, format!("new {}", opened.len()), Currency::Usd);
                    // Lost with its answer, an account nobody knows of receives nothing.
                    if let Ok(account) = ports.ledger.open_account(new).await {
                        opened.push(account.id);
                        all_accounts.push(account.id);
                    }
                }
            }
            _ => {
                // A duplicate delivery of a transfer a worker has already started on.
                let started = faults.state.lock().started.clone();
                if !started.is_empty() {
                    let id = *rng.pick(&started);
                    if let Ok(t) = ports.transfers.get(id).await {
                        let _ = ports.queue.enqueue(QueueMessage::retry(id, t.from_account_id, rng.next())).await;
                    }
                }
            }
        }
    }

    // Quiescence: no more faults, the rail comes back, time moves on.
    faults.state.lock().enabled = false;
    // What is still on its way lands now, before time moves on: a claim or a hold landing late
    // is then seen by the recovery sweeps below, as it would be by the next ones in a process.
    let late = faults.state.lock().late.take_all();
    for write in late {
        write.land().await;
    }
    harness.chaos(false).await;
    rail.set_outage(false);
    let mut rounds = 0;
    loop {
        rounds += 1;
        if rounds > 400 {
            let counts = ports.transfers.count_by_status().await.map_err(|e| e.to_string())?;
            let stats = ports.queue.stats().await.map_err(|e| e.to_string())?;
            let outbox = ports.transfers.outbox_lag().await.map_err(|e| e.to_string())?;
            return Err(format!(
                "no quiescence in 400 rounds: transfers {counts:?}, queue {stats:?}, outbox {outbox:?}"
            ));
        }
        clock.advance(TimeDelta::seconds(61));
        report.orphan_holds += scheduler.run_once().await.map_err(|e| format!("scheduler: {e}"))?.orphan_holds;
        while relay.run_once(1024).await.map_err(|e| format!("relay: {e}"))? > 0 {}
        while worker.run_once().await.map_err(|e| format!("worker: {e}"))?.received > 0 {}
        while relay.run_once(1024).await.map_err(|e| format!("relay: {e}"))? > 0 {}
        while notifications.run_once(subscription.as_ref(), 1024).await.map_err(|e| format!("notify: {e}"))? > 0 {}
        let counts = ports.transfers.count_by_status().await.map_err(|e| e.to_string())?;
        let open: u64 = counts.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum();
        let (outbox, _) = ports.transfers.outbox_lag().await.map_err(|e| e.to_string())?;
        let stats = ports.queue.stats().await.map_err(|e| e.to_string())?;
        if open == 0 && outbox == 0 && stats.visible == 0 && stats.in_flight == 0 {
            break;
        }
    }
    report.quiescence_rounds = rounds;
    report.dead_letters = ports.queue.stats().await.map_err(|e| e.to_string())?.dead_letters;
    // Every request still on its way reaches the rail now: a transfer failed while its payment
    // was in transit would show up below as failed-but-paid.
    clock.advance(late_arrival_max + TimeDelta::seconds(1));
    (report.crashes, report.cuts, report.late, report.stalls) = {
        let s = faults.state.lock();
        (s.crashes, s.cuts, s.late.pushed(), s.stalls)
    };

    // 1. Money is conserved.
    for (currency, total) in ports.ledger.trial_balance().await.map_err(|e| e.to_string())? {
        if !total.is_zero() {
            return Err(format!("{currency} balances sum to {total}"));
        }
    }
    // 2–4. Every transfer is final and moved money exactly as its status says.
    let mut paid_out: BTreeMap<Currency, Decimal> = BTreeMap::new();
    let mut transfers = Vec::new();
    for account in &all_accounts {
        let mut before = None;
        loop {
            let page = ports.transfers.list_for_account(*account, 100, before).await.map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            transfers.extend(page.into_iter().filter(|t| t.from_account_id == *account));
        }
    }
    let stored: BTreeSet<TransferId> = transfers.iter().map(|t| t.id).collect();
    if let Some(missing) = accepted.iter().find(|id| !stored.contains(id)) {
        return Err(format!("accepted transfer {missing} is not stored"));
    }
    for t in &transfers {
        let entry = ports.ledger.entry(t.settle_key()).await;
        let executed = rail.payments_executed(t.id);
        if executed > 1 {
            return Err(format!("rail executed {} {executed} times", t.id));
        }
        match t.status {
            TransferStatus::Settled => {
                let entry = entry.map_err(|e| format!("settled {} has no entry: {e}", t.id))?;
                let debit = entry.line_of(t.from_account_id).map(|l| l.money);
                // A payout the source could no longer cover (its hold lapsed while the rail's
                // answer was unknown) is booked against suspense for an operator.
                let suspense = system.suspense(t.money.currency).map_err(|e| e.to_string())?;
                let booked_to_suspense = matches!(t.destination, Destination::External { .. })
                    && debit.is_none()
                    && entry.line_of(suspense).map(|l| l.money) == Some(t.money);
                if debit != Some(t.money) && !booked_to_suspense {
                    return Err(format!("settled {} debited {debit:?}, not {}", t.id, t.money));
                }
                if let Destination::External { .. } = t.destination {
                    if executed != 1 {
                        return Err(format!("external {} settled but the rail executed it {executed} times", t.id));
                    }
                    *paid_out.entry(t.money.currency).or_default() += t.money.value();
                }
                report.settled += 1;
            }
            TransferStatus::Failed => {
                if entry.is_ok() {
                    return Err(format!("failed transfer {} has a ledger entry", t.id));
                }
                if executed != 0 {
                    return Err(format!("failed transfer {} was paid by the rail", t.id));
                }
                report.failed += 1;
            }
            other => return Err(format!("transfer {} ended {other}", t.id)),
        }
        let hold = ports.ledger.get_hold(HoldId::from(t.id)).await.map_err(|e| e.to_string())?;
        if hold.status == HoldStatus::Active {
            return Err(format!(
                "transfer {} ({}, {:?}) left an active hold: {hold:?}",
                t.id, t.status, t.failure_reason
            ));
        }
    }
    report.accepted = transfers.len();
    // The store's counts per status (what the metrics show; kept apart from the rows by some
    // stores) agree with the transfers themselves.
    let counted = ports.transfers.count_by_status().await.map_err(|e| e.to_string())?;
    let listed: Vec<(TransferStatus, u64)> = TransferStatus::ALL
        .iter()
        .map(|status| (*status, transfers.iter().filter(|t| t.status == *status).count() as u64))
        .collect();
    if counted.iter().copied().filter(|(_, n)| *n > 0).collect::<BTreeSet<_>>()
        != listed.iter().copied().filter(|(_, n)| *n > 0).collect::<BTreeSet<_>>()
    {
        return Err(format!("the store counts {counted:?} transfers per status, its rows {listed:?}"));
    }
    for (currency, amount) in paid_out {
        let rail_account = system.rail(currency).map_err(|e| e.to_string())?;
        let posted = ports.ledger.balance(rail_account).await.map_err(|e| e.to_string())?.posted;
        if posted != amount {
            return Err(format!("rail settlement {currency} holds {posted}, paid out {amount}"));
        }
    }
    // 5. Per-account acceptance order was kept, no hold or sequence gap remains.
    let started = faults.state.lock().started.clone();
    let position: HashMap<TransferId, usize> = started.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut by_group: BTreeMap<AccountId, Vec<(u64, usize)>> = BTreeMap::new();
    for t in &transfers {
        if let Some(p) = position.get(&t.id) {
            by_group.entry(t.from_account_id).or_default().push((t.seq, *p));
        }
    }
    for (account, mut order) in by_group {
        order.sort();
        if order.windows(2).any(|w| w[0].1 > w[1].1) {
            return Err(format!("account {account}: transfers started out of acceptance order: {order:?}"));
        }
    }
    for account in &all_accounts {
        let balance = ports.ledger.balance(*account).await.map_err(|e| e.to_string())?;
        if !balance.pending.is_zero() {
            return Err(format!("account {account} still has {} on hold", balance.pending));
        }
        if balance.available.is_some_and(|a| a.is_sign_negative() && !a.is_zero()) {
            return Err(format!("account {account} is overdrawn"));
        }
        let mut expected = balance.sequence;
        let mut cursor = None;
        loop {
            let query = HistoryQuery::new(PAGE_LIMIT_MAX, cursor).map_err(|e| e.to_string())?;
            let page = ports.ledger.history(*account, query).await.map_err(|e| e.to_string())?;
            for item in &page.items {
                if item.sequence != expected {
                    return Err(format!("account {account}: sequence {} where {expected} was due", item.sequence));
                }
                expected -= 1;
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        if expected != 0 {
            return Err(format!("account {account}: history stops at sequence {expected}"));
        }
    }
    // 6. One notification per event, channel and recipient.
    let mut delivered: HashMap<(crate::ids::EventId, CustomerId), usize> = HashMap::new();
    for n in notifier.sent() {
        *delivered.entry((n.event_id, n.recipient)).or_default() += 1;
    }
    if let Some(((event, recipient), count)) = delivered.iter().find(|(_, count)| **count != 1) {
        return Err(format!("event {event} notified {count} times to {recipient}"));
    }
    let events: BTreeSet<crate::ids::EventId> = bus.published().iter().map(|e| e.id).collect();
    let notified: BTreeSet<crate::ids::EventId> = delivered.keys().map(|(e, _)| *e).collect();
    if events != notified {
        return Err(format!("{} events published, {} notified", events.len(), notified.len()));
    }
    // 7. One transfer per idempotency key.
    if let Some((key, ids)) = by_key.iter().find(|(_, ids)| ids.len() > 1) {
        return Err(format!("key {:?} produced {} transfers", key.1, ids.len()));
    }
    // 8. Each transfer has exactly one acceptance record and one record of its outcome, and
    //    no record names a transfer that does not exist.
    let mut records: BTreeMap<(String, String), usize> = BTreeMap::new();
    let size = audit_log.size().await.map_err(|e| e.to_string())?;
    let mut from = 1;
    while from <= size {
        let page = audit_log.list(from, 1000).await.map_err(|e| e.to_string())?;
        from += page.len() as u64;
        for r in page {
            if r.record.action != "transfer.create.replayed" {
                *records.entry((r.record.action.clone(), r.record.target.clone())).or_default() += 1;
            }
        }
    }
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in &transfers {
        let outcome = if t.status == TransferStatus::Settled { "transfer.settled" } else { "transfer.failed" };
        for action in ["transfer.created", outcome] {
            expected.insert((action.to_owned(), format!("transfer:{}", t.id)), 1);
        }
    }
    if records != expected {
        let wrong: Vec<_> = records.iter().filter(|(k, n)| expected.get(*k) != Some(n)).collect();
        let missing: Vec<_> = expected.keys().filter(|k| !records.contains_key(*k)).collect();
        return Err(format!("audit records wrong: {wrong:?}; missing: {missing:?}"));
    }
    let _ = deposited;
    Ok(report)
}
