//! Throughput of the whole transfers pipeline on the durable bank-local stores (one SQLite
//! database in a temporary directory, every commit fsynced), run as the server runs it: the
//! outbox relay and the worker loop in their own tasks while concurrent clients accept
//! transfers (idempotency key, ownership and funds checks, hold, transfer + outbox write); the
//! worker marks each transfer processing, posts its hold, settles it with its event and acks.
//! Every stage's writes join the database writer's group commits.
//!
//! Target (issue): at least 5,000 internal transfers per second accepted and settled, with 1,000
//! accounts; the figure with one hot source account is reported too.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::clock::{Clock, SystemClock};
use bank_core::faults::NoFaults;
use bank_core::payments::PaymentsPorts;
use bank_core::queue::QueueConfig;
use bank_local::db::LocalDb;
use bank_local::events::SqliteEventBus;
use bank_local::idempotency::SqliteIdempotencyStore;
use bank_local::ledger::SqliteLedger;
use bank_local::queue::SqliteQueue;
use bank_local::transfers::SqliteTransferStore;
use common::Bank;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Clients accepting transfers at the same time (each waits for its answer before the next).
const CLIENTS: usize = 256;

async fn bank(dir: &TempDir) -> (Bank, LocalDb) {
    let db = LocalDb::open(dir.path()).await.expect("open database");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ports = PaymentsPorts {
        ledger: Arc::new(SqliteLedger::new(&db, clock.clone())),
        transfers: Arc::new(SqliteTransferStore::new(&db, clock.clone())),
        idempotency: Arc::new(SqliteIdempotencyStore::new(&db, clock.clone())),
        queue: Arc::new(SqliteQueue::new(&db, clock.clone(), QueueConfig::default())),
        clock: clock.clone(),
        faults: Arc::new(NoFaults),
    };
    let bus = Arc::new(SqliteEventBus::new(&db, clock, 1 << 24));
    (Bank::new(ports, bus).await, db)
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
        let dir = TempDir::new().expect("temp dir");
        let (mut bank, db) = rt.block_on(bank(&dir));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(bank.run_continuous(iters, hot, CLIENTS));
                start.elapsed()
            })
        });
        drop(bank);
        rt.block_on(db.close());
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
