//! [`MemoryLedger`]: the ledger in one mutex.
//!
//! One lock over the whole ledger makes every call trivially atomic and serializable; the critical
//! sections are short (a few map lookups and the rules), which is faster than finer locks at the
//! sizes an in-process ledger sees.

use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use crate::account::{Account, AccountState, AccountStatus, Balance, NewAccount};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId, EntryId, HoldId};
use crate::ledger::rules::{self, Release};
use crate::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, HoldMark, HoldStatus, NewEntry, NewHold, Page, PostHold, PostedEntry,
    PostedLine, Reversal,
};
use crate::money::{Currency, checked_add, checked_sub};
use crate::ports::{ACCOUNTS_PER_OWNER_MAX, LedgerStore};

/// A ledger held in memory.
#[derive(Debug)]
pub struct MemoryLedger {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: FxHashMap<AccountId, Slot>,
    /// Every account id in order, for [`LedgerStore::accounts_after`].
    ids: BTreeSet<AccountId>,
    by_owner: FxHashMap<CustomerId, Vec<AccountId>>,
    journal: Journal,
    /// Entry keys carry time-ordered (UUID v7) transfer ids, so an ordered map appends at its right
    /// edge and stays cache-friendly where a hash map would touch a random slot per posting.
    by_key: BTreeMap<EntryKey, usize>,
    /// original entry → the key of its reversal.
    reversed_by: FxHashMap<EntryKey, EntryKey>,
    holds: FxHashMap<HoldId, Hold>,
    /// Marked hold ids ([`LedgerStore::mark_hold`]) and when each was marked, in id order.
    marks: BTreeMap<HoldId, DateTime<Utc>>,
}

#[derive(Debug)]
struct Slot {
    state: AccountState,
    /// (entry index, line index) of each posted entry, in sequence order.
    history: Vec<(usize, usize)>,
    /// Active holds by expiry, so expired ones are released in O(log n).
    active_holds: BTreeSet<(DateTime<Utc>, HoldId)>,
}

impl MemoryLedger {
    /// An empty ledger reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryLedger { clock, inner: Mutex::new(Inner::default()) }
    }

    /// An empty ledger with room for `entries` postings before its indexes grow (growing a large
    /// index rehashes it under the lock, stalling every caller for a moment).
    pub fn with_capacity(clock: Arc<dyn Clock>, entries: usize) -> Self {
        let inner = Inner {
            journal: Journal {
                entries: Vec::with_capacity(entries),
                lines: Vec::with_capacity(entries * 2),
                text: String::with_capacity(entries * 16),
            },
            ..Inner::default()
        };
        MemoryLedger { clock, inner: Mutex::new(inner) }
    }
}

impl Inner {
    /// Releases the holds of `account` that expired by `now`.
    fn release_expired(&mut self, account: AccountId, now: DateTime<Utc>) -> Result<()> {
        release_expired(&mut self.accounts, &mut self.holds, account, now)
    }

    fn slot(&self, id: AccountId) -> Result<&Slot> {
        self.accounts.get(&id).ok_or(Error::AccountNotFound(id))
    }

    fn replay(&self, entry: &NewEntry) -> Option<Result<PostedEntry>> {
        let &index = self.by_key.get(&entry.key())?;
        Some(replay_of(&self.journal, index, entry))
    }

    /// Checks and records `entry`; on error nothing changed.
    fn post(
        &mut self,
        entry: NewEntry,
        release: Option<(HoldId, Release)>,
        reverses: Option<EntryKey>,
        now: DateTime<Utc>,
    ) -> Result<PostedEntry> {
        let Inner { accounts, journal, by_key, reversed_by, holds, .. } = self;
        let key = entry.key();
        // One probe of the key index serves both the replay check and the insert.
        let vacant = match by_key.entry(key) {
            btree_map::Entry::Occupied(found) => return replay_of(journal, *found.get(), &entry),
            btree_map::Entry::Vacant(vacant) => vacant,
        };
        for line in entry.lines() {
            release_expired(accounts, holds, line.account_id, now)?;
        }
        let release_amount = release.map(|(_, r)| r);
        let lines = rules::plan_entry(&entry, release_amount, |id| accounts.get(&id).map(|slot| &slot.state))?;
        let index = journal.entries.len();
        for (line_index, line) in lines.iter().enumerate() {
            let slot = accounts.get_mut(&line.account_id).ok_or(Error::AccountNotFound(line.account_id))?;
            rules::apply_line(&mut slot.state, line, release_amount)?;
            slot.history.push((index, line_index));
        }
        if let Some((hold_id, _)) = release
            && let Some(hold) = holds.get_mut(&hold_id)
        {
            hold.status = HoldStatus::Posted;
            hold.posted_entry = Some(key);
            if let Some(slot) = accounts.get_mut(&hold.account_id) {
                slot.active_holds.remove(&(hold.expires_at, hold_id));
            }
        }
        let posted = rules::posted_entry(EntryId::at(now), entry, lines, now, reverses);
        vacant.insert(index);
        if let Some(original) = reverses {
            reversed_by.insert(original, key);
        }
        journal.push(&posted);
        Ok(posted)
    }
}

