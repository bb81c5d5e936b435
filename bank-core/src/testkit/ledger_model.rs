//! State-machine property test of a [`LedgerStore`] against a simple model: the ledger's model
//! check, run by every ledger adapter through its [`LedgerHarness`].
//!
//! This module owns the operation generator, `Model` (a plain map of accounts, holds and entries
//! written here from the documented semantics — it does not call [`crate::ledger::rules`], so the
//! stores that do cannot agree with it by sharing a mistake), the comparison of every answer with
//! the model's prediction, the coverage check, and the minimal cases of the bugs it found
//! ([`ledger_model_regression_tests!`]).
//!
//! [`run_ledger_model`] runs random sequences of operations against a fresh store per case (built
//! through the harness, with a [`ManualClock`], driven only through the [`LedgerStore`] port) and
//! against the model. Operations: opening accounts (and re-opening them), 2-leg transfers,
//! deposits and withdrawals through settlement accounts, 3-leg entries, batches, duplicates of
//! earlier payments, holds with random expiries, posting them (full, partial, too much, under a
//! reused key), voiding them, reversals (fresh, repeated, under reused keys), exact replays and
//! same-key-different-content requests, freezing / reopening / closing accounts, moving the clock
//! and sweeping expired holds.
//!
//! For every operation the model predicts success or the refusal (with its variant and fields);
//! the store must agree, and a refused call or a replay must leave every balance untouched.
//! After every step: each currency's posted balances sum to exactly zero (by `trial_balance` and
//! by summing `balance`), no limited account has a negative `available`, and every balance
//! (posted, pending, available, sequence) and status equals the model's. At the end of a case,
//! every account's history is paged through with the cursor and compared with the model (gap-free
//! sequences n..1, running balances), and every entry and hold is read back.
//!
//! The contract lets a store mark a lapsed hold expired whenever it likes (a lapsed hold reserves
//! nothing either way), so the count `expire_holds` returns is checked against bounds: at least
//! the holds that lapsed since the clock last moved (no call can have seen them lapsed), at most
//! every lapsed hold that no earlier sweep or void marked; a second sweep right after finds none.
//!
//! The caller gives the number of cases; `PROPTEST_CASES` overrides it. No regression files are
//! written. A run of at least 256 cases also checks that every interesting outcome (each refusal
//! kind, replays, partial captures, expiries, …) occurred, so a generator that stops reaching them
//! fails too.
//!
//! Where the store breaks the documented contract, the failing assertion says `LEDGER CONTRACT
//! BROKEN`; the minimal case is kept as a plain async case at the end of this module, run for
//! every adapter by [`ledger_model_regression_tests!`].
//!
//! Use it from an adapter's tests (a plain `#[test]`: each case runs its store on its own
//! current-thread runtime, so it must not be called from inside a runtime):
//!
//! ```ignore
//! #[test]
//! fn ledger_behaves_like_the_model() {
//!     bank_core::testkit::ledger_model::run_ledger_model(&Harness::default(), 256);
//! }
//! bank_core::ledger_model_regression_tests!(Harness::default());
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::account::{Account, AccountKind, AccountStatus, Balance, NewAccount, OverdraftLimit};
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::ids::{AccountId, CustomerId, HoldId, TransferId};
use crate::ledger::{
    Cursor, EntryKey, HOLD_DURATION_SECONDS_MAX, HistoryQuery, Hold, HoldStatus, Line, NewEntry, NewHold, PostHold,
    PostedEntry, Reversal, Side,
};
use crate::money::{Amount, Currency, Money};
use crate::ports::LedgerStore;
use crate::testkit::ledger::LedgerHarness;
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// The currencies of every case: 2, 0 and 3 decimals.
const CURRENCIES: [Currency; 3] = [Currency::Usd, Currency::Jpy, Currency::Kwd];
/// Longest operation sequence of one case.
const STEPS_MAX: usize = 60;
/// Overdraft limits (in minor units) customer accounts are opened with.
const LIMIT_SMALL_UNITS: i64 = 1_000;
const LIMIT_LARGE_UNITS: i64 = 50_000;
const REVERSAL_REFERENCE: &str = "reversal";

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// The overdraft limit of an account opened during a case.
#[derive(Debug, Clone, Copy)]
enum LimitChoice {
    Zero,
    Small,
    Large,
    /// Refused: a customer account cannot be unlimited.
    InvalidUnlimited,
    /// Refused: more decimals than the currency has.
    InvalidScale,
}

/// How much of a hold to post.
#[derive(Debug, Clone, Copy)]
enum PostAmount {
    Full,
    /// This percentage of the hold (at least one minor unit).
    Part(u8),
    /// The hold plus this many minor units (refused).
    Over(i64),
    /// 0.001, an [`Amount`] checked against KWD (3 decimals): too precise for USD and JPY holds.
    TooPrecise,
}

/// One step. Every `Index` picks among what exists when the step runs; a step whose pick is
/// impossible (no hold yet, say) does nothing.
#[derive(Debug, Clone)]
enum Op {
    Open {
        currency: Index,
        limit: LimitChoice,
    },
    OpenAgain {
        account: Index,
        same: bool,
    },
    Transfer {
        from: Index,
        to: Index,
        cross_currency: bool,
        units: i64,
    },
    Deposit {
        to: Index,
        units: i64,
    },
    Withdraw {
        from: Index,
        units: i64,
    },
    ThreeLeg {
        a: Index,
        b: Index,
        c: Index,
        u1: i64,
        u2: i64,
        fan_out: bool,
    },
    Batch {
        transfers: Vec<(Index, Index, i64)>,
    },
    /// The same payment again under a new key (a legitimate second payment).
    Duplicate {
        entry: Index,
    },
    Hold {
        account: Index,
        units: i64,
        expiry_secs: i64,
        wrong_currency: bool,
    },
    /// A second hold identical to an earlier one but with a new id.
    CopyHold {
        hold: Index,
    },
    HoldAgain {
        hold: Index,
        same: bool,
    },
    PostHold {
        hold: Index,
        amount: PostAmount,
        credit: Index,
        cross_currency: bool,
    },
    /// Posts a hold under the key, credit account, amount and reference of an earlier entry.
    PostHoldReusingKey {
        hold: Index,
        entry: Index,
    },
    VoidHold {
        hold: Index,
    },
    Reverse {
        entry: Index,
        reuse_key_of: Option<Index>,
    },
    Replay {
        entry: Index,
    },
    ReplayDifferent {
        entry: Index,
        change_amount: bool,
    },
    /// Usually on an account whose status differs from `status`, so reopening is exercised too.
    SetStatus {
        account: Index,
        status: AccountStatus,
        prefer_change: bool,
    },
    /// Moves a customer's whole posted balance to (or from) its settlement account.
    Sweep {
        account: Index,
    },
    Advance {
        secs: i64,
        sweep: bool,
    },
}

fn units() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1i64..=300,
        4 => 300i64..=30_000,
        2 => prop::sample::select(vec![500i64, 1_000, 5_000]),
    ]
}

fn limit_choice(valid_only: bool) -> BoxedStrategy<LimitChoice> {
    let valid = prop_oneof![
        4 => Just(LimitChoice::Zero),
        2 => Just(LimitChoice::Small),
        1 => Just(LimitChoice::Large),
    ];
    if valid_only {
        valid.boxed()
    } else {
        prop_oneof![
            8 => valid,
            1 => Just(LimitChoice::InvalidUnlimited),
            1 => Just(LimitChoice::InvalidScale),
        ]
        .boxed()
    }
}

fn expiry_secs() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        4 => 1i64..=120,
        3 => 120i64..=7_200,
        2 => 7_200i64..=86_400,
        1 => Just(HOLD_DURATION_SECONDS_MAX + 1),
    ]
}

