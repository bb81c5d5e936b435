//! `SqliteLedger` against the `LedgerStore` conformance suite, plus what only a durable store
//! must show: append-only enforced by the database, durability across a reopen, and group commit
//! under many concurrent callers.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bank_core::Error;
use bank_core::account::{AccountKind, NewAccount};
use bank_core::clock::{Clock, ManualClock, SystemClock};
use bank_core::ids::{AccountId, CustomerId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, HistoryQuery, HoldStatus, NewEntry, NewHold};
use bank_core::money::{Currency, Money};
use bank_core::ports::LedgerStore;
use bank_core::testkit::ledger::LedgerHarness;
use bank_local::db::LocalDb;
use bank_local::ledger::SqliteLedger;
use chrono::TimeDelta;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use tempfile::TempDir;

/// Builds each case's store in a fresh temporary directory. The harness lives for the whole case
/// (the conformance macro evaluates it inside the test), so it keeps the directories alive.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl LedgerHarness for Harness {
    async fn ledger(&self, clock: Arc<dyn Clock>) -> Arc<dyn LedgerStore> {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        self.dirs.lock().push(dir);
        Arc::new(SqliteLedger::new(&db, clock))
    }
}

bank_core::ledger_conformance_tests!(Harness::default());

fn usd(amount: &str) -> Money {
    Money::parse(amount, "USD").expect("valid amount")
}

fn dec(text: &str) -> Decimal {
    bank_core::money::parse_decimal(text).expect("valid decimal")
}

fn transfer(from: AccountId, to: AccountId, money: Money) -> NewEntry {
    NewEntry::transfer(EntryKey::new(TransferId::new(), 0), from, to, money, "test").expect("valid entry")
}

/// A settlement account and `customers` customer accounts.
async fn setup(ledger: &SqliteLedger, customers: usize) -> (AccountId, Vec<AccountId>) {
    let bank = CustomerId::new();
    let settlement = ledger
        .open_account(NewAccount::internal(bank, "USD settlement", Currency::Usd, AccountKind::Settlement))
        .await
        .expect("open settlement")
        .id;
    let mut accounts = Vec::with_capacity(customers);
    for i in 0..customers {
        let new = NewAccount::customer(CustomerId::new(), format!("Customer {i}"), Currency::Usd);
        accounts.push(ledger.open_account(new).await.expect("open customer").id);
    }
    (settlement, accounts)
}

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_posted_entries() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let ledger = SqliteLedger::new(&db, Arc::new(SystemClock));
    let (settlement, customers) = setup(&ledger, 1).await;
    let entry = transfer(settlement, customers[0], usd("10.00"));
    let posted = ledger.post(entry.clone()).await.expect("post");

    for sql in [
        "UPDATE entries SET reference = 'edited'",
        "DELETE FROM entries",
        "UPDATE entry_lines SET amount = '1000.00'",
        "DELETE FROM entry_lines",
    ] {
        let err = db.connect().expect("connect").execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(ledger.entry(entry.key()).await.expect("entry"), posted, "the entry changed");
    assert_eq!(ledger.balance(customers[0]).await.expect("balance").posted, dec("10.00"));
}

#[tokio::test]
async fn postings_survive_closing_and_reopening_the_database() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let (settlement, alice, bob, hold_id, first, history_before, balances_before) = {
        let db = LocalDb::open(dir.path()).await.expect("open");
        let ledger = SqliteLedger::new(&db, Arc::new(clock.clone()));
        let (settlement, customers) = setup(&ledger, 2).await;
        let (alice, bob) = (customers[0], customers[1]);
        let first = ledger.post(transfer(settlement, alice, usd("100.00"))).await.expect("deposit");
        for _ in 0..5 {
            ledger.post(transfer(alice, bob, usd("7.25"))).await.expect("post");
        }
        let hold = NewHold {
            id: HoldId::new(),
            account_id: alice,
            money: usd("20.00"),
            expires_at: clock.now() + TimeDelta::hours(1),
            reference: "hold".into(),
        };
        let hold_id = ledger.hold(hold).await.expect("hold").id;
        let history = ledger.history(alice, HistoryQuery::first_page()).await.expect("history");
        let mut balances = Vec::new();
        for id in [settlement, alice, bob] {
            balances.push(ledger.balance(id).await.expect("balance"));
        }
        drop(ledger);
        db.close().await;
        (settlement, alice, bob, hold_id, first, history, balances)
    };

    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let ledger = SqliteLedger::new(&db, Arc::new(clock.clone()));
    let mut balances = Vec::new();
    for id in [settlement, alice, bob] {
        balances.push(ledger.balance(id).await.expect("balance"));
    }
    assert_eq!(balances, balances_before);
    assert_eq!(balances[1].posted, dec("63.75"));
    assert_eq!((balances[1].pending, balances[1].available), (dec("20.00"), Some(dec("43.75"))));
    assert_eq!(balances[1].sequence, 6);
    assert_eq!(ledger.history(alice, HistoryQuery::first_page()).await.expect("history"), history_before);
    assert_eq!(ledger.entry(first.key).await.expect("entry"), first);
    assert_eq!(ledger.get_hold(hold_id).await.expect("hold").status, HoldStatus::Active);
    // The held funds are still reserved, and numbering continues without a gap.
    assert!(matches!(ledger.post(transfer(alice, bob, usd("43.76"))).await, Err(Error::InsufficientFunds { .. })));
    let next = ledger.post(transfer(alice, bob, usd("43.75"))).await.expect("post");
    assert_eq!(next.line_of(alice).map(|l| l.sequence), Some(7));
    assert_eq!(ledger.post(first.clone().into_new()).await.expect("replay after reopen"), first);
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Re-creates the request a posted entry came from (to replay it).
trait IntoNew {
    fn into_new(self) -> NewEntry;
}

