//! The [`LedgerStore`] conformance suite.
//!
//! Every case builds a fresh store through a [`LedgerHarness`] with a [`ManualClock`], drives it
//! only through the port, and checks the contract written on [`LedgerStore`]: the money rules, that
//! a refused call changes nothing, idempotent keys, gap-free sequences, holds and their expiry,
//! reversals, batches, and concurrency (many tasks draining one account at once).
//!
//! Use it from an adapter's tests:
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl bank_core::testkit::ledger::LedgerHarness for Harness {
//!     async fn ledger(&self, clock: Arc<dyn Clock>) -> Arc<dyn LedgerStore> { /* fresh store */ }
//! }
//! bank_core::ledger_conformance_tests!(Harness);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use rust_decimal::Decimal;

use super::fixtures::{eur, usd};
use crate::account::{AccountKind, AccountStatus, NewAccount, OverdraftLimit};
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::ids::{AccountId, CustomerId, HoldId, TransferId};
use crate::ledger::{
    Cursor, EntryKey, HistoryQuery, HoldStatus, Line, NewEntry, NewHold, PAGE_LIMIT_MAX, PostHold, Reversal, Side,
};
use crate::money::{Amount, Currency, Money};
use crate::ports::LedgerStore;

/// How to build a fresh, empty store for one test case.
#[async_trait]
pub trait LedgerHarness: Send + Sync {
    /// A new empty store that reads time from `clock`.
    async fn ledger(&self, clock: Arc<dyn Clock>) -> Arc<dyn LedgerStore>;
}

/// Expands to one `#[tokio::test]` per conformance case, each calling `$harness` (an expression
/// implementing [`LedgerHarness`]). The calling crate needs `tokio` with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! ledger_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(ledger, $harness;
            open_account_is_idempotent_and_validated,
            post_moves_money_and_conserves_it,
            post_is_idempotent_on_its_key,
            refused_postings_change_nothing,
            overdraft_limit_is_exact,
            account_status_rules,
            sequences_are_gap_free_and_history_pages,
            holds_reserve_and_release_funds,
            holds_expire_by_themselves,
            hold_marks_list_their_holds_and_can_be_removed,
            reversals_restore_balances_once,
            multi_currency_entries_balance_per_currency,
            post_batch_results_are_independent,
            concurrent_debits_never_overdraw,
            concurrent_replays_post_once,
            concurrent_holds_never_overcommit,
            balance_at_counts_entries_posted_before_the_instant,
            accounts_after_pages_every_account_in_id_order,
        );
    };
}

/// The harness for [`crate::memory::MemoryLedger`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryHarness;

#[async_trait]
impl LedgerHarness for MemoryHarness {
    async fn ledger(&self, clock: Arc<dyn Clock>) -> Arc<dyn LedgerStore> {
        Arc::new(crate::memory::MemoryLedger::new(clock))
    }
}

/// A fresh store, its clock, and a funded world: a USD settlement account and two customers.
struct World {
    ledger: Arc<dyn LedgerStore>,
    clock: ManualClock,
    bank: CustomerId,
    settlement: AccountId,
    alice: AccountId,
    bob: AccountId,
}

impl World {
    async fn new(harness: &dyn LedgerHarness) -> World {
        let clock = ManualClock::at_epoch();
        let ledger = harness.ledger(Arc::new(clock.clone())).await;
        let bank = CustomerId::new();
        let settlement = ledger
            .open_account(NewAccount::internal(bank, "USD settlement", Currency::Usd, AccountKind::Settlement))
            .await
            .expect("open settlement")
            .id;
        let alice = ledger
            .open_account(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd))
            .await
            .expect("open alice")
            .id;
        let bob = ledger
            .open_account(NewAccount::customer(CustomerId::new(), "Bob", Currency::Usd))
            .await
            .expect("open bob")
            .id;
        World { ledger, clock, bank, settlement, alice, bob }
    }

    async fn deposit(&self, to: AccountId, money: Money) {
        self.ledger.post(transfer(self.settlement, to, money)).await.expect("deposit");
    }

    async fn posted(&self, id: AccountId) -> Decimal {
        self.ledger.balance(id).await.expect("balance").posted
    }

    async fn available(&self, id: AccountId) -> Option<Decimal> {
        self.ledger.balance(id).await.expect("balance").available
    }

    /// Everything a refused call must leave untouched.
    async fn snapshot(&self, ids: &[AccountId]) -> Vec<String> {
        let mut out = Vec::new();
        for id in ids {
            out.push(format!("{:?}", self.ledger.balance(*id).await.expect("balance")));
        }
        out.push(format!("{:?}", self.ledger.trial_balance().await.expect("trial balance")));
        out
    }

    async fn assert_conserved(&self) {
        for (currency, total) in self.ledger.trial_balance().await.expect("trial balance") {
            assert!(total.is_zero(), "sum of {currency} balances is {total}, not zero");
        }
    }
}

fn dec(text: &str) -> Decimal {
    crate::money::parse_decimal(text).expect("test decimals are valid")
}

fn key() -> EntryKey {
    EntryKey::new(TransferId::new(), 0)
}

fn transfer(from: AccountId, to: AccountId, money: Money) -> NewEntry {
    NewEntry::transfer(key(), from, to, money, "test").expect("a valid entry")
}

fn new_hold(account_id: AccountId, money: Money, expires_at: chrono::DateTime<chrono::Utc>) -> NewHold {
    NewHold { id: HoldId::new(), account_id, money, expires_at, reference: "hold".into() }
}

