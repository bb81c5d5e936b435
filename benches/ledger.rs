//! Throughput of the in-memory ledger ([`MemoryLedger`]) on one core.
//!
//! Target (issue): at least 1,000,000 two-leg postings per second on one core, aiming for 2,000,000.
//!
//! Every measured loop pays what a caller pays: building and validating the [`NewEntry`] (a fresh
//! UUID v7 transfer id, the line vector, the reference string) and awaiting the port call. The
//! tokio runtime is built once and entered once per sample (`iter_custom`), so runtime start-up is
//! not measured.
//!
//! The ledger is append-only and keeps every entry, so a long run would grow without bound: a
//! bench swaps in a fresh ledger (outside the timed part) before it would pass
//! [`POSTINGS_PER_LEDGER_MAX`] postings.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::account::{AccountKind, NewAccount};
use bank_core::clock::SystemClock;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::memory::MemoryLedger;
use bank_core::money::{Currency, Money, TRANSFER_AMOUNT_MAX};
use bank_core::ports::LedgerStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

#[path = "common/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// Customer accounts postings pick from.
const ACCOUNTS: usize = 1_000;
/// Entries per `post_batch` call.
const BATCH_ENTRIES: usize = 64;
/// A ledger is replaced before it would hold more postings than this (about 0.7 GB at ~350 bytes
/// per posting: the entry, its two lines, its key index and two history slots).
const POSTINGS_PER_LEDGER_MAX: u64 = 2_000_000;
/// Deposits of [`TRANSFER_AMOUNT_MAX`] into the hot account. One would do
/// (`POSTINGS_PER_LEDGER_MAX × 100.00 = 2e8 ≪ 1e12`); several keep it funded if the limits above grow.
const HOT_ACCOUNT_DEPOSITS: u32 = 4;

/// A ledger with [`ACCOUNTS`] funded customer accounts, and how many postings it has taken.
struct Fixture {
    ledger: MemoryLedger,
    accounts: Vec<AccountId>,
    postings: u64,
}

impl Fixture {
    /// Opens a settlement account and [`ACCOUNTS`] customer accounts, credits each customer with
    /// [`TRANSFER_AMOUNT_MAX`] (no run of [`POSTINGS_PER_LEDGER_MAX`] postings of at most
    /// 100.00 can drain one), and `accounts[0]` with `hot_deposits` more.
    async fn new(hot_deposits: u32) -> Fixture {
        // Sized for the postings it will take: see `MemoryLedger::with_capacity`.
        let ledger =
            MemoryLedger::with_capacity(Arc::new(SystemClock), usize::try_from(POSTINGS_PER_LEDGER_MAX).expect("fits"));
        let bank = CustomerId::new();
        let settlement = ledger
            .open_account(NewAccount::internal(bank, "settlement", Currency::Usd, AccountKind::Settlement))
            .await
            .expect("open settlement account");
        let max = Money::new(TRANSFER_AMOUNT_MAX, Currency::Usd).expect("the maximum is a valid amount");
        let mut accounts = Vec::with_capacity(ACCOUNTS);
        for i in 0..ACCOUNTS {
            // An owner holds at most ACCOUNTS_PER_OWNER_MAX accounts: one owner per account.
            let new = NewAccount::customer(CustomerId::new(), format!("customer {i}"), Currency::Usd);
            let account = ledger.open_account(new).await.expect("open customer account");
            let deposits = if i == 0 { 1 + hot_deposits } else { 1 };
            for _ in 0..deposits {
                let key = EntryKey::new(TransferId::new(), 0);
                let entry = NewEntry::transfer(key, settlement.id, account.id, max, "funding").expect("valid entry");
                ledger.post(entry).await.expect("fund customer account");
            }
            accounts.push(account.id);
        }
        Fixture { ledger, accounts, postings: 0 }
    }

