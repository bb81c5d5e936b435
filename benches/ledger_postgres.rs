//! Durable throughput of the PostgreSQL ledger ([`PgLedger`]): every commit is flushed to disk
//! (`synchronous_commit = on`, the server's default), many callers at once, group commit.
//!
//! Target (issue 13): the pipeline must later settle ≥ 5,000 transfers/s over 1,000 accounts and
//! ≥ 1,000/s from one hot account, and each transfer costs the ledger a hold and a `post_hold`,
//! so the ledger alone should do well above 10,000 operations/s. One commit per operation caps
//! near the disk's 4–5K flushes/s; batching is what goes past it.
//!
//! Groups (each operation a two-leg posting or a hold, by [`CALLERS`] concurrent callers, each
//! waiting for its answer before its next call; one criterion iteration is
//! [`ROUNDS_PER_ITERATION`] calls of every caller):
//! - `spread`: between random pairs of [`ACCOUNTS`] accounts;
//! - `hot_source`: from one account to random others;
//! - in each, `post` (one posting per operation) and `hold_post_hold` (a transfer's ledger work:
//!   a hold, then its capture; throughput counts operations, two per transfer).
//!
//! Runs against the test database (`BANK_TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/bank_test`), in a fresh schema; without PostgreSQL it
//! says so and measures nothing. `BANK_BENCH_COMMITTERS` and `BANK_BENCH_BATCH_OPS_MAX` override
//! the ledger's batching (for tuning). After each benchmark it prints how the operations were
//! batched.
//!
//! `cargo bench --bench ledger_postgres -- --quick`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_aws::postgres::ledger::{BatchStats, LedgerConfig, PgLedger};
use bank_aws::postgres::testing::test_db_with;
use bank_core::account::{AccountKind, NewAccount};
use bank_core::clock::SystemClock;
use bank_core::ids::{AccountId, CustomerId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry, NewHold, PostHold};
use bank_core::money::{Currency, Money, TRANSFER_AMOUNT_MAX};
use bank_core::ports::LedgerStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use tokio::runtime::Runtime;

#[path = "common/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// Customer accounts.
const ACCOUNTS: usize = 1_000;
/// Concurrent callers.
const CALLERS: usize = 256;
/// Iterations each caller runs per criterion iteration: one criterion iteration is
/// `CALLERS × ROUNDS_PER_ITERATION` iterations of the work, so even the smallest sample keeps
/// every caller busy (a throughput figure, not the latency of a lone call).
const ROUNDS_PER_ITERATION: u64 = 4;
/// Connections of the ledger's pool (its committers hold one each while they run a batch).
const POOL_CONNECTIONS: u32 = 16;
/// Deposits of [`TRANSFER_AMOUNT_MAX`] into each account (far more than a run can move).
const DEPOSITS_PER_ACCOUNT: usize = 1;

/// The ledger's batching for this run.
fn config() -> LedgerConfig {
    let read = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let default = LedgerConfig::default();
    LedgerConfig {
        committers: read("BANK_BENCH_COMMITTERS", default.committers),
        batch_ops_max: read("BANK_BENCH_BATCH_OPS_MAX", default.batch_ops_max),
    }
}

/// A ledger in a fresh schema with [`ACCOUNTS`] funded customer accounts; `None` without
/// PostgreSQL.
async fn fixture() -> Option<(Arc<PgLedger>, Vec<AccountId>)> {
    let db = test_db_with(POOL_CONNECTIONS).await?;
    let ledger = Arc::new(PgLedger::with_config(&db, Arc::new(SystemClock), config()));
    let bank = CustomerId::new();
    let settlement = NewAccount::internal(bank, "settlement", Currency::Usd, AccountKind::Settlement);
    let settlement = ledger.open_account(settlement).await.expect("open the settlement account").id;
    // One owner per account (an owner holds at most ACCOUNTS_PER_OWNER_MAX).
    let accounts: Vec<AccountId> = futures::stream::iter(0..ACCOUNTS)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            async move {
                let new = NewAccount::customer(CustomerId::new(), format!("customer {i}"), Currency::Usd);
                ledger.open_account(new).await.expect("open a customer account").id
            }
        })
        .buffered(64)
        .collect()
        .await;
    let max = Money::new(TRANSFER_AMOUNT_MAX, Currency::Usd).expect("the maximum is a valid amount");
    let deposits: Vec<NewEntry> = accounts
        .iter()
        .flat_map(|&to| (0..DEPOSITS_PER_ACCOUNT).map(move |_| to))
        .map(|to| NewEntry::transfer(key(), settlement, to, max, "funding").expect("valid entry"))
        .collect();
    for chunk in deposits.chunks(250) {
        for result in ledger.post_batch(chunk.to_vec()).await {
            result.expect("fund an account");
        }
    }
    Some((ledger, accounts))
}