/// Opening is idempotent on the id; bad requests are refused; listing by owner works.
pub async fn open_account_is_idempotent_and_validated(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    let owner = CustomerId::new();
    let new = NewAccount::customer(owner, "Savings", Currency::Eur);
    let first = w.ledger.open_account(new.clone()).await.expect("open");
    assert_eq!(first.status, AccountStatus::Open);
    assert_eq!(first.currency, Currency::Eur);
    let again = w.ledger.open_account(new.clone()).await.expect("replayed open");
    assert_eq!(again, first);
    let renamed = NewAccount { name: "Other".into(), ..new.clone() };
    assert!(matches!(w.ledger.open_account(renamed).await, Err(Error::KeyReused(_))));

    for bad in [
        NewAccount { id: AccountId::new(), name: String::new(), ..new.clone() },
        NewAccount { id: AccountId::new(), name: "x".repeat(101), ..new.clone() },
        NewAccount { id: AccountId::new(), overdraft_limit: OverdraftLimit::Unlimited, ..new.clone() },
        NewAccount { id: AccountId::new(), overdraft_limit: OverdraftLimit::Limited(dec("-1")), ..new.clone() },
        NewAccount { id: AccountId::new(), overdraft_limit: OverdraftLimit::Limited(dec("0.001")), ..new.clone() },
    ] {
        let id = bad.id;
        assert!(matches!(w.ledger.open_account(bad).await, Err(Error::InvalidInput(_))));
        assert!(matches!(w.ledger.account(id).await, Err(Error::AccountNotFound(_))));
    }

    let second = w.ledger.open_account(NewAccount::customer(owner, "Current", Currency::Eur)).await.expect("open");
    let listed: Vec<AccountId> = w.ledger.accounts_of(owner).await.expect("list").iter().map(|a| a.id).collect();
    assert_eq!(listed, vec![first.id, second.id]);
    assert!(w.ledger.accounts_of(CustomerId::new()).await.expect("list").is_empty());
    assert_eq!(w.ledger.account(first.id).await.expect("get"), first);
    assert!(matches!(w.ledger.account(AccountId::new()).await, Err(Error::AccountNotFound(_))));
    assert!(matches!(w.ledger.balance(AccountId::new()).await, Err(Error::AccountNotFound(_))));
    let balance = w.ledger.balance(first.id).await.expect("balance");
    assert_eq!(
        (balance.posted, balance.pending, balance.available, balance.sequence),
        (dec("0"), dec("0"), Some(dec("0")), 0)
    );
    let settlement = w.ledger.balance(w.settlement).await.expect("balance");
    assert_eq!(settlement.available, None, "an unlimited account has no available figure");
    assert_eq!(w.ledger.account(w.settlement).await.expect("get").owner, w.bank);
}

/// A posting moves money between accounts and the ledger still sums to zero.
pub async fn post_moves_money_and_conserves_it(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("100.00")).await;
    let entry = NewEntry::transfer(key(), w.alice, w.bob, usd("30.25"), "rent").expect("entry");
    let posted = w.ledger.post(entry.clone()).await.expect("post");
    assert_eq!(posted.key, entry.key());
    assert_eq!(posted.reference, "rent");
    assert_eq!(posted.reverses, None);
    let alice_line = posted.line_of(w.alice).expect("alice line");
    assert_eq!((alice_line.side, alice_line.sequence, alice_line.balance_after), (Side::Debit, 2, dec("69.75")));
    let bob_line = posted.line_of(w.bob).expect("bob line");
    assert_eq!((bob_line.side, bob_line.sequence, bob_line.balance_after), (Side::Credit, 1, dec("30.25")));
    assert_eq!(w.posted(w.alice).await, dec("69.75"));
    assert_eq!(w.available(w.alice).await, Some(dec("69.75")));
    assert_eq!(w.posted(w.bob).await, dec("30.25"));
    assert_eq!(w.posted(w.settlement).await, dec("-100.00"));
    assert_eq!(w.ledger.entry(entry.key()).await.expect("entry"), posted);
    assert!(matches!(w.ledger.entry(key()).await, Err(Error::EntryNotFound(_))));
    w.assert_conserved().await;
    assert_eq!(w.ledger.trial_balance().await.expect("trial balance"), vec![(Currency::Usd, Decimal::ZERO)]);
}

/// The same key posts once: a replay returns the first result, other content is refused.
pub async fn post_is_idempotent_on_its_key(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("50.00")).await;
    let entry = transfer(w.alice, w.bob, usd("10.00"));
    let first = w.ledger.post(entry.clone()).await.expect("post");
    let before = w.snapshot(&[w.alice, w.bob]).await;
    for _ in 0..3 {
        assert_eq!(w.ledger.post(entry.clone()).await.expect("replay"), first);
    }
    assert_eq!(w.snapshot(&[w.alice, w.bob]).await, before, "a replay moved money");

    let different_amount = NewEntry::transfer(entry.key(), w.alice, w.bob, usd("11.00"), "test").expect("entry");
    let different_reference = NewEntry::transfer(entry.key(), w.alice, w.bob, usd("10.00"), "other").expect("entry");
    let different_accounts = NewEntry::transfer(entry.key(), w.bob, w.alice, usd("10.00"), "test").expect("entry");
    for reused in [different_amount, different_reference, different_accounts] {
        assert!(matches!(w.ledger.post(reused).await, Err(Error::KeyReused(_))));
    }
    assert_eq!(w.snapshot(&[w.alice, w.bob]).await, before, "a reused key moved money");
    // Another leg of the same transfer is a different key.
    let leg1 = NewEntry::transfer(EntryKey::new(entry.key().transfer_id, 1), w.alice, w.bob, usd("10.00"), "test")
        .expect("entry");
    w.ledger.post(leg1).await.expect("second leg");
    assert_eq!(w.posted(w.bob).await, dec("20.00"));
}

