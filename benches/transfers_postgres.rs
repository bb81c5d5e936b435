//! Throughput of the whole transfers pipeline with the ledger and the transfers (with their
//! outbox) on PostgreSQL, assembled as the server assembles it with `BANK_DATABASE_URL` set: the
//! idempotency keys, the queue and the event bus stay in the embedded SQLite database (until the
//! AWS adapters replace them). Concurrent clients accept transfers (idempotency key, ownership and
//! funds checks, hold, transfer + outbox write); the outbox relay and the worker loop run in their
//! own tasks: the worker marks each transfer processing, posts its hold, settles it with its event
//! and acks. PostgreSQL commits with `synchronous_commit=on` (its default; checked below), every
//! store groups concurrent writes into one transaction.
//!
//! Target (issue 13): ≥ 5,000 settled transfers/s over 1,000 accounts and ≥ 1,000/s when every
//! transfer debits one hot account. Needs PostgreSQL (`BANK_TEST_DATABASE_URL`, or the default of
//! `bank_aws::postgres::testing`); without it the benchmark prints why and measures nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_aws::postgres::PgStores;
use bank_aws::postgres::testing::test_db_with;
use bank_core::clock::{Clock, SystemClock};
use bank_core::money::Currency;
use bank_core::payments::PaymentsPorts;
use bank_local::backend::{LocalBackend, LocalConfig};
use common::{Bank, Load};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Clients accepting transfers at the same time (each waits for its answer before the next), unless
/// `BENCH_CLIENTS` says otherwise; `BENCH_WORKER_LOOPS` sets the worker loops ([`Load`]).
const CLIENTS: usize = 256;
/// Connections per pool.
const POOL: u32 = 32;

/// The bank on the PostgreSQL assembly; `None` when PostgreSQL is absent.
async fn bank(dir: &TempDir) -> Option<(Bank, LocalBackend, PgStores)> {
    let db = test_db_with(POOL).await?;
    let sync: String = sqlx_setting(&db).await;
    assert_eq!(sync, "on", "the benchmark measures durable commits");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = LocalConfig { currencies: vec![Currency::Usd], ..LocalConfig::new(dir.path()) };
    let local = LocalBackend::open(&config, Arc::clone(&clock)).await.expect("open local backend");
    let stores = PgStores::open(&db, clock, &[Currency::Usd]).await.expect("open PostgreSQL stores");
    let payments =
        PaymentsPorts { ledger: stores.ledger.clone(), transfers: stores.transfers.clone(), ..local.payments.clone() };
    Some((Bank::new(payments, local.events.clone()).await, local, stores))
}

async fn sqlx_setting(db: &bank_aws::postgres::PgDb) -> String {
    db.setting("synchronous_commit").await.expect("read synchronous_commit")
}

fn transfers(c: &mut Criterion) {
    let load = Load::from_env(CLIENTS);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("transfers_internal_postgres");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, hot) in [("accept_and_settle/1000_accounts", false), ("accept_and_settle/hot_source", true)] {
        let dir = TempDir::new().expect("temp dir");
        let Some((mut bank, local, stores)) = rt.block_on(bank(&dir)) else {
            eprintln!("transfers_postgres: PostgreSQL is absent; nothing measured");
            return;
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(bank.run_continuous(iters, hot, load));
                start.elapsed()
            })
        });
        drop(bank);
        rt.block_on(async {
            local.close().await;
            stores.db.close().await;
        });
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
