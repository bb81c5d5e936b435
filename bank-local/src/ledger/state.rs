//! [`LedgerState`]: what the ledger keeps inside the database's writer thread
//! ([`crate::db::writer::WriterState`]), and the ledger's write operations run there.
//!
//! The state is a cache of [`AccountState`]s (with each account's active holds), so planning a
//! posting reads no row: the rules run on the cache, and the job writes what they decided.
//! Because the writer thread is the only writer, the cache always equals the database as of the
//! open transaction:
//! - a job that fails is rolled back to its savepoint and evicts every account it loaded or
//!   changed (`job_failed`), so the next use reloads them from the (rolled-back) transaction;
//! - a posting changes the cache only after its writes succeeded (a refused posting writes
//!   nothing but the release of lapsed holds, which is true whatever happens next);
//! - a batch whose COMMIT fails is rolled back whole and the cache is cleared (`batch_ended`).
//!
//! After each committed batch the state publishes the accounts it loaded or changed to the read
//! cache ([`super::views`]).

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use bank_core::account::{Account, AccountState, AccountStatus, NewAccount};
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, EntryId, HoldId};
use bank_core::ledger::rules::{self, Release};
use bank_core::ledger::{EntryKey, Hold, HoldStatus, NewEntry, NewHold, PostHold, PostedEntry, PostedLine, Reversal};
use bank_core::money::checked_sub;
use bank_core::ports::ACCOUNTS_PER_OWNER_MAX;
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};

use super::rows::{self, db_err, is_unique_violation, nanos, sql_sequence};
use super::views::{AccountView, AccountViews};
use crate::db::LocalDb;
use crate::db::writer::{WriterState, exec};

/// Accounts kept in the cache; past this, it is dropped after a batch and refilled on use.
const CACHE_ACCOUNTS_MAX: usize = 100_000;

/// One account as the writer knows it.
#[derive(Debug)]
struct Cached {
    state: AccountState,
    /// Active holds by (expiry, id) → amount, so lapsed ones are released in order.
    active_holds: BTreeMap<(DateTime<Utc>, HoldId), Decimal>,
}

/// The ledger's state in the writer thread.
pub(crate) struct LedgerState {
    clock: Arc<dyn Clock>,
    views: Arc<AccountViews>,
    cache: FxHashMap<AccountId, Cached>,
    /// Row id the next entry gets (`None`: read `max(id) + 1` on next use).
    next_entry_rowid: Option<i64>,
    /// Accounts the current job loaded or changed (evicted if it fails).
    touched: Vec<AccountId>,
    /// Accounts the current batch loaded or changed (their views are refreshed after COMMIT).
    batch_accounts: FxHashSet<AccountId>,
}

impl WriterState for LedgerState {
    fn start(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        LedgerState {
            clock,
            views: db.shared::<AccountViews>(),
            cache: FxHashMap::default(),
            next_entry_rowid: None,
            touched: Vec::new(),
            batch_accounts: FxHashSet::default(),
        }
    }

    fn job_started(&mut self) {
        self.touched.clear();
    }

    fn job_failed(&mut self) {
        for id in self.touched.drain(..) {
            self.cache.remove(&id);
        }
    }

    /// Puts the committed state of every account the batch loaded or changed into the read
    /// cache, or drops the view of one the state no longer holds (see [`super::views`]). A batch
    /// that did not commit changed nothing, so the views stay as they are and the cache, which
    /// may hold its effects, is cleared.
    fn batch_ended(&mut self, committed: bool) {
        if !committed {
            self.cache.clear();
            self.next_entry_rowid = None;
        }
        for id in self.batch_accounts.drain() {
            if !committed {
                continue;
            }
            match self.cache.get(&id) {
                Some(cached) => self.views.put(
                    id,
                    AccountView {
                        state: cached.state.clone(),
                        holds: cached
                            .active_holds
                            .iter()
                            .map(|((expires_at, _), amount)| (*expires_at, *amount))
                            .collect(),
                    },
                ),
                None => self.views.forget(id),
            }
        }
        if self.cache.len() > CACHE_ACCOUNTS_MAX {
            self.cache.clear();
        }
    }
}