/// Every refusal is a typed error and leaves every balance as it was.
pub async fn refused_postings_change_nothing(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("20.00")).await;
    let eur_account =
        w.ledger.open_account(NewAccount::customer(CustomerId::new(), "Euro", Currency::Eur)).await.expect("open").id;
    let closed =
        w.ledger.open_account(NewAccount::customer(CustomerId::new(), "Gone", Currency::Usd)).await.expect("open").id;
    w.ledger.set_status(closed, AccountStatus::Closed).await.expect("close");
    let ids = [w.alice, w.bob, w.settlement, eur_account, closed];
    let before = w.snapshot(&ids).await;

    let unknown = AccountId::new();
    type Expect = fn(&Error) -> bool;
    let cases: Vec<(NewEntry, Expect)> = vec![
        (transfer(w.alice, unknown, usd("1.00")), |e| matches!(e, Error::AccountNotFound(_))),
        (transfer(unknown, w.alice, usd("1.00")), |e| matches!(e, Error::AccountNotFound(_))),
        (transfer(w.alice, w.bob, usd("20.01")), |e| matches!(e, Error::InsufficientFunds { .. })),
        (transfer(w.bob, w.alice, usd("0.01")), |e| matches!(e, Error::InsufficientFunds { .. })),
        (transfer(w.alice, closed, usd("1.00")), |e| {
            matches!(e, Error::AccountNotOpen { status: AccountStatus::Closed, .. })
        }),
        (transfer(w.settlement, closed, usd("1.00")), |e| matches!(e, Error::AccountNotOpen { .. })),
        (NewEntry::transfer(key(), w.alice, eur_account, usd("1.00"), "").expect("entry"), |e| {
            matches!(e, Error::CurrencyMismatch { .. })
        }),
        (
            NewEntry::new(
                key(),
                vec![
                    Line::debit(w.settlement, usd("5.00")),
                    Line::credit(w.alice, usd("4.00")),
                    Line::credit(closed, usd("1.00")),
                ],
                "",
            )
            .expect("entry"),
            |e| matches!(e, Error::AccountNotOpen { .. }),
        ),
    ];
    for (entry, expected) in cases {
        let key = entry.key();
        let err = w.ledger.post(entry).await.expect_err("must be refused");
        assert!(expected(&err), "unexpected error {err:?}");
        assert_eq!(w.snapshot(&ids).await, before, "refused posting ({err}) changed balances");
        assert!(matches!(w.ledger.entry(key).await, Err(Error::EntryNotFound(_))), "refused entry was recorded");
    }
    // Input that cannot even be built never reaches the store.
    assert!(NewEntry::new(key(), vec![Line::debit(w.alice, usd("1")), Line::credit(w.bob, usd("2"))], "").is_err());
    assert!(Amount::parse("0.001", Currency::Usd).is_err());
    assert!(Money::parse("-1", "USD").is_err());
    assert!(Money::parse("1", "XXX").is_err());
    assert_eq!(w.snapshot(&ids).await, before);
}

/// An account can be overdrawn exactly to its limit and not a cent beyond.
pub async fn overdraft_limit_is_exact(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    let carol = w
        .ledger
        .open_account(
            NewAccount::customer(CustomerId::new(), "Carol", Currency::Usd)
                .with_overdraft(OverdraftLimit::Limited(dec("50.00"))),
        )
        .await
        .expect("open")
        .id;
    w.deposit(carol, usd("10.00")).await;
    assert_eq!(w.available(carol).await, Some(dec("60.00")));
    let before = w.snapshot(&[carol, w.bob]).await;
    let err = w.ledger.post(transfer(carol, w.bob, usd("60.01"))).await.expect_err("over the limit");
    match err {
        Error::InsufficientFunds { account, available, requested } => {
            assert_eq!((account, available, requested), (carol, dec("60.00"), dec("60.01")));
        }
        other => panic!("expected InsufficientFunds, got {other:?}"),
    }
    assert_eq!(w.snapshot(&[carol, w.bob]).await, before);
    w.ledger.post(transfer(carol, w.bob, usd("60.00"))).await.expect("exactly to the limit");
    assert_eq!(w.posted(carol).await, dec("-50.00"));
    assert_eq!(w.available(carol).await, Some(dec("0.00")));
    assert!(matches!(w.ledger.post(transfer(carol, w.bob, usd("0.01"))).await, Err(Error::InsufficientFunds { .. })));
    w.assert_conserved().await;
}

