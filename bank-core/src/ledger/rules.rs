//! The posting rules, as pure functions over [`AccountState`].
//!
//! Every store runs these while holding whatever makes check-and-write atomic for it:
//! - in memory: one mutex over the ledger;
//! - SQLite: the single writer transaction (`BEGIN IMMEDIATE`), which also lets a batch of entries
//!   be planned one after another on the same in-transaction states and committed together;
//! - PostgreSQL: `SELECT … FOR UPDATE` of the touched account rows **in account-id order** (so two
//!   postings never deadlock), then these rules, then the inserts and the balance update in the
//!   same transaction; a unique index on `(transfer_id, leg)` turns a concurrent duplicate into a
//!   replay instead of a second posting.
//!
//! The functions only read; they return the new values, and the caller writes them all or none.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::entry::{NewEntry, PostedEntry, PostedLine, Side};
use super::hold::{Hold, HoldStatus, PostHold};
use crate::account::{AccountState, AccountStatus};
use crate::error::{Error, Result};
use crate::ids::{AccountId, EntryId};
use crate::money::{Money, checked_add, checked_sub};

/// Funds a hold releases on the account it reserved, as part of posting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The held account.
    pub account_id: AccountId,
    /// The full amount the hold reserved.
    pub amount: Decimal,
}

/// Checks `entry` against the current account states and returns its lines as they will be
/// recorded (each with the account's next sequence number and balance after).
///
/// Refuses, changing nothing: an unknown account, a currency other than the account's, a debit
/// from an account that is not open, a credit to a closed one, and a debit that would take the
/// account's `available` below zero (that is, its posted balance below `held − overdraft_limit`,
/// where `held` already excludes the hold being posted, if any).
pub fn plan_entry<'a>(
    entry: &NewEntry,
    release: Option<Release>,
    state_of: impl Fn(AccountId) -> Option<&'a AccountState>,
) -> Result<Vec<PostedLine>> {
    // First every account, so a missing or closed one is reported before any funds check.
    for line in entry.lines() {
        let state = state_of(line.account_id).ok_or(Error::AccountNotFound(line.account_id))?;
        check_currency(state, line.money)?;
        match line.side {
            Side::Debit => state.check_can_debit()?,
            Side::Credit => state.check_can_credit()?,
        }
    }
    entry
        .lines()
        .iter()
        .map(|line| {
            let state = state_of(line.account_id).ok_or(Error::AccountNotFound(line.account_id))?;
            let amount = line.money.value();
            let posted_after = match line.side {
                Side::Debit => {
                    state.check_debit_if_held(amount, held_after(state, release)?)?;
                    checked_sub(state.posted, amount)?
                }
                Side::Credit => checked_add(state.posted, amount)?,
            };
            Ok(PostedLine {
                account_id: line.account_id,
                side: line.side,
                money: line.money,
                sequence: state.sequence + 1,
                balance_after: posted_after,
            })
        })
        .collect()
}

/// The account's held amount once `release` (if it concerns this account) is applied.
pub fn held_after(state: &AccountState, release: Option<Release>) -> Result<Decimal> {
    match release {
        Some(r) if r.account_id == state.account.id => checked_sub(state.held, r.amount),
        _ => Ok(state.held),
    }
}

/// Applies a planned line (and the hold it releases, if any) to its account's state.
pub fn apply_line(state: &mut AccountState, line: &PostedLine, release: Option<Release>) -> Result<()> {
    debug_assert_eq!(state.account.id, line.account_id);
    debug_assert_eq!(state.sequence + 1, line.sequence, "sequence numbers must stay gap-free");
    state.held = held_after(state, release)?;
    state.posted = line.balance_after;
    state.sequence = line.sequence;
    Ok(())
}

/// The entry a successful plan records.
pub fn posted_entry(
    id: EntryId,
    entry: NewEntry,
    lines: Vec<PostedLine>,
    now: DateTime<Utc>,
    reverses: Option<super::EntryKey>,
) -> PostedEntry {
    let (key, _, reference) = entry.into_parts();
    PostedEntry { id, key, lines, reference, posted_at: now, reverses }
}

/// What posting a hold comes to, decided by [`plan_post_hold`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostHoldPlan {
    /// The key already posted this very hold: answer with the stored entry (if `entry` is the
    /// same request), move nothing.
    Replay(NewEntry),
    /// Post `entry`, releasing the whole hold.
    Post(NewEntry, Release),
}

