//! The money rules the database enforces by itself (migration `0002_ledger.sql`), tried by
//! writing its tables directly, as a buggy or hostile writer would. Each case first shows that a
//! correct hand-written posting commits (so a refusal is the rule's, not the test's), then tries
//! the violation.

use std::sync::Arc;

use bank_aws::postgres::PgDb;
use bank_aws::postgres::ledger::PgLedger;
use bank_core::Error;
use bank_core::account::{AccountKind, AccountStatus, NewAccount};
use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::{AccountId, CustomerId, HoldId};
use bank_core::ledger::{EntryKey, HoldStatus, NewEntry, NewHold, PostHold, Reversal};
use bank_core::money::{Currency, Money};
use bank_core::ports::LedgerStore;
use chrono::TimeDelta;
use rust_decimal::Decimal;

use crate::harness::Harness;
use crate::raw::{self, RawLine, message};

/// A ledger with a settlement account and two customers, Alice holding 100.00 (sequence 1) and
/// the settlement account at -100.00 (sequence 1); Bob is empty.
struct World {
    db: PgDb,
    ledger: PgLedger,
    clock: ManualClock,
    settlement: AccountId,
    alice: AccountId,
    bob: AccountId,
}

impl World {
    async fn new() -> Option<World> {
        let db = Harness::start().await?.db().await;
        let clock = ManualClock::at_epoch();
        let ledger = PgLedger::new(&db, Arc::new(clock.clone()));
        let bank = CustomerId::new();
        let settlement = NewAccount::internal(bank, "USD settlement", Currency::Usd, AccountKind::Settlement);
        let settlement = ledger.open_account(settlement).await.expect("open settlement").id;
        let alice = ledger.open_account(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd)).await;
        let bob = ledger.open_account(NewAccount::customer(CustomerId::new(), "Bob", Currency::Usd)).await;
        let (alice, bob) = (alice.expect("open alice").id, bob.expect("open bob").id);
        ledger.post(transfer(raw::key(), settlement, alice, "100.00")).await.expect("deposit");
        Some(World { db, ledger, clock, settlement, alice, bob })
    }

    async fn tx(&self) -> sqlx::Transaction<'static, sqlx::Postgres> {
        self.db.writer().begin().await.expect("begin")
    }

    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(self.db.writer()).await.map(|_| ())
    }

    async fn posted(&self, id: AccountId) -> Decimal {
        self.ledger.balance(id).await.expect("balance").posted
    }

    /// Alice pays Bob 1.00 by hand (correctly) and the transaction commits: the control.
    async fn hand_posting_commits(&self) {
        let mut tx = self.tx().await;
        let key = raw::key();
        raw::post_by_hand(&mut tx, key, (self.alice, 2, "99.00"), (self.bob, 1, "1.00"), "1.00")
            .await
            .expect("a correct posting by hand");
        tx.commit().await.expect("a correct posting commits");
        assert_eq!(self.ledger.entry(key).await.expect("entry").lines.len(), 2);
        assert_eq!((self.posted(self.alice).await, self.posted(self.bob).await), (dec("99.00"), dec("1.00")));
    }
}

fn dec(text: &str) -> Decimal {
    bank_core::money::parse_decimal(text).expect("valid decimal")
}

fn transfer(key: EntryKey, from: AccountId, to: AccountId, amount: &str) -> NewEntry {
    NewEntry::transfer(key, from, to, Money::parse(amount, "USD").expect("amount"), "test").expect("entry")
}

fn assert_refused(result: Result<(), sqlx::Error>, expected: &str) {
    match result {
        Err(err) => assert!(message(&err).contains(expected), "expected {expected:?}, got {}", message(&err)),
        Ok(()) => panic!("the database accepted what it must refuse ({expected})"),
    }
}

#[tokio::test]
async fn posted_entries_and_lines_cannot_be_updated_deleted_or_truncated() {
    let Some(w) = World::new().await else { return };
    let key = raw::key();
    let posted = w.ledger.post(transfer(key, w.alice, w.bob, "10.00")).await.expect("post");
    for sql in [
        "UPDATE entries SET reference = 'edited'",
        "UPDATE entries SET posted_at_ns = posted_at_ns + 1",
        "DELETE FROM entries",
        "TRUNCATE entries CASCADE",
        "UPDATE entry_lines SET amount = 1000",
        "UPDATE entry_lines SET balance_after = balance_after + 1",
        "DELETE FROM entry_lines",
        "TRUNCATE entry_lines",
    ] {
        assert_refused(w.execute(sql).await, "append-only");
    }
    assert_eq!(w.ledger.entry(key).await.expect("entry"), posted, "the entry changed");
    assert_eq!(w.posted(w.bob).await, dec("10.00"));
}