/// Frozen accounts take credits but no debits; closing needs an empty account and is final.
pub async fn account_status_rules(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("10.00")).await;
    let frozen = w.ledger.set_status(w.alice, AccountStatus::Frozen).await.expect("freeze");
    assert_eq!(frozen.status, AccountStatus::Frozen);
    assert!(matches!(
        w.ledger.post(transfer(w.alice, w.bob, usd("1.00"))).await,
        Err(Error::AccountNotOpen { status: AccountStatus::Frozen, .. })
    ));
    let expiry = w.clock.now() + TimeDelta::hours(1);
    assert!(matches!(w.ledger.hold(new_hold(w.alice, usd("1.00"), expiry)).await, Err(Error::AccountNotOpen { .. })));
    w.deposit(w.alice, usd("5.00")).await;
    assert_eq!(w.posted(w.alice).await, dec("15.00"), "a frozen account still receives credits");
    assert!(matches!(w.ledger.set_status(w.alice, AccountStatus::Closed).await, Err(Error::AccountNotEmpty(_))));
    w.ledger.set_status(w.alice, AccountStatus::Open).await.expect("unfreeze");
    w.ledger.post(transfer(w.alice, w.settlement, usd("15.00"))).await.expect("empty it");
    // An active hold also blocks closing.
    w.deposit(w.bob, usd("1.00")).await;
    let hold = w.ledger.hold(new_hold(w.bob, usd("1.00"), expiry)).await.expect("hold");
    w.ledger.post(transfer(w.bob, w.settlement, usd("1.00"))).await.expect_err("held funds are not available");
    w.ledger.void_hold(hold.id).await.expect("void");
    w.ledger.post(transfer(w.bob, w.settlement, usd("1.00"))).await.expect("now available");

    let closed = w.ledger.set_status(w.alice, AccountStatus::Closed).await.expect("close");
    assert_eq!(closed.status, AccountStatus::Closed);
    assert!(matches!(
        w.ledger.post(transfer(w.settlement, w.alice, usd("1.00"))).await,
        Err(Error::AccountNotOpen { status: AccountStatus::Closed, .. })
    ));
    assert!(matches!(w.ledger.set_status(w.alice, AccountStatus::Open).await, Err(Error::AccountNotOpen { .. })));
    assert_eq!(w.ledger.account(w.alice).await.expect("get").status, AccountStatus::Closed);
    assert!(matches!(
        w.ledger.set_status(AccountId::new(), AccountStatus::Frozen).await,
        Err(Error::AccountNotFound(_))
    ));
    w.assert_conserved().await;
}

/// Sequence numbers run 1, 2, 3… per account, and history pages newest-first without gaps or
/// repeats.
pub async fn sequences_are_gap_free_and_history_pages(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("1000.00")).await;
    for i in 1..=24 {
        let money = usd(&format!("{i}.00"));
        w.ledger.post(transfer(w.alice, w.bob, money)).await.expect("post");
        // A refused posting must not consume a sequence number.
        w.ledger.post(transfer(w.bob, w.alice, usd("100000.00"))).await.expect_err("refused");
    }
    let balance = w.ledger.balance(w.alice).await.expect("balance");
    assert_eq!(balance.sequence, 25);
    assert_eq!(balance.posted, dec("700.00"), "1000 - (1 + … + 24)");

    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = w.ledger.history(w.alice, HistoryQuery::new(10, cursor).expect("query")).await.expect("history");
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next.to_string().parse().expect("cursor round-trips")),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let sequences: Vec<u64> = seen.iter().map(|i| i.sequence).collect();
    assert_eq!(sequences, (1..=25).rev().collect::<Vec<u64>>());
    // balance_after is a running balance.
    let mut running = Decimal::ZERO;
    for item in seen.iter().rev() {
        running += match item.direction {
            Side::Credit => item.money.value(),
            Side::Debit => -item.money.value(),
        };
        assert_eq!(item.balance_after, running, "balance_after at sequence {}", item.sequence);
    }
    assert_eq!(seen[0].direction, Side::Debit);
    assert_eq!(seen[0].money, usd("24.00"));
    assert_eq!(seen.last().map(|i| i.direction), Some(Side::Credit));

    let exact = w.ledger.history(w.bob, HistoryQuery::new(24, None).expect("query")).await.expect("history");
    assert_eq!(exact.items.len(), 24);
    let after = match exact.next_cursor {
        Some(c) => w.ledger.history(w.bob, HistoryQuery::new(24, Some(c)).expect("query")).await.expect("history"),
        None => exact.clone(),
    };
    assert!(after.next_cursor.is_none());
    assert!(exact.next_cursor.is_none() || after.items.is_empty());
    let empty_account =
        w.ledger.open_account(NewAccount::customer(CustomerId::new(), "New", Currency::Usd)).await.expect("open").id;
    let empty = w.ledger.history(empty_account, HistoryQuery::first_page()).await.expect("history");
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
    assert!(matches!(
        w.ledger.history(AccountId::new(), HistoryQuery::first_page()).await,
        Err(Error::AccountNotFound(_))
    ));
    assert!(HistoryQuery::new(PAGE_LIMIT_MAX + 1, None).is_err());
    assert!(HistoryQuery::new(0, None).is_err());
}

