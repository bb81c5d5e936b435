//! The transfers pipeline over in-memory ports: acceptance rules, idempotency, internal and
//! external settlement, rail failures, the circuit breaker and crash recovery — one scenario per
//! rule. The seeded fault simulation (`simulation.rs`) covers the same rules under random chaos.

use std::sync::Arc;

use bank_core::Error;
use bank_core::account::{AccountStatus, NewAccount};
use bank_core::audit::{AuditLog as _, AuditOutcome};
use bank_core::clock::{Clock, ManualClock};
use bank_core::events::EventKind;
use bank_core::faults::{FaultPoint, Faults};
use bank_core::idempotency::IdempotencyKey;
use bank_core::ids::{AccountId, CustomerId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, HistoryQuery, HoldStatus, NewEntry};
use bank_core::memory::MemoryLedger;
use bank_core::memory::bus::MemoryEventBus;
use bank_core::memory::idempotency::MemoryIdempotencyStore;
use bank_core::memory::queue::MemoryQueue;
use bank_core::memory::transfers::MemoryTransferStore;
use bank_core::money::{Currency, Money};
use bank_core::payments::{
    Caller, OutboxRelay, PaymentsConfig, PaymentsPorts, PaymentsScheduler, PaymentsService, PaymentsWorker,
    SystemAccounts,
};
use bank_core::ports::{IdempotencyStore, LedgerStore, TransferQueue, TransferStore};
use bank_core::queue::QueueConfig;
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::{SimulatedRail, SimulatorConfig};
use bank_core::testkit::errors::variant_name;
use bank_core::testkit::lossy::{Cut, CutOne, Lossy};
use bank_core::transfer::{Beneficiary, Destination, FailureCode, TransferRequest, TransferStatus};
use chrono::TimeDelta;
use parking_lot::Mutex;
use rust_decimal::Decimal;

/// Interrupts the first check at one chosen point (a crash), or fails it with a transient
/// storage error (a lost database connection).
#[derive(Debug, Default)]
struct CrashOnce {
    point: Mutex<Option<FaultPoint>>,
    transient: Mutex<Option<FaultPoint>>,
}

impl Faults for CrashOnce {
    fn check(&self, point: FaultPoint, _transfer: Option<TransferId>) -> bank_core::Result<()> {
        let mut armed = self.point.lock();
        if *armed == Some(point) {
            *armed = None;
            return Err(Error::Interrupted(point.as_str()));
        }
        let mut transient = self.transient.lock();
        if *transient == Some(point) {
            *transient = None;
            return Err(Error::storage("connection lost", true));
        }
        Ok(())
    }
}

struct Bank {
    ports: PaymentsPorts,
    clock: ManualClock,
    ledger: Arc<dyn LedgerStore>,
    transfers: Arc<dyn TransferStore>,
    queue: Arc<dyn TransferQueue>,
    service: PaymentsService,
    worker: PaymentsWorker,
    relay: OutboxRelay,
    scheduler: PaymentsScheduler,
    rail: Arc<SimulatedRail>,
    bus: Arc<MemoryEventBus>,
    system: SystemAccounts,
    crash: Arc<CrashOnce>,
    alice: CustomerId,
    alice_usd: AccountId,
    bob: CustomerId,
    bob_usd: AccountId,
}

async fn bank_with(rail_config: SimulatorConfig, breaker_threshold: u32) -> Bank {
    bank_with_config(rail_config, breaker_threshold, PaymentsConfig { max_attempts: 4, ..PaymentsConfig::default() })
        .await
}

async fn bank_with_config(rail_config: SimulatorConfig, breaker_threshold: u32, config: PaymentsConfig) -> Bank {
    let clock = ManualClock::at_epoch();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let crash = Arc::new(CrashOnce::default());
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(dyn_clock.clone()));
    let transfers: Arc<dyn TransferStore> = Arc::new(MemoryTransferStore::new(dyn_clock.clone()));
    let queue: Arc<dyn TransferQueue> = Arc::new(MemoryQueue::new(dyn_clock.clone(), QueueConfig::default()));
    let ports = PaymentsPorts {
        ledger: ledger.clone(),
        transfers: transfers.clone(),
        idempotency: Arc::new(MemoryIdempotencyStore::new(dyn_clock.clone())),
        queue: queue.clone(),
        clock: dyn_clock.clone(),
        faults: crash.clone(),
    };
    let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd, Currency::Eur]).await.expect("system");
    let rail = Arc::new(SimulatedRail::new(rail_config, dyn_clock.clone()));
    let breaker = Arc::new(CircuitBreaker::new(
        "test-rail",
        BreakerConfig {
            failure_threshold: breaker_threshold,
            open_duration: TimeDelta::seconds(30),
            half_open_max_calls: 1,
        },
        dyn_clock.clone(),
    ));
    let bus = Arc::new(MemoryEventBus::new(10_000));
    let bank = Bank {
        service: PaymentsService::new(ports.clone(), config.clone()),
        worker: PaymentsWorker::new(ports.clone(), config.clone(), system.clone(), rail.clone(), breaker),
        relay: OutboxRelay::new(ports.clone(), bus.clone()),
        scheduler: PaymentsScheduler::new(ports.clone(), config),
        ports,
        clock,
        ledger,
        transfers,
        queue,
        rail,
        bus,
        system,
        crash,
        alice: CustomerId::new(),
        alice_usd: AccountId::new(),
        bob: CustomerId::new(),
        bob_usd: AccountId::new(),
    };
    let mut b = bank;
    b.alice_usd = b.open(b.alice, Currency::Usd).await;
    b.bob_usd = b.open(b.bob, Currency::Usd).await;
    b.deposit(b.alice_usd, "100.00").await;
    b
}

async fn bank() -> Bank {
    bank_with(SimulatorConfig { seed: 7, ..SimulatorConfig::default() }, 3).await
}

impl Bank {
    async fn open(&self, owner: CustomerId, currency: Currency) -> AccountId {
        self.ledger.open_account(NewAccount::customer(owner, "acct", currency)).await.expect("open").id
    }

    async fn deposit(&self, to: AccountId, amount: &str) {
        let currency = self.ledger.account(to).await.expect("account").currency;
        let money = Money::parse(amount, currency.code()).expect("money");
        let from = self.system.deposits(currency).expect("deposits account");
        let entry = NewEntry::transfer(EntryKey::new(TransferId::new(), 0), from, to, money, "deposit").expect("entry");
        self.ledger.post(entry).await.expect("deposit");
    }

    fn internal(&self, amount: &str) -> TransferRequest {
        TransferRequest {
            id: None,
            from_account_id: self.alice_usd,
            destination: Destination::Internal { account_id: self.bob_usd },
            money: Money::parse(amount, "USD").expect("money"),
            reference: "dinner".into(),
        }
    }

    fn external(&self, amount: &str) -> TransferRequest {
        TransferRequest {
            destination: Destination::External {
                beneficiary: Beneficiary::iban("Jane Roe", "DE89370400440532013000").expect("iban"),
            },
            ..self.internal(amount)
        }
    }

    async fn accept(&self, request: TransferRequest) -> bank_core::Result<bank_core::transfer::Transfer> {
        let key = IdempotencyKey::new(TransferId::new().to_string()).expect("key");
        Ok(self.service.accept(&Caller { customer: self.alice }, key, request).await?.transfer)
    }