fn key() -> EntryKey {
    EntryKey::new(TransferId::new(), 0)
}

/// Where postings come from.
#[derive(Clone, Copy)]
enum Source {
    /// Random pairs of accounts.
    Spread,
    /// The hot account (`accounts[0]`) to random others.
    Hot,
}

/// What one caller does per iteration.
#[derive(Clone, Copy)]
enum Work {
    /// One posting.
    Post,
    /// A hold on the source and its capture to the destination (two operations).
    HoldPostHold,
}

impl Work {
    /// Ledger operations per iteration.
    fn ops(self) -> u64 {
        match self {
            Work::Post => 1,
            Work::HoldPostHold => 2,
        }
    }
}

/// Each of [`CALLERS`] concurrent callers runs `rounds` iterations of `work`; how long it took.
async fn run(
    ledger: &Arc<PgLedger>,
    accounts: &Arc<Vec<AccountId>>,
    (source, work): (Source, Work),
    rounds: u64,
    seed: u32,
) -> Duration {
    let callers = u64::try_from(CALLERS).expect("fits");
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (ledger, accounts) = (Arc::clone(ledger), Arc::clone(accounts));
            let mut rng = XorShift(seed ^ (u32::try_from(caller).expect("fits") + 1).wrapping_mul(0x9E37_79B9));
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let (from, to) = match source {
                        Source::Spread => rng.pair(accounts.len()),
                        Source::Hot => (0, 1 + rng.below(accounts.len() - 1)),
                    };
                    let (from, to, money) = (accounts[from], accounts[to], rng.usd());
                    match work {
                        Work::Post => {
                            let entry = NewEntry::transfer(key(), from, to, money, "bench").expect("valid entry");
                            ledger.post(entry).await.expect("posting succeeds");
                        }
                        Work::HoldPostHold => {
                            let expires_at = chrono::Utc::now() + chrono::TimeDelta::minutes(10);
                            let hold = NewHold {
                                id: HoldId::new(),
                                account_id: from,
                                money,
                                expires_at,
                                reference: "bench".into(),
                            };
                            let hold = ledger.hold(hold).await.expect("hold succeeds");
                            let capture = PostHold {
                                hold_id: hold.id,
                                key: key(),
                                amount: None,
                                credit_account: to,
                                reference: "bench".into(),
                            };
                            ledger.post_hold(capture).await.expect("capture succeeds");
                        }
                    }
                }
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.expect("caller task");
    }
    start.elapsed()
}

/// Prints how the operations since `before` were batched.
fn report(name: &str, before: BatchStats, after: BatchStats) {
    let (batches, ops) = (after.batches - before.batches, after.operations - before.operations);
    let per_batch = ops.checked_div(batches).unwrap_or(0);
    println!(
        "{name}: {ops} operations in {batches} transactions (~{per_batch} per commit; largest batch so far {})",
        after.largest
    );
}

fn ledger_postgres(c: &mut Criterion) {
    let rt = Runtime::new().expect("build a tokio runtime");
    let Some((ledger, accounts)) = rt.block_on(fixture()) else {
        println!("ledger_postgres: PostgreSQL is not reachable; nothing measured");
        return;
    };
    let accounts = Arc::new(accounts);
    let config = config();
    println!(
        "ledger_postgres: {} committers, batches of at most {} operations",
        config.committers, config.batch_ops_max
    );
    for (group_name, source) in [("spread", Source::Spread), ("hot_source", Source::Hot)] {
        let mut group = c.benchmark_group(format!("ledger_postgres/{group_name}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
        for (name, work) in [("post", Work::Post), ("hold_post_hold", Work::HoldPostHold)] {
            let callers = u64::try_from(CALLERS).expect("fits");
            group.throughput(Throughput::Elements(work.ops() * callers * ROUNDS_PER_ITERATION));
            let before = ledger.batch_stats();
            let mut seed = 0x2545_F491u32;
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    seed = seed.wrapping_add(1);
                    rt.block_on(run(&ledger, &accounts, (source, work), iters * ROUNDS_PER_ITERATION, seed))
                });
            });
            report(&format!("ledger_postgres/{group_name}/{name}"), before, ledger.batch_stats());
        }
        group.finish();
    }
}

criterion_group!(benches, ledger_postgres);
criterion_main!(benches);