impl LedgerState {
    /// The cached state of `id`, loaded (with its active holds) on first use; `None` if unknown.
    fn load(&mut self, conn: &Connection, id: AccountId) -> Result<Option<&mut Cached>> {
        self.touched.push(id);
        self.batch_accounts.insert(id);
        match self.cache.entry(id) {
            Entry::Occupied(found) => Ok(Some(found.into_mut())),
            Entry::Vacant(slot) => {
                let Some(state) = rows::load_account(conn, id)? else { return Ok(None) };
                let active_holds = rows::active_holds(conn, id)?
                    .into_iter()
                    .map(|(expires_at, hold, amount)| ((expires_at, hold), amount))
                    .collect();
                Ok(Some(slot.insert(Cached { state, active_holds })))
            }
        }
    }

    /// Releases (and marks expired) the holds of `account` that lapsed by `now`; how many.
    fn release_expired(&mut self, conn: &Connection, account: AccountId, now: DateTime<Utc>) -> Result<u64> {
        let Some(cached) = self.load(conn, account)? else { return Ok(0) };
        let mut expired = Vec::new();
        while let Some((&(expires_at, hold), &amount)) = cached.active_holds.first_key_value()
            && expires_at <= now
        {
            cached.active_holds.pop_first();
            cached.state.held = checked_sub(cached.state.held, amount)?;
            expired.push(hold);
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let held = cached.state.held.to_string();
        for hold in &expired {
            exec(conn, "UPDATE holds SET status = 'expired' WHERE id = ?1", params![hold.as_uuid()])?;
        }
        exec(conn, "UPDATE accounts SET held = ?1 WHERE id = ?2", params![held, account.as_uuid()])?;
        Ok(expired.len() as u64)
    }

    pub(super) fn open_account(&mut self, conn: &Connection, new: NewAccount) -> Result<Account> {
        new.validate()?;
        let now = self.clock.now();
        if let Some(existing) = rows::load_account(conn, new.id)? {
            return if existing.account.matches(&new) {
                Ok(existing.account)
            } else {
                Err(Error::KeyReused(format!("account id {}", new.id)))
            };
        }
        let owned: i64 = conn
            .prepare_cached("SELECT count(*) FROM accounts WHERE owner = ?1")
            .and_then(|mut statement| statement.query_row([new.owner.as_uuid()], |row| row.get(0)))
            .map_err(db_err)?;
        if usize::try_from(owned).unwrap_or(usize::MAX) >= ACCOUNTS_PER_OWNER_MAX {
            return Err(Error::TooManyAccounts { max: ACCOUNTS_PER_OWNER_MAX });
        }
        let account = Account::from_new(new, now);
        exec(
            conn,
            "INSERT INTO accounts (id, owner, name, currency, kind, status, overdraft_limit, posted, held, sequence, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '0', '0', 0, ?8)",
            params![
                account.id.as_uuid(),
                account.owner.as_uuid(),
                &account.name,
                account.currency.code(),
                account.kind.as_str(),
                account.status.as_str(),
                rows::limit_text(account.overdraft_limit),
                nanos(account.created_at)?
            ],
        )?;
        self.touched.push(account.id);
        self.batch_accounts.insert(account.id);
        self.cache
            .insert(account.id, Cached { state: AccountState::new(account.clone()), active_holds: BTreeMap::new() });
        Ok(account)
    }

    pub(super) fn set_status(&mut self, conn: &Connection, id: AccountId, status: AccountStatus) -> Result<Account> {
        let now = self.clock.now();
        self.release_expired(conn, id, now)?;
        let cached = self.load(conn, id)?.ok_or(Error::AccountNotFound(id))?;
        rules::check_status_change(&cached.state, status)?;
        exec(conn, "UPDATE accounts SET status = ?1 WHERE id = ?2", params![status.as_str(), id.as_uuid()])?;
        cached.state.account.status = status;
        Ok(cached.state.account.clone())
    }

    /// Checks and records `entry` (releasing a hold, or reversing an entry, if asked).
    ///
    /// The rules run on the cache first, so a refused entry writes nothing (except releasing
    /// lapsed holds, which is true whatever happens next). The accepted entry is then written
    /// in its own savepoint: the entry, its lines and the account rows ([`write_entry`]); the
    /// cache changes only once that succeeded. A conflicting key makes the insert fail; the savepoint is rolled back and the
    /// stored entry answers as a replay (or `KeyReused`).
    pub(super) fn post_entry(
        &mut self,
        conn: &Connection,
        entry: NewEntry,
        release: Option<(HoldId, Release)>,
        reverses: Option<EntryKey>,
        now: DateTime<Utc>,
    ) -> Result<PostedEntry> {
        let key = entry.key();
        for line in entry.lines() {
            self.release_expired(conn, line.account_id, now)?;
        }
        let release_amount = release.map(|(_, r)| r);
        let cache = &self.cache;
        let lines = match rules::plan_entry(&entry, release_amount, |id| cache.get(&id).map(|c| &c.state)) {
            Ok(lines) => lines,
            // A used key answers as a replay (or KeyReused) whatever the state says now.
            Err(refused) => {
                return match rows::load_entry(conn, key)? {
                    Some(posted) => replay_of(&entry, posted),
                    None => Err(refused),
                };
            }
        };
        let rowid = match self.next_entry_rowid {
            Some(rowid) => rowid,
            None => conn
                .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM entries")
                .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
                .map_err(db_err)?,
        };
        let id = EntryId::at(now);
        let mut held_after = Vec::with_capacity(lines.len());
        for line in &lines {
            let state = &cache.get(&line.account_id).ok_or(Error::AccountNotFound(line.account_id))?.state;
            held_after.push(rules::held_after(state, release_amount)?.to_string());
        }
        exec(conn, "SAVEPOINT post", [])?;
        let posted_at = nanos(now)?;
        if let Err(err) = write_entry(conn, rowid, id, &entry, &lines, &held_after, reverses, posted_at) {
            // Undo whatever part of the entry was written; failing that, the batch cannot go on.
            for undo in ["ROLLBACK TO post", "RELEASE post"] {
                exec(conn, undo, []).map_err(|e| broken_batch(&e))?;
            }
            if is_unique_violation(&err)
                && let Some(posted) = rows::load_entry(conn, key)?
            {
                return replay_of(&entry, posted);
            }
            return Err(db_err(err));
        }
        exec(conn, "RELEASE post", [])?;
        self.next_entry_rowid = Some(rowid + 1);
        for line in &lines {
            let cached = self.cache.get_mut(&line.account_id).ok_or(Error::AccountNotFound(line.account_id))?;
            rules::apply_line(&mut cached.state, line, release_amount)?;
        }
        if let Some((hold_id, release)) = release {
            let updated = exec(
                conn,
                "UPDATE holds SET status = 'posted', posted_transfer_id = ?1, posted_leg = ?2 \
                 WHERE id = ?3 AND status = 'active'",
                params![key.transfer_id.as_uuid(), i64::from(key.leg), hold_id.as_uuid()],
            )?;
            if updated != 1 {
                return Err(Error::Storage { message: format!("hold {hold_id} was not active"), retryable: false });
            }
            if let Some(cached) = self.cache.get_mut(&release.account_id) {
                cached.active_holds.retain(|(_, id), _| *id != hold_id);
            }
        }
        if let Some(original) = reverses {
            exec(
                conn,
                "INSERT INTO reversals (original_transfer_id, original_leg, reversal_transfer_id, reversal_leg) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    original.transfer_id.as_uuid(),
                    i64::from(original.leg),
                    key.transfer_id.as_uuid(),
                    i64::from(key.leg)
                ],
            )?;
        }
        Ok(rules::posted_entry(id, entry, lines, now, reverses))
    }

