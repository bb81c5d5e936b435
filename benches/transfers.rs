//! Throughput of the whole transfers pipeline on in-memory ports, on one core: accept (idempotency
//! key, ownership and funds checks, hold, transfer + outbox write) → relay (queue + events) →
//! worker (mark processing, post the hold, settle with its event, ack).
//!
//! Target (issue): at least 100,000 internal transfers per second accepted and settled.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::clock::{Clock, SystemClock};
use bank_core::faults::NoFaults;
use bank_core::memory::MemoryLedger;
use bank_core::memory::bus::MemoryEventBus;
use bank_core::memory::idempotency::MemoryIdempotencyStore;
use bank_core::memory::queue::MemoryQueue;
use bank_core::memory::transfers::MemoryTransferStore;
use bank_core::payments::PaymentsPorts;
use bank_core::queue::QueueConfig;
use common::Bank;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Transfers accepted before the relay and worker drain them.
const WAVE: u64 = 512;

async fn bank() -> Bank {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ports = PaymentsPorts {
        ledger: Arc::new(MemoryLedger::new(clock.clone())),
        transfers: Arc::new(MemoryTransferStore::new(clock.clone())),
        idempotency: Arc::new(MemoryIdempotencyStore::new(clock.clone())),
        queue: Arc::new(MemoryQueue::new(clock.clone(), QueueConfig::default())),
        clock,
        faults: Arc::new(NoFaults),
    };
    Bank::new(ports, Arc::new(MemoryEventBus::new(1 << 20))).await
}

fn transfers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("transfers_internal");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for (name, hot) in [("accept_and_settle/1000_accounts", false), ("accept_and_settle/hot_source", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut bank = rt.block_on(bank());
                let start = Instant::now();
                rt.block_on(bank.run_waves(iters, hot, WAVE));
                // Dropping the bank (millions of records) happens after the clock stopped.
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