/// A repeat of `entry` under its used key: the first result if it is the same request.
fn replay_of(journal: &Journal, index: usize, entry: &NewEntry) -> Result<PostedEntry> {
    let posted = journal.get(index);
    if entry.is_same_as(&posted) { Ok(posted) } else { Err(Error::KeyReused(format!("entry key {}", entry.key()))) }
}

/// Posted entries in compact form: lines and references live in two shared arenas, so storing an
/// entry allocates nothing (amortized) and the journal stays dense in memory.
#[derive(Debug, Default)]
struct Journal {
    entries: Vec<StoredEntry>,
    lines: Vec<PostedLine>,
    text: String,
}

#[derive(Debug)]
struct StoredEntry {
    id: EntryId,
    key: EntryKey,
    posted_at: DateTime<Utc>,
    reverses: Option<EntryKey>,
    lines_start: usize,
    lines_len: usize,
    text_start: usize,
    text_len: usize,
}

impl Journal {
    fn push(&mut self, posted: &PostedEntry) {
        self.entries.push(StoredEntry {
            id: posted.id,
            key: posted.key,
            posted_at: posted.posted_at,
            reverses: posted.reverses,
            lines_start: self.lines.len(),
            lines_len: posted.lines.len(),
            text_start: self.text.len(),
            text_len: posted.reference.len(),
        });
        self.lines.extend_from_slice(&posted.lines);
        self.text.push_str(&posted.reference);
    }

    fn lines(&self, e: &StoredEntry) -> &[PostedLine] {
        &self.lines[e.lines_start..e.lines_start + e.lines_len]
    }

    fn reference(&self, e: &StoredEntry) -> &str {
        &self.text[e.text_start..e.text_start + e.text_len]
    }

    fn get(&self, index: usize) -> PostedEntry {
        let e = &self.entries[index];
        PostedEntry {
            id: e.id,
            key: e.key,
            lines: self.lines(e).to_vec(),
            reference: self.reference(e).to_owned(),
            posted_at: e.posted_at,
            reverses: e.reverses,
        }
    }
}

/// Releases the holds of `account` that expired by `now`.
fn release_expired(
    accounts: &mut FxHashMap<AccountId, Slot>,
    holds: &mut FxHashMap<HoldId, Hold>,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(slot) = accounts.get_mut(&account) else { return Ok(()) };
    while let Some(&(expires_at, hold_id)) = slot.active_holds.first()
        && expires_at <= now
    {
        slot.active_holds.pop_first();
        if let Some(hold) = holds.get_mut(&hold_id) {
            hold.status = HoldStatus::Expired;
            slot.state.held = checked_sub(slot.state.held, hold.money.value())?;
        }
    }
    Ok(())
}

#[async_trait]
impl LedgerStore for MemoryLedger {
    async fn open_account(&self, new: NewAccount) -> Result<Account> {
        new.validate()?;
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if let Some(slot) = inner.accounts.get(&new.id) {
            return if slot.state.account.matches(&new) {
                Ok(slot.state.account.clone())
            } else {
                Err(Error::KeyReused(format!("account id {}", new.id)))
            };
        }
        let owned = inner.by_owner.get(&new.owner).map_or(0, Vec::len);
        if owned >= ACCOUNTS_PER_OWNER_MAX {
            return Err(Error::TooManyAccounts { max: ACCOUNTS_PER_OWNER_MAX });
        }
        let account = Account::from_new(new, now);
        inner.by_owner.entry(account.owner).or_default().push(account.id);
        inner.ids.insert(account.id);
        inner.accounts.insert(
            account.id,
            Slot { state: AccountState::new(account.clone()), history: Vec::new(), active_holds: BTreeSet::new() },
        );
        Ok(account)
    }

