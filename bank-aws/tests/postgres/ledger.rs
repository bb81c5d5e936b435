//! `PgLedger` against the `LedgerStore` conformance suite, plus what only a durable store shared
//! by several processes must show: durability across a new connection, group commit, batches
//! that fail (at COMMIT, or on a key another process wrote) without failing an innocent
//! operation, no deadlock and no lost update under contention from two "processes", and the
//! per-owner cap under concurrent openings.

use std::sync::Arc;
use std::time::Duration;

use bank_aws::postgres::PgDb;
use bank_aws::postgres::ledger::{LedgerConfig, PgLedger};
use bank_core::Error;
use bank_core::account::{AccountKind, NewAccount};
use bank_core::clock::{Clock, ManualClock, SystemClock};
use bank_core::ids::{AccountId, CustomerId, HoldId};
use bank_core::ledger::{HistoryQuery, HoldStatus, Line, NewEntry, NewHold, PAGE_LIMIT_MAX, PostHold};
use bank_core::money::{Currency, Money};
use bank_core::ports::{ACCOUNTS_PER_OWNER_MAX, LedgerStore};
use chrono::TimeDelta;
use rand::Rng;
use rust_decimal::Decimal;

use crate::harness::{Harness, reconnect};
use crate::raw;

bank_core::ledger_conformance_tests!(match Harness::start().await {
    Some(harness) => harness,
    None => return,
});

fn usd(amount: &str) -> Money {
    Money::parse(amount, "USD").expect("valid amount")
}

fn dec(text: &str) -> Decimal {
    bank_core::money::parse_decimal(text).expect("valid decimal")
}

fn transfer(from: AccountId, to: AccountId, money: Money) -> NewEntry {
    NewEntry::transfer(raw::key(), from, to, money, "test").expect("valid entry")
}

/// A fresh schema, or `None` (skip).
async fn fresh_db() -> Option<PgDb> {
    Some(Harness::start().await?.db().await)
}

/// A settlement account and `customers` customer accounts.
async fn setup(ledger: &dyn LedgerStore, customers: usize) -> (AccountId, Vec<AccountId>) {
    let bank = CustomerId::new();
    let settlement = NewAccount::internal(bank, "USD settlement", Currency::Usd, AccountKind::Settlement);
    let settlement = ledger.open_account(settlement).await.expect("open settlement").id;
    let mut accounts = Vec::with_capacity(customers);
    for i in 0..customers {
        let new = NewAccount::customer(CustomerId::new(), format!("Customer {i}"), Currency::Usd);
        accounts.push(ledger.open_account(new).await.expect("open customer").id);
    }
    (settlement, accounts)
}

/// Every page of an account's history, newest first.
async fn full_history(ledger: &dyn LedgerStore, id: AccountId) -> Vec<u64> {
    let mut sequences = Vec::new();
    let mut cursor = None;
    loop {
        let query = HistoryQuery::new(PAGE_LIMIT_MAX, cursor).expect("query");
        let page = ledger.history(id, query).await.expect("history");
        sequences.extend(page.items.iter().map(|i| i.sequence));
        cursor = page.next_cursor;
        if cursor.is_none() {
            return sequences;
        }
    }
}