    /// Relay and work until nothing moves.
    async fn drain(&self) {
        for _ in 0..20 {
            // An injected crash surfaces here as an error; the next round (or the next drain,
            // after the visibility timeout) picks the work up again.
            let relayed = self.relay.run_once(1000).await.unwrap_or(0);
            let worked = self.worker.run_once().await.map_or(0, |r| r.received);
            if relayed == 0 && worked == 0 {
                return;
            }
        }
    }

    /// `rounds` times: let `step` pass, run the scheduler (re-enqueues what is due), drain.
    async fn redrive(&self, rounds: usize, step: TimeDelta) {
        for _ in 0..rounds {
            self.clock.advance(step);
            self.scheduler.run_once().await.expect("scheduler");
            self.drain().await;
        }
    }

    async fn status(&self, id: TransferId) -> TransferStatus {
        self.transfers.get(id).await.expect("transfer").status
    }

    async fn balance(&self, id: AccountId) -> (Decimal, Decimal) {
        let b = self.ledger.balance(id).await.expect("balance");
        (b.posted, b.pending)
    }
}

fn dec(s: &str) -> Decimal {
    bank_core::money::parse_decimal(s).expect("decimal")
}

#[tokio::test]
async fn internal_transfer_holds_then_settles_and_emits_events() {
    let b = bank().await;
    let t = b.accept(b.internal("30.00")).await.expect("accept");
    assert_eq!(t.status, TransferStatus::Accepted);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("30.00")), "accepted funds are held");
    b.drain().await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.alice_usd).await, (dec("70.00"), dec("0")));
    assert_eq!(b.balance(b.bob_usd).await, (dec("30.00"), dec("0")));
    let stored = b.transfers.get(t.id).await.expect("transfer");
    let path: Vec<TransferStatus> = stored.history.iter().map(|h| h.status).collect();
    assert_eq!(path, vec![TransferStatus::Accepted, TransferStatus::Processing, TransferStatus::Settled]);
    let kinds: Vec<EventKind> = b.bus.published().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::TransferAccepted, EventKind::TransferSettled]);
    let settled = b.bus.published().into_iter().find(|e| e.kind == EventKind::TransferSettled).expect("event");
    assert_eq!(settled.to_owner, Some(b.bob), "the receiver is named so they can be notified");
}

#[tokio::test]
async fn idempotency_key_replays_refuses_changes_and_frees_on_refusal() {
    let b = bank().await;
    let caller = Caller { customer: b.alice };
    let key = IdempotencyKey::new("order-42").expect("key");
    let first = b.service.accept(&caller, key.clone(), b.internal("10.00")).await.expect("accept");
    assert!(!first.replayed);
    let again = b.service.accept(&caller, key.clone(), b.internal("10.00")).await.expect("replay");
    assert!(again.replayed);
    assert_eq!(again.transfer, first.transfer);
    assert!(matches!(
        b.service.accept(&caller, key.clone(), b.internal("10.01")).await,
        Err(Error::IdempotencyMismatch)
    ));
    assert_eq!(b.balance(b.alice_usd).await.1, dec("10.00"), "only one hold");
    // Another customer's identical key is theirs alone.
    b.deposit(b.bob_usd, "50.00").await;
    let bobs = TransferRequest {
        from_account_id: b.bob_usd,
        destination: Destination::Internal { account_id: b.alice_usd },
        ..b.internal("10.00")
    };
    let bob_first = b.service.accept(&Caller { customer: b.bob }, key.clone(), bobs).await.expect("bob");
    assert!(!bob_first.replayed);
    // A refusal frees the key: the corrected retry with the same key goes through.
    let key2 = IdempotencyKey::new("order-43").expect("key");
    assert!(matches!(
        b.service.accept(&caller, key2.clone(), b.internal("95.00")).await,
        Err(Error::InsufficientFunds { .. })
    ));
    b.deposit(b.alice_usd, "10.00").await;
    let retried = b.service.accept(&caller, key2, b.internal("95.00")).await.expect("after deposit");
    assert!(!retried.replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_callers_with_one_key_make_one_transfer() {
    let b = Arc::new(bank().await);
    let key = IdempotencyKey::new("same-key").expect("key");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let b = Arc::clone(&b);
            let key = key.clone();
            tokio::spawn(async move { b.service.accept(&Caller { customer: b.alice }, key, b.internal("1.00")).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut in_flight = 0;
    for result in futures::future::join_all(tasks).await {
        match result.expect("task") {
            Ok(accepted) => {
                ids.insert(accepted.transfer.id);
            }
            Err(Error::IdempotencyInFlight) => in_flight += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids.len(), 1, "one key, one transfer");
    assert!(in_flight < 100);
    assert_eq!(b.balance(b.alice_usd).await.1, dec("1.00"));
    let listed = b.transfers.list_for_account(b.alice_usd, 100, None).await.expect("list");
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn bad_requests_store_nothing_and_hold_nothing() {
    let b = bank().await;
    let carol = CustomerId::new();
    let carol_usd = b.open(carol, Currency::Usd).await;
    b.deposit(carol_usd, "5.00").await;
    let alice_eur = b.open(b.alice, Currency::Eur).await;
    let closed = b.open(b.alice, Currency::Usd).await;
    b.ledger.set_status(closed, AccountStatus::Closed).await.expect("close");
    let frozen = b.open(b.alice, Currency::Usd).await;
    b.deposit(frozen, "5.00").await;
    b.ledger.set_status(frozen, AccountStatus::Frozen).await.expect("freeze");

    let base = b.internal("10.00");
    let cases: Vec<(TransferRequest, &str)> = vec![
        (TransferRequest { from_account_id: AccountId::new(), ..base.clone() }, "AccountNotFound"),
        (TransferRequest { from_account_id: carol_usd, ..base.clone() }, "AccountNotFound"),
        (TransferRequest { from_account_id: closed, ..base.clone() }, "AccountNotOpen"),
        (TransferRequest { from_account_id: frozen, ..b.internal("1.00") }, "AccountNotOpen"),
        (b.internal("100.01"), "InsufficientFunds"),
        (
            TransferRequest { destination: Destination::Internal { account_id: b.alice_usd }, ..base.clone() },
            "InvalidInput",
        ),
        (
            TransferRequest { destination: Destination::Internal { account_id: AccountId::new() }, ..base.clone() },
            "AccountNotFound",
        ),
        (
            TransferRequest { destination: Destination::Internal { account_id: closed }, ..base.clone() },
            "AccountNotOpen",
        ),
        (
            TransferRequest { destination: Destination::Internal { account_id: alice_eur }, ..base.clone() },
            "CurrencyMismatch",
        ),
        (TransferRequest { money: Money::parse("10.00", "EUR").expect("m"), ..base.clone() }, "CurrencyMismatch"),
        (TransferRequest { reference: "x".repeat(141), ..base.clone() }, "InvalidInput"),
        (
            TransferRequest {
                destination: Destination::External {
                    beneficiary: Beneficiary {
                        name: "Jane".into(),
                        account: bank_core::transfer::BeneficiaryAccount::Iban {
                            iban: "DE00370400440532013000".into(),
                        },
                    },
                },
                ..base.clone()
            },
            "InvalidInput",
        ),
    ];
    for (request, variant) in cases {
        let err = b.accept(request.clone()).await.expect_err("must be refused");
        assert_eq!(variant_name(&err), variant, "{request:?}: {err}");
    }
    assert!(
        Money::parse("0", "USD").is_err()
            && Money::parse("-1", "USD").is_err()
            && Money::parse("1.001", "USD").is_err()
    );
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")), "nothing held");
    assert_eq!(b.balance(frozen).await, (dec("5.00"), dec("0")));
    assert!(b.transfers.list_for_account(b.alice_usd, 10, None).await.expect("list").is_empty());
    assert_eq!(b.transfers.outbox_lag().await.expect("outbox").0, 0, "no outbox record");
}

#[tokio::test]
async fn statuses_are_checked_every_time_even_for_accounts_met_before() {
    // The pipeline remembers owners and currencies (they never change), never a status: a
    // destination closed, or a source frozen, after a first transfer is refused on the next.
    let b = bank().await;
    let carol_usd = b.open(CustomerId::new(), Currency::Usd).await;
    let to_carol =
        TransferRequest { destination: Destination::Internal { account_id: carol_usd }, ..b.internal("1.00") };
    b.accept(to_carol.clone()).await.expect("accepted while open");
    // Not settled yet, so Carol's account is still empty and may be closed.
    b.ledger.set_status(carol_usd, AccountStatus::Closed).await.expect("close");
    let err = b.accept(to_carol).await.expect_err("closed destination");
    assert_eq!(variant_name(&err), "AccountNotOpen", "{err}");
    b.ledger.set_status(b.alice_usd, AccountStatus::Frozen).await.expect("freeze");
    let err = b.accept(b.internal("1.00")).await.expect_err("frozen source");
    assert_eq!(variant_name(&err), "AccountNotOpen", "{err}");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("1.00")), "only the first transfer holds");
}

#[tokio::test]
async fn external_transfer_pays_the_rail_once_and_books_to_its_settlement_account() {
    let b = bank().await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.rail.payments_executed(t.id), 1);
    let rail_account = b.system.rail(Currency::Usd).expect("rail account");
    assert_eq!(b.balance(rail_account).await.0, dec("25.00"));
    assert_eq!(b.balance(b.alice_usd).await, (dec("75.00"), dec("0")));
}

#[tokio::test]
async fn rail_outage_leaves_transfer_pending_until_the_rail_returns() {
    let b = bank().await;
    b.rail.set_outage(true);
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert_eq!(b.status(t.id).await, TransferStatus::Pending);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("25.00")), "still held while pending");
    assert!(b.bus.published().iter().any(|e| e.kind == EventKind::TransferPending));
    b.rail.set_outage(false);
    b.redrive(10, TimeDelta::minutes(1)).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.rail.payments_executed(t.id), 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("75.00"), dec("0")));
}