    /// Replaces the ledger with a fresh one if `next` more postings would pass
    /// [`POSTINGS_PER_LEDGER_MAX`]. Call outside the timed part: it builds one ledger and drops another.
    fn make_room(&mut self, rt: &Runtime, next: u64, hot_deposits: u32) {
        if self.postings > 0 && self.postings + next > POSTINGS_PER_LEDGER_MAX {
            *self = rt.block_on(Fixture::new(hot_deposits));
        }
    }
}

/// A current-thread runtime: the ledger is measured on one core.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("build a tokio runtime")
}

fn post_two_leg(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("post_two_leg");
    group.throughput(Throughput::Elements(1));

    let mut fixture = rt.block_on(Fixture::new(0));
    let mut rng = XorShift(0x9E37_79B9);
    group.bench_function("1000_accounts", |b| {
        b.iter_custom(|iters| {
            fixture.make_room(&rt, iters, 0);
            let Fixture { ledger, accounts, .. } = &fixture;
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let (from, to) = rng.pair(accounts.len());
                    let key = EntryKey::new(TransferId::new(), 0);
                    let entry =
                        NewEntry::transfer(key, accounts[from], accounts[to], rng.usd(), "bench").expect("valid entry");
                    black_box(ledger.post(entry).await.expect("posting succeeds"));
                }
            });
            let elapsed = start.elapsed();
            fixture.postings += iters;
            elapsed
        });
    });

    drop(fixture); // frees the first ledger's entries before the second run fills another
    let mut fixture = rt.block_on(Fixture::new(HOT_ACCOUNT_DEPOSITS));
    group.bench_function("hot_account", |b| {
        b.iter_custom(|iters| {
            fixture.make_room(&rt, iters, HOT_ACCOUNT_DEPOSITS);
            let Fixture { ledger, accounts, .. } = &fixture;
            let hot = accounts[0];
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let to = accounts[1 + rng.below(accounts.len() - 1)];
                    let key = EntryKey::new(TransferId::new(), 0);
                    let entry = NewEntry::transfer(key, hot, to, rng.usd(), "bench").expect("valid entry");
                    black_box(ledger.post(entry).await.expect("posting succeeds"));
                }
            });
            let elapsed = start.elapsed();
            fixture.postings += iters;
            elapsed
        });
    });
    group.finish();
}

fn post_batch(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("post_batch");
    // One iteration is one batch; throughput counts postings.
    group.throughput(Throughput::Elements(BATCH_ENTRIES as u64));

    let mut fixture = rt.block_on(Fixture::new(0));
    let mut rng = XorShift(0x85EB_CA6B);
    group.bench_function("1000_accounts", |b| {
        b.iter_custom(|iters| {
            let postings = iters * BATCH_ENTRIES as u64;
            fixture.make_room(&rt, postings, 0);
            let Fixture { ledger, accounts, .. } = &fixture;
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let batch: Vec<NewEntry> = (0..BATCH_ENTRIES)
                        .map(|_| {
                            let (from, to) = rng.pair(accounts.len());
                            let key = EntryKey::new(TransferId::new(), 0);
                            NewEntry::transfer(key, accounts[from], accounts[to], rng.usd(), "bench")
                                .expect("valid entry")
                        })
                        .collect();
                    for result in ledger.post_batch(batch).await {
                        black_box(result.expect("posting succeeds"));
                    }
                }
            });
            let elapsed = start.elapsed();
            fixture.postings += postings;
            elapsed
        });
    });
    group.finish();
}

fn balance_read(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("balance_read");
    group.throughput(Throughput::Elements(1));

    // Reads do not grow the ledger: one fixture serves the whole run.
    let fixture = rt.block_on(Fixture::new(0));
    let mut rng = XorShift(0xC2B2_AE35);
    group.bench_function("1000_accounts", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let id = fixture.accounts[rng.below(fixture.accounts.len())];
                    black_box(fixture.ledger.balance(id).await.expect("balance of an open account"));
                }
            });
            start.elapsed()
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = post_two_leg, post_batch, balance_read
}
criterion_main!(benches);
