//! Throughput of the whole transfers pipeline on in-memory ports, on one core: accept (idempotency
//! key, ownership and funds checks, hold, transfer + outbox write) → relay (queue + events) →
//! worker (mark processing, post the hold, settle with its event, ack).
//!
//! Target (issue): at least 100,000 internal transfers per second accepted and settled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::account::NewAccount;
use bank_core::clock::{Clock, SystemClock};
use bank_core::faults::NoFaults;
use bank_core::idempotency::IdempotencyKey;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::memory::MemoryLedger;
use bank_core::memory::bus::MemoryEventBus;
use bank_core::memory::idempotency::MemoryIdempotencyStore;
use bank_core::memory::queue::MemoryQueue;
use bank_core::memory::transfers::MemoryTransferStore;
use bank_core::money::{Currency, Money};
use bank_core::payments::{
    Caller, OutboxRelay, PaymentsConfig, PaymentsPorts, PaymentsService, PaymentsWorker, SystemAccounts,
};
use bank_core::ports::LedgerStore;
use bank_core::queue::QueueConfig;
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::{SimulatedRail, SimulatorConfig};
use bank_core::transfer::{Destination, TransferRequest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;

/// Customer accounts (one owner each) transfers pick from.
const ACCOUNTS: usize = 1_000;
/// Transfers accepted before the relay and worker drain them.
const WAVE: usize = 512;

struct Pipeline {
    service: PaymentsService,
    worker: PaymentsWorker,
    relay: OutboxRelay,
    owners: Vec<CustomerId>,
    accounts: Vec<AccountId>,
    rng: u32,
}

impl Pipeline {
    async fn new() -> Pipeline {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Arc::new(MemoryLedger::new(clock.clone()));
        let ports = PaymentsPorts {
            ledger: ledger.clone(),
            transfers: Arc::new(MemoryTransferStore::new(clock.clone())),
            idempotency: Arc::new(MemoryIdempotencyStore::new(clock.clone())),
            queue: Arc::new(MemoryQueue::new(clock.clone(), QueueConfig::default())),
            clock: clock.clone(),
            faults: Arc::new(NoFaults),
        };
        let config = PaymentsConfig { worker_batch: 256, ..PaymentsConfig::default() };
        let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd]).await.expect("system accounts");
        let rail = Arc::new(SimulatedRail::new(SimulatorConfig::default(), clock.clone()));
        let breaker = Arc::new(CircuitBreaker::new("bench", BreakerConfig::default(), clock.clone()));
        let mut owners = Vec::with_capacity(ACCOUNTS);
        let mut accounts = Vec::with_capacity(ACCOUNTS);
        let funding = Money::new(Decimal::from(1_000_000_000), Currency::Usd).expect("funding");
        for i in 0..ACCOUNTS {
            let owner = CustomerId::new();
            let id = ledger
                .open_account(NewAccount::customer(owner, format!("c{i}"), Currency::Usd))
                .await
                .expect("open")
                .id;
            let deposits = system.deposits(Currency::Usd).expect("deposits");
            let entry =
                NewEntry::transfer(EntryKey::new(TransferId::new(), 0), deposits, id, funding, "fund").expect("entry");
            ledger.post(entry).await.expect("fund");
            owners.push(owner);
            accounts.push(id);
        }
        let bus = Arc::new(MemoryEventBus::new(1 << 20));
        Pipeline {
            service: PaymentsService::new(ports.clone(), config.clone()),
            worker: PaymentsWorker::new(ports.clone(), config, system, rail, breaker),
            relay: OutboxRelay::new(ports, bus),
            owners,
            accounts,
            rng: 0x2545_F491,
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

    /// Accepts `count` transfers from `source` (or random accounts) and drains the pipeline.
    async fn run(&mut self, count: u64, hot: bool) {
        let mut left = count;
        while left > 0 {
            let wave = left.min(WAVE as u64);
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
                self.service.accept(&Caller { customer: self.owners[from] }, key, request).await.expect("accept");
            }
            while self.relay.run_once(4096).await.expect("relay") > 0 {}
            while self.worker.run_once().await.expect("worker").received > 0 {}
            while self.relay.run_once(4096).await.expect("relay") > 0 {}
            left -= wave;
        }
    }
}

fn transfers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut group = c.benchmark_group("transfers_internal");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for (name, hot) in [("accept_and_settle/1000_accounts", false), ("accept_and_settle/hot_source", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut pipeline = rt.block_on(Pipeline::new());
                let start = Instant::now();
                rt.block_on(pipeline.run(iters, hot));
                // Dropping the pipeline (millions of records) happens after the clock stopped.
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