/// Holds lower `available` but not `posted`; posting one debits only what is posted and
/// releases the rest; voiding releases everything; each hold ends once.
pub async fn holds_reserve_and_release_funds(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("100.00")).await;
    let expiry = w.clock.now() + TimeDelta::hours(1);
    let request = new_hold(w.alice, usd("60.00"), expiry);
    let hold = w.ledger.hold(request.clone()).await.expect("hold");
    assert_eq!(hold.status, HoldStatus::Active);
    let balance = w.ledger.balance(w.alice).await.expect("balance");
    assert_eq!((balance.posted, balance.pending, balance.available), (dec("100.00"), dec("60.00"), Some(dec("40.00"))));
    assert_eq!(w.ledger.hold(request.clone()).await.expect("replay"), hold);
    let reused = NewHold { money: usd("61.00"), ..request.clone() };
    assert!(matches!(w.ledger.hold(reused).await, Err(Error::KeyReused(_))));
    assert_eq!(w.ledger.balance(w.alice).await.expect("balance").pending, dec("60.00"));

    let before = w.snapshot(&[w.alice, w.bob]).await;
    assert!(matches!(
        w.ledger.hold(new_hold(w.alice, usd("40.01"), expiry)).await,
        Err(Error::InsufficientFunds { .. })
    ));
    assert!(matches!(
        w.ledger.post(transfer(w.alice, w.bob, usd("40.01"))).await,
        Err(Error::InsufficientFunds { .. })
    ));
    assert!(matches!(w.ledger.hold(new_hold(w.alice, eur("1.00"), expiry)).await, Err(Error::CurrencyMismatch { .. })));
    assert!(matches!(
        w.ledger.hold(new_hold(AccountId::new(), usd("1.00"), expiry)).await,
        Err(Error::AccountNotFound(_))
    ));
    assert!(matches!(w.ledger.hold(new_hold(w.alice, usd("1.00"), w.clock.now())).await, Err(Error::InvalidInput(_))));
    assert!(matches!(
        w.ledger.hold(new_hold(w.alice, usd("1.00"), w.clock.now() + TimeDelta::days(31))).await,
        Err(Error::InvalidInput(_))
    ));
    let too_much = PostHold {
        hold_id: hold.id,
        key: key(),
        amount: Some(Amount::parse("60.01", Currency::Usd).expect("amount")),
        credit_account: w.bob,
        reference: "capture".into(),
    };
    assert!(matches!(w.ledger.post_hold(too_much).await, Err(Error::HoldExceeded { .. })));
    assert!(matches!(w.ledger.void_hold(HoldId::new()).await, Err(Error::HoldNotFound(_))));
    assert_eq!(w.snapshot(&[w.alice, w.bob]).await, before, "refused hold operations changed balances");

    let capture = PostHold {
        hold_id: hold.id,
        key: key(),
        amount: Some(Amount::parse("45.50", Currency::Usd).expect("amount")),
        credit_account: w.bob,
        reference: "capture".into(),
    };
    let entry = w.ledger.post_hold(capture.clone()).await.expect("post hold");
    assert_eq!(entry.line_of(w.alice).map(|l| l.money), Some(usd("45.50")));
    let balance = w.ledger.balance(w.alice).await.expect("balance");
    assert_eq!((balance.posted, balance.pending, balance.available), (dec("54.50"), dec("0"), Some(dec("54.50"))));
    assert_eq!(w.posted(w.bob).await, dec("45.50"));
    assert_eq!(w.ledger.post_hold(capture.clone()).await.expect("replay"), entry);
    assert_eq!(w.posted(w.bob).await, dec("45.50"), "a replayed capture moved money");
    let second = PostHold { key: key(), ..capture.clone() };
    assert!(matches!(w.ledger.post_hold(second).await, Err(Error::HoldNotActive { status: HoldStatus::Posted, .. })));
    assert!(matches!(w.ledger.void_hold(hold.id).await, Err(Error::HoldNotActive { status: HoldStatus::Posted, .. })));
    let stored = w.ledger.get_hold(hold.id).await.expect("get hold");
    assert_eq!((stored.status, stored.posted_entry), (HoldStatus::Posted, Some(capture.key)));
    // Another hold captured under the used key is not a replay of the first capture.
    let other = w.ledger.hold(new_hold(w.alice, usd("1.00"), expiry)).await.expect("hold");
    let reused_key = PostHold { hold_id: other.id, amount: None, ..capture.clone() };
    assert!(matches!(w.ledger.post_hold(reused_key).await, Err(Error::KeyReused(_))));
    // An amount checked for a three-decimal currency is re-checked against the hold's.
    let too_precise = PostHold {
        hold_id: other.id,
        key: key(),
        amount: Some(Amount::parse("0.001", Currency::Kwd).expect("amount")),
        credit_account: w.bob,
        reference: "".into(),
    };
    assert!(matches!(w.ledger.post_hold(too_precise).await, Err(Error::InvalidAmount { .. })));
    w.ledger.void_hold(other.id).await.expect("void");

    let full = w.ledger.hold(new_hold(w.alice, usd("20.00"), expiry)).await.expect("hold");
    let voided = w.ledger.void_hold(full.id).await.expect("void");
    assert_eq!(voided.status, HoldStatus::Voided);
    assert_eq!(w.ledger.void_hold(full.id).await.expect("void again").status, HoldStatus::Voided);
    assert_eq!(w.ledger.balance(w.alice).await.expect("balance").pending, dec("0"));
    let after_void =
        PostHold { hold_id: full.id, key: key(), amount: None, credit_account: w.bob, reference: "".into() };
    assert!(matches!(
        w.ledger.post_hold(after_void).await,
        Err(Error::HoldNotActive { status: HoldStatus::Voided, .. })
    ));
    let whole = w.ledger.hold(new_hold(w.alice, usd("54.50"), expiry)).await.expect("hold everything");
    let all = PostHold { hold_id: whole.id, key: key(), amount: None, credit_account: w.bob, reference: "".into() };
    w.ledger.post_hold(all).await.expect("post the full hold");
    let balance = w.ledger.balance(w.alice).await.expect("balance");
    assert_eq!((balance.posted, balance.pending), (dec("0.00"), dec("0")));
    w.assert_conserved().await;
}