fn post_amount() -> impl Strategy<Value = PostAmount> {
    prop_oneof![
        3 => Just(PostAmount::Full),
        3 => (1u8..=100).prop_map(PostAmount::Part),
        1 => (1i64..=500).prop_map(PostAmount::Over),
        1 => Just(PostAmount::TooPrecise),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let idx = any::<Index>;
    prop_oneof![
        1 => (idx(), limit_choice(false)).prop_map(|(currency, limit)| Op::Open { currency, limit }),
        1 => (idx(), any::<bool>()).prop_map(|(account, same)| Op::OpenAgain { account, same }),
        6 => (idx(), idx(), prop::bool::weighted(0.1), units())
            .prop_map(|(from, to, cross_currency, units)| Op::Transfer { from, to, cross_currency, units }),
        5 => (idx(), units()).prop_map(|(to, units)| Op::Deposit { to, units }),
        2 => (idx(), units()).prop_map(|(from, units)| Op::Withdraw { from, units }),
        3 => (idx(), idx(), idx(), units(), units(), any::<bool>())
            .prop_map(|(a, b, c, u1, u2, fan_out)| Op::ThreeLeg { a, b, c, u1, u2, fan_out }),
        2 => prop::collection::vec((idx(), idx(), units()), 2..=4).prop_map(|transfers| Op::Batch { transfers }),
        2 => idx().prop_map(|entry| Op::Duplicate { entry }),
        5 => (idx(), units(), expiry_secs(), prop::bool::weighted(0.1)).prop_map(
            |(account, units, expiry_secs, wrong_currency)| Op::Hold { account, units, expiry_secs, wrong_currency }
        ),
        1 => idx().prop_map(|hold| Op::CopyHold { hold }),
        1 => (idx(), any::<bool>()).prop_map(|(hold, same)| Op::HoldAgain { hold, same }),
        4 => (idx(), post_amount(), idx(), prop::bool::weighted(0.1))
            .prop_map(|(hold, amount, credit, cross_currency)| Op::PostHold { hold, amount, credit, cross_currency }),
        1 => (idx(), idx()).prop_map(|(hold, entry)| Op::PostHoldReusingKey { hold, entry }),
        2 => idx().prop_map(|hold| Op::VoidHold { hold }),
        4 => (idx(), prop::option::weighted(0.3, idx()))
            .prop_map(|(entry, reuse_key_of)| Op::Reverse { entry, reuse_key_of }),
        2 => idx().prop_map(|entry| Op::Replay { entry }),
        2 => (idx(), any::<bool>()).prop_map(|(entry, change_amount)| Op::ReplayDifferent { entry, change_amount }),
        2 => (
            idx(),
            prop::sample::select(vec![AccountStatus::Open, AccountStatus::Frozen, AccountStatus::Closed]),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(account, status, prefer_change)| Op::SetStatus { account, status, prefer_change }),
        2 => idx().prop_map(|account| Op::Sweep { account }),
        3 => (prop_oneof![1i64..=60, 60i64..=3_600, 3_600i64..=50_000], any::<bool>())
            .prop_map(|(secs, sweep)| Op::Advance { secs, sweep }),
    ]
}

/// One case: the customer accounts of each currency (their limits), the history page size used
/// at the end, and the operations.
#[derive(Debug, Clone)]
struct CaseInput {
    customers: Vec<Vec<LimitChoice>>,
    page_limit: u32,
    ops: Vec<Op>,
}

fn case_input() -> impl Strategy<Value = CaseInput> {
    (
        prop::collection::vec(prop::collection::vec(limit_choice(true), 3..=5), CURRENCIES.len()),
        prop_oneof![3 => 1u32..=7, 1 => Just(100u32)],
        prop::collection::vec(op(), 1..=STEPS_MAX),
    )
        .prop_map(|(customers, page_limit, ops)| CaseInput { customers, page_limit, ops })
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

fn money(units: i64, currency: Currency) -> Money {
    Money::new(Decimal::new(units, currency.exponent()), currency).expect("generated units are positive and small")
}

fn minor_units(value: Decimal, currency: Currency) -> i64 {
    (value * Decimal::from(10i64.pow(currency.exponent()))).to_i64().expect("model amounts are small")
}

/// One history line of an account, as the model expects it.
#[derive(Debug, Clone)]
struct MItem {
    key: EntryKey,
    side: Side,
    money: Money,
    balance_after: Decimal,
    posted_at: DateTime<Utc>,
    reference: String,
}

#[derive(Debug)]
struct MAccount {
    new: NewAccount,
    status: AccountStatus,
    created_at: DateTime<Utc>,
    posted: Decimal,
    /// `history[i]` has sequence `i + 1`.
    history: Vec<MItem>,
}

impl MAccount {
    fn id(&self) -> AccountId {
        self.new.id
    }

    fn currency(&self) -> Currency {
        self.new.currency
    }

    fn limit(&self) -> Option<Decimal> {
        match self.new.overdraft_limit {
            OverdraftLimit::Limited(limit) => Some(limit),
            OverdraftLimit::Unlimited => None,
        }
    }
}

#[derive(Debug)]
struct MHold {
    new: NewHold,
    account: usize,
    /// `Active` here may already be past its expiry (see [`MHold::status_at`]): it is `Expired`
    /// only once a sweep or a void has certainly marked it so in the store.
    status: HoldStatus,
    created_at: DateTime<Utc>,
    posted_entry: Option<EntryKey>,
}

impl MHold {
    fn status_at(&self, now: DateTime<Utc>) -> HoldStatus {
        if self.status == HoldStatus::Active && self.new.expires_at <= now { HoldStatus::Expired } else { self.status }
    }

    fn view(&self, now: DateTime<Utc>) -> Hold {
        Hold {
            id: self.new.id,
            account_id: self.new.account_id,
            money: self.new.money,
            status: self.status_at(now),
            created_at: self.created_at,
            expires_at: self.new.expires_at,
            reference: self.new.reference.clone(),
            posted_entry: self.posted_entry,
        }
    }
}

/// A line by model account index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MLine {
    account: usize,
    side: Side,
    money: Money,
}

/// What a posting request acts on besides its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Plain,
    Hold(usize),
    Reversal(usize),
}

/// A posting request, by model indexes.
#[derive(Debug, Clone)]
enum Req {
    Post { key: EntryKey, lines: Vec<MLine>, reference: String },
    PostHold { key: EntryKey, hold: usize, amount: Option<Amount>, credit: usize, reference: String },
    Reverse { key: EntryKey, original: usize, reference: String },
}

impl Req {
    fn key(&self) -> EntryKey {
        match self {
            Req::Post { key, .. } | Req::PostHold { key, .. } | Req::Reverse { key, .. } => *key,
        }
    }
}

#[derive(Debug)]
struct MEntry {
    /// The request that posted it (replayed by `Op::Replay`).
    req: Req,
    target: Target,
    lines: Vec<MLine>,
    reference: String,
    posted: PostedEntry,
    reversed: bool,
}

/// A refusal the model expects, with the fields the store must report.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    InvalidInput,
    InvalidAmount,
    /// `same_content`: the lines and reference equal the stored entry's, but the request acts on
    /// another hold or reverses another entry — still a different request under a used key.
    KeyReused {
        same_content: bool,
    },
    CurrencyMismatch {
        account: AccountId,
        expected: Currency,
        found: Currency,
    },
    AccountNotOpen {
        account: AccountId,
        status: AccountStatus,
    },
    InsufficientFunds {
        account: AccountId,
        available: Decimal,
        requested: Decimal,
    },
    HoldExceeded {
        held: Decimal,
        requested: Decimal,
    },
    HoldNotActive {
        status: HoldStatus,
    },
    AlreadyReversed(EntryKey),
    AccountNotEmpty(AccountId),
}

impl Expect {
    fn matches(&self, err: &Error) -> bool {
        match (self, err) {
            (Expect::InvalidInput, Error::InvalidInput(_)) => true,
            (Expect::InvalidAmount, Error::InvalidAmount { .. }) => true,
            (Expect::KeyReused { .. }, Error::KeyReused(_)) => true,
            (
                Expect::CurrencyMismatch { account, expected, found },
                Error::CurrencyMismatch { account: a, expected: e, found: f },
            ) => account == a && expected == e && found == f,
            (Expect::AccountNotOpen { account, status }, Error::AccountNotOpen { account: a, status: s }) => {
                account == a && status == s
            }
            (
                Expect::InsufficientFunds { account, available, requested },
                Error::InsufficientFunds { account: a, available: av, requested: r },
            ) => account == a && available == av && requested == r,
            (Expect::HoldExceeded { held, requested }, Error::HoldExceeded { held: h, requested: r, .. }) => {
                held == h && requested == r
            }
            (Expect::HoldNotActive { status }, Error::HoldNotActive { status: s, .. }) => status == s,
            (Expect::AlreadyReversed(key), Error::AlreadyReversed(k)) => key == k,
            (Expect::AccountNotEmpty(account), Error::AccountNotEmpty(a)) => account == a,
            _ => false,
        }
    }
}