#[tokio::test]
async fn an_unbalanced_entry_cannot_be_committed() {
    let Some(w) = World::new().await else { return };
    // Every statement succeeds (lines may come in several statements); the commit refuses.
    let mut tx = w.tx().await;
    let lines = [RawLine::debit(w.alice, "10.00", 2, "90.00"), RawLine::credit(w.bob, "9.99", 1, "9.99")];
    let key = raw::key();
    raw::insert_entry(&mut tx, key, 2, &lines).await.expect("insert the lines");
    raw::set_balance(&mut tx, w.alice, "90.00", 2).await.expect("alice");
    raw::set_balance(&mut tx, w.bob, "9.99", 1).await.expect("bob");
    assert_refused(tx.commit().await, "unbalanced entry");
    assert!(matches!(w.ledger.entry(key).await, Err(Error::EntryNotFound(_))), "the entry was kept");
    assert_eq!((w.posted(w.alice).await, w.posted(w.bob).await), (dec("100.00"), dec("0")));

    // Balanced in total but not per currency: 10.00 USD against 10.00 EUR.
    let euro = w.ledger.open_account(NewAccount::customer(CustomerId::new(), "Euro", Currency::Eur)).await;
    let euro = euro.expect("open").id;
    let mut tx = w.tx().await;
    let lines = [
        RawLine::debit(w.alice, "10.00", 2, "90.00"),
        RawLine { currency: "EUR", ..RawLine::credit(euro, "10.00", 1, "10.00") },
    ];
    raw::insert_entry(&mut tx, raw::key(), 2, &lines).await.expect("insert the lines");
    raw::set_balance(&mut tx, w.alice, "90.00", 2).await.expect("alice");
    raw::set_balance(&mut tx, euro, "10.00", 1).await.expect("euro");
    assert_refused(tx.commit().await, "unbalanced entry");

    w.hand_posting_commits().await;
    // The store carries on from the hand-written posting, numbering without a gap.
    let next = w.ledger.post(transfer(raw::key(), w.alice, w.bob, "1.00")).await.expect("post");
    assert_eq!(next.line_of(w.alice).map(|l| (l.sequence, l.balance_after)), Some((3, dec("98.00"))));
}

#[tokio::test]
async fn an_entry_has_all_its_lines_at_commit_and_none_can_join_it_later() {
    let Some(w) = World::new().await else { return };
    let mut tx = w.tx().await;
    let lines = [RawLine::debit(w.alice, "10.00", 2, "90.00"), RawLine::credit(w.bob, "10.00", 1, "10.00")];
    raw::insert_entry(&mut tx, raw::key(), 3, &lines).await.expect("two of three lines");
    raw::set_balance(&mut tx, w.alice, "90.00", 2).await.expect("alice");
    raw::set_balance(&mut tx, w.bob, "10.00", 1).await.expect("bob");
    assert_refused(tx.commit().await, "has 2 of its 3 lines");

    w.hand_posting_commits().await;
    let posted = w.ledger.post(transfer(raw::key(), w.settlement, w.bob, "5.00")).await.expect("post");
    let extra = RawLine::credit(w.bob, "1.00", 3, "7.00");
    let mut conn = w.db.writer().acquire().await.expect("connection");
    for (line_no, line_count, expected) in [
        (2, 2, "entry_lines_slot"),  // past its last slot
        (1, 2, "entry_lines_pkey"),  // a slot already taken
        (2, 3, "entry_lines_entry"), // claiming the entry has more lines
    ] {
        assert_refused(raw::insert_line(&mut conn, posted.key, line_no, line_count, &extra).await, expected);
    }
}

#[tokio::test]
async fn each_line_continues_its_accounts_gap_free_running_balance() {
    let Some(w) = World::new().await else { return };
    // Each in a transaction of its own: the refusal comes at the statement, before the commit.
    let cases = [
        // Sequence 3 where 2 comes next.
        ([RawLine::debit(w.alice, "1.00", 3, "99.00"), RawLine::credit(w.bob, "1.00", 1, "1.00")], "breaks its chain"),
        // A balance after that does not follow from the one before.
        ([RawLine::debit(w.alice, "1.00", 2, "98.00"), RawLine::credit(w.bob, "1.00", 1, "1.00")], "breaks its chain"),
        // A sequence number used twice.
        (
            [RawLine::debit(w.alice, "1.00", 1, "99.00"), RawLine::credit(w.bob, "1.00", 1, "1.00")],
            "entry_lines_sequence",
        ),
    ];
    for (lines, expected) in cases {
        let mut tx = w.tx().await;
        assert_refused(raw::insert_entry(&mut tx, raw::key(), 2, &lines).await, expected);
    }
    w.hand_posting_commits().await;
}

