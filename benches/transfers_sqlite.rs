//! Throughput of the whole transfers pipeline on the durable embedded backend (`LocalBackend`: its
//! two SQLite files — ledger and the rest — in a temporary directory, every commit fsynced), run as
//! the server runs it: the outbox relay and the worker loop in their own tasks while concurrent
//! clients accept transfers (idempotency key, ownership and funds checks, hold, transfer + outbox
//! write); the worker marks each transfer processing, posts its hold, settles it with its event
//! and acks. Every stage's writes join the group commits of their file's writer.
//!
//! Target (issue): at least 5,000 internal transfers per second accepted and settled, with 1,000
//! accounts; the figure with one hot source account is reported too.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::clock::SystemClock;
use bank_core::money::Currency;
use bank_local::backend::{LocalBackend, LocalConfig};
use common::{Bank, Load};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Clients accepting transfers at the same time (each waits for its answer before the next), unless
/// `BENCH_CLIENTS` says otherwise; `BENCH_WORKER_LOOPS` sets the worker loops ([`Load`]).
const CLIENTS: usize = 256;

/// The bank on the embedded backend exactly as the server assembles it (`LocalBackend`: the
/// transfer store delivers queue messages and events directly, the relay finds nothing to do).
async fn bank(dir: &TempDir) -> (Bank, LocalBackend) {
    let config = LocalConfig { currencies: vec![Currency::Usd], ..LocalConfig::new(dir.path()) };
    let backend = LocalBackend::open(&config, Arc::new(SystemClock)).await.expect("open backend");
    (Bank::new(backend.payments.clone(), backend.events.clone()).await, backend)
}

fn transfers(c: &mut Criterion) {
    let load = Load::from_env(CLIENTS);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("transfers_internal_sqlite");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, hot) in [("accept_and_settle/1000_accounts", false), ("accept_and_settle/hot_source", true)] {
        // One database per benchmark, reused by every sample: opening and funding 1,000 accounts
        // on a fresh database per sample would dominate the run.
        let dir = TempDir::new().expect("temp dir");
        let (mut bank, backend) = rt.block_on(bank(&dir));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(bank.run_continuous(iters, hot, load));
                start.elapsed()
            })
        });
        drop(bank);
        rt.block_on(backend.close());
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