/// A hold past its expiry stops reserving funds, before and after a sweep.
pub async fn holds_expire_by_themselves(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("10.00")).await;
    let short =
        w.ledger.hold(new_hold(w.alice, usd("6.00"), w.clock.now() + TimeDelta::minutes(5))).await.expect("hold");
    let long = w.ledger.hold(new_hold(w.alice, usd("3.00"), w.clock.now() + TimeDelta::hours(5))).await.expect("hold");
    assert_eq!(w.available(w.alice).await, Some(dec("1.00")));
    w.clock.advance(TimeDelta::minutes(5));
    assert_eq!(w.available(w.alice).await, Some(dec("7.00")), "expired hold still reserves funds");
    assert_eq!(w.ledger.get_hold(short.id).await.expect("hold").status, HoldStatus::Expired);
    // The released funds can be spent before any sweep ran.
    w.ledger.post(transfer(w.alice, w.bob, usd("7.00"))).await.expect("spend released funds");
    let late = PostHold { hold_id: short.id, key: key(), amount: None, credit_account: w.bob, reference: "".into() };
    assert!(matches!(w.ledger.post_hold(late).await, Err(Error::HoldNotActive { status: HoldStatus::Expired, .. })));
    assert_eq!(w.ledger.void_hold(short.id).await.expect("void expired").status, HoldStatus::Expired);
    w.clock.advance(TimeDelta::hours(5));
    let swept = w.ledger.expire_holds().await.expect("sweep");
    assert!((1..=2).contains(&swept), "swept {swept} holds; one or both were still marked active");
    assert_eq!(w.ledger.expire_holds().await.expect("sweep again"), 0);
    assert_eq!(w.ledger.get_hold(long.id).await.expect("hold").status, HoldStatus::Expired);
    let balance = w.ledger.balance(w.alice).await.expect("balance");
    assert_eq!((balance.posted, balance.pending, balance.available), (dec("3.00"), dec("0"), Some(dec("3.00"))));
}

/// Marks: marking again keeps the first mark; listed in id order, paged, each with its hold as of
/// now (one placed after the mark too); removed by id; moving no money.
pub async fn hold_marks_list_their_holds_and_can_be_removed(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("10.00")).await;
    assert!(w.ledger.marked_holds(None, 10).await.expect("marks").is_empty());
    let mut ids = [HoldId::new(), HoldId::new(), HoldId::new()];
    ids.sort();
    let [first, second, third] = ids;
    let before = w.snapshot(&[w.alice]).await;
    let marked_at = w.clock.now();
    w.ledger.mark_hold(second).await.expect("mark");
    w.ledger.mark_hold(first).await.expect("mark");
    w.clock.advance(TimeDelta::minutes(1));
    w.ledger.mark_hold(second).await.expect("mark again");
    w.ledger.mark_hold(third).await.expect("mark");
    assert_eq!(w.snapshot(&[w.alice]).await, before, "a mark moved money");
    // A hold lands under a marked id: listed with its mark, as of now.
    let expiry = w.clock.now() + TimeDelta::minutes(5);
    let hold = w.ledger.hold(NewHold { id: second, ..new_hold(w.alice, usd("4.00"), expiry) }).await.expect("hold");
    let marks = w.ledger.marked_holds(None, 10).await.expect("marks");
    assert_eq!(marks.iter().map(|m| m.id).collect::<Vec<_>>(), ids, "listed in id order");
    assert_eq!((marks[0].marked_at, marks[1].marked_at), (marked_at, marked_at), "the first mark is kept");
    assert_eq!(marks[2].marked_at, marked_at + TimeDelta::minutes(1));
    assert_eq!(marks[1].hold.as_ref(), Some(&hold));
    assert!(marks[0].hold.is_none() && marks[2].hold.is_none());
    w.clock.advance(TimeDelta::minutes(5));
    let marks = w.ledger.marked_holds(None, 10).await.expect("marks");
    assert_eq!(marks[1].hold.as_ref().map(|h| h.status), Some(HoldStatus::Expired), "the hold as of now");
    // Paged after an id.
    let page = w.ledger.marked_holds(None, 2).await.expect("page");
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), [first, second]);
    let rest = w.ledger.marked_holds(Some(second), 2).await.expect("page");
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), [third]);
    // Removed by id; an id never marked is ignored.
    w.ledger.unmark_holds(&[first, HoldId::new(), third]).await.expect("unmark");
    let left = w.ledger.marked_holds(None, 10).await.expect("marks");
    assert_eq!(left.iter().map(|m| m.id).collect::<Vec<_>>(), [second]);
    w.ledger.unmark_holds(&[]).await.expect("unmark nothing");
    w.ledger.unmark_holds(&[second]).await.expect("unmark");
    assert!(w.ledger.marked_holds(None, 10).await.expect("marks").is_empty());
    assert_eq!(w.ledger.get_hold(second).await.expect("the hold stays").status, HoldStatus::Expired);
}

/// A reversal swaps every line, restores balances, and happens at most once.
pub async fn reversals_restore_balances_once(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("30.00")).await;
    let original = transfer(w.alice, w.bob, usd("12.00"));
    w.ledger.post(original.clone()).await.expect("post");
    let reversal = Reversal { original: original.key(), key: key(), reference: "refund".into() };
    let reversed = w.ledger.reverse(reversal.clone()).await.expect("reverse");
    assert_eq!(reversed.reverses, Some(original.key()));
    assert_eq!(reversed.line_of(w.alice).map(|l| l.side), Some(Side::Credit));
    assert_eq!(w.posted(w.alice).await, dec("30.00"));
    assert_eq!(w.posted(w.bob).await, dec("0.00"));
    assert_eq!(w.ledger.balance(w.bob).await.expect("balance").sequence, 2, "a reversal is a new entry");
    assert_eq!(w.ledger.reverse(reversal.clone()).await.expect("replay"), reversed);
    let again = Reversal { key: key(), ..reversal.clone() };
    assert!(matches!(w.ledger.reverse(again).await, Err(Error::AlreadyReversed(_))));
    // The reversal's key cannot be reused to reverse a different (even identical-looking) entry.
    let twin = transfer(w.alice, w.bob, usd("12.00"));
    w.ledger.post(twin.clone()).await.expect("post");
    let reused = Reversal { original: twin.key(), ..reversal.clone() };
    assert!(matches!(w.ledger.reverse(reused).await, Err(Error::KeyReused(_))));
    w.ledger.reverse(Reversal { original: twin.key(), key: key(), reference: "refund".into() }).await.expect("rev");
    assert!(matches!(
        w.ledger.reverse(Reversal { original: key(), key: key(), reference: "".into() }).await,
        Err(Error::EntryNotFound(_))
    ));
    // A reversal is held to every rule: Bob spent the money, so taking it back would overdraw him.
    let second = transfer(w.alice, w.bob, usd("5.00"));
    w.ledger.post(second.clone()).await.expect("post");
    w.ledger.post(transfer(w.bob, w.settlement, usd("5.00"))).await.expect("bob withdraws");
    let before = w.snapshot(&[w.alice, w.bob]).await;
    assert!(matches!(
        w.ledger.reverse(Reversal { original: second.key(), key: key(), reference: "".into() }).await,
        Err(Error::InsufficientFunds { .. })
    ));
    assert_eq!(w.snapshot(&[w.alice, w.bob]).await, before);
    w.assert_conserved().await;
}