/// What the model says a posting request does.
#[derive(Debug)]
enum Prediction {
    /// A new entry with these lines.
    Post { target: Target, lines: Vec<MLine>, reference: String },
    /// A replay of entry `.0`: the same `PostedEntry`, nothing moves.
    Replay(usize),
    /// Refused with one of these (several when more than one rule is broken).
    Refuse(Vec<Expect>),
}

#[derive(Debug)]
struct Model {
    now: DateTime<Utc>,
    accounts: Vec<MAccount>,
    settlement: HashMap<Currency, usize>,
    holds: Vec<MHold>,
    entries: Vec<MEntry>,
    by_key: HashMap<EntryKey, usize>,
}

impl Model {
    /// Funds reserved on `account` by holds still active now.
    fn held(&self, account: usize) -> Decimal {
        self.holds
            .iter()
            .filter(|h| h.account == account && h.status_at(self.now) == HoldStatus::Active)
            .map(|h| h.new.money.value())
            .sum()
    }

    /// `posted − held + limit`, with `release` (a hold's amount) no longer held.
    fn available(&self, account: usize, release: Decimal) -> Option<Decimal> {
        let a = &self.accounts[account];
        a.limit().map(|limit| a.posted - (self.held(account) - release) + limit)
    }

    fn customers(&self) -> Vec<usize> {
        (0..self.accounts.len()).filter(|&i| self.accounts[i].new.kind == AccountKind::Customer).collect()
    }

    fn same_currency(&self, currency: Currency, except: &[usize]) -> Vec<usize> {
        (0..self.accounts.len()).filter(|i| self.accounts[*i].currency() == currency && !except.contains(i)).collect()
    }

    fn predict(&self, req: &Req) -> Prediction {
        match req {
            Req::Post { key, lines, reference } => self.predict_posting(*key, Target::Plain, lines.clone(), reference),
            Req::PostHold { key, hold, amount, credit, reference } => {
                let h = &self.holds[*hold];
                let held = h.new.money;
                let requested = amount.map_or(held.value(), Amount::value);
                let money = Money { amount: amount.unwrap_or(held.amount), currency: held.currency };
                let prediction = if requested > held.value() {
                    Prediction::Refuse(vec![Expect::HoldExceeded { held: held.value(), requested }])
                } else if *credit == h.account {
                    Prediction::Refuse(vec![Expect::InvalidInput])
                } else {
                    let lines = vec![
                        MLine { account: h.account, side: Side::Debit, money },
                        MLine { account: *credit, side: Side::Credit, money },
                    ];
                    self.predict_posting(*key, Target::Hold(*hold), lines, reference)
                };
                // An `Amount` carries no currency: one checked against another currency may have more
                // decimals than the hold's, and must be refused, never posted. Which refusal comes
                // first when others apply too is left open.
                if Money::new(requested, held.currency).is_err() {
                    let mut expects = vec![Expect::InvalidAmount];
                    if let Prediction::Refuse(others) = prediction {
                        expects.extend(others);
                    }
                    return Prediction::Refuse(expects);
                }
                prediction
            }
            Req::Reverse { key, original, reference } => {
                let lines =
                    self.entries[*original].lines.iter().map(|l| MLine { side: opposite(l.side), ..*l }).collect();
                self.predict_posting(*key, Target::Reversal(*original), lines, reference)
            }
        }
    }

    fn predict_posting(&self, key: EntryKey, target: Target, lines: Vec<MLine>, reference: &str) -> Prediction {
        if let Some(&e) = self.by_key.get(&key) {
            let stored = &self.entries[e];
            let same_content = stored.lines == lines && stored.reference == reference;
            // A plain post of exactly the lines recorded under the key is a replay whatever posted
            // them; a hold capture or a reversal is the same request only for the same hold or
            // original entry.
            let same_target = target == Target::Plain || target == stored.target;
            return if same_content && same_target {
                Prediction::Replay(e)
            } else {
                Prediction::Refuse(vec![Expect::KeyReused { same_content }])
            };
        }
        let mut release = Decimal::ZERO;
        let mut released_account = None;
        match target {
            Target::Plain => {}
            Target::Hold(h) => {
                let status = self.holds[h].status_at(self.now);
                if status != HoldStatus::Active {
                    return Prediction::Refuse(vec![Expect::HoldNotActive { status }]);
                }
                release = self.holds[h].new.money.value();
                released_account = Some(self.holds[h].account);
            }
            Target::Reversal(o) => {
                if self.entries[o].reversed {
                    return Prediction::Refuse(vec![Expect::AlreadyReversed(self.entries[o].posted.key)]);
                }
            }
        }
        // Refusals that do not depend on amounts come first, then funds.
        let mut structural = Vec::new();
        let mut funds = Vec::new();
        for line in &lines {
            let a = &self.accounts[line.account];
            if a.currency() != line.money.currency {
                structural.push(Expect::CurrencyMismatch {
                    account: a.id(),
                    expected: a.currency(),
                    found: line.money.currency,
                });
            }
            let allowed = match line.side {
                Side::Debit => a.status == AccountStatus::Open,
                Side::Credit => a.status != AccountStatus::Closed,
            };
            if !allowed {
                structural.push(Expect::AccountNotOpen { account: a.id(), status: a.status });
            }
            if line.side == Side::Debit {
                let release = if released_account == Some(line.account) { release } else { Decimal::ZERO };
                if let Some(available) = self.available(line.account, release)
                    && available < line.money.value()
                {
                    funds.push(Expect::InsufficientFunds { account: a.id(), available, requested: line.money.value() });
                }
            }
        }
        if !structural.is_empty() {
            Prediction::Refuse(structural)
        } else if !funds.is_empty() {
            Prediction::Refuse(funds)
        } else {
            Prediction::Post { target, lines, reference: reference.to_owned() }
        }
    }

    /// Records a posting the store made, checking the entry it returned line by line.
    fn apply(
        &mut self,
        req: Req,
        target: Target,
        lines: Vec<MLine>,
        reference: String,
        posted: &PostedEntry,
    ) -> Result<(), TestCaseError> {
        let key = req.key();
        let reverses = match target {
            Target::Reversal(o) => Some(self.entries[o].posted.key),
            _ => None,
        };
        prop_assert_eq!(posted.key, key);
        prop_assert_eq!(&posted.reference, &reference);
        prop_assert_eq!(posted.posted_at, self.now);
        prop_assert_eq!(posted.reverses, reverses);
        prop_assert_eq!(posted.lines.len(), lines.len());
        for (line, got) in lines.iter().zip(&posted.lines) {
            let a = &mut self.accounts[line.account];
            a.posted = match line.side {
                Side::Debit => a.posted - line.money.value(),
                Side::Credit => a.posted + line.money.value(),
            };
            a.history.push(MItem {
                key,
                side: line.side,
                money: line.money,
                balance_after: a.posted,
                posted_at: self.now,
                reference: reference.clone(),
            });
            prop_assert_eq!(got.account_id, a.new.id);
            prop_assert_eq!(got.side, line.side);
            prop_assert_eq!(got.money, line.money);
            prop_assert_eq!(got.sequence, a.history.len() as u64, "sequence of {:?}", a.new.id);
            prop_assert_eq!(got.balance_after, a.posted, "balance after on {:?}", a.new.id);
        }
        match target {
            Target::Plain => {}
            Target::Hold(h) => {
                self.holds[h].status = HoldStatus::Posted;
                self.holds[h].posted_entry = Some(key);
            }
            Target::Reversal(o) => self.entries[o].reversed = true,
        }
        self.by_key.insert(key, self.entries.len());
        self.entries.push(MEntry { req, target, lines, reference, posted: posted.clone(), reversed: false });
        Ok(())
    }