#[tokio::test]
async fn open_breaker_keeps_transfers_pending_without_calling_the_rail() {
    let b = bank().await;
    b.rail.set_outage(true);
    for _ in 0..3 {
        b.accept(b.external("1.00")).await.expect("accept");
    }
    b.drain().await;
    let calls = b.rail.submit_calls();
    let t = b.accept(b.external("1.00")).await.expect("accept");
    b.drain().await;
    assert_eq!(b.rail.submit_calls(), calls, "the open breaker must not call the rail");
    assert_eq!(b.status(t.id).await, TransferStatus::Pending);
}

#[tokio::test]
async fn rail_rejection_fails_the_transfer_and_releases_the_hold() {
    let b = bank_with(SimulatorConfig { seed: 1, reject_rate_ppm: 1_000_000, ..SimulatorConfig::default() }, 3).await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    let stored = b.transfers.get(t.id).await.expect("transfer");
    assert_eq!(stored.status, TransferStatus::Failed);
    assert_eq!(stored.failure_reason.map(|r| r.code), Some(FailureCode::RailRejected));
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")));
    assert_eq!(b.ledger.get_hold(HoldId::from(t.id)).await.expect("hold").status, HoldStatus::Voided);
    assert!(b.bus.published().iter().any(|e| e.kind == EventKind::TransferFailed));
}

#[tokio::test]
async fn timeout_after_success_is_resolved_by_asking_the_rail() {
    let b =
        bank_with(SimulatorConfig { seed: 3, timeout_after_success_ppm: 1_000_000, ..SimulatorConfig::default() }, 10)
            .await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    let stored = b.transfers.get(t.id).await.expect("transfer");
    assert_eq!(stored.status, TransferStatus::Pending);
    assert!(stored.outcome_unknown);
    b.redrive(10, TimeDelta::minutes(1)).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.rail.payments_executed(t.id), 1, "the status query prevented a second payment");
}

#[tokio::test]
async fn rail_down_past_the_retry_budget_fails_visibly() {
    let b = bank_with(SimulatorConfig { seed: 5, ..SimulatorConfig::default() }, 100).await;
    b.rail.set_outage(true);
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.redrive(30, TimeDelta::minutes(6)).await;
    let stored = b.transfers.get(t.id).await.expect("transfer");
    assert_eq!(stored.status, TransferStatus::Failed);
    assert_eq!(stored.failure_reason.map(|r| r.code), Some(FailureCode::RailUnavailable));
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")));
    assert_eq!(b.rail.payments_executed(t.id), 0);
}

#[tokio::test]
async fn worker_crash_at_every_step_settles_exactly_once() {
    for point in [
        FaultPoint::WorkerStart,
        FaultPoint::WorkerAfterMark,
        FaultPoint::WorkerBeforeRail,
        FaultPoint::WorkerAfterRail,
        FaultPoint::WorkerAfterLedger,
        FaultPoint::WorkerBeforeAck,
        FaultPoint::RelayBeforeDone,
    ] {
        for external in [false, true] {
            let rail_step = matches!(point, FaultPoint::WorkerBeforeRail | FaultPoint::WorkerAfterRail);
            if rail_step && !external {
                continue;
            }
            let b = bank().await;
            *b.crash.point.lock() = Some(point);
            let request = if external { b.external("40.00") } else { b.internal("40.00") };
            let t = b.accept(request).await.expect("accept");
            b.drain().await;
            // The crashed delivery comes back after the visibility timeout.
            b.clock.advance(TimeDelta::seconds(61));
            b.drain().await;
            assert_eq!(b.status(t.id).await, TransferStatus::Settled, "{point:?} external={external}");
            assert_eq!(b.balance(b.alice_usd).await, (dec("60.00"), dec("0")), "{point:?} external={external}");
            if external {
                assert_eq!(b.rail.payments_executed(t.id), 1, "{point:?}");
            } else {
                assert_eq!(b.balance(b.bob_usd).await.0, dec("40.00"), "{point:?}");
            }
            assert!(b.crash.point.lock().is_none(), "{point:?} was never reached");
        }
    }
}

#[tokio::test]
async fn crash_during_accept_is_finished_by_the_retry_or_undone_by_recovery() {
    // Crash after the transfer is stored: the client's retry (after the lease) gets it.
    let b = bank().await;
    let caller = Caller { customer: b.alice };
    *b.crash.point.lock() = Some(FaultPoint::AcceptAfterInsert);
    let key = IdempotencyKey::new("crashy").expect("key");
    assert!(matches!(b.service.accept(&caller, key.clone(), b.internal("10.00")).await, Err(Error::Interrupted(_))));
    assert!(matches!(
        b.service.accept(&caller, key.clone(), b.internal("10.00")).await,
        Err(Error::IdempotencyInFlight)
    ));
    b.clock.advance(TimeDelta::seconds(31));
    let retried = b.service.accept(&caller, key, b.internal("10.00")).await.expect("takeover");
    b.drain().await;
    assert_eq!(b.status(retried.transfer.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.alice_usd).await, (dec("90.00"), dec("0")));

    // Crash after the hold, before the transfer exists, and no retry: recovery frees the hold.
    *b.crash.point.lock() = Some(FaultPoint::AcceptAfterHold);
    let key = IdempotencyKey::new("abandoned").expect("key");
    assert!(b.service.accept(&caller, key.clone(), b.internal("20.00")).await.is_err());
    assert_eq!(b.balance(b.alice_usd).await.1, dec("20.00"));
    b.clock.advance(TimeDelta::seconds(31));
    let report = b.scheduler.run_once().await.expect("scheduler");
    assert_eq!(report.recovered_keys, 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("90.00"), dec("0")), "the orphaned hold is released");
    // The key is free again.
    b.service.accept(&caller, key, b.internal("20.00")).await.expect("fresh start");
}