    /// Posts each entry of a batch in turn; a refused entry fails alone. A storage failure fails
    /// the whole job (the writer rolls it back, so no entry of it is kept).
    pub(super) fn post_batch(&mut self, conn: &Connection, entries: Vec<NewEntry>) -> Result<Vec<Result<PostedEntry>>> {
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let now = self.clock.now();
            let result = self.post_entry(conn, entry, None, None, now);
            if let Err(storage @ Error::Storage { .. }) = result {
                return Err(storage);
            }
            results.push(result);
        }
        Ok(results)
    }

    pub(super) fn reverse(&mut self, conn: &Connection, reversal: Reversal) -> Result<PostedEntry> {
        let now = self.clock.now();
        let original = rows::load_entry(conn, reversal.original)?.ok_or(Error::EntryNotFound(reversal.original))?;
        let entry = reversal.to_entry(&original)?;
        if let Some(existing) = rows::load_entry(conn, entry.key())? {
            // The key is taken: a replay only if it reversed this very entry.
            if existing.reverses != Some(reversal.original) {
                return Err(Error::KeyReused(format!("entry key {}", entry.key())));
            }
            return replay_of(&entry, existing);
        }
        let reversed = conn
            .prepare_cached("SELECT 1 FROM reversals WHERE original_transfer_id = ?1 AND original_leg = ?2")
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![reversal.original.transfer_id.as_uuid(), i64::from(reversal.original.leg)],
                        |_| Ok(()),
                    )
                    .optional()
            })
            .map_err(db_err)?;
        if reversed.is_some() {
            return Err(Error::AlreadyReversed(reversal.original));
        }
        self.post_entry(conn, entry, None, Some(reversal.original), now)
    }

    pub(super) fn hold(&mut self, conn: &Connection, new: NewHold) -> Result<Hold> {
        let now = self.clock.now();
        if let Some(existing) = rows::load_hold(conn, new.id)? {
            return if existing.matches(&new) {
                Ok(existing.as_of(now))
            } else {
                Err(Error::KeyReused(format!("hold id {}", new.id)))
            };
        }
        new.validate(now)?;
        self.release_expired(conn, new.account_id, now)?;
        let cached = self.load(conn, new.account_id)?.ok_or(Error::AccountNotFound(new.account_id))?;
        let held = rules::plan_hold(&cached.state, new.money)?;
        exec(
            conn,
            "INSERT INTO holds (id, account_id, amount, currency, status, created_at, expires_at, reference) \
             VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7)",
            params![
                new.id.as_uuid(),
                new.account_id.as_uuid(),
                new.money.value().to_string(),
                new.money.currency.code(),
                nanos(now)?,
                nanos(new.expires_at)?,
                &new.reference
            ],
        )?;
        exec(conn, "UPDATE accounts SET held = ?1 WHERE id = ?2", params![held.to_string(), new.account_id.as_uuid()])?;
        cached.state.held = held;
        cached.active_holds.insert((new.expires_at, new.id), new.money.value());
        Ok(Hold::from_new(new, now))
    }

    pub(super) fn post_hold(&mut self, conn: &Connection, request: PostHold) -> Result<PostedEntry> {
        let now = self.clock.now();
        let hold = rows::load_hold(conn, request.hold_id)?.ok_or(Error::HoldNotFound(request.hold_id))?.as_of(now);
        let existing = rows::load_entry(conn, request.key)?;
        match rules::plan_post_hold(&hold, request, existing.is_some())? {
            rules::PostHoldPlan::Replay(entry) => match existing {
                Some(posted) => replay_of(&entry, posted),
                None => Err(Error::EntryNotFound(entry.key())),
            },
            rules::PostHoldPlan::Post(entry, release) => {
                self.post_entry(conn, entry, Some((hold.id, release)), None, now)
            }
        }
    }

    pub(super) fn void_hold(&mut self, conn: &Connection, id: HoldId) -> Result<Hold> {
        let now = self.clock.now();
        let hold = rows::load_hold(conn, id)?.ok_or(Error::HoldNotFound(id))?;
        self.release_expired(conn, hold.account_id, now)?;
        let hold = hold.as_of(now);
        if !rules::plan_void_hold(&hold)? {
            return Ok(hold);
        }
        let cached = self.load(conn, hold.account_id)?.ok_or(Error::AccountNotFound(hold.account_id))?;
        let held = checked_sub(cached.state.held, hold.money.value())?;
        exec(conn, "UPDATE holds SET status = 'voided' WHERE id = ?1", params![id.as_uuid()])?;
        exec(
            conn,
            "UPDATE accounts SET held = ?1 WHERE id = ?2",
            params![held.to_string(), hold.account_id.as_uuid()],
        )?;
        cached.state.held = held;
        cached.active_holds.remove(&(hold.expires_at, id));
        Ok(Hold { status: HoldStatus::Voided, ..hold })
    }

    pub(super) fn expire_holds(&mut self, conn: &Connection) -> Result<u64> {
        let now = self.clock.now();
        let at = nanos(now)?;
        let accounts: Vec<uuid::Uuid> = conn
            .prepare_cached("SELECT DISTINCT account_id FROM holds WHERE status = 'active' AND expires_at <= ?1")
            .and_then(|mut statement| statement.query_map([at], |row| row.get(0))?.collect::<rusqlite::Result<_>>())
            .map_err(db_err)?;
        let mut expired = 0;
        for account in accounts {
            let account = rows::uuid_to(account, AccountId::from_uuid)?;
            expired += self.release_expired(conn, account, now)?;
        }
        Ok(expired)
    }
}