    /// Marks holds past their expiry as expired (as a sweep does); returns how many were not yet.
    fn expire(&mut self) -> u64 {
        let now = self.now;
        let mut count = 0;
        for h in &mut self.holds {
            if h.status_at(now) == HoldStatus::Expired && h.status == HoldStatus::Active {
                h.status = HoldStatus::Expired;
                count += 1;
            }
        }
        count
    }
}

fn opposite(side: Side) -> Side {
    match side {
        Side::Debit => Side::Credit,
        Side::Credit => Side::Debit,
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Whether a step may have changed balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Changed,
    Unchanged,
}

/// How often each outcome happened over a whole run, to prove the generator reaches them.
type Coverage = RefCell<BTreeMap<String, u64>>;

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

fn ok<T>(result: crate::Result<T>, what: &str) -> Result<T, TestCaseError> {
    result.map_err(|e| fail(format!("{what} failed unexpectedly: {e:?}")))
}

struct Case<'c> {
    rt: tokio::runtime::Runtime,
    clock: ManualClock,
    ledger: Arc<dyn LedgerStore>,
    model: Model,
    owner: CustomerId,
    coverage: &'c Coverage,
}

impl Case<'_> {
    fn new<'c>(
        harness: &dyn LedgerHarness,
        input: &CaseInput,
        coverage: &'c Coverage,
    ) -> Result<Case<'c>, TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("runtime: {e}")))?;
        let clock = ManualClock::at_epoch();
        let ledger = rt.block_on(harness.ledger(Arc::new(clock.clone())));
        let model = Model {
            now: clock.now(),
            accounts: Vec::new(),
            settlement: HashMap::new(),
            holds: Vec::new(),
            entries: Vec::new(),
            by_key: HashMap::new(),
        };
        let mut case = Case { rt, clock, ledger, model, owner: CustomerId::new(), coverage };
        let bank = CustomerId::new();
        for (currency, limits) in CURRENCIES.into_iter().zip(&input.customers) {
            let settlement =
                NewAccount::internal(bank, format!("settlement {currency}"), currency, AccountKind::Settlement);
            prop_assert_eq!(case.open(settlement)?, Effect::Changed);
            let index = case.model.accounts.len() - 1;
            case.model.settlement.insert(currency, index);
            for &limit in limits {
                prop_assert_eq!(case.open(case.new_customer(currency, limit))?, Effect::Changed);
            }
        }
        Ok(case)
    }

    fn note(&self, outcome: impl Into<String>) {
        *self.coverage.borrow_mut().entry(outcome.into()).or_default() += 1;
    }

    fn new_customer(&self, currency: Currency, limit: LimitChoice) -> NewAccount {
        let exponent = currency.exponent();
        let limit = match limit {
            LimitChoice::Zero => OverdraftLimit::Limited(Decimal::ZERO),
            LimitChoice::Small => OverdraftLimit::Limited(Decimal::new(LIMIT_SMALL_UNITS, exponent)),
            LimitChoice::Large => OverdraftLimit::Limited(Decimal::new(LIMIT_LARGE_UNITS, exponent)),
            LimitChoice::InvalidUnlimited => OverdraftLimit::Unlimited,
            LimitChoice::InvalidScale => OverdraftLimit::Limited(Decimal::new(1, exponent + 1)),
        };
        let n = self.model.accounts.len();
        NewAccount::customer(self.owner, format!("customer {n}"), currency).with_overdraft(limit)
    }

    fn fresh_key() -> EntryKey {
        EntryKey::new(TransferId::new(), 0)
    }

    // --- accounts ---------------------------------------------------------------------------

    fn open(&mut self, new: NewAccount) -> Result<Effect, TestCaseError> {
        let existing = self.model.accounts.iter().position(|a| a.id() == new.id);
        let result = self.rt.block_on(self.ledger.open_account(new.clone()));
        match (existing, result) {
            (Some(i), Ok(account)) => {
                let a = &self.model.accounts[i];
                prop_assert!(a.new == new, "a different open request was replayed: {:?}", account);
                prop_assert_eq!(account, self.model_account(i));
                self.note("open: replay");
                Ok(Effect::Unchanged)
            }
            (Some(i), Err(err)) => {
                prop_assert!(self.model.accounts[i].new != new, "an identical re-open was refused: {:?}", err);
                prop_assert!(matches!(err, Error::KeyReused(_)), "re-open with other content: {:?}", err);
                self.note(format!("open: {}", variant(&err)));
                Ok(Effect::Unchanged)
            }
            (None, result) => {
                let valid = match new.overdraft_limit {
                    OverdraftLimit::Unlimited => new.kind != AccountKind::Customer,
                    OverdraftLimit::Limited(limit) => limit.normalize().scale() <= new.currency.exponent(),
                };
                if !valid {
                    prop_assert!(matches!(result, Err(Error::InvalidInput(_))), "invalid account: {:?}", result);
                    self.note("open: invalid");
                    return Ok(Effect::Unchanged);
                }
                let account = ok(result, "open_account")?;
                self.model.accounts.push(MAccount {
                    new,
                    status: AccountStatus::Open,
                    created_at: self.model.now,
                    posted: Decimal::ZERO,
                    history: Vec::new(),
                });
                prop_assert_eq!(account, self.model_account(self.model.accounts.len() - 1));
                Ok(Effect::Changed)
            }
        }
    }

    fn model_account(&self, i: usize) -> Account {
        let a = &self.model.accounts[i];
        Account {
            id: a.new.id,
            owner: a.new.owner,
            name: a.new.name.clone(),
            currency: a.new.currency,
            kind: a.new.kind,
            status: a.status,
            overdraft_limit: a.new.overdraft_limit,
            created_at: a.created_at,
        }
    }

    fn set_status(&mut self, i: usize, to: AccountStatus) -> Result<Effect, TestCaseError> {
        let a = &self.model.accounts[i];
        let expected = if a.status == to {
            None
        } else if a.status == AccountStatus::Closed {
            Some(Expect::AccountNotOpen { account: a.id(), status: AccountStatus::Closed })
        } else if to == AccountStatus::Closed && (!a.posted.is_zero() || !self.model.held(i).is_zero()) {
            Some(Expect::AccountNotEmpty(a.id()))
        } else {
            None
        };
        let result = self.rt.block_on(self.ledger.set_status(a.id(), to));
        match (expected, result) {
            (None, Ok(account)) => {
                let from = std::mem::replace(&mut self.model.accounts[i].status, to);
                prop_assert_eq!(account, self.model_account(i));
                self.note(if from == to { "status: unchanged".to_owned() } else { format!("status: {to}") });
                Ok(Effect::Changed)
            }
            (Some(expect), Err(err)) => {
                prop_assert!(expect.matches(&err), "set_status({}): expected {:?}, got {:?}", to, expect, err);
                self.note(format!("status: {}", variant(&err)));
                Ok(Effect::Unchanged)
            }
            (expected, result) => Err(fail(format!("set_status({to}): model {expected:?}, store {result:?}"))),
        }
    }

    // --- postings ---------------------------------------------------------------------------

    fn lines_of(&self, lines: &[MLine]) -> Vec<Line> {
        lines
            .iter()
            .map(|l| Line { account_id: self.model.accounts[l.account].id(), side: l.side, money: l.money })
            .collect()
    }

    fn new_entry(&self, key: EntryKey, lines: &[MLine], reference: &str) -> Result<NewEntry, TestCaseError> {
        NewEntry::new(key, self.lines_of(lines), reference)
            .map_err(|e| fail(format!("the test built an invalid entry: {e:?}")))
    }

    fn call(&self, req: &Req) -> Result<crate::Result<PostedEntry>, TestCaseError> {
        Ok(match req {
            Req::Post { key, lines, reference } => {
                let entry = self.new_entry(*key, lines, reference)?;
                self.rt.block_on(self.ledger.post(entry))
            }
            Req::PostHold { key, hold, amount, credit, reference } => {
                let request = PostHold {
                    hold_id: self.model.holds[*hold].new.id,
                    key: *key,
                    amount: *amount,
                    credit_account: self.model.accounts[*credit].id(),
                    reference: reference.clone(),
                };
                self.rt.block_on(self.ledger.post_hold(request))
            }
            Req::Reverse { key, original, reference } => {
                let reversal = Reversal {
                    original: self.model.entries[*original].posted.key,
                    key: *key,
                    reference: reference.clone(),
                };
                self.rt.block_on(self.ledger.reverse(reversal))
            }
        })
    }

    fn request(&mut self, req: Req) -> Result<Effect, TestCaseError> {
        let prediction = self.model.predict(&req);
        let result = self.call(&req)?;
        self.settle(req, prediction, result)
    }

    /// Compares the store's answer to `req` with the model's prediction and applies it.
    fn settle(
        &mut self,
        req: Req,
        prediction: Prediction,
        result: crate::Result<PostedEntry>,
    ) -> Result<Effect, TestCaseError> {
        let kind = match &req {
            Req::Post { .. } => "post",
            Req::PostHold { .. } => "post_hold",
            Req::Reverse { .. } => "reverse",
        };
        match (prediction, result) {
            (Prediction::Post { target, lines, reference }, Ok(posted)) => {
                let partial = matches!(&req, Req::PostHold { amount: Some(a), hold, .. }
                    if a.value() < self.model.holds[*hold].new.money.value());
                self.model.apply(req, target, lines, reference, &posted)?;
                self.note(format!("{kind}: ok{}", if partial { " (partial)" } else { "" }));
                Ok(Effect::Changed)
            }
            (Prediction::Replay(e), Ok(posted)) => {
                prop_assert_eq!(&posted, &self.model.entries[e].posted, "a replay must return the first entry");
                self.note(format!("{kind}: replay"));
                Ok(Effect::Unchanged)
            }
            (Prediction::Refuse(expects), Err(err)) => {
                prop_assert!(
                    expects.iter().any(|x| x.matches(&err)),
                    "{} {:?}: expected one of {:?}, got {:?}",
                    kind,
                    req.key(),
                    expects,
                    err
                );
                self.note(format!("{kind}: {}", variant(&err)));
                Ok(Effect::Unchanged)
            }
            (Prediction::Refuse(expects), Ok(posted)) if expects == [Expect::KeyReused { same_content: true }] => {
                let stored = &self.model.entries[self.model.by_key[&req.key()]];
                Err(fail(format!(
                    "LEDGER CONTRACT BROKEN (replay check ignores which hold / original entry a request acts on): \
                     {kind} under key {} acts on {:?}, but that key already posted an entry with the same lines \
                     and reference for {:?}. The store returned the old entry (Ok, nothing moved) instead of \
                     KeyReused, so the caller believes this request succeeded. Returned: {posted:?}",
                    req.key(),
                    target_of(&req),
                    stored.target,
                )))
            }
            (Prediction::Refuse(expects), Ok(posted)) if expects == [Expect::InvalidAmount] => Err(fail(format!(
                "LEDGER CONTRACT BROKEN (a hold is posted for an amount with more decimals than its currency allows): \
                 {req:?} was accepted and posted {:?}",
                posted.lines.first().map(|l| l.money)
            ))),
            (prediction, result) => Err(fail(format!("{kind} {req:?}: model {prediction:?}, store {result:?}"))),
        }
    }

    // --- holds ------------------------------------------------------------------------------

    fn hold(&mut self, new: NewHold, account: usize) -> Result<Effect, TestCaseError> {
        let m = &self.model;
        let existing = m.holds.iter().position(|h| h.new.id == new.id);
        let expected: Result<Option<usize>, Vec<Expect>> = if let Some(i) = existing {
            let h = &m.holds[i].new;
            let same = h.account_id == new.account_id
                && h.money == new.money
                && h.expires_at == new.expires_at
                && h.reference == new.reference;
            if same { Ok(Some(i)) } else { Err(vec![Expect::KeyReused { same_content: false }]) }
        } else if new.expires_at <= m.now || (new.expires_at - m.now).num_seconds() > HOLD_DURATION_SECONDS_MAX {
            Err(vec![Expect::InvalidInput])
        } else {
            let a = &m.accounts[account];
            let mut structural = Vec::new();
            if a.currency() != new.money.currency {
                structural.push(Expect::CurrencyMismatch {
                    account: a.id(),
                    expected: a.currency(),
                    found: new.money.currency,
                });
            }
            if a.status != AccountStatus::Open {
                structural.push(Expect::AccountNotOpen { account: a.id(), status: a.status });
            }
            match m.available(account, Decimal::ZERO) {
                _ if !structural.is_empty() => Err(structural),
                Some(available) if available < new.money.value() => {
                    Err(vec![Expect::InsufficientFunds { account: a.id(), available, requested: new.money.value() }])
                }
                _ => Ok(None),
            }
        };
        let result = self.rt.block_on(self.ledger.hold(new.clone()));
        match (expected, result) {
            (Ok(None), Ok(hold)) => {
                self.model.holds.push(MHold {
                    new,
                    account,
                    status: HoldStatus::Active,
                    created_at: self.model.now,
                    posted_entry: None,
                });
                prop_assert_eq!(hold, self.model.holds[self.model.holds.len() - 1].view(self.model.now));
                self.note("hold: ok");
                Ok(Effect::Changed)
            }
            (Ok(Some(i)), Ok(hold)) => {
                prop_assert_eq!(hold, self.model.holds[i].view(self.model.now), "a replayed hold");
                self.note("hold: replay");
                Ok(Effect::Unchanged)
            }
            (Err(expects), Err(err)) => {
                prop_assert!(expects.iter().any(|x| x.matches(&err)), "hold: expected {:?}, got {:?}", expects, err);
                self.note(format!("hold: {}", variant(&err)));
                Ok(Effect::Unchanged)
            }
            (expected, result) => Err(fail(format!("hold {new:?}: model {expected:?}, store {result:?}"))),
        }
    }

    fn void_hold(&mut self, i: usize) -> Result<Effect, TestCaseError> {
        let now = self.model.now;
        let status = self.model.holds[i].status_at(now);
        let result = self.rt.block_on(self.ledger.void_hold(self.model.holds[i].new.id));
        if status == HoldStatus::Posted {
            prop_assert!(
                matches!(result, Err(Error::HoldNotActive { status: HoldStatus::Posted, .. })),
                "voiding a posted hold: {:?}",
                result
            );
            self.note("void: posted refused");
            return Ok(Effect::Unchanged);
        }
        let hold = ok(result, "void_hold")?;
        let effect = if status == HoldStatus::Active {
            self.model.holds[i].status = HoldStatus::Voided;
            self.note("void: ok");
            Effect::Changed
        } else {
            self.model.holds[i].status = status;
            self.note(format!("void: already {status}"));
            Effect::Unchanged
        };
        prop_assert_eq!(hold, self.model.holds[i].view(now));
        Ok(effect)
    }

    fn advance(&mut self, secs: i64, sweep: bool) -> Result<Effect, TestCaseError> {
        let before = self.model.now;
        self.clock.advance(TimeDelta::seconds(secs));
        self.model.now += TimeDelta::seconds(secs);
        prop_assert_eq!(self.clock.now(), self.model.now);
        if sweep {
            let swept = ok(self.rt.block_on(self.ledger.expire_holds()), "expire_holds")?;
            // A store may mark a lapsed hold expired whenever it sees it (the memory store on
            // reading a balance, the SQLite store on the account's next write), so the count is
            // bounded, not exact: every hold that lapsed during this advance (no call has run
            // since, so none can have marked it), and at most every lapsed hold that no sweep or
            // void has marked yet.
            let now = self.model.now;
            let lapsed_now = self
                .model
                .holds
                .iter()
                .filter(|h| h.status == HoldStatus::Active && before < h.new.expires_at && h.new.expires_at <= now)
                .count() as u64;
            let unmarked = self.model.expire();
            prop_assert!(
                lapsed_now <= swept && swept <= unmarked,
                "expire_holds marked {} holds; {} lapsed since the last step, {} are lapsed and unmarked",
                swept,
                lapsed_now,
                unmarked
            );
            self.note(if swept > 0 { "expire_holds: some" } else { "expire_holds: none" });
            // Every lapsed hold is marked now: a second sweep finds nothing.
            let again = ok(self.rt.block_on(self.ledger.expire_holds()), "expire_holds")?;
            prop_assert_eq!(again, 0, "a second expire_holds right after the first");
        }
        Ok(Effect::Changed)
    }

    // --- one step ---------------------------------------------------------------------------

    fn step(&mut self, op: &Op) -> Result<Effect, TestCaseError> {
        let m = &self.model;
        let n_accounts = m.accounts.len();
        match op {
            Op::Open { currency, limit } => {
                let currency = CURRENCIES[currency.index(CURRENCIES.len())];
                self.open(self.new_customer(currency, *limit))
            }
            Op::OpenAgain { account, same } => {
                let mut new = m.accounts[account.index(n_accounts)].new.clone();
                if !same {
                    new.name.push_str(" (renamed)");
                }
                self.open(new)
            }
            Op::Transfer { from, to, cross_currency, units } => {
                let from = from.index(n_accounts);
                let currency = m.accounts[from].currency();
                let candidates: Vec<usize> = if *cross_currency {
                    (0..n_accounts).filter(|&i| i != from).collect()
                } else {
                    m.same_currency(currency, &[from])
                };
                let to = candidates[to.index(candidates.len())];
                self.transfer(from, to, money(*units, currency), "transfer")
            }
            Op::Deposit { to, units } => {
                let customers = m.customers();
                let to = customers[to.index(customers.len())];
                let currency = m.accounts[to].currency();
                self.transfer(m.settlement[&currency], to, money(*units, currency), "deposit")
            }
            Op::Withdraw { from, units } => {
                let customers = m.customers();
                let from = customers[from.index(customers.len())];
                let currency = m.accounts[from].currency();
                self.transfer(from, m.settlement[&currency], money(*units, currency), "withdrawal")
            }
            Op::ThreeLeg { a, b, c, u1, u2, fan_out } => {
                let a = a.index(n_accounts);
                let currency = m.accounts[a].currency();
                let others = m.same_currency(currency, &[a]);
                let b = others[b.index(others.len())];
                let others = m.same_currency(currency, &[a, b]);
                let c = others[c.index(others.len())];
                let (m1, m2, sum) = (money(*u1, currency), money(*u2, currency), money(u1 + u2, currency));
                let line = |account, side, money| MLine { account, side, money };
                let lines = if *fan_out {
                    vec![line(a, Side::Debit, sum), line(b, Side::Credit, m1), line(c, Side::Credit, m2)]
                } else {
                    vec![line(a, Side::Debit, m1), line(b, Side::Debit, m2), line(c, Side::Credit, sum)]
                };
                self.request(Req::Post { key: Self::fresh_key(), lines, reference: "split".into() })
            }
            Op::Batch { transfers } => {
                let reqs: Vec<Req> = transfers
                    .iter()
                    .map(|(from, to, units)| {
                        let from = from.index(n_accounts);
                        let currency = m.accounts[from].currency();
                        let others = m.same_currency(currency, &[from]);
                        let to = others[to.index(others.len())];
                        transfer_req(from, to, money(*units, currency), "batch")
                    })
                    .collect();
                let entries = reqs
                    .iter()
                    .map(|r| match r {
                        Req::Post { key, lines, reference } => self.new_entry(*key, lines, reference),
                        _ => Err(fail("batches hold plain postings")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let results = self.rt.block_on(self.ledger.post_batch(entries));
                prop_assert_eq!(results.len(), reqs.len());
                let mut effect = Effect::Unchanged;
                // As if posted one after the other: predict each on the state the previous left.
                for (req, result) in reqs.into_iter().zip(results) {
                    let prediction = self.model.predict(&req);
                    if self.settle(req, prediction, result)? == Effect::Changed {
                        effect = Effect::Changed;
                    }
                }
                Ok(effect)
            }
            Op::Duplicate { entry } => {
                if m.entries.is_empty() {
                    return Ok(Effect::Unchanged);
                }
                let e = &m.entries[entry.index(m.entries.len())];
                let req = Req::Post { key: Self::fresh_key(), lines: e.lines.clone(), reference: e.reference.clone() };
                self.request(req)
            }
            Op::Hold { account, units, expiry_secs, wrong_currency } => {
                let account = account.index(n_accounts);
                let own = m.accounts[account].currency();
                let currency = if *wrong_currency {
                    CURRENCIES[(CURRENCIES.iter().position(|c| *c == own).unwrap_or(0) + 1) % CURRENCIES.len()]
                } else {
                    own
                };
                let new = NewHold {
                    id: HoldId::new(),
                    account_id: m.accounts[account].id(),
                    money: money(*units, currency),
                    expires_at: m.now + TimeDelta::seconds(*expiry_secs),
                    reference: "authorisation".into(),
                };
                self.hold(new, account)
            }
            Op::CopyHold { hold } | Op::HoldAgain { hold, same: true } if !m.holds.is_empty() => {
                let h = &m.holds[hold.index(m.holds.len())];
                let mut new = h.new.clone();
                if matches!(op, Op::CopyHold { .. }) {
                    new.id = HoldId::new();
                }
                self.hold(new, h.account)
            }
            Op::HoldAgain { hold, same: false } if !m.holds.is_empty() => {
                let h = &m.holds[hold.index(m.holds.len())];
                let mut new = h.new.clone();
                new.reference.push_str(" (edited)");
                self.hold(new, h.account)
            }
            Op::PostHold { hold, amount, credit, cross_currency } if !m.holds.is_empty() => {
                let hold = hold.index(m.holds.len());
                let h = &m.holds[hold];
                let currency = h.new.money.currency;
                let held_units = minor_units(h.new.money.value(), currency);
                let amount = match amount {
                    PostAmount::Full => None,
                    PostAmount::Part(pct) => Some(money((held_units * i64::from(*pct) / 100).max(1), currency).amount),
                    PostAmount::Over(extra) => Some(money(held_units + extra, currency).amount),
                    PostAmount::TooPrecise => Some(money(1, Currency::Kwd).amount),
                };
                let candidates: Vec<usize> = if *cross_currency {
                    (0..n_accounts).filter(|&i| i != h.account).collect()
                } else {
                    m.same_currency(currency, &[h.account])
                };
                let credit = candidates[credit.index(candidates.len())];
                self.request(Req::PostHold {
                    key: Self::fresh_key(),
                    hold,
                    amount,
                    credit,
                    reference: "capture".into(),
                })
            }
            Op::PostHoldReusingKey { hold, entry } if !m.holds.is_empty() && !m.entries.is_empty() => {
                let hold = hold.index(m.holds.len());
                let e = &m.entries[entry.index(m.entries.len())];
                let Some(credit_line) = e.lines.iter().find(|l| l.side == Side::Credit) else {
                    return Err(fail("every entry has a credit line"));
                };
                let req = Req::PostHold {
                    key: e.posted.key,
                    hold,
                    amount: Some(credit_line.money.amount),
                    credit: credit_line.account,
                    reference: e.reference.clone(),
                };
                self.request(req)
            }
            Op::VoidHold { hold } if !m.holds.is_empty() => self.void_hold(hold.index(m.holds.len())),
            Op::Reverse { entry, reuse_key_of } if !m.entries.is_empty() => {
                let original = entry.index(m.entries.len());
                let key = reuse_key_of.map_or_else(Self::fresh_key, |i| m.entries[i.index(m.entries.len())].posted.key);
                self.request(Req::Reverse { key, original, reference: REVERSAL_REFERENCE.into() })
            }
            Op::Replay { entry } if !m.entries.is_empty() => {
                let req = m.entries[entry.index(m.entries.len())].req.clone();
                self.request(req)
            }
            Op::ReplayDifferent { entry, change_amount } if !m.entries.is_empty() => {
                let mut req = m.entries[entry.index(m.entries.len())].req.clone();
                match &mut req {
                    Req::Post { lines, .. } if *change_amount && lines.len() == 2 => {
                        let currency = lines[0].money.currency;
                        let units = minor_units(lines[0].money.value(), currency) + 1;
                        for line in lines.iter_mut() {
                            line.money = money(units, currency);
                        }
                    }
                    Req::Post { reference, .. } | Req::PostHold { reference, .. } | Req::Reverse { reference, .. } => {
                        reference.push_str(" (edited)");
                    }
                }
                self.request(req)
            }
            Op::SetStatus { account, status, prefer_change } => {
                let mut customers = m.customers();
                if *prefer_change && customers.iter().any(|&i| m.accounts[i].status != *status) {
                    customers.retain(|&i| m.accounts[i].status != *status);
                }
                self.set_status(customers[account.index(customers.len())], *status)
            }
            Op::Sweep { account } => {
                let customers = m.customers();
                let account = customers[account.index(customers.len())];
                let a = &m.accounts[account];
                let settlement = m.settlement[&a.currency()];
                let units = minor_units(a.posted.abs(), a.currency());
                if units == 0 {
                    return Ok(Effect::Unchanged);
                }
                let amount = money(units, a.currency());
                if a.posted.is_sign_positive() {
                    self.transfer(account, settlement, amount, "sweep")
                } else {
                    self.transfer(settlement, account, amount, "sweep")
                }
            }
            Op::Advance { secs, sweep } => self.advance(*secs, *sweep),
            // A hold or entry operation before any hold or entry exists.
            _ => Ok(Effect::Unchanged),
        }
    }

    fn transfer(&mut self, from: usize, to: usize, money: Money, reference: &str) -> Result<Effect, TestCaseError> {
        self.request(transfer_req(from, to, money, reference))
    }

    // --- checks -----------------------------------------------------------------------------

    /// The invariants checked after every step; returns every account's balance.
    fn check(&mut self) -> Result<Vec<Balance>, TestCaseError> {
        let trial = ok(self.rt.block_on(self.ledger.trial_balance()), "trial_balance")?;
        let mut currencies: Vec<Currency> = self.model.accounts.iter().map(MAccount::currency).collect();
        currencies.sort();
        currencies.dedup();
        prop_assert_eq!(trial.iter().map(|(c, _)| *c).collect::<Vec<_>>(), currencies);
        for (currency, sum) in &trial {
            prop_assert!(sum.is_zero(), "trial balance of {} is {}, not zero", currency, sum);
        }
        let mut sums: HashMap<Currency, Decimal> = HashMap::new();
        let mut balances = Vec::with_capacity(self.model.accounts.len());
        for (i, a) in self.model.accounts.iter().enumerate() {
            let balance = ok(self.rt.block_on(self.ledger.balance(a.id())), "balance")?;
            let expected = Balance {
                account_id: a.id(),
                currency: a.currency(),
                posted: a.posted,
                pending: self.model.held(i),
                available: self.model.available(i, Decimal::ZERO),
                sequence: a.history.len() as u64,
            };
            prop_assert_eq!(balance, expected, "balance of account #{}", i);
            if let Some(available) = balance.available {
                prop_assert!(
                    available >= Decimal::ZERO,
                    "account #{} is overdrawn beyond its limit: available {}",
                    i,
                    available
                );
            }
            *sums.entry(balance.currency).or_default() += balance.posted;
            let account = ok(self.rt.block_on(self.ledger.account(a.id())), "account")?;
            prop_assert_eq!(account.status, a.status, "status of account #{}", i);
            balances.push(balance);
        }
        for (currency, sum) in sums {
            prop_assert!(sum.is_zero(), "balances in {} sum to {}, not zero", currency, sum);
        }
        Ok(balances)
    }

    /// At the end of a case: every history paged through, every entry and hold read back.
    fn check_end(&self, page_limit: u32) -> Result<(), TestCaseError> {
        for (i, a) in self.model.accounts.iter().enumerate() {
            let n = a.history.len();
            let mut items = Vec::with_capacity(n);
            let mut cursor: Option<Cursor> = None;
            let mut pages = 0usize;
            loop {
                let query = ok(HistoryQuery::new(page_limit, cursor), "history query")?;
                let page = ok(self.rt.block_on(self.ledger.history(a.id(), query)), "history")?;
                pages += 1;
                prop_assert!(page.items.len() <= page_limit as usize);
                prop_assert!(
                    !page.items.is_empty() || n == 0,
                    "empty page {} of account #{} ({} entries)",
                    pages,
                    i,
                    n
                );
                prop_assert!(pages <= n + 1, "history of account #{} does not end", i);
                items.extend(page.items);
                match page.next_cursor {
                    // The cursor travels as text, as it would through the API.
                    Some(next) => cursor = Some(ok(next.to_string().parse::<Cursor>(), "cursor")?),
                    None => break,
                }
            }
            prop_assert_eq!(pages, n.div_ceil(page_limit as usize).max(1), "pages of account #{}", i);
            let sequences: Vec<u64> = items.iter().map(|item| item.sequence).collect();
            let expected: Vec<u64> = (1..=n as u64).rev().collect();
            prop_assert_eq!(sequences, expected, "sequences of account #{}", i);
            let mut running = Decimal::ZERO;
            for (item, m) in items.iter().rev().zip(&a.history) {
                running = match item.direction {
                    Side::Debit => running - item.money.value(),
                    Side::Credit => running + item.money.value(),
                };
                prop_assert_eq!(item.balance_after, running, "running balance of account #{}", i);
                prop_assert_eq!(item.key, m.key);
                prop_assert_eq!(item.direction, m.side);
                prop_assert_eq!(item.money, m.money);
                prop_assert_eq!(item.balance_after, m.balance_after);
                prop_assert_eq!(item.posted_at, m.posted_at);
                prop_assert_eq!(&item.reference, &m.reference);
            }
            prop_assert_eq!(running, a.posted, "history of account #{} does not add up to its balance", i);
        }
        for e in &self.model.entries {
            let stored = ok(self.rt.block_on(self.ledger.entry(e.posted.key)), "entry")?;
            prop_assert_eq!(&stored, &e.posted);
        }
        for h in &self.model.holds {
            let stored = ok(self.rt.block_on(self.ledger.get_hold(h.new.id)), "get_hold")?;
            prop_assert_eq!(stored, h.view(self.model.now));
        }
        Ok(())
    }
}

fn transfer_req(from: usize, to: usize, money: Money, reference: &str) -> Req {
    Req::Post {
        key: Case::fresh_key(),
        lines: vec![
            MLine { account: from, side: Side::Debit, money },
            MLine { account: to, side: Side::Credit, money },
        ],
        reference: reference.into(),
    }
}

fn target_of(req: &Req) -> Target {
    match req {
        Req::Post { .. } => Target::Plain,
        Req::PostHold { hold, .. } => Target::Hold(*hold),
        Req::Reverse { original, .. } => Target::Reversal(*original),
    }
}

fn run_case(harness: &dyn LedgerHarness, input: &CaseInput, coverage: &Coverage) -> Result<(), TestCaseError> {
    let mut case = Case::new(harness, input, coverage)?;
    let mut before = case.check()?;
    for (i, op) in input.ops.iter().enumerate() {
        let at = |e: TestCaseError| fail(format!("step {i} {op:?}: {e}"));
        let effect = case.step(op).map_err(at)?;
        let after = case.check().map_err(at)?;
        if effect == Effect::Unchanged {
            prop_assert_eq!(&after, &before, "step {} {:?} was refused or replayed but changed balances", i, op);
        }
        before = after;
    }
    case.check_end(input.page_limit)
}

/// The kebab-case name of an error's variant (`HoldNotActive` → `hold-not-active`): finer than
/// [`Error::code`], which several variants share, so the coverage below tells refusals apart.
fn variant(err: &Error) -> String {
    let mut name = String::new();
    for c in super::errors::variant_name(err).chars() {
        if c.is_ascii_uppercase() && !name.is_empty() {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Outcomes a full-size run must reach, or the generator has stopped exercising them.
const MUST_SEE: [&str; 29] = [
    "open: replay",
    "open: key-reused",
    "post: ok",
    "post: replay",
    "post: key-reused",
    "post: insufficient-funds",
    "post: account-not-open",
    "post: currency-mismatch",
    "hold: ok",
    "hold: replay",
    "hold: insufficient-funds",
    "hold: account-not-open",
    "post_hold: ok",
    "post_hold: ok (partial)",
    "post_hold: replay",
    "post_hold: hold-not-active",
    "post_hold: hold-exceeded",
    "reverse: ok",
    "reverse: replay",
    "reverse: already-reversed",
    "reverse: key-reused",
    "void: ok",
    "void: already expired",
    "void: posted refused",
    "status: frozen",
    "status: open",
    "status: closed",
    "status: account-not-empty",
    "expire_holds: some",
];
/// Runs the model check against stores built by `harness`: `cases` random cases (`PROPTEST_CASES`
/// overrides it), each on a fresh store with its own current-thread runtime. Panics with the
/// shrunk failing case if the store and the model disagree, or (from 256 cases) if an outcome of
/// `MUST_SEE` never occurred. Call it from a plain `#[test]`, not from inside a runtime.
pub fn run_ledger_model(harness: &dyn LedgerHarness, cases: u32) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(cases);
    // No regression files: this writes nothing to the source tree. Shrinking a 60-step sequence
    // needs more than the default 1024 iterations to reach a readable case. Shrinking is bounded
    // in time too, so a failing run still ends in well under 30 s.
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        max_shrink_time: 15_000,
        ..Config::default()
    };
    let coverage: Coverage = RefCell::new(BTreeMap::new());
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let result = runner.run(&case_input(), |input| run_case(harness, &input, &coverage));
    let seen = coverage.into_inner();
    if let Err(err) = result {
        panic!("{err}");
    }
    eprintln!("ledger model: {cases} cases in {:.1?}, outcomes: {seen:#?}", started.elapsed());
    // Below 256 cases the rarer outcomes (a dozen per 256 cases) may legitimately not occur.
    if cases >= 256 {
        let missing: Vec<&str> = MUST_SEE.iter().copied().filter(|o| !seen.contains_key(*o)).collect();
        assert!(missing.is_empty(), "outcomes never reached in {cases} cases: {missing:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal cases of the bugs the model found, kept as plain cases so each failure reads on its
// own. Each asserts the documented contract; see the messages.
// ---------------------------------------------------------------------------------------------

/// Expands to one `#[tokio::test]` per minimal case the model check found, each calling
/// `$harness` (an expression implementing [`LedgerHarness`]). The calling crate needs `tokio`
/// with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! ledger_model_regression_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(ledger_model, $harness;
            regression_post_hold_under_a_key_used_for_another_hold_is_replayed,
            regression_reversal_under_a_key_used_for_another_entry_is_replayed,
            regression_post_hold_accepts_an_amount_too_precise_for_the_currency,
        );
    };
}

/// A fresh store with a settlement account and two customers in `currency`, Alice funded with
/// `funds` minor units; and the time.
async fn funded(
    harness: &dyn LedgerHarness,
    currency: Currency,
    funds: i64,
) -> (Arc<dyn LedgerStore>, AccountId, AccountId, DateTime<Utc>) {
    let clock = ManualClock::at_epoch();
    let ledger = harness.ledger(Arc::new(clock.clone())).await;
    let bank = CustomerId::new();
    let settlement = NewAccount::internal(bank, "settlement", currency, AccountKind::Settlement);
    let settlement = ledger.open_account(settlement).await.expect("settlement");
    let owner = CustomerId::new();
    let alice = ledger.open_account(NewAccount::customer(owner, "alice", currency)).await.expect("alice");
    let bob = ledger.open_account(NewAccount::customer(owner, "bob", currency)).await.expect("bob");
    let deposit = NewEntry::transfer(Case::fresh_key(), settlement.id, alice.id, money(funds, currency), "deposit")
        .expect("deposit entry");
    ledger.post(deposit).await.expect("deposit");
    (ledger, alice.id, bob.id, clock.now())
}

fn authorisation(account_id: AccountId, money: Money, now: DateTime<Utc>) -> NewHold {
    NewHold {
        id: HoldId::new(),
        account_id,
        money,
        expires_at: now + TimeDelta::hours(1),
        reference: "authorisation".into(),
    }
}

/// Contract (`LedgerStore`): "a different request under a used key fails with KeyReused".
/// Capturing hold 2 under the key that captured hold 1 is a different request; a store that only
/// compares the entry lines answers with hold 1's entry: the caller is told hold 2 was captured,
/// no money moves, and hold 2 keeps reserving funds until it expires. (Found in the memory store.)
pub async fn regression_post_hold_under_a_key_used_for_another_hold_is_replayed(harness: &dyn LedgerHarness) {
    let (ledger, alice, bob, now) = funded(harness, Currency::Usd, 10_000).await;
    let ten = money(1_000, Currency::Usd);
    let first = ledger.hold(authorisation(alice, ten, now)).await.expect("hold 1");
    let second = ledger.hold(authorisation(alice, ten, now)).await.expect("hold 2");
    let capture =
        |hold_id, key| PostHold { hold_id, key, amount: None, credit_account: bob, reference: "capture".into() };
    let key = Case::fresh_key();
    ledger.post_hold(capture(first.id, key)).await.expect("capture hold 1");
    let result = ledger.post_hold(capture(second.id, key)).await;
    let second = ledger.get_hold(second.id).await.expect("hold 2");
    assert!(
        matches!(result, Err(Error::KeyReused(_))),
        "LEDGER CONTRACT BROKEN: capturing another hold under a used key must be refused with KeyReused; got {result:?} \
         and hold 2 is still {}",
        second.status
    );
}

/// Same contract for reversals: reversing entry 2 under the key that reversed entry 1 (an
/// identical payment) is a different request, yet a store comparing only lines returns entry 1's
/// reversal (`reverses` = entry 1) and entry 2 stays unreversed. (Found in the memory store.)
pub async fn regression_reversal_under_a_key_used_for_another_entry_is_replayed(harness: &dyn LedgerHarness) {
    let (ledger, alice, bob, _) = funded(harness, Currency::Usd, 10_000).await;
    let payment = |key| NewEntry::transfer(key, alice, bob, money(1_000, Currency::Usd), "rent").expect("entry");
    let first = ledger.post(payment(Case::fresh_key())).await.expect("payment 1");
    let second = ledger.post(payment(Case::fresh_key())).await.expect("payment 2");
    let key = Case::fresh_key();
    let reverse = |original| Reversal { original, key, reference: REVERSAL_REFERENCE.into() };
    ledger.reverse(reverse(first.key)).await.expect("reverse payment 1");
    let result = ledger.reverse(reverse(second.key)).await;
    assert!(
        matches!(result, Err(Error::KeyReused(_))),
        "LEDGER CONTRACT BROKEN: reversing another entry under a used key must be refused with KeyReused; got {result:?}"
    );
}

/// Invariant 1 (ARCHITECTURE.md): an amount with more decimals than its currency allows is
/// rejected, never posted. `PostHold::amount` is a bare `Amount` (it carries no currency), and a
/// store that pairs it with the hold's currency without checking the scale posts 0.001 (a valid
/// KWD amount) against a JPY hold as 0.001 JPY. (Found in the memory store.)
pub async fn regression_post_hold_accepts_an_amount_too_precise_for_the_currency(harness: &dyn LedgerHarness) {
    let (ledger, alice, bob, now) = funded(harness, Currency::Jpy, 1_000).await;
    let hold = ledger.hold(authorisation(alice, money(100, Currency::Jpy), now)).await.expect("hold");
    let too_precise = Amount::new(Decimal::new(1, 3), Currency::Kwd).expect("0.001 is a valid KWD amount");
    let request = PostHold {
        hold_id: hold.id,
        key: Case::fresh_key(),
        amount: Some(too_precise),
        credit_account: bob,
        reference: "capture".into(),
    };
    let result = ledger.post_hold(request).await;
    assert!(
        matches!(result, Err(Error::InvalidAmount { .. })),
        "LEDGER CONTRACT BROKEN: 0.001 JPY must be refused (JPY has 0 decimals); got {result:?}"
    );
}