/// A request dies after its hold; before the client retries, the destination is closed. The
/// retry (a takeover of the key) is refused, which frees the key — so it must release the hold
/// the first attempt placed, or nothing would until the hold expires (days). Found by the
/// simulation (seed 15,008) once customers opened and closed accounts during the chaos.
#[tokio::test]
async fn a_takeover_refused_because_the_destination_closed_meanwhile_releases_the_earlier_hold() {
    let b = bank().await;
    let caller = Caller { customer: b.alice };
    *b.crash.point.lock() = Some(FaultPoint::AcceptAfterHold);
    let key = IdempotencyKey::new("closed-meanwhile").expect("key");
    assert!(matches!(b.service.accept(&caller, key.clone(), b.internal("20.00")).await, Err(Error::Interrupted(_))));
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("20.00")), "the first attempt's hold");
    b.ledger.set_status(b.bob_usd, AccountStatus::Closed).await.expect("bob closes his empty account");
    b.clock.advance(TimeDelta::seconds(31));
    let refused = b.service.accept(&caller, key.clone(), b.internal("20.00")).await;
    assert!(matches!(refused, Err(Error::AccountNotOpen { .. })), "{refused:?}");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")), "the earlier hold is released");
    // The key is free: the same request is refused again, not "in flight".
    let again = b.service.accept(&caller, key, b.internal("20.00")).await;
    assert!(matches!(again, Err(Error::AccountNotOpen { .. })), "{again:?}");
}

/// Lets virtual time pass at one step, as a request stalled there would (a pause, a failover).
#[derive(Debug)]
struct StallAt {
    point: FaultPoint,
    clock: ManualClock,
    by: TimeDelta,
}

impl Faults for StallAt {
    fn check(&self, point: FaultPoint, _transfer: Option<TransferId>) -> bank_core::Result<()> {
        if point == self.point {
            self.clock.advance(self.by);
        }
        Ok(())
    }
}

/// A request stalls after its hold for longer than its key's lease: by then a retry may have
/// taken the key over (and been refused and freed it, so that a later retry makes a transfer
/// of its own). The stalled request writes nothing more: no transfer, the key still in flight;
/// the client's retry takes it over and finishes the same transfer with the same hold.
#[tokio::test]
async fn a_request_stalled_past_its_keys_lease_stores_no_transfer() {
    let b = bank().await;
    let caller = Caller { customer: b.alice };
    let lease = PaymentsConfig::default().idempotency_lease;
    let stall = StallAt { point: FaultPoint::AcceptAfterHold, clock: b.clock.clone(), by: lease };
    let stalled =
        PaymentsService::new(PaymentsPorts { faults: Arc::new(stall), ..b.ports.clone() }, PaymentsConfig::default());
    let key = IdempotencyKey::new("stalled").expect("key");
    let answer = stalled.accept(&caller, key.clone(), b.internal("20.00")).await;
    assert!(matches!(answer, Err(Error::LeaseLost)), "{answer:?}");
    let page = b.transfers.list_for_account(b.alice_usd, 10, None).await.expect("list");
    assert!(page.is_empty(), "no transfer stored after the lease ran out: {page:?}");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("20.00")), "its hold is kept for the retry");
    let retried = b.service.accept(&caller, key, b.internal("20.00")).await.expect("the retry takes over");
    assert!(!retried.replayed);
    b.drain().await;
    assert_eq!(b.status(retried.transfer.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.alice_usd).await, (dec("80.00"), dec("0")), "one transfer, one hold");
}

#[tokio::test]
async fn an_abandoned_hold_that_cannot_be_voided_keeps_its_key_until_a_later_recovery_frees_both() {
    let b = bank().await;
    let cutter = Arc::new(CutOne::default());
    let ledger: Arc<dyn LedgerStore> = Arc::new(Lossy::new(Arc::clone(&b.ledger), cutter.clone()));
    let service = PaymentsService::new(PaymentsPorts { ledger, ..b.ports.clone() }, PaymentsConfig::default());
    let caller = Caller { customer: b.alice };
    // The request dies after its hold, before its transfer, and is never retried.
    *b.crash.point.lock() = Some(FaultPoint::AcceptAfterHold);
    let key = IdempotencyKey::new("abandoned").expect("key");
    assert!(service.accept(&caller, key.clone(), b.internal("20.00")).await.is_err());
    b.clock.advance(TimeDelta::seconds(31));
    // The recovery cannot void the hold: it keeps the key rather than forget the hold.
    // (Its one ledger call is the void.)
    *cutter.0.lock() = Some((0, Cut::Before));
    assert!(service.recover_abandoned(10).await.is_err(), "the failed void is reported");
    assert!(cutter.0.lock().is_none(), "the void was tried");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("20.00")), "still held");
    assert!(matches!(service.accept(&caller, key.clone(), b.internal("20.00")).await, Err(Error::IdempotencyInFlight)));
    // Once the recovery's lease runs out, the next recovery frees the hold, then the key.
    b.clock.advance(TimeDelta::seconds(31));
    assert_eq!(service.recover_abandoned(10).await.expect("recovery"), 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")), "the hold is released");
    service.accept(&caller, key, b.internal("20.00")).await.expect("the key is free again");
}

#[tokio::test]
async fn a_hold_landing_after_its_request_was_given_up_is_voided_by_the_scheduler() {
    let b = bank().await;
    // The request's third ledger call (after reading the two accounts) is its hold: its
    // connection drops at once, the hold lands later (a commit finished after its client gave up).
    let cutter = Arc::new(CutOne::new(2, Cut::Late));
    let ledger: Arc<dyn LedgerStore> = Arc::new(Lossy::new(Arc::clone(&b.ledger), cutter.clone()));
    let service = PaymentsService::new(PaymentsPorts { ledger, ..b.ports.clone() }, PaymentsConfig::default());
    let caller = Caller { customer: b.alice };
    let key = IdempotencyKey::new("late-hold").expect("key");
    assert!(service.accept(&caller, key.clone(), b.internal("20.00")).await.is_err(), "the hold call failed");
    assert!(cutter.0.lock().is_none(), "the hold was cut");
    // Its key is abandoned: the recovery voids the hold — finding none, it marks the id — and
    // frees the key.
    b.clock.advance(TimeDelta::seconds(31));
    assert_eq!(b.service.recover_abandoned(10).await.expect("recovery"), 1);
    let marks = b.ledger.marked_holds(None, 10).await.expect("marks");
    assert_eq!(marks.len(), 1, "the id of the hold it did not find is marked");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")));
    // Then the hold lands: it belongs to no transfer, and nothing else would release it for days.
    assert_eq!(cutter.land().await, 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("20.00")), "the late hold reserves funds");
    // Within an idempotency lease of its placing it is left alone (a live request stores its
    // transfer within its lease); after that the scheduler voids it and forgets the mark.
    assert_eq!(b.scheduler.run_once().await.expect("scheduler").orphan_holds, 0);
    b.clock.advance(TimeDelta::seconds(31));
    assert_eq!(b.scheduler.run_once().await.expect("scheduler").orphan_holds, 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")), "the orphan hold is released");
    assert_eq!(b.ledger.get_hold(marks[0].id).await.expect("hold").status, HoldStatus::Voided);
    assert!(b.ledger.marked_holds(None, 10).await.expect("marks").is_empty());
    assert_eq!(b.scheduler.run_once().await.expect("scheduler").orphan_holds, 0);
    // The key was freed: the client's retry makes the one transfer.
    let retried = b.service.accept(&caller, key, b.internal("20.00")).await.expect("retry");
    b.drain().await;
    assert_eq!(b.status(retried.transfer.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.alice_usd).await, (dec("80.00"), dec("0")), "one transfer, one hold");
}