impl IntoNew for bank_core::ledger::PostedEntry {
    fn into_new(self) -> NewEntry {
        let lines = self
            .lines
            .iter()
            .map(|l| bank_core::ledger::Line { account_id: l.account_id, side: l.side, money: l.money })
            .collect();
        NewEntry::new(self.key, lines, self.reference).expect("a posted entry is valid")
    }
}

/// A batch whose COMMIT fails answers every caller with a retryable error, commits nothing, and
/// leaves no trace in the writer's cache (the next postings get gap-free sequences).
#[tokio::test]
async fn a_failed_commit_fails_the_whole_batch_and_forgets_it() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    // A deferred foreign key is checked only at COMMIT: an entry with reference "poison" makes
    // the commit of its batch fail, as a full disk or an I/O error would.
    db.connect()
        .expect("connect")
        .execute_batch(
            "CREATE TABLE poison_parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE poison (parent INTEGER REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED); \
             CREATE TRIGGER poison_commit AFTER INSERT ON entries WHEN new.reference = 'poison' \
             BEGIN INSERT INTO poison VALUES (42); END;",
        )
        .expect("install the fault");
    let ledger = SqliteLedger::new(&db, Arc::new(SystemClock));
    let (settlement, customers) = setup(&ledger, 1).await;
    let alice = customers[0];
    ledger.post(transfer(settlement, alice, usd("10.00"))).await.expect("deposit");
    let poison = NewEntry::transfer(EntryKey::new(TransferId::new(), 0), settlement, alice, usd("1.00"), "poison")
        .expect("entry");
    let good = transfer(settlement, alice, usd("2.00"));

    let results = ledger.post_batch(vec![good.clone(), poison.clone(), transfer(alice, settlement, usd("3.00"))]).await;
    assert_eq!(results.len(), 3);
    for result in results {
        match result {
            Err(err @ Error::Storage { .. }) => assert!(err.is_retryable(), "{err}"),
            other => panic!("expected a retryable storage failure, got {other:?}"),
        }
    }
    assert!(matches!(ledger.entry(good.key()).await, Err(Error::EntryNotFound(_))), "part of the batch committed");
    let balance = ledger.balance(alice).await.expect("balance");
    assert_eq!((balance.posted, balance.sequence), (dec("10.00"), 1));

    // The retry of the good entry posts it once, with the next sequence number.
    let posted = ledger.post(good).await.expect("retry");
    assert_eq!(posted.line_of(alice).map(|l| (l.sequence, l.balance_after)), Some((2, dec("12.00"))));
    assert_eq!(ledger.balance(settlement).await.expect("balance").sequence, 2);
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Concurrent callers of the one-writer store.
const TASKS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_posts_are_group_committed_by_one_writer() {
    const POSTS_PER_TASK: usize = 40;
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let ledger = Arc::new(SqliteLedger::new(&db, Arc::new(SystemClock)));
    let (settlement, customers) = setup(&ledger, TASKS).await;
    let before = ledger.writer_stats();
    let tasks: Vec<_> = customers
        .iter()
        .map(|&customer| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                for _ in 0..POSTS_PER_TASK {
                    ledger.post(transfer(settlement, customer, usd("1.50"))).await.expect("every post succeeds");
                }
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    let after = ledger.writer_stats();
    let commands = after.commands - before.commands;
    let batches = after.batches - before.batches;
    assert_eq!(commands, (TASKS * POSTS_PER_TASK) as u64);
    assert!(batches * 4 < commands, "{commands} commands took {batches} transactions: no group commit");
    for &customer in &customers {
        let balance = ledger.balance(customer).await.expect("balance");
        assert_eq!((balance.posted, balance.sequence), (dec("60.00"), POSTS_PER_TASK as u64));
    }
    let settlement_balance = ledger.balance(settlement).await.expect("balance");
    assert_eq!(settlement_balance.posted, -dec("60.00") * Decimal::from(TASKS as u64));
    assert_eq!(settlement_balance.sequence, (TASKS * POSTS_PER_TASK) as u64);
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Not a test: the throughput figure. Run with
/// `cargo test --release -p bank-local --test ledger -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_postings_per_second() {
    const TRANSFERS: usize = 20_000;
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let ledger = Arc::new(SqliteLedger::new(&db, Arc::new(SystemClock)));
    let (settlement, customers) = setup(&ledger, TASKS).await;
    let before = ledger.writer_stats();
    let started = Instant::now();
    let tasks: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(task, &customer)| {
            let ledger = Arc::clone(&ledger);
            let transfers = TRANSFERS / TASKS + usize::from(task < TRANSFERS % TASKS);
            tokio::spawn(async move {
                for _ in 0..transfers {
                    ledger.post(transfer(settlement, customer, usd("1.00"))).await.expect("post");
                }
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    let elapsed = started.elapsed();
    let stats = ledger.writer_stats();
    let posted = TRANSFERS;
    println!(
        "{posted} two-leg postings from {TASKS} tasks in {:.2?}: {:.0} postings/s, {} transactions \
         (avg {:.1} postings per commit)",
        elapsed,
        posted as f64 / elapsed.as_secs_f64(),
        stats.batches - before.batches,
        (stats.commands - before.commands) as f64 / (stats.batches - before.batches) as f64,
    );
}
