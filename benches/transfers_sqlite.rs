//! Throughput of the whole transfers pipeline on the durable bank-local stores (one SQLite
//! database in a temporary directory, every commit fsynced): accept (idempotency key, ownership
//! and funds checks, hold, transfer + outbox write) → relay (queue + events) → worker (mark
//! processing, post the hold, settle with its event, ack).
//!
//! Each wave of transfers is accepted concurrently so the database's one writer can group their
//! commits; then the relay and the worker drain it.
//!
//! Target (issue): at least 5,000 internal transfers per second accepted and settled, with 1,000
//! accounts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::account::NewAccount;
use bank_core::clock::{Clock, SystemClock};
use bank_core::faults::NoFaults;
use bank_core::idempotency::IdempotencyKey;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::money::{Currency, Money};
use bank_core::payments::{
    Caller, OutboxRelay, PaymentsConfig, PaymentsPorts, PaymentsService, PaymentsWorker, SystemAccounts,
};
use bank_core::ports::LedgerStore;
use bank_core::queue::QueueConfig;
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::{SimulatedRail, SimulatorConfig};
use bank_core::transfer::{Destination, TransferRequest};
use bank_local::db::LocalDb;
use bank_local::events::SqliteEventBus;
use bank_local::idempotency::SqliteIdempotencyStore;
use bank_local::ledger::SqliteLedger;
use bank_local::queue::SqliteQueue;
use bank_local::transfers::SqliteTransferStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use rust_decimal::Decimal;
use tempfile::TempDir;

/// Customer accounts (one owner each) transfers pick from.
const ACCOUNTS: usize = 1_000;
/// Transfers accepted concurrently before the relay and worker drain them.
const WAVE: usize = 256;

struct Pipeline {
    service: PaymentsService,
    worker: PaymentsWorker,
    relay: OutboxRelay,
    owners: Vec<CustomerId>,
    accounts: Vec<AccountId>,
    rng: u32,
    db: LocalDb,
    // Removed (with the database) when the pipeline is dropped.
    _dir: TempDir,
}

impl Pipeline {
    async fn new() -> Pipeline {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Arc::new(SqliteLedger::new(&db, clock.clone()));
        let ports = PaymentsPorts {
            ledger: ledger.clone(),
            transfers: Arc::new(SqliteTransferStore::new(&db, clock.clone())),
            idempotency: Arc::new(SqliteIdempotencyStore::new(&db, clock.clone())),
            queue: Arc::new(SqliteQueue::new(&db, clock.clone(), QueueConfig::default())),
            clock: clock.clone(),
            faults: Arc::new(NoFaults),
        };
        let config = PaymentsConfig { worker_batch: 256, ..PaymentsConfig::default() };
        let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd]).await.expect("system accounts");
        let rail = Arc::new(SimulatedRail::new(SimulatorConfig::default(), clock.clone()));
        let breaker = Arc::new(CircuitBreaker::new("bench", BreakerConfig::default(), clock.clone()));
        let deposits = system.deposits(Currency::Usd).expect("deposits");
        let funding = Money::new(Decimal::from(1_000_000_000), Currency::Usd).expect("funding");
        // Opened and funded concurrently, so the writer groups the commits.
        let opened = join_all((0..ACCOUNTS).map(|i| {
            let ledger = ledger.clone();
            async move {
                let owner = CustomerId::new();
                let id = ledger
                    .open_account(NewAccount::customer(owner, format!("c{i}"), Currency::Usd))
                    .await
                    .expect("open")
                    .id;
                let entry = NewEntry::transfer(EntryKey::new(TransferId::new(), 0), deposits, id, funding, "fund")
                    .expect("entry");
                ledger.post(entry).await.expect("fund");
                (owner, id)
            }
        }))
        .await;
        let (owners, accounts) = opened.into_iter().unzip();
        let bus = Arc::new(SqliteEventBus::new(&db, clock, 1 << 24));
        Pipeline {
            service: PaymentsService::new(ports.clone(), config.clone()),
            worker: PaymentsWorker::new(ports.clone(), config, system, rail, breaker),
            relay: OutboxRelay::new(ports, bus),
            owners,
            accounts,
            rng: 0x2545_F491,
            db,
            _dir: dir,
        }
    }

    fn next(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x as usize % ACCOUNTS
    }

    /// Accepts `count` transfers from account 0 (`hot`) or random accounts, a wave at a time
    /// (concurrently), and drains the pipeline after each wave.
    async fn run(&mut self, count: u64, hot: bool) {
        let mut left = count;
        while left > 0 {
            let wave = left.min(WAVE as u64);
            let mut requests = Vec::with_capacity(WAVE);
            for _ in 0..wave {
                let from = if hot { 0 } else { self.next() };
                let to = (from + 1 + self.next() % (ACCOUNTS - 1)) % ACCOUNTS;
                let request = TransferRequest {
                    id: None,
                    from_account_id: self.accounts[from],
                    destination: Destination::Internal { account_id: self.accounts[to] },
                    money: Money::new(Decimal::new(1 + (self.rng % 10_000) as i64, 2), Currency::Usd).expect("m"),
                    reference: "bench".into(),
                };
                let key = IdempotencyKey::new(TransferId::new().to_string()).expect("key");
                requests.push((Caller { customer: self.owners[from] }, key, request));
            }
            let service = &self.service;
            join_all(requests.into_iter().map(|(caller, key, request)| async move {
                service.accept(&caller, key, request).await.expect("accept");
            }))
            .await;
            while self.relay.run_once(4096).await.expect("relay") > 0 {}
            while self.worker.run_once().await.expect("worker").received > 0 {}
            while self.relay.run_once(4096).await.expect("relay") > 0 {}
            left -= wave;
        }
    }
}

fn transfers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("transfers_internal_sqlite");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, hot) in [("accept_and_settle/1000_accounts", false), ("accept_and_settle/hot_source", true)] {
        // One database per benchmark, reused by every sample: opening and funding 1,000 accounts
        // on a fresh database per sample would dominate the run.
        let mut pipeline = rt.block_on(Pipeline::new());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(pipeline.run(iters, hot));
                start.elapsed()
            })
        });
        rt.block_on(pipeline.db.close());
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