#[tokio::test]
async fn the_orphan_sweep_leaves_a_transfers_hold_and_keeps_a_mark_until_no_hold_can_land() {
    let b = bank().await;
    let config = PaymentsConfig::default();
    // A marked id whose hold a transfer owns (a retry reusing its transfer id): left to the
    // transfer, the mark forgotten.
    let owned = b.accept(b.internal("10.00")).await.expect("accepted");
    b.ledger.mark_hold(HoldId::from(owned.id)).await.expect("mark");
    // A marked id with no hold: kept while a hold could still land under it.
    let hold_less = HoldId::new();
    b.ledger.mark_hold(hold_less).await.expect("mark");
    b.clock.advance(TimeDelta::seconds(31));
    assert_eq!(b.scheduler.run_once().await.expect("scheduler").orphan_holds, 0);
    let marks = b.ledger.marked_holds(None, 10).await.expect("marks");
    assert_eq!(marks.iter().map(|m| m.id).collect::<Vec<_>>(), [hold_less]);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("10.00")), "the transfer's hold stays");
    b.drain().await;
    assert_eq!(b.status(owned.id).await, TransferStatus::Settled);
    // A hold can land no later than its expiry, at most `hold_duration` after its request first
    // came (before the mark): past that (and a lease), the mark goes.
    let marked_at = marks[0].marked_at;
    let gone_at = marked_at + config.hold_duration + config.idempotency_lease;
    b.clock.advance(gone_at - TimeDelta::seconds(1) - b.clock.now());
    b.scheduler.run_once().await.expect("scheduler");
    assert_eq!(b.ledger.marked_holds(None, 10).await.expect("marks").len(), 1, "kept to the last moment");
    b.clock.advance(TimeDelta::seconds(1));
    b.scheduler.run_once().await.expect("scheduler");
    assert!(b.ledger.marked_holds(None, 10).await.expect("marks").is_empty());
}

#[tokio::test]
async fn a_redrive_whose_answer_is_lost_keeps_the_accounts_order() {
    let b = bank().await;
    // Two transfers from one account, their messages lost (never relayed), overdue.
    let first = b.accept(b.internal("10.00")).await.expect("first");
    let second = b.accept(b.internal("20.00")).await.expect("second");
    b.clock.advance(PaymentsConfig::default().stuck_after + TimeDelta::seconds(1));
    // The scheduler re-drives the first; the write lands, its answer is lost (the `due` read
    // passes, the update is cut after the store acted).
    let cutter = Arc::new(CutOne::new(1, Cut::After));
    let transfers: Arc<dyn TransferStore> = Arc::new(Lossy::new(Arc::clone(&b.transfers), cutter.clone()));
    let scheduler = PaymentsScheduler::new(PaymentsPorts { transfers, ..b.ports.clone() }, PaymentsConfig::default());
    assert!(scheduler.run_once().await.is_err(), "the lost answer is reported");
    assert!(cutter.0.lock().is_none(), "the update was cut");
    // The next run re-drives the second (the first's deadline was pushed); then all is relayed.
    assert_eq!(b.scheduler.run_once().await.expect("scheduler").requeued, 1);
    b.drain().await;
    assert_eq!(
        (b.status(first.id).await, b.status(second.id).await),
        (TransferStatus::Settled, TransferStatus::Settled)
    );
    // The first was processed first: its debit has the lower sequence on the account.
    let history = b.ledger.history(b.alice_usd, HistoryQuery::new(10, None).expect("query")).await.expect("history");
    let sequence_of =
        |id: TransferId| history.items.iter().find(|i| i.key.transfer_id == id).map(|i| i.sequence).expect("debited");
    assert!(sequence_of(first.id) < sequence_of(second.id), "the second transfer overtook the first");
}

#[tokio::test]
async fn an_accepted_transfer_is_answered_even_when_its_key_cannot_be_completed() {
    let b = bank().await;
    // The key's second call (after `begin`) is the completion: it fails (a lost connection).
    let cutter = Arc::new(CutOne::new(1, Cut::Before));
    let idempotency: Arc<dyn IdempotencyStore> = Arc::new(Lossy::new(Arc::clone(&b.ports.idempotency), cutter.clone()));
    let ports = PaymentsPorts { idempotency, ..b.ports.clone() };
    let service = PaymentsService::new(ports, PaymentsConfig::default());
    let caller = Caller { customer: b.alice };
    let key = IdempotencyKey::new("complete-fails").expect("key");
    let accepted =
        service.accept(&caller, key.clone(), b.internal("10.00")).await.expect("accepted: the transfer is stored");
    assert!(cutter.0.lock().is_none(), "the completion was tried and failed");
    assert!(!accepted.replayed);
    assert_eq!(b.status(accepted.transfer.id).await, TransferStatus::Accepted);
    // The key stays in flight until its lease runs out; then a retry finds the same transfer.
    assert!(matches!(service.accept(&caller, key.clone(), b.internal("10.00")).await, Err(Error::IdempotencyInFlight)));
    b.clock.advance(TimeDelta::seconds(31));
    let retried = service.accept(&caller, key.clone(), b.internal("10.00")).await.expect("takeover");
    assert_eq!(retried.transfer.id, accepted.transfer.id, "the same transfer, not a second one");
    assert_eq!(retried.transfer.created_at, accepted.transfer.created_at);
    let replayed = service.accept(&caller, key, b.internal("10.00")).await.expect("replay");
    assert!(replayed.replayed);
    assert_eq!(replayed.transfer.id, accepted.transfer.id);
    b.drain().await;
    assert_eq!(b.status(accepted.transfer.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.alice_usd).await, (dec("90.00"), dec("0")), "paid once");
}

fn created_record(id: TransferId, replayed: bool) -> bank_core::audit::NewAuditRecord {
    let action = if replayed { "transfer.create.replayed" } else { "transfer.created" };
    let at = chrono::DateTime::UNIX_EPOCH;
    bank_core::audit::NewAuditRecord::new(at, "alice", action, format!("transfer:{id}"), AuditOutcome::Done)
}