/// An entry over two currencies (a currency exchange through the bank's books) balances in each.
pub async fn multi_currency_entries_balance_per_currency(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    let fx_usd = w
        .ledger
        .open_account(NewAccount::internal(w.bank, "FX USD", Currency::Usd, AccountKind::Clearing))
        .await
        .expect("open")
        .id;
    let fx_eur = w
        .ledger
        .open_account(NewAccount::internal(w.bank, "FX EUR", Currency::Eur, AccountKind::Clearing))
        .await
        .expect("open")
        .id;
    let alice_eur = w
        .ledger
        .open_account(NewAccount::customer(CustomerId::new(), "Alice EUR", Currency::Eur))
        .await
        .expect("open")
        .id;
    w.deposit(w.alice, usd("110.00")).await;
    let exchange = NewEntry::new(
        key(),
        vec![
            Line::debit(w.alice, usd("110.00")),
            Line::credit(fx_usd, usd("110.00")),
            Line::debit(fx_eur, eur("100.00")),
            Line::credit(alice_eur, eur("100.00")),
        ],
        "exchange",
    )
    .expect("balanced per currency");
    w.ledger.post(exchange).await.expect("post");
    assert_eq!(w.posted(alice_eur).await, dec("100.00"));
    assert_eq!(w.posted(w.alice).await, dec("0.00"));
    let totals = w.ledger.trial_balance().await.expect("trial balance");
    assert_eq!(totals, vec![(Currency::Eur, Decimal::ZERO), (Currency::Usd, Decimal::ZERO)]);
}

/// In a batch, each entry succeeds or fails on its own, in order, and failures change nothing.
pub async fn post_batch_results_are_independent(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("10.00")).await;
    let ok1 = transfer(w.alice, w.bob, usd("6.00"));
    let refused = transfer(w.alice, w.bob, usd("6.00")); // only 4.00 left after ok1
    let ok2 = transfer(w.alice, w.bob, usd("4.00"));
    let unknown = transfer(w.alice, AccountId::new(), usd("1.00"));
    let replay = ok1.clone();
    let results = w.ledger.post_batch(vec![ok1.clone(), refused.clone(), ok2, unknown, replay]).await;
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(Error::InsufficientFunds { .. })));
    assert!(results[2].is_ok());
    assert!(matches!(results[3], Err(Error::AccountNotFound(_))));
    assert_eq!(results[4].as_ref().expect("replay"), results[0].as_ref().expect("first"));
    assert_eq!(w.posted(w.alice).await, dec("0.00"));
    assert_eq!(w.posted(w.bob).await, dec("10.00"));
    assert_eq!(w.ledger.balance(w.alice).await.expect("balance").sequence, 3);
    assert!(matches!(w.ledger.entry(refused.key()).await, Err(Error::EntryNotFound(_))));
    assert!(w.ledger.post_batch(Vec::new()).await.is_empty());
    w.assert_conserved().await;
}

/// Number of concurrent tasks in the concurrency cases.
const CONCURRENT_TASKS: usize = 32;

/// Many tasks draining one account at once: never below its limit, money conserved, and the
/// account's sequence numbers stay gap-free.
pub async fn concurrent_debits_never_overdraw(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    let carol = w
        .ledger
        .open_account(
            NewAccount::customer(CustomerId::new(), "Carol", Currency::Usd)
                .with_overdraft(OverdraftLimit::Limited(dec("5.00"))),
        )
        .await
        .expect("open")
        .id;
    w.deposit(carol, usd("45.00")).await;
    let targets = [w.alice, w.bob];
    let mut tasks = Vec::new();
    for task in 0..CONCURRENT_TASKS {
        let ledger = Arc::clone(&w.ledger);
        let to = targets[task % 2];
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            for _ in 0..5 {
                match ledger.post(transfer(carol, to, usd("1.00"))).await {
                    Ok(_) => ok += 1,
                    Err(Error::InsufficientFunds { .. }) => {}
                    Err(other) => panic!("unexpected error under concurrency: {other:?}"),
                }
                tokio::task::yield_now().await;
            }
            ok
        }));
    }
    let mut succeeded = 0;
    for result in futures::future::join_all(tasks).await {
        succeeded += result.expect("task");
    }
    assert_eq!(succeeded, 50, "exactly 45.00 + 5.00 overdraft can leave in 1.00 steps");
    let balance = w.ledger.balance(carol).await.expect("balance");
    assert_eq!(balance.posted, dec("-5.00"));
    assert_eq!(balance.available, Some(dec("0.00")));
    assert_eq!(balance.sequence, 51);
    let received = w.posted(w.alice).await + w.posted(w.bob).await;
    assert_eq!(received, dec("50.00"));
    let mut sequences = Vec::new();
    let mut cursor = None;
    loop {
        let page = w.ledger.history(carol, HistoryQuery::new(PAGE_LIMIT_MAX, cursor).expect("query")).await.expect("h");
        sequences.extend(page.items.iter().map(|i| i.sequence));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(sequences, (1..=51).rev().collect::<Vec<u64>>());
    w.assert_conserved().await;
}