/// Decides a [`PostHold`] request against the hold as of now (`hold.as_of(now)`) and whether
/// its entry key is already used. A used key is a replay only if it posted this very hold
/// (otherwise `KeyReused`), whatever the hold's status says now; an unused key needs an active
/// hold (otherwise `HoldNotActive`); the amount must fit the hold.
pub fn plan_post_hold(hold: &Hold, request: PostHold, key_used: bool) -> Result<PostHoldPlan> {
    let money = request.amount_from(hold)?;
    let entry = NewEntry::transfer(request.key, hold.account_id, request.credit_account, money, request.reference)?;
    if key_used {
        if hold.posted_entry != Some(entry.key()) {
            return Err(Error::KeyReused(format!("entry key {}", entry.key())));
        }
        return Ok(PostHoldPlan::Replay(entry));
    }
    if hold.status != HoldStatus::Active {
        return Err(Error::HoldNotActive { hold: hold.id, status: hold.status });
    }
    Ok(PostHoldPlan::Post(entry, Release { account_id: hold.account_id, amount: hold.money.value() }))
}

/// Whether voiding `hold` (as of now) releases its funds (`true`), leaves it as it is (`false`:
/// already voided or expired — voiding is idempotent), or is refused (a posted hold).
pub fn plan_void_hold(hold: &Hold) -> Result<bool> {
    match hold.status {
        HoldStatus::Active => Ok(true),
        HoldStatus::Voided | HoldStatus::Expired => Ok(false),
        HoldStatus::Posted => Err(Error::HoldNotActive { hold: hold.id, status: HoldStatus::Posted }),
    }
}

/// Checks a new hold of `money` on `state` and returns the account's held amount after it.
pub fn plan_hold(state: &AccountState, money: Money) -> Result<Decimal> {
    check_currency(state, money)?;
    state.check_debit(money.value())?;
    checked_add(state.held, money.value())
}

/// Checks a status change: a closed account stays closed, and only an account with a zero
/// balance and no active hold can be closed.
pub fn check_status_change(state: &AccountState, to: AccountStatus) -> Result<()> {
    match (state.account.status, to) {
        (from, to) if from == to => Ok(()),
        (AccountStatus::Closed, _) => {
            Err(Error::AccountNotOpen { account: state.account.id, status: AccountStatus::Closed })
        }
        (_, AccountStatus::Closed) if !state.posted.is_zero() || !state.held.is_zero() => {
            Err(Error::AccountNotEmpty(state.account.id))
        }
        _ => Ok(()),
    }
}

fn check_currency(state: &AccountState, money: Money) -> Result<()> {
    if money.currency != state.account.currency {
        return Err(Error::CurrencyMismatch {
            account: state.account.id,
            expected: state.account.currency,
            found: money.currency,
        });
    }
    Ok(())
}

#[cfg(test)]
mod hold_tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::ids::{HoldId, TransferId};
    use crate::ledger::{EntryKey, NewHold};

    fn hold(status: HoldStatus, posted_by: Option<EntryKey>) -> Hold {
        let now = DateTime::UNIX_EPOCH;
        let new = NewHold {
            id: HoldId::new(),
            account_id: AccountId::new(),
            money: Money::parse("10.00", "USD").expect("money"),
            expires_at: now + TimeDelta::hours(1),
            reference: "r".into(),
        };
        Hold { status, posted_entry: posted_by, ..Hold::from_new(new, now) }
    }

    fn request(key: EntryKey, hold: &Hold) -> PostHold {
        PostHold { hold_id: hold.id, key, amount: None, credit_account: AccountId::new(), reference: "r".into() }
    }

    #[test]
    fn posting_a_hold_replays_its_own_key_refuses_another_and_needs_it_active() {
        let key = EntryKey::new(TransferId::new(), 0);
        let active = hold(HoldStatus::Active, None);
        assert!(
            matches!(plan_post_hold(&active, request(key, &active), false), Ok(PostHoldPlan::Post(_, r)) if r.amount == active.money.value())
        );
        assert!(
            matches!(plan_post_hold(&active, request(key, &active), true), Err(Error::KeyReused(_))),
            "a key used elsewhere"
        );
        let posted = hold(HoldStatus::Posted, Some(key));
        assert!(matches!(plan_post_hold(&posted, request(key, &posted), true), Ok(PostHoldPlan::Replay(_))));
        let other = EntryKey::new(TransferId::new(), 0);
        assert!(matches!(plan_post_hold(&posted, request(other, &posted), false), Err(Error::HoldNotActive { .. })));
        for status in [HoldStatus::Voided, HoldStatus::Expired] {
            let h = hold(status, None);
            assert!(
                matches!(plan_post_hold(&h, request(key, &h), false), Err(Error::HoldNotActive { .. })),
                "{status:?}"
            );
        }
    }

    #[test]
    fn voiding_releases_an_active_hold_only_and_refuses_a_posted_one() {
        assert_eq!(plan_void_hold(&hold(HoldStatus::Active, None)).ok(), Some(true));
        assert_eq!(plan_void_hold(&hold(HoldStatus::Voided, None)).ok(), Some(false));
        assert_eq!(plan_void_hold(&hold(HoldStatus::Expired, None)).ok(), Some(false));
        assert!(matches!(plan_void_hold(&hold(HoldStatus::Posted, None)), Err(Error::HoldNotActive { .. })));
    }
}