/// The record of an acceptance is written with the transfer (an outbox audit message the relay
/// appends once, however often it is delivered); a replay's comes back to the caller; a refusal
/// builds none. A relay without an audit log refuses the claim and loses nothing.
#[tokio::test]
async fn an_acceptance_is_audited_with_the_transfer_and_a_replay_by_the_caller() {
    let b = bank().await;
    let caller = Caller { customer: b.alice };
    let key = IdempotencyKey::new("audited").expect("key");
    let (first, unwritten) =
        b.service.accept_audited(&caller, key.clone(), b.internal("10.00"), created_record).await.expect("accepted");
    assert_eq!(unwritten, None, "written with the transfer");
    let (again, unwritten) =
        b.service.accept_audited(&caller, key, b.internal("10.00"), created_record).await.expect("replay");
    assert_eq!(again.transfer.id, first.transfer.id);
    assert_eq!(unwritten, Some(created_record(first.transfer.id, true)), "a replay's record is the caller's to write");
    let built = Mutex::new(false);
    let refused = b
        .service
        .accept_audited(
            &caller,
            IdempotencyKey::new("too-much").expect("key"),
            b.internal("1000.00"),
            |id, replayed| {
                *built.lock() = true;
                created_record(id, replayed)
            },
        )
        .await;
    assert!(matches!(refused, Err(Error::InsufficientFunds { .. })), "{refused:?}");
    assert!(!*built.lock(), "no record is built for a refusal");

    // The plain relay will not drop what it cannot deliver.
    assert!(b.relay.run_once(100).await.is_err(), "no audit log to append to");
    let audit = Arc::new(bank_core::memory::audit::MemoryAuditLog::new());
    // A relay whose `done` is lost delivers everything again: still one record.
    // (Its second call, `done`, never reaches the store; the claim is given back.)
    let cutter = Arc::new(CutOne::new(1, Cut::Before));
    let transfers: Arc<dyn TransferStore> = Arc::new(Lossy::new(Arc::clone(&b.ports.transfers), cutter));
    let lost_done =
        OutboxRelay::new(PaymentsPorts { transfers, ..b.ports.clone() }, b.bus.clone()).with_audit(audit.clone());
    assert!(lost_done.run_once(100).await.is_err(), "done lost");
    assert_eq!(audit.list(1, 10).await.expect("list").len(), 1, "delivered once so far");
    let relay = OutboxRelay::new(b.ports.clone(), b.bus.clone()).with_audit(audit.clone());
    while relay.run_once(100).await.expect("relay") > 0 {}
    let records = audit.list(1, 10).await.expect("list");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].record, created_record(first.transfer.id, false));
}

#[tokio::test]
async fn customers_see_only_their_transfers() {
    let b = bank().await;
    let t = b.accept(b.internal("5.00")).await.expect("accept");
    assert_eq!(b.service.get(&Caller { customer: b.alice }, t.id).await.expect("sender").id, t.id);
    assert_eq!(b.service.get(&Caller { customer: b.bob }, t.id).await.expect("receiver").id, t.id);
    assert!(matches!(
        b.service.get(&Caller { customer: CustomerId::new() }, t.id).await,
        Err(Error::TransferNotFound(_))
    ));
}

#[tokio::test]
async fn a_transient_storage_failure_is_redelivered_soon_not_after_the_visibility() {
    let b = bank().await;
    let accepted = b.accept(b.internal("10.00")).await.expect("accept");
    b.relay.run_once(1000).await.expect("relay");
    *b.crash.transient.lock() = Some(FaultPoint::WorkerAfterMark);
    let first = b.worker.run_once().await.expect("worker");
    assert_eq!((first.received, first.interrupted), (1, 1));
    // Before the delay nothing comes back; right after it the message does (the visibility
    // would have kept it away for a minute).
    assert_eq!(b.worker.run_once().await.expect("worker").received, 0);
    b.clock.advance(bank_core::payments::TRANSIENT_RETRY_DELAY);
    let second = b.worker.run_once().await.expect("worker");
    assert_eq!((second.received, second.settled), (1, 1));
    assert_eq!(b.status(accepted.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.bob_usd).await, (dec("10.00"), dec("0")));
}

/// Each transient failure of the same message doubles the wait before the next delivery, so an
/// outage of many seconds does not use up the queue's deliveries (ten, then the dead-letter queue).
#[tokio::test]
async fn transient_failures_of_one_message_wait_longer_each_time() {
    let b = bank().await;
    let accepted = b.accept(b.internal("10.00")).await.expect("accept");
    b.relay.run_once(1000).await.expect("relay");
    let second = bank_core::payments::TRANSIENT_RETRY_DELAY * 2;
    for (delivery, wait) in [(1, bank_core::payments::TRANSIENT_RETRY_DELAY), (2, second)] {
        *b.crash.transient.lock() = Some(FaultPoint::WorkerAfterMark);
        let failed = b.worker.run_once().await.expect("worker");
        assert_eq!((failed.received, failed.interrupted), (1, 1), "delivery {delivery}");
        // Not back a moment before its wait is over.
        b.clock.advance(wait - chrono::TimeDelta::milliseconds(1));
        assert_eq!(b.worker.run_once().await.expect("worker").received, 0, "after delivery {delivery}");
        b.clock.advance(chrono::TimeDelta::milliseconds(1));
    }
    let third = b.worker.run_once().await.expect("worker");
    assert_eq!((third.received, third.settled), (1, 1));
    assert_eq!(b.status(accepted.id).await, TransferStatus::Settled);
    assert_eq!(b.balance(b.bob_usd).await, (dec("10.00"), dec("0")));
}

#[test]
fn the_transient_retry_delay_doubles_up_to_the_visibility() {
    use bank_core::payments::{TRANSIENT_RETRY_DELAY, transient_retry_delay};
    let visibility = chrono::TimeDelta::seconds(60);
    let delays: Vec<i64> = (0..=12).map(|n| transient_retry_delay(n, visibility).num_seconds()).collect();
    assert_eq!(delays, [1, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]);
    assert_eq!(transient_retry_delay(u32::MAX, visibility), visibility);
    assert_eq!(transient_retry_delay(1, chrono::TimeDelta::milliseconds(300)), chrono::TimeDelta::milliseconds(300));
    assert_eq!(transient_retry_delay(1, visibility), TRANSIENT_RETRY_DELAY);
    // Ten deliveries span minutes: an outage must last that long to dead-letter a message.
    let ten: i64 = (1..10).map(|n| transient_retry_delay(n, visibility).num_seconds()).sum();
    assert!(ten >= 180, "{ten}");
}

#[tokio::test]
async fn duplicate_deliveries_do_not_move_money_twice() {
    let b = bank().await;
    let t = b.accept(b.internal("10.00")).await.expect("accept");
    b.relay.run_once(100).await.expect("relay");
    for generation in 1..=3 {
        b.queue.enqueue(bank_core::queue::QueueMessage::retry(t.id, b.alice_usd, generation)).await.expect("duplicate");
    }
    b.drain().await;
    assert_eq!(b.balance(b.bob_usd).await.0, dec("10.00"));
    assert_eq!(b.queue.stats().await.expect("stats").visible, 0);
}

async fn lapsed_hold_bank() -> Bank {
    let config = PaymentsConfig { hold_duration: TimeDelta::minutes(10), ..PaymentsConfig::default() };
    let rail = SimulatorConfig { seed: 11, timeout_after_success_ppm: 1_000_000, ..SimulatorConfig::default() };
    bank_with_config(rail, 10, config).await
}

/// Keeps re-driving the pipeline until `id` is final (bounded).
async fn settle(b: &Bank, id: TransferId) {
    for _ in 0..20 {
        b.clock.advance(TimeDelta::minutes(1));
        b.scheduler.run_once().await.expect("scheduler");
        b.drain().await;
        if b.status(id).await.is_final() {
            return;
        }
    }
}