#[tokio::test]
async fn postings_survive_a_new_connection_as_another_process_sees_them() {
    let Some(db) = fresh_db().await else { return };
    let clock = ManualClock::at_epoch();
    let ledger = PgLedger::new(&db, Arc::new(clock.clone()));
    let (settlement, customers) = setup(&ledger, 2).await;
    let (alice, bob) = (customers[0], customers[1]);
    let first = ledger.post(transfer(settlement, alice, usd("100.00"))).await.expect("deposit");
    for _ in 0..5 {
        ledger.post(transfer(alice, bob, usd("7.25"))).await.expect("post");
    }
    let expires_at = clock.now() + TimeDelta::hours(1);
    let hold = NewHold { id: HoldId::new(), account_id: alice, money: usd("20.00"), expires_at, reference: "h".into() };
    let hold = ledger.hold(hold).await.expect("hold");
    let history = ledger.history(alice, HistoryQuery::first_page()).await.expect("history");
    let mut balances = Vec::new();
    for id in [settlement, alice, bob] {
        balances.push(ledger.balance(id).await.expect("balance"));
    }
    drop(ledger);
    let again = reconnect(&db).await;
    db.close().await;

    let ledger = PgLedger::new(&again, Arc::new(clock.clone()));
    for (id, before) in [settlement, alice, bob].into_iter().zip(&balances) {
        assert_eq!(&ledger.balance(id).await.expect("balance"), before);
    }
    let alice_balance = &balances[1];
    assert_eq!((alice_balance.posted, alice_balance.pending), (dec("63.75"), dec("20.00")));
    assert_eq!((alice_balance.available, alice_balance.sequence), (Some(dec("43.75")), 6));
    assert_eq!(ledger.history(alice, HistoryQuery::first_page()).await.expect("history"), history);
    assert_eq!(ledger.entry(first.key).await.expect("entry"), first);
    assert_eq!(ledger.get_hold(hold.id).await.expect("hold"), hold);
    // The held funds are still reserved, and numbering continues without a gap.
    assert!(matches!(ledger.post(transfer(alice, bob, usd("43.76"))).await, Err(Error::InsufficientFunds { .. })));
    let next = ledger.post(transfer(alice, bob, usd("43.75"))).await.expect("post");
    assert_eq!(next.line_of(alice).map(|l| l.sequence), Some(7));
    let replay = NewEntry::transfer(first.key, settlement, alice, usd("100.00"), "test").expect("entry");
    assert_eq!(ledger.post(replay).await.expect("replay after reconnecting"), first);
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Concurrent callers of one ledger.
const TASKS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_posts_are_group_committed() {
    const POSTS_PER_TASK: usize = 20;
    let Some(db) = fresh_db().await else { return };
    let ledger = Arc::new(PgLedger::new(&db, Arc::new(SystemClock)));
    let (settlement, customers) = setup(ledger.as_ref(), TASKS).await;
    let before = ledger.batch_stats();
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
    let after = ledger.batch_stats();
    let (ops, batches) = (after.operations - before.operations, after.batches - before.batches);
    assert_eq!(ops, (TASKS * POSTS_PER_TASK) as u64);
    assert!(batches * 4 < ops, "{ops} posts took {batches} transactions: no group commit");
    for &customer in &customers {
        let balance = ledger.balance(customer).await.expect("balance");
        assert_eq!((balance.posted, balance.sequence), (dec("30.00"), POSTS_PER_TASK as u64));
    }
    let settlement_balance = ledger.balance(settlement).await.expect("balance");
    assert_eq!(settlement_balance.posted, -dec("30.00") * Decimal::from(TASKS as u64));
    assert_eq!(settlement_balance.sequence, (TASKS * POSTS_PER_TASK) as u64);
    assert_eq!(
        full_history(ledger.as_ref(), settlement).await,
        (1..=settlement_balance.sequence).rev().collect::<Vec<_>>()
    );
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Holds `account`'s row lock from a connection of its own until dropped or released, so the
/// ledger's next batch waiting for it lets the following operations queue into one batch.
struct Blocker {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl Blocker {
    async fn lock(db: &PgDb, account: AccountId) -> Blocker {
        let mut tx = db.writer().begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account.as_uuid())
            .execute(&mut *tx)
            .await
            .expect("lock");
        Blocker { tx }
    }

    async fn release(self) {
        self.tx.commit().await.expect("release");
    }
}

/// Lets spawned callers reach the batcher's queue (or a lock wait) before the test goes on.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// One ledger with a single committer, so a batch is exactly what queued while the previous
/// one ran.
fn one_committer(db: &PgDb) -> Arc<PgLedger> {
    let config = LedgerConfig { committers: 1, ..LedgerConfig::default() };
    Arc::new(PgLedger::with_config(db, Arc::new(SystemClock), config))
}

/// A batch whose COMMIT fails (a deferred check refuses one of its entries) is rolled back and
/// its operations run again one by one: the innocent ones succeed, once each, with gap-free
/// sequences; only the bad one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_refused_at_commit_fails_only_its_bad_operation() {
    let Some(db) = fresh_db().await else { return };
    // A deferred check refusing entries with reference "poison", as a broken invariant would.
    for sql in [
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'poisoned' USING ERRCODE = 'check_violation'; END $$",
        "CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON entries DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
         WHEN (NEW.reference = 'poison') EXECUTE FUNCTION poison()",
    ] {
        sqlx::query(sql).execute(db.writer()).await.expect("install the fault");
    }
    let ledger = one_committer(&db);
    let (settlement, customers) = setup(ledger.as_ref(), 3).await;
    let (alice, bob, blocked) = (customers[0], customers[1], customers[2]);
    ledger.post(transfer(settlement, alice, usd("10.00"))).await.expect("deposit");

    let blocker = Blocker::lock(&db, blocked).await;
    let first = tokio::spawn({
        let ledger = Arc::clone(&ledger);
        async move { ledger.post(transfer(settlement, blocked, usd("1.00"))).await }
    });
    settle().await;
    let before = ledger.batch_stats();
    let poison = NewEntry::transfer(raw::key(), settlement, bob, usd("1.00"), "poison").expect("entry");
    let entries = [transfer(settlement, alice, usd("2.00")), poison.clone(), transfer(alice, bob, usd("3.00"))];
    let mut calls = Vec::new();
    for entry in entries.iter().cloned() {
        let ledger = Arc::clone(&ledger);
        calls.push(tokio::spawn(async move { ledger.post(entry).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settle().await;
    blocker.release().await;
    first.await.expect("task").expect("the blocked post");
    let results: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|r| r.expect("task")).collect();

    let after = ledger.batch_stats();
    assert!(after.largest >= 3, "the three posts never shared a batch: {after:?}");
    // (The blocked batch was counted when it started, before `before`.)
    assert_eq!(after.batches - before.batches, 1 + 3, "the failed batch, then its three posts alone: {after:?}");
    assert!(matches!(&results[1], Err(Error::Storage { message, .. }) if message.contains("poisoned")), "{results:?}");
    assert!(matches!(ledger.entry(poison.key()).await, Err(Error::EntryNotFound(_))));
    assert_eq!(results[0].as_ref().expect("innocent").line_of(alice).map(|l| l.sequence), Some(2));
    assert_eq!(results[2].as_ref().expect("innocent").line_of(alice).map(|l| l.sequence), Some(3));
    let alice_balance = ledger.balance(alice).await.expect("balance");
    assert_eq!((alice_balance.posted, alice_balance.sequence), (dec("9.00"), 3));
    assert_eq!(ledger.balance(bob).await.expect("balance").posted, dec("3.00"));
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Another process writes an entry key while this ledger's batch, which did not see it yet,
/// uses the same key for a different posting (other accounts, so no shared lock). The batch's
/// insert waits for the other transaction, then fails on the unique key; the batch reruns its
/// operations one by one, and the reused key is refused while the innocent operations succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_written_by_another_process_fails_only_the_operation_reusing_it() {
    let Some(db) = fresh_db().await else { return };
    let ledger = one_committer(&db);
    let (settlement, customers) = setup(ledger.as_ref(), 5).await;
    let (alice, bob, carol, dave, blocked) = (customers[0], customers[1], customers[2], customers[3], customers[4]);
    ledger.post(transfer(settlement, alice, usd("10.00"))).await.expect("deposit");

    // The other process: an open transaction that wrote key K (carol to dave, by hand).
    let key = raw::key();
    let mut other = db.writer().begin().await.expect("begin");
    ledger.post(transfer(settlement, carol, usd("5.00"))).await.expect("fund carol");
    raw::post_by_hand(&mut other, key, (carol, 2, "4.00"), (dave, 1, "1.00"), "1.00").await.expect("other process");

    let blocker = Blocker::lock(&db, blocked).await;
    let first = tokio::spawn({
        let ledger = Arc::clone(&ledger);
        async move { ledger.post(transfer(settlement, blocked, usd("1.00"))).await }
    });
    settle().await;
    let before = ledger.batch_stats();
    let reused = NewEntry::transfer(key, alice, bob, usd("1.00"), "test").expect("entry");
    let entries = [transfer(alice, bob, usd("2.00")), reused, transfer(settlement, bob, usd("3.00"))];
    let mut calls = Vec::new();
    for entry in entries.iter().cloned() {
        let ledger = Arc::clone(&ledger);
        calls.push(tokio::spawn(async move { ledger.post(entry).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settle().await;
    blocker.release().await;
    first.await.expect("task").expect("the blocked post");
    settle().await; // the batch now waits on the other transaction's key
    other.commit().await.expect("the other process commits");
    let results: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|r| r.expect("task")).collect();

    let after = ledger.batch_stats();
    assert!(after.largest >= 3, "the three posts never shared a batch: {after:?}");
    assert_eq!(after.batches - before.batches, 1 + 3, "the failed batch, then its three posts alone: {after:?}");
    assert!(matches!(results[1], Err(Error::KeyReused(_))), "{:?}", results[1]);
    assert!(results[0].is_ok() && results[2].is_ok(), "an innocent operation failed: {results:?}");
    assert_eq!(ledger.entry(key).await.expect("the other process's entry").line_of(dave).map(|l| l.sequence), Some(1));
    let bob_balance = ledger.balance(bob).await.expect("balance");
    assert_eq!((bob_balance.posted, bob_balance.sequence), (dec("5.00"), 2));
    assert_eq!(ledger.balance(alice).await.expect("balance").posted, dec("8.00"));
    assert_eq!(ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// Two "processes" (ledgers on their own pools, four committers each) and many tasks posting
/// between random pairs of a few accounts in both directions, through a hot account, with holds
/// captured across pairs and multi-account batches: no error at all (a deadlock would surface as
/// SQLSTATE 40P01), no lost update (every balance is what the successful postings add up to), and
/// money is conserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contention_between_processes_never_deadlocks_or_loses_an_update() {
    const ACCOUNTS: usize = 6;
    const ROUNDS: usize = 12;
    let Some(db) = fresh_db().await else { return };
    let other = reconnect(&db).await;
    // Four committers each: eight batches in flight at once, locking overlapping accounts.
    let config = LedgerConfig { committers: 4, ..LedgerConfig::default() };
    let ledgers: [Arc<dyn LedgerStore>; 2] = [
        Arc::new(PgLedger::with_config(&db, Arc::new(SystemClock), config)),
        Arc::new(PgLedger::with_config(&other, Arc::new(SystemClock), config)),
    ];
    let (settlement, mut accounts) = setup(ledgers[0].as_ref(), ACCOUNTS + 1).await;
    let hot = accounts.pop().expect("the hot account");
    let everyone: Vec<AccountId> = accounts.iter().copied().chain([hot]).collect();
    let funds = dec("10000.00");
    for &id in &everyone {
        ledgers[0]
            .post(transfer(settlement, id, Money::new(funds, Currency::Usd).expect("funds")))
            .await
            .expect("fund");
    }
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let ledger = Arc::clone(&ledgers[task % 2]);
            let accounts = accounts.clone();
            tokio::spawn(async move {
                // (account, signed change) of every line posted.
                let mut moved: Vec<(AccountId, Decimal)> = Vec::new();
                for round in 0..ROUNDS {
                    let (from, to, cents) = {
                        let mut rng = rand::thread_rng();
                        let from = rng.gen_range(0..accounts.len());
                        let to = (from + rng.gen_range(1..accounts.len())) % accounts.len();
                        (accounts[from], accounts[to], rng.gen_range(1..100i64))
                    };
                    let money = cents_usd(cents);
                    let posted = match (task + round) % 4 {
                        // Into or out of the hot account.
                        0 if round % 2 == 0 => vec![ledger.post(transfer(from, hot, money)).await],
                        0 => vec![ledger.post(transfer(hot, to, money)).await],
                        // A hold on one account captured to another.
                        1 => {
                            let expires_at = chrono::Utc::now() + TimeDelta::hours(1);
                            let hold = NewHold {
                                id: HoldId::new(),
                                account_id: from,
                                money,
                                expires_at,
                                reference: "h".into(),
                            };
                            let hold = ledger.hold(hold).await.expect("hold");
                            let capture = PostHold {
                                hold_id: hold.id,
                                key: raw::key(),
                                amount: None,
                                credit_account: to,
                                reference: "c".into(),
                            };
                            vec![ledger.post_hold(capture).await]
                        }
                        // A batch touching every account, in no particular order.
                        2 => {
                            let entries = accounts
                                .iter()
                                .rev()
                                .map(|&a| if a == from { transfer(a, hot, money) } else { transfer(a, from, money) })
                                .collect();
                            ledger.post_batch(entries).await
                        }
                        // Three lines: a pair and the hot account.
                        _ => {
                            let lines = vec![
                                Line::debit(from, cents_usd(cents + 1)),
                                Line::credit(to, money),
                                Line::credit(hot, cents_usd(1)),
                            ];
                            vec![ledger.post(NewEntry::new(raw::key(), lines, "three").expect("balanced")).await]
                        }
                    };
                    for result in posted {
                        let entry = result.expect("every posting succeeds: no deadlock, no refusal");
                        moved.extend(entry.lines.iter().map(|l| (l.account_id, signed(l))));
                    }
                }
                moved
            })
        })
        .collect();
    let mut expected: std::collections::HashMap<AccountId, Decimal> = everyone.iter().map(|&a| (a, funds)).collect();
    for task in futures::future::join_all(tasks).await {
        for (account, change) in task.expect("task") {
            *expected.get_mut(&account).expect("a known account") += change;
        }
    }
    let mut total = Decimal::ZERO;
    for &id in &everyone {
        let balance = ledgers[1].balance(id).await.expect("balance");
        assert_eq!(balance.posted, expected[&id], "account {id}: a lost or doubled update");
        assert_eq!(balance.pending, Decimal::ZERO, "every hold was captured");
        assert_eq!(full_history(ledgers[1].as_ref(), id).await, (1..=balance.sequence).rev().collect::<Vec<_>>());
        total += balance.posted;
    }
    total += ledgers[0].balance(settlement).await.expect("balance").posted;
    assert_eq!(total, Decimal::ZERO, "the sum of all balances");
    assert_eq!(ledgers[0].trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
    let audit = PgLedger::new(&db, Arc::new(SystemClock)).audit_balances().await.expect("audit");
    assert!(audit.is_empty(), "accounts disagreeing with their lines: {audit:?}");
}

fn cents_usd(cents: i64) -> Money {
    Money::new(Decimal::new(cents, 2), Currency::Usd).expect("cents are a valid USD amount")
}

/// A line's signed effect on its account's balance.
fn signed(line: &bank_core::ledger::PostedLine) -> Decimal {
    match line.side {
        bank_core::ledger::Side::Credit => line.money.value(),
        bank_core::ledger::Side::Debit => -line.money.value(),
    }
}

/// Concurrent openings for one owner from two processes never exceed the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_openings_never_exceed_the_owners_cap() {
    let Some(db) = fresh_db().await else { return };
    let other = reconnect(&db).await;
    let ledgers: [Arc<dyn LedgerStore>; 2] =
        [Arc::new(PgLedger::new(&db, Arc::new(SystemClock))), Arc::new(PgLedger::new(&other, Arc::new(SystemClock)))];
    let owner = CustomerId::new();
    let attempts = ACCOUNTS_PER_OWNER_MAX + 20;
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let ledger = Arc::clone(&ledgers[i % 2]);
            tokio::spawn(async move {
                ledger.open_account(NewAccount::customer(owner, format!("#{i}"), Currency::Usd)).await
            })
        })
        .collect();
    let (mut opened, mut refused) = (0, 0);
    for result in futures::future::join_all(tasks).await {
        match result.expect("task") {
            Ok(_) => opened += 1,
            Err(Error::TooManyAccounts { max }) if max == ACCOUNTS_PER_OWNER_MAX => refused += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((opened, refused), (ACCOUNTS_PER_OWNER_MAX, 20));
    assert_eq!(ledgers[1].accounts_of(owner).await.expect("list").len(), ACCOUNTS_PER_OWNER_MAX);
}

/// A hold past its expiry stops reserving funds in another process too, before any sweep, and
/// the sweep then marks it once.
#[tokio::test]
async fn a_lapsed_hold_frees_its_funds_everywhere_before_the_sweep() {
    let Some(db) = fresh_db().await else { return };
    let clock = ManualClock::at_epoch();
    let ledger = PgLedger::new(&db, Arc::new(clock.clone()));
    let other = PgLedger::new(&reconnect(&db).await, Arc::new(clock.clone()));
    let (settlement, customers) = setup(&ledger, 1).await;
    let alice = customers[0];
    ledger.post(transfer(settlement, alice, usd("10.00"))).await.expect("deposit");
    let expires_at = clock.now() + TimeDelta::minutes(5);
    let hold = NewHold { id: HoldId::new(), account_id: alice, money: usd("10.00"), expires_at, reference: "h".into() };
    let hold = ledger.hold(hold).await.expect("hold");
    assert!(matches!(other.post(transfer(alice, settlement, usd("0.01"))).await, Err(Error::InsufficientFunds { .. })));
    clock.advance(TimeDelta::minutes(5));
    assert_eq!(other.balance(alice).await.expect("balance").available, Some(dec("10.00")));
    assert_eq!(other.get_hold(hold.id).await.expect("hold").status, HoldStatus::Expired);
    other.post(transfer(alice, settlement, usd("4.00"))).await.expect("spend the released funds");
    let stored: String = sqlx::query_scalar("SELECT status FROM holds WHERE id = $1")
        .bind(hold.id.as_uuid())
        .fetch_one(db.writer())
        .await
        .expect("hold row");
    assert_eq!(stored, "expired", "the posting marked the lapsed hold of the account it locked");
    assert_eq!(ledger.expire_holds().await.expect("sweep"), 0);
    let balance = ledger.balance(alice).await.expect("balance");
    assert_eq!((balance.posted, balance.pending), (dec("6.00"), dec("0")));
}