#[tokio::test]
async fn a_stored_balance_is_the_balance_of_the_accounts_lines() {
    let Some(w) = World::new().await else { return };
    // Money out of thin air: a balance with no line behind it.
    let mut tx = w.tx().await;
    raw::set_balance(&mut tx, w.bob, "1000.00", 0).await.expect("statement");
    assert_refused(tx.commit().await, "is not the balance of its last line");
    let mut tx = w.tx().await;
    raw::set_balance(&mut tx, w.alice, "1000.00", 1).await.expect("statement");
    assert_refused(tx.commit().await, "is not the balance of its last line");
    // Lines the accounts do not count.
    let mut tx = w.tx().await;
    let lines = [RawLine::debit(w.alice, "1.00", 2, "99.00"), RawLine::credit(w.bob, "1.00", 1, "1.00")];
    raw::insert_entry(&mut tx, raw::key(), 2, &lines).await.expect("statements");
    assert_refused(tx.commit().await, "not counted in its account");
    assert_eq!((w.posted(w.alice).await, w.posted(w.bob).await), (dec("100.00"), dec("0")));
    w.hand_posting_commits().await;
}

#[tokio::test]
async fn the_database_refuses_an_overdraft_and_money_in_a_closed_account() {
    let Some(w) = World::new().await else { return };
    let mut tx = w.tx().await;
    let result = raw::post_by_hand(&mut tx, raw::key(), (w.bob, 1, "-0.01"), (w.alice, 2, "100.01"), "0.01").await;
    assert_refused(result, "accounts_no_overdraft");
    drop(tx);
    assert_refused(
        w.execute(&format!("UPDATE accounts SET held = 100.01 WHERE id = '{}'", w.alice)).await,
        "accounts_no_overdraft",
    );
    assert_refused(
        w.execute(&format!("UPDATE accounts SET status = 'closed' WHERE id = '{}'", w.alice)).await,
        "accounts_closed_empty",
    );
    w.execute(&format!("UPDATE accounts SET held = 100.00 WHERE id = '{}'", w.alice))
        .await
        .expect("exactly to the limit");
}

#[tokio::test]
async fn entry_keys_are_unique_and_an_entry_is_reversed_once() {
    let Some(w) = World::new().await else { return };
    let original = w.ledger.post(transfer(raw::key(), w.alice, w.bob, "10.00")).await.expect("post");
    let mut tx = w.tx().await;
    let result = raw::post_by_hand(&mut tx, original.key, (w.alice, 3, "89.00"), (w.bob, 2, "11.00"), "1.00").await;
    assert_refused(result, "entries_pkey");
    drop(tx);

    let reversal = Reversal { original: original.key, key: raw::key(), reference: "refund".into() };
    w.ledger.reverse(reversal).await.expect("reverse");
    // A second reversal of the same entry, written by hand.
    let second = raw::key();
    let result = sqlx::query(
        "INSERT INTO entries (transfer_id, leg, entry_id, line_count, reference, posted_at_ns, reverses_transfer_id, \
                              reverses_leg) VALUES ($1, 0, gen_random_uuid(), 2, 'again', 0, $2, $3)",
    )
    .bind(second.transfer_id.as_uuid())
    .bind(original.key.transfer_id.as_uuid())
    .bind(i32::from(original.key.leg))
    .execute(w.db.writer())
    .await
    .map(|_| ());
    assert_refused(result, "entries_reversed_once");
}