#[tokio::test]
async fn a_payment_the_rail_accepted_after_the_hold_lapsed_is_still_booked() {
    let b = lapsed_hold_bank().await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert_eq!(b.status(t.id).await, TransferStatus::Pending, "the rail's answer was lost");
    b.clock.advance(TimeDelta::minutes(11));
    b.scheduler.run_once().await.expect("expires the hold");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")));
    settle(&b, t.id).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.rail.payments_executed(t.id), 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("75.00"), dec("0")), "the source is debited directly");
    assert_eq!(b.balance(b.system.rail(Currency::Usd).expect("rail")).await.0, dec("25.00"));
}

#[tokio::test]
async fn a_payment_the_source_can_no_longer_cover_is_booked_to_suspense() {
    let b = lapsed_hold_bank().await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    b.clock.advance(TimeDelta::minutes(11));
    b.scheduler.run_once().await.expect("expires the hold");
    // Alice spends everything once the reservation has lapsed.
    let spend = NewEntry::transfer(
        EntryKey::new(TransferId::new(), 0),
        b.alice_usd,
        b.bob_usd,
        Money::parse("100.00", "USD").expect("money"),
        "rent",
    )
    .expect("entry");
    b.ledger.post(spend).await.expect("spend");
    settle(&b, t.id).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled, "the money left: the transfer is settled");
    assert_eq!(b.rail.payments_executed(t.id), 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("0.00"), dec("0")), "no overdraft is created");
    assert_eq!(b.balance(b.system.rail(Currency::Usd).expect("rail")).await.0, dec("25.00"));
    assert_eq!(b.balance(b.system.suspense(Currency::Usd).expect("suspense")).await.0, dec("-25.00"));
    for (currency, total) in b.ledger.trial_balance().await.expect("trial balance") {
        assert!(total.is_zero(), "{currency} sums to {total}");
    }
}

/// The scenario of simulation seed 3112 (issue 11): the rail took the payment, the worker died
/// before it could record that, and the rail then stayed down past the retry budget. The
/// redelivered transfer must not be failed on the budget — that released the hold of a payment
/// the rail had made — but stay pending, flagged for an operator, until the rail answers.
#[tokio::test]
async fn a_payment_the_rail_took_before_a_worker_crash_is_never_failed_by_the_retry_budget() {
    let b = bank_with(SimulatorConfig { seed: 5, ..SimulatorConfig::default() }, 100).await;
    *b.crash.point.lock() = Some(FaultPoint::WorkerAfterRail);
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert!(b.crash.point.lock().is_none(), "the crash after the rail call was never reached");
    assert_eq!(b.rail.payments_executed(t.id), 1, "the rail took the payment before the crash");
    b.rail.set_outage(true);
    b.redrive(30, TimeDelta::minutes(6)).await;
    let stored = b.transfers.get(t.id).await.expect("transfer");
    assert!(stored.attempts > 4, "the budget (4) was spent: {}", stored.attempts);
    assert_eq!(stored.status, TransferStatus::Pending, "a payment the rail may have made is never failed by a budget");
    assert!(stored.outcome_unknown);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("25.00")), "the hold stays while unresolved");
    let unresolved: Vec<TransferId> =
        b.transfers.unresolved(10).await.expect("unresolved").iter().map(|t| t.id).collect();
    assert_eq!(unresolved, vec![t.id], "visible to an operator");
    b.rail.set_outage(false);
    b.redrive(10, TimeDelta::minutes(6)).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.rail.payments_executed(t.id), 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("75.00"), dec("0")));
    assert!(b.transfers.unresolved(10).await.expect("unresolved").is_empty());
}

/// A timeout followed by an outage past the budget: also never failed, resolved when the rail
/// returns (the status query finds the payment).
#[tokio::test]
async fn a_timed_out_payment_stays_pending_through_an_outage_past_the_budget() {
    let b =
        bank_with(SimulatorConfig { seed: 3, timeout_after_success_ppm: 1_000_000, ..SimulatorConfig::default() }, 100)
            .await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert!(b.transfers.get(t.id).await.expect("transfer").outcome_unknown);
    b.rail.set_outage(true);
    b.redrive(30, TimeDelta::minutes(6)).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Pending);
    b.rail.set_outage(false);
    b.redrive(10, TimeDelta::minutes(6)).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled);
    assert_eq!(b.rail.payments_executed(t.id), 1);
}

/// An external transfer whose hold lapsed before anything was sent fails without calling the
/// rail (paying would spend money no longer reserved).
#[tokio::test]
async fn an_external_transfer_whose_hold_lapsed_before_any_call_fails_without_paying() {
    let b = bank_with_config(
        SimulatorConfig { seed: 5, ..SimulatorConfig::default() },
        100,
        PaymentsConfig { hold_duration: TimeDelta::minutes(10), max_attempts: 100, ..PaymentsConfig::default() },
    )
    .await;
    b.rail.set_outage(true);
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert_eq!(b.status(t.id).await, TransferStatus::Pending);
    b.rail.set_outage(false);
    let calls = b.rail.submit_calls();
    b.clock.advance(TimeDelta::minutes(11));
    b.scheduler.run_once().await.expect("scheduler");
    b.drain().await;
    let stored = b.transfers.get(t.id).await.expect("transfer");
    assert_eq!(stored.status, TransferStatus::Failed);
    assert_eq!(stored.failure_reason.map(|r| r.code), Some(FailureCode::HoldExpired));
    assert_eq!(b.rail.submit_calls(), calls, "nothing was sent once the hold lapsed");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")));
}

/// A source account frozen after an external transfer was accepted but before anything was
/// sent: the worker sends nothing and fails the transfer, releasing its hold. Paying would send
/// money out of an account whose debits are stopped, and the ledger would then refuse the debit
/// too, leaving the payout on the bank's suspense account. (A source cannot be closed while
/// the transfer's hold is on it.)
#[tokio::test]
async fn an_external_transfer_from_an_account_frozen_before_any_call_fails_without_paying() {
    let b = bank().await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.ledger.set_status(b.alice_usd, AccountStatus::Frozen).await.expect("freeze");
    b.drain().await;
    let stored = b.transfers.get(t.id).await.expect("transfer");
    assert_eq!(stored.status, TransferStatus::Failed);
    assert_eq!(stored.failure_reason.map(|r| r.code), Some(FailureCode::SourceUnavailable));
    assert_eq!(b.rail.submit_calls(), 0, "nothing was sent");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")), "the hold is released, nothing debited");
    let suspense = b.system.suspense(Currency::Usd).expect("suspense");
    assert_eq!(b.balance(suspense).await.0, dec("0"), "nothing booked to suspense");
}