/// A repeat of `entry` under its used key: the first result if it is the same request.
fn replay_of(entry: &NewEntry, posted: PostedEntry) -> Result<PostedEntry> {
    if entry.is_same_as(&posted) { Ok(posted) } else { Err(Error::KeyReused(format!("entry key {}", entry.key()))) }
}

/// A failure that leaves the transaction in an unknown state: the whole batch must roll back.
fn broken_batch(err: &Error) -> Error {
    Error::Storage { message: format!("{BROKEN_BATCH}: {err}"), retryable: true }
}

/// Marks errors after which the batch cannot continue.
const BROKEN_BATCH: &str = "ledger transaction broken";

/// Writes an entry that the rules accepted: the entry row, its lines, and each line's account
/// row (posted balance, held amount, sequence).
#[allow(clippy::too_many_arguments)]
fn write_entry(
    conn: &Connection,
    rowid: i64,
    id: EntryId,
    entry: &NewEntry,
    lines: &[PostedLine],
    held_after: &[String],
    reverses: Option<EntryKey>,
    posted_at: i64,
) -> rusqlite::Result<()> {
    let key = entry.key();
    conn.prepare_cached(
        "INSERT INTO entries (id, entry_id, transfer_id, leg, reference, posted_at, reverses_transfer_id, \
         reverses_leg) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            rowid,
            id.as_uuid(),
            key.transfer_id.as_uuid(),
            i64::from(key.leg),
            entry.reference(),
            posted_at,
            reverses.map(|k| *k.transfer_id.as_uuid()),
            reverses.map(|k| i64::from(k.leg)),
        ])
    })?;
    let mut insert_line = conn.prepare_cached(
        "INSERT INTO entry_lines (entry, line_no, account_id, side, amount, currency, sequence, balance_after) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (line_no, line) in lines.iter().enumerate() {
        insert_line.execute(params![
            rowid,
            line_no as i64,
            line.account_id.as_uuid(),
            line.side.as_str(),
            line.money.value().to_string(),
            line.money.currency.code(),
            sql_sequence(line.sequence),
            line.balance_after.to_string(),
        ])?;
    }
    let mut update_account =
        conn.prepare_cached("UPDATE accounts SET posted = ?1, held = ?2, sequence = ?3 WHERE id = ?4")?;
    for (line, held) in lines.iter().zip(held_after) {
        update_account.execute(params![
            line.balance_after.to_string(),
            held,
            sql_sequence(line.sequence),
            line.account_id.as_uuid()
        ])?;
    }
    Ok(())
}
