//! What the transfers benchmarks share: a bank of funded customer accounts over some ports,
//! request generation, and the two ways of driving the pipeline.

// Each benchmark uses one of the two ways.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank_core::account::NewAccount;
use bank_core::clock::Clock;
use bank_core::idempotency::IdempotencyKey;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::money::{Currency, Money};
use bank_core::payments::{
    Caller, OutboxRelay, PaymentsConfig, PaymentsPorts, PaymentsService, PaymentsWorker, RELAY_BATCH_MAX,
    SystemAccounts,
};
use bank_core::ports::EventPublisher;
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::{SimulatedRail, SimulatorConfig};
use bank_core::transfer::{Destination, TransferRequest};
use bank_server::run::loops::IDLE_POLL;
use futures::future::join_all;
use rust_decimal::Decimal;

/// How hard [`Bank::run_continuous`] drives the pipeline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Clients accepting transfers at the same time (each waits for its answer before the next).
    pub(crate) clients: usize,
    /// Worker loops, each receiving up to the worker batch (256) and processing it at once: more
    /// than one overlaps one loop's slowest messages with the next loop's receive.
    pub(crate) worker_loops: usize,
}

impl Load {
    /// `clients` accepting and one worker loop, unless `BENCH_CLIENTS` or `BENCH_WORKER_LOOPS`
    /// (positive integers) say otherwise.
    pub(crate) fn from_env(clients: usize) -> Load {
        Load { clients: positive_var("BENCH_CLIENTS", clients), worker_loops: positive_var("BENCH_WORKER_LOOPS", 1) }
    }
}

fn positive_var(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name} must be a positive integer, not {text:?}"),
        },
    }
}

/// Customer accounts (one owner each) transfers pick from.
pub(crate) const ACCOUNTS: usize = 1_000;

/// The pipeline over some ports, with `ACCOUNTS` funded customer accounts.
pub(crate) struct Bank {
    pub(crate) service: PaymentsService,
    pub(crate) worker: PaymentsWorker,
    pub(crate) relay: OutboxRelay,
    owners: Vec<CustomerId>,
    accounts: Vec<AccountId>,
    rng: u32,
}

impl Bank {
    /// Opens and funds the accounts (concurrently, so a durable store can group the commits).
    pub(crate) async fn new(ports: PaymentsPorts, publisher: Arc<dyn EventPublisher>) -> Bank {
        let ledger = ports.ledger.clone();
        let clock: Arc<dyn Clock> = ports.clock.clone();
        let config = PaymentsConfig { worker_batch: 256, ..PaymentsConfig::default() };
        let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd]).await.expect("system accounts");
        let rail = Arc::new(SimulatedRail::new(SimulatorConfig::default(), clock.clone()));
        let breaker = Arc::new(CircuitBreaker::new("bench", BreakerConfig::default(), clock));
        let deposits = system.deposits(Currency::Usd).expect("deposits");
        let funding = Money::new(Decimal::from(1_000_000_000), Currency::Usd).expect("funding");
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
        Bank {
            service: PaymentsService::new(ports.clone(), config.clone()),
            worker: PaymentsWorker::new(ports.clone(), config, system, rail, breaker),
            relay: OutboxRelay::new(ports, publisher),
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

    /// A new internal transfer request from account 0 (`hot`) or a random account, to another.
    pub(crate) fn request(&mut self, hot: bool) -> (Caller, IdempotencyKey, TransferRequest) {
        let from = if hot { 0 } else { self.next() };
        let to = (from + 1 + self.next() % (ACCOUNTS - 1)) % ACCOUNTS;
        let request = TransferRequest {
            id: None,
            from_account_id: self.accounts[from],
            destination: Destination::Internal { account_id: self.accounts[to] },
            money: Money::new(Decimal::new(1 + (self.rng % 10_000) as i64, 2), Currency::Usd).expect("money"),
            reference: "bench".into(),
        };
        let key = IdempotencyKey::new(TransferId::new().to_string()).expect("key");
        (Caller { customer: self.owners[from] }, key, request)
    }

    /// Accepts `count` transfers in waves of `wave` (one after the other), draining the relay and
    /// the worker after each wave. For in-memory ports, where nothing waits.
    pub(crate) async fn run_waves(&mut self, count: u64, hot: bool, wave: u64) {
        let mut left = count;
        while left > 0 {
            let size = left.min(wave);
            for _ in 0..size {
                let (caller, key, request) = self.request(hot);
                self.service.accept(&caller, key, request).await.expect("accept");
            }
            self.drain().await;
            left -= size;
        }
    }

    async fn drain(&self) {
        while self.relay.run_once(4096).await.expect("relay") > 0 {}
        while self.worker.run_once().await.expect("worker").received > 0 {}
        while self.relay.run_once(4096).await.expect("relay") > 0 {}
    }

    /// Runs the pipeline as the server does: the relay and `load.worker_loops` worker loops in
    /// their own tasks while `load.clients` tasks accept transfers (each waiting for its answer
    /// before the next), so every stage's writes share the store's commits. Returns once `count`
    /// transfers settled.
    pub(crate) async fn run_continuous(&mut self, count: u64, hot: bool, load: Load) {
        let settled = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relay = self.relay.clone();
        let relay_stop = stop.clone();
        // The server's loops (`bank_server::run::loops`): the relay runs again at once only after
        // a full batch, a worker loop whenever it received something; otherwise each pauses.
        let relay_task = tokio::spawn(async move {
            while !relay_stop.load(Ordering::Relaxed) {
                if relay.run_once(RELAY_BATCH_MAX).await.expect("relay") < RELAY_BATCH_MAX {
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        });
        let worker_tasks: Vec<_> = (0..load.worker_loops)
            .map(|_| {
                let worker = self.worker.clone();
                let (worker_settled, worker_stop) = (settled.clone(), stop.clone());
                tokio::spawn(async move {
                    while !worker_stop.load(Ordering::Relaxed) {
                        let report = worker.run_once().await.expect("worker");
                        worker_settled.fetch_add(report.settled as u64, Ordering::Relaxed);
                        if report.received == 0 {
                            tokio::time::sleep(IDLE_POLL).await;
                        }
                    }
                })
            })
            .collect();
        let requests: Vec<_> = (0..count).map(|_| self.request(hot)).collect();
        let queue = Arc::new(parking_lot::Mutex::new(requests));
        let accepting = (0..load.clients).map(|_| {
            let (queue, service) = (queue.clone(), self.service.clone());
            tokio::spawn(async move {
                loop {
                    let Some((caller, key, request)) = queue.lock().pop() else { break };
                    service.accept(&caller, key, request).await.expect("accept");
                }
            })
        });
        for client in join_all(accepting).await {
            client.expect("client");
        }
        while settled.load(Ordering::Relaxed) < count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.store(true, Ordering::Relaxed);
        relay_task.await.expect("relay task");
        for worker_task in worker_tasks {
            worker_task.await.expect("worker task");
        }
        // Publish the last settlements' events too, so the next run starts from an empty outbox.
        while self.relay.run_once(4096).await.expect("relay") > 0 {}
    }
}