/// Once a submission may have reached the rail, a freeze does not stop the payment: the rail's
/// answer decides, and the payout the ledger can no longer debit from the frozen source is
/// booked to suspense for an operator — never lost, never sent twice. The connection drops as
/// the worker voids the hold after that booking: the redelivery finds the booking and still
/// releases the hold (found by the simulation, seed 1859, once it froze accounts: the hold stayed
/// active until it expired, the customer's money reserved for a payment already booked).
#[tokio::test]
async fn a_payment_of_unknown_outcome_from_an_account_frozen_meanwhile_is_still_booked() {
    let b =
        bank_with(SimulatorConfig { seed: 3, timeout_after_success_ppm: 1_000_000, ..SimulatorConfig::default() }, 100)
            .await;
    let t = b.accept(b.external("25.00")).await.expect("accept");
    b.drain().await;
    assert!(b.transfers.get(t.id).await.expect("transfer").outcome_unknown, "the rail's answer was lost");
    b.ledger.set_status(b.alice_usd, AccountStatus::Frozen).await.expect("freeze");
    // The redelivery's ledger calls: the settle entry looked up (none), the hold's post and the
    // direct debit refused (frozen), the suspense booking, then the void — cut.
    let cutter = Arc::new(CutOne::new(4, Cut::Before));
    let ledger: Arc<dyn LedgerStore> = Arc::new(Lossy::new(Arc::clone(&b.ledger), cutter.clone()));
    let breaker = Arc::new(CircuitBreaker::new("cut", BreakerConfig::default(), b.ports.clock.clone()));
    let worker = PaymentsWorker::new(
        PaymentsPorts { ledger, ..b.ports.clone() },
        PaymentsConfig::default(),
        b.system.clone(),
        b.rail.clone(),
        breaker,
    );
    b.clock.advance(TimeDelta::minutes(6));
    b.scheduler.run_once().await.expect("scheduler");
    while b.relay.run_once(1000).await.expect("relay") > 0 {}
    assert_eq!(worker.run_once().await.expect("worker").interrupted, 1);
    assert!(cutter.0.lock().is_none(), "the void was cut");
    let suspense = b.system.suspense(Currency::Usd).expect("suspense");
    assert_eq!(b.balance(suspense).await.0, dec("-25.00"), "booked before the cut");
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("25.00")), "still held after the cut");
    settle(&b, t.id).await;
    assert_eq!(b.status(t.id).await, TransferStatus::Settled, "the rail paid");
    assert_eq!(b.rail.payments_executed(t.id), 1);
    assert_eq!(b.balance(b.alice_usd).await, (dec("100.00"), dec("0")), "not debited, the hold released");
    assert_eq!(b.balance(suspense).await.0, dec("-25.00"), "the payout waits on suspense, booked once");
    assert_eq!(b.balance(b.system.rail(Currency::Usd).expect("rail")).await.0, dec("25.00"));
}

/// The transfers of an account page newest first with one cursor type, for its owner and for
/// operators; anyone else finds no such account.
#[tokio::test]
async fn transfers_are_listed_in_pages_for_owners_and_operators_only() {
    use bank_core::accounts::Viewer;
    use bank_core::page::PageQuery;

    let b = bank().await;
    let mut ids = Vec::new();
    for amount in ["1.00", "2.00", "3.00", "4.00", "5.00"] {
        ids.push(b.accept(b.internal(amount)).await.expect("accept").id);
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = PageQuery::parse(Some(2), cursor.as_deref()).expect("query");
        let page = b.service.list(&Viewer::customer(b.alice), b.alice_usd, query).await.expect("list");
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every transfer once, newest first");
    let operator = Viewer::operator(CustomerId::new());
    assert_eq!(b.service.list(&operator, b.alice_usd, PageQuery::first_page()).await.expect("list").items.len(), 5);
    assert!(matches!(
        b.service.list(&Viewer::customer(b.bob), b.alice_usd, PageQuery::first_page()).await,
        Err(Error::AccountNotFound(_))
    ));
    // Incoming transfers are listed under the destination, for its owner.
    assert_eq!(
        b.service.list(&Viewer::customer(b.bob), b.bob_usd, PageQuery::first_page()).await.expect("l").items.len(),
        5
    );
    assert_eq!(b.service.view(&operator, ids[0]).await.expect("operator view").id, ids[0]);
    assert!(matches!(
        b.service.view(&Viewer::customer(CustomerId::new()), ids[0]).await,
        Err(Error::TransferNotFound(_))
    ));
}

/// An audit log whose keyed appends fail while `failures` lasts (a full disk, say).
#[derive(Debug, Default)]
struct FlakyAudit {
    inner: bank_core::memory::audit::MemoryAuditLog,
    failures: Mutex<u32>,
}

#[async_trait::async_trait]
impl bank_core::audit::AuditLog for FlakyAudit {
    async fn append(
        &self,
        record: bank_core::audit::NewAuditRecord,
    ) -> bank_core::Result<bank_core::audit::AuditRecord> {
        self.inner.append(record).await
    }
    async fn append_batch(
        &self,
        records: Vec<bank_core::audit::NewAuditRecord>,
    ) -> bank_core::Result<Vec<bank_core::audit::AuditRecord>> {
        self.inner.append_batch(records).await
    }
    async fn append_once(
        &self,
        key: &str,
        record: bank_core::audit::NewAuditRecord,
    ) -> bank_core::Result<bank_core::audit::AuditRecord> {
        {
            let mut failures = self.failures.lock();
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::storage("audit disk full", true));
            }
        }
        self.inner.append_once(key, record).await
    }
    async fn list(&self, from_seq: u64, limit: usize) -> bank_core::Result<Vec<bank_core::audit::AuditRecord>> {
        self.inner.list(from_seq, limit).await
    }
    async fn size(&self) -> bank_core::Result<u64> {
        self.inner.size().await
    }
    async fn tree_hashes(&self, indexes: &[u64]) -> bank_core::Result<Vec<bank_core::audit::Digest>> {
        self.inner.tree_hashes(indexes).await
    }
    async fn add_checkpoint(&self, checkpoint: bank_core::audit::StoredCheckpoint) -> bank_core::Result<()> {
        self.inner.add_checkpoint(checkpoint).await
    }
    async fn checkpoints(&self, from: u64, limit: usize) -> bank_core::Result<Vec<bank_core::audit::StoredCheckpoint>> {
        self.inner.checkpoints(from, limit).await
    }
    async fn latest_checkpoint(&self) -> bank_core::Result<Option<bank_core::audit::StoredCheckpoint>> {
        self.inner.latest_checkpoint().await
    }
}

/// The worker records each outcome once, as `worker`, with the outcome itself (the relay
/// appends it): an audit write that fails is retried by the relay's next run, and duplicate
/// deliveries — finding the transfer settled — write nothing more.
#[tokio::test]
async fn the_worker_audits_each_outcome_once_even_after_a_failed_audit_write() {
    let b = bank().await;
    let audit = Arc::new(FlakyAudit { failures: Mutex::new(1), ..FlakyAudit::default() });
    let worker = b.worker.clone().with_audit(audit.clone());
    let relay = OutboxRelay::new(b.ports.clone(), b.bus.clone()).with_audit(audit.clone());
    let settled = b.accept(b.internal("10.00")).await.expect("accept");
    let failed = b.accept(b.internal("1000.00")).await;
    assert!(failed.is_err(), "refused at acceptance: nothing for the worker");
    relay.run_once(100).await.expect("relay");
    let first = worker.run_once().await.expect("worker");
    assert_eq!(first.settled, 1);
    assert_eq!(b.status(settled.id).await, TransferStatus::Settled);
    assert!(relay.run_once(100).await.is_err(), "the audit write failed: the record stays in the outbox");
    assert!(audit.list(1, 10).await.expect("list").is_empty());
    for generation in 1..=2 {
        b.queue.enqueue(bank_core::queue::QueueMessage::retry(settled.id, b.alice_usd, generation)).await.expect("dup");
    }
    for _ in 0..4 {
        b.clock.advance(bank_core::payments::TRANSIENT_RETRY_DELAY);
        worker.run_once().await.expect("worker");
        relay.run_once(100).await.expect("relay");
    }
    let records = audit.list(1, 10).await.expect("list");
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0].record;
    assert_eq!(
        (record.subject.as_str(), record.action.as_str()),
        (bank_core::payments::WORKER_AUDIT_SUBJECT, "transfer.settled")
    );
    assert_eq!(record.target, format!("transfer:{}", settled.id));
    assert_eq!(b.balance(b.bob_usd).await.0, dec("10.00"), "and the money moved once");
}