#[tokio::test]
async fn holds_end_once_and_accounts_keep_their_identity() {
    let Some(w) = World::new().await else { return };
    let expires_at = w.clock.now() + TimeDelta::hours(1);
    let usd = |amount| Money::parse(amount, "USD").expect("amount");
    let hold = |money| NewHold { id: HoldId::new(), account_id: w.alice, money, expires_at, reference: "h".into() };
    let active = w.ledger.hold(hold(usd("5.00"))).await.expect("hold");
    let posted = w.ledger.hold(hold(usd("5.00"))).await.expect("hold");
    let capture =
        PostHold { hold_id: posted.id, key: raw::key(), amount: None, credit_account: w.bob, reference: "".into() };
    w.ledger.post_hold(capture).await.expect("post hold");
    let voided = w.ledger.void_hold(w.ledger.hold(hold(usd("1.00"))).await.expect("hold").id).await.expect("void");
    assert_eq!(voided.status, HoldStatus::Voided);
    let refused = [
        (
            format!(
                "UPDATE holds SET status = 'active', posted_transfer_id = NULL, posted_leg = NULL WHERE id = '{}'",
                posted.id
            ),
            "changes once",
        ),
        (format!("UPDATE holds SET status = 'active' WHERE id = '{}'", voided.id), "changes once"),
        (format!("UPDATE holds SET amount = 1 WHERE id = '{}'", active.id), "changes once"),
        (format!("UPDATE holds SET account_id = '{}' WHERE id = '{}'", w.bob, active.id), "changes once"),
        (format!("UPDATE holds SET status = 'posted' WHERE id = '{}'", active.id), "holds_posted_has_entry"),
        (
            format!(
                "UPDATE holds SET status = 'posted', posted_transfer_id = gen_random_uuid(), posted_leg = 0 \
                 WHERE id = '{}'",
                active.id
            ),
            "holds_posted_by",
        ),
        (
            format!(
                "INSERT INTO holds (id, account_id, amount, currency, status, created_at_ns, expires_at_ns, reference) \
                 VALUES (gen_random_uuid(), '{}', 1, 'EUR', 'active', 0, 1, 'euros')",
                w.alice
            ),
            "holds_account_currency",
        ),
        (format!("DELETE FROM holds WHERE id = '{}'", active.id), "never deleted"),
        ("TRUNCATE holds".to_owned(), "never deleted"),
        (format!("UPDATE accounts SET currency = 'EUR' WHERE id = '{}'", w.bob), "never change"),
        (format!("UPDATE accounts SET overdraft_limit = 1000000 WHERE id = '{}'", w.bob), "never change"),
        (format!("UPDATE accounts SET owner = gen_random_uuid() WHERE id = '{}'", w.bob), "never change"),
        (format!("DELETE FROM accounts WHERE id = '{}'", w.bob), "never deleted"),
    ];
    for (sql, expected) in refused {
        assert_refused(w.execute(&sql).await, expected);
    }
    // A line in a currency other than its account's.
    let euro = w.ledger.open_account(NewAccount::customer(CustomerId::new(), "Euro", Currency::Eur)).await;
    let euro = euro.expect("open").id;
    let mut tx = w.tx().await;
    let lines = [RawLine::debit(w.settlement, "1.00", 2, "-101.00"), RawLine::credit(euro, "1.00", 1, "1.00")];
    assert_refused(raw::insert_entry(&mut tx, raw::key(), 2, &lines).await, "entry_lines_account_currency");
    drop(tx);
    // A closed account stays closed.
    w.ledger.set_status(euro, AccountStatus::Closed).await.expect("close the empty account");
    assert_refused(
        w.execute(&format!("UPDATE accounts SET status = 'open' WHERE id = '{euro}'")).await,
        "stays closed",
    );
}

/// After a mixed workload every stored balance, sequence and held amount equals what the journal
/// and the holds add up to; and the audit does notice an account whose balance was forced (with
/// the database's own check switched off).
#[tokio::test]
async fn stored_balances_equal_the_sum_of_the_lines() {
    let Some(w) = World::new().await else { return };
    let expires_at = w.clock.now() + TimeDelta::hours(1);
    for i in 0..20 {
        let amount = if i % 2 == 0 { "1.25" } else { "2.50" };
        let entry = transfer(raw::key(), w.alice, w.bob, amount);
        let key = entry.key();
        w.ledger.post(entry).await.expect("post");
        if i % 5 == 0 {
            let reversal = Reversal { original: key, key: raw::key(), reference: "undo".into() };
            w.ledger.reverse(reversal).await.expect("reverse");
        }
        let money = Money::parse("0.50", "USD").expect("amount");
        let held = NewHold { id: HoldId::new(), account_id: w.alice, money, expires_at, reference: "h".into() };
        let held = w.ledger.hold(held).await.expect("hold");
        if i % 3 == 0 {
            let capture = PostHold {
                hold_id: held.id,
                key: raw::key(),
                amount: None,
                credit_account: w.bob,
                reference: "".into(),
            };
            w.ledger.post_hold(capture).await.expect("capture");
        }
    }
    let sums: (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE a.posted <> coalesce((SELECT sum(CASE side WHEN 'credit' THEN amount \
                                                              ELSE -amount END) FROM entry_lines l \
                                                              WHERE l.account_id = a.id), 0)), \
                count(*) FILTER (WHERE a.sequence <> (SELECT count(*) FROM entry_lines l WHERE l.account_id = a.id)), \
                count(*) FILTER (WHERE a.held <> coalesce((SELECT sum(amount) FROM holds h \
                                                           WHERE h.account_id = a.id AND h.status = 'active'), 0)) \
           FROM accounts a",
    )
    .fetch_one(w.db.writer())
    .await
    .expect("sums");
    assert_eq!(sums, (0, 0, 0), "accounts whose (posted, sequence, held) disagree with the lines and holds");
    assert_eq!(w.ledger.audit_balances().await.expect("audit"), Vec::<AccountId>::new());

    w.execute("ALTER TABLE accounts DISABLE TRIGGER accounts_balance_is_lines").await.expect("switch the check off");
    w.execute(&format!("UPDATE accounts SET posted = posted + 1 WHERE id = '{}'", w.bob)).await.expect("force");
    assert_eq!(w.ledger.audit_balances().await.expect("audit"), vec![w.bob]);
}