    async fn account(&self, id: AccountId) -> Result<Account> {
        Ok(self.inner.lock().slot(id)?.state.account.clone())
    }

    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>> {
        let inner = self.inner.lock();
        let ids = inner.by_owner.get(&owner).map(Vec::as_slice).unwrap_or_default();
        ids.iter().map(|id| Ok(inner.slot(*id)?.state.account.clone())).collect()
    }

    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.release_expired(id, now)?;
        let slot = inner.accounts.get_mut(&id).ok_or(Error::AccountNotFound(id))?;
        rules::check_status_change(&slot.state, status)?;
        slot.state.account.status = status;
        Ok(slot.state.account.clone())
    }

    async fn post(&self, entry: NewEntry) -> Result<PostedEntry> {
        let now = self.clock.now();
        self.inner.lock().post(entry, None, None, now)
    }

    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        entries.into_iter().map(|entry| inner.post(entry, None, None, now)).collect()
    }

    async fn entry(&self, key: EntryKey) -> Result<PostedEntry> {
        let inner = self.inner.lock();
        let index = inner.by_key.get(&key).ok_or(Error::EntryNotFound(key))?;
        Ok(inner.journal.get(*index))
    }

    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let original = inner.by_key.get(&reversal.original).ok_or(Error::EntryNotFound(reversal.original))?;
        let entry = reversal.to_entry(&inner.journal.get(*original))?;
        if let Some(&index) = inner.by_key.get(&entry.key()) {
            // The key is taken: a replay only if it reversed this very entry.
            if inner.journal.entries[index].reverses != Some(reversal.original) {
                return Err(Error::KeyReused(format!("entry key {}", entry.key())));
            }
            return inner.replay(&entry).unwrap_or_else(|| Err(Error::EntryNotFound(entry.key())));
        }
        if inner.reversed_by.contains_key(&reversal.original) {
            return Err(Error::AlreadyReversed(reversal.original));
        }
        inner.post(entry, None, Some(reversal.original), now)
    }

    async fn hold(&self, new: NewHold) -> Result<Hold> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if let Some(existing) = inner.holds.get(&new.id) {
            return if existing.matches(&new) {
                Ok(existing.clone().as_of(now))
            } else {
                Err(Error::KeyReused(format!("hold id {}", new.id)))
            };
        }
        new.validate(now)?;
        inner.release_expired(new.account_id, now)?;
        let slot = inner.accounts.get_mut(&new.account_id).ok_or(Error::AccountNotFound(new.account_id))?;
        slot.state.held = rules::plan_hold(&slot.state, new.money)?;
        slot.active_holds.insert((new.expires_at, new.id));
        let hold = Hold::from_new(new, now);
        inner.holds.insert(hold.id, hold.clone());
        Ok(hold)
    }

    async fn get_hold(&self, id: HoldId) -> Result<Hold> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        Ok(inner.holds.get(&id).ok_or(Error::HoldNotFound(id))?.clone().as_of(now))
    }

    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let hold = inner.holds.get(&request.hold_id).ok_or(Error::HoldNotFound(request.hold_id))?.clone().as_of(now);
        let key_used = inner.by_key.contains_key(&request.key);
        match rules::plan_post_hold(&hold, request, key_used)? {
            rules::PostHoldPlan::Replay(entry) => {
                inner.replay(&entry).unwrap_or_else(|| Err(Error::EntryNotFound(entry.key())))
            }
            rules::PostHoldPlan::Post(entry, release) => inner.post(entry, Some((hold.id, release)), None, now),
        }
    }

    async fn void_hold(&self, id: HoldId) -> Result<Hold> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let account_id = inner.holds.get(&id).ok_or(Error::HoldNotFound(id))?.account_id;
        inner.release_expired(account_id, now)?;
        let Inner { holds, accounts, .. } = &mut *inner;
        let hold = holds.get_mut(&id).ok_or(Error::HoldNotFound(id))?;
        if rules::plan_void_hold(hold)? {
            let slot = accounts.get_mut(&account_id).ok_or(Error::AccountNotFound(account_id))?;
            slot.state.held = checked_sub(slot.state.held, hold.money.value())?;
            slot.active_holds.remove(&(hold.expires_at, id));
            hold.status = HoldStatus::Voided;
        }
        Ok(hold.clone())
    }

    async fn expire_holds(&self) -> Result<u64> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let due: Vec<AccountId> = inner
            .accounts
            .iter()
            .filter(|(_, slot)| slot.active_holds.first().is_some_and(|(at, _)| *at <= now))
            .map(|(id, _)| *id)
            .collect();
        let before = inner.holds.values().filter(|h| h.status == HoldStatus::Expired).count();
        for id in due {
            inner.release_expired(id, now)?;
        }
        let after = inner.holds.values().filter(|h| h.status == HoldStatus::Expired).count();
        Ok((after - before) as u64)
    }

    async fn mark_hold(&self, id: HoldId) -> Result<()> {
        let now = self.clock.now();
        self.inner.lock().marks.entry(id).or_insert(now);
        Ok(())
    }

    async fn marked_holds(&self, after: Option<HoldId>, limit: usize) -> Result<Vec<HoldMark>> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(inner
            .marks
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(id, marked_at)| HoldMark {
                id: *id,
                marked_at: *marked_at,
                hold: inner.holds.get(id).map(|h| h.clone().as_of(now)),
            })
            .collect())
    }

    async fn unmark_holds(&self, ids: &[HoldId]) -> Result<()> {
        let mut inner = self.inner.lock();
        for id in ids {
            inner.marks.remove(id);
        }
        Ok(())
    }

    async fn balance(&self, id: AccountId) -> Result<Balance> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.release_expired(id, now)?;
        inner.slot(id)?.state.balance()
    }

    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>> {
        let inner = self.inner.lock();
        let slot = inner.slot(id)?;
        // history[i] has sequence i + 1.
        let end =
            usize::try_from(query.before_sequence().saturating_sub(1)).unwrap_or(usize::MAX).min(slot.history.len());
        let items: Vec<HistoryItem> = slot.history[..end]
            .iter()
            .rev()
            .take(query.limit() as usize)
            .map(|&(entry_index, line_index)| {
                let entry = &inner.journal.entries[entry_index];
                let line = &inner.journal.lines(entry)[line_index];
                HistoryItem {
                    entry_id: entry.id,
                    key: entry.key,
                    sequence: line.sequence,
                    direction: line.side,
                    money: line.money,
                    balance_after: line.balance_after,
                    reference: inner.journal.reference(entry).to_owned(),
                    posted_at: entry.posted_at,
                }
            })
            .collect();
        let next_cursor = items.last().and_then(|last| query.next_cursor(items.len(), last.sequence));
        Ok(Page { items, next_cursor })
    }

    async fn balance_at(&self, id: AccountId, at: DateTime<Utc>) -> Result<Decimal> {
        let inner = self.inner.lock();
        let slot = inner.slot(id)?;
        let mut balance = Decimal::ZERO;
        for &(entry_index, line_index) in &slot.history {
            let entry = &inner.journal.entries[entry_index];
            if entry.posted_at < at {
                let line = &inner.journal.lines(entry)[line_index];
                balance = checked_add(balance, line.side.signed(line.money.value()))?;
            }
        }
        Ok(balance)
    }

    async fn accounts_after(&self, after: Option<AccountId>, limit: usize) -> Result<Vec<Account>> {
        crate::ports::check_accounts_page(limit)?;
        let inner = self.inner.lock();
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        inner
            .ids
            .range((from, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|id| Ok(inner.slot(*id)?.state.account.clone()))
            .collect()
    }

    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>> {
        let inner = self.inner.lock();
        let mut totals: Vec<(Currency, Decimal)> = Vec::new();
        for slot in inner.accounts.values() {
            let currency = slot.state.account.currency;
            match totals.iter_mut().find(|(c, _)| *c == currency) {
                Some((_, sum)) => *sum = checked_add(*sum, slot.state.posted)?,
                None => totals.push((currency, slot.state.posted)),
            }
        }
        totals.sort_by_key(|(c, _)| *c);
        Ok(totals)
    }
}