/// The same entry posted by many tasks at once moves money once.
pub async fn concurrent_replays_post_once(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("100.00")).await;
    let entry = transfer(w.alice, w.bob, usd("10.00"));
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|_| {
            let ledger = Arc::clone(&w.ledger);
            let entry = entry.clone();
            tokio::spawn(async move { ledger.post(entry).await })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();
    let first = results[0].as_ref().expect("post").clone();
    for result in &results {
        assert_eq!(result.as_ref().expect("every caller sees the one posting"), &first);
    }
    assert_eq!(w.posted(w.bob).await, dec("10.00"));
    assert_eq!(w.ledger.balance(w.alice).await.expect("balance").sequence, 2);
}

/// Many tasks placing holds on one account at once never reserve more than it has.
pub async fn concurrent_holds_never_overcommit(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    w.deposit(w.alice, usd("20.00")).await;
    let expiry = w.clock.now() + TimeDelta::hours(1);
    let alice = w.alice;
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|_| {
            let ledger = Arc::clone(&w.ledger);
            tokio::spawn(async move { ledger.hold(new_hold(alice, usd("1.00"), expiry)).await })
        })
        .collect();
    let mut placed = 0;
    for result in futures::future::join_all(tasks).await {
        match result.expect("task") {
            Ok(_) => placed += 1,
            Err(Error::InsufficientFunds { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(placed, 20);
    let balance = w.ledger.balance(w.alice).await.expect("balance");
    assert_eq!((balance.pending, balance.available), (dec("20.00"), Some(dec("0.00"))));
}

/// `balance_at(id, t)` is the posted balance of the entries posted strictly before `t`: zero
/// before the first, each step at the instant after its entry, holds not counted, the current
/// posted balance far in the future; unknown accounts are `AccountNotFound`. Checked across more
/// than one history page, so a store that pages cannot stop early.
pub async fn balance_at_counts_entries_posted_before_the_instant(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    let start = w.clock.now();
    assert_eq!(w.ledger.balance_at(w.alice, start).await.expect("balance_at"), Decimal::ZERO);
    w.clock.advance(TimeDelta::seconds(1));
    w.deposit(w.bob, usd("500.00")).await;
    w.deposit(w.alice, usd("500.00")).await;
    // (an instant just after a posting, alice's balance from then on), summed independently.
    let mut expected = vec![(w.clock.now() + TimeDelta::milliseconds(1), dec("500.00"))];
    let mut running = dec("500.00");
    for i in 1..=(PAGE_LIMIT_MAX + 30) {
        w.clock.advance(TimeDelta::seconds(60));
        let cents = Decimal::new(i64::from(i), 2);
        let money = Money::new(cents, Currency::Usd).expect("amount");
        if i % 3 == 0 {
            w.ledger.post(transfer(w.bob, w.alice, money)).await.expect("credit alice");
            running += cents;
        } else {
            w.ledger.post(transfer(w.alice, w.bob, money)).await.expect("debit alice");
            running -= cents;
        }
        expected.push((w.clock.now() + TimeDelta::milliseconds(1), running));
    }
    w.ledger
        .hold(new_hold(w.alice, usd("10.00"), w.clock.now() + TimeDelta::hours(1)))
        .await
        .expect("a hold is not posted");
    assert_eq!(w.ledger.balance_at(w.alice, start + TimeDelta::seconds(1)).await.expect("balance_at"), Decimal::ZERO);
    for (at, balance) in expected.iter().step_by(7).chain(expected.last()) {
        assert_eq!(w.ledger.balance_at(w.alice, *at).await.expect("balance_at"), *balance, "at {at}");
    }
    let far = w.clock.now() + TimeDelta::days(365);
    assert_eq!(w.ledger.balance_at(w.alice, far).await.expect("balance_at"), w.posted(w.alice).await);
    assert_eq!(w.ledger.balance_at(w.bob, far).await.expect("balance_at"), w.posted(w.bob).await);
    assert!(matches!(w.ledger.balance_at(AccountId::new(), far).await, Err(Error::AccountNotFound(_))));
}

/// `accounts_after` lists every account once, in id order, page by page; a bad limit is refused.
pub async fn accounts_after_pages_every_account_in_id_order(harness: &dyn LedgerHarness) {
    let w = World::new(harness).await;
    let mut ids = vec![w.settlement, w.alice, w.bob];
    for i in 0..23 {
        let owner = CustomerId::new();
        let opened = w.ledger.open_account(NewAccount::customer(owner, format!("c{i}"), Currency::Eur)).await;
        ids.push(opened.expect("open").id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = w.ledger.accounts_after(after, 5).await.expect("accounts_after");
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|a| a.id));
    }
    assert_eq!(seen, ids, "every account once, in id order");
    let all = w.ledger.accounts_after(None, crate::ports::ACCOUNTS_PAGE_MAX).await.expect("one page");
    assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
    assert_eq!(all.iter().find(|a| a.id == w.alice).map(|a| a.name.as_str()), Some("Alice"));
    for bad in [0, crate::ports::ACCOUNTS_PAGE_MAX + 1] {
        assert!(matches!(w.ledger.accounts_after(None, bad).await, Err(Error::InvalidInput(_))), "limit {bad}");
    }
}
