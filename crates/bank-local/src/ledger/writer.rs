//! The single writer task: every change to the database runs here, in group-committed batches
//! (the ledger's commands, and other stores' jobs: see [`crate::writer`]).
//!
//! The task owns the writer connection and a cache of [`AccountState`]s (with each account's
//! active holds), so planning a posting reads no row: the rules run on the cache, and the task
//! writes what they decided. Because this task is the only writer, the cache always equals the
//! database as of the open transaction:
//! - a command that fails rolls back to its savepoint and evicts every account it loaded or
//!   changed, so the next use reloads them from the (rolled-back) transaction;
//! - a posting changes the cache only after its one write query succeeded (a refused posting
//!   writes nothing but the release of lapsed holds, which is true whatever happens next);
//! - a batch whose COMMIT fails is rolled back whole and the cache is cleared.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bank_core::account::{Account, AccountState, AccountStatus, NewAccount};
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, EntryId, HoldId};
use bank_core::ledger::rules::{self, Release};
use bank_core::ledger::{EntryKey, Hold, HoldStatus, NewEntry, NewHold, PostHold, PostedEntry, Reversal};
use bank_core::money::checked_sub;
use bank_core::ports::ACCOUNTS_PER_OWNER_MAX;
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::mpsc;

use super::command::{Command, Counters, Pending, batch_failed};
use super::rows::{self, db_err, nanos, sql_sequence};

/// Most commands one transaction commits together.
pub(super) const BATCH_COMMANDS_MAX: usize = 256;
/// Accounts kept in the writer's cache; past this, it is dropped after a batch and refilled on use.
pub(super) const CACHE_ACCOUNTS_MAX: usize = 100_000;

/// One account as the writer knows it.
#[derive(Debug)]
struct Cached {
    state: AccountState,
    /// Active holds by (expiry, id) → amount, so lapsed ones are released in order.
    active_holds: BTreeMap<(DateTime<Utc>, HoldId), Decimal>,
}

/// The writer task's state.
pub(crate) struct Writer {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    cache: FxHashMap<AccountId, Cached>,
    /// Row id the next entry gets (`None`: read `max(id) + 1` on next use).
    next_entry_rowid: Option<i64>,
    /// Accounts the current command loaded or changed (evicted if it fails).
    touched: Vec<AccountId>,
}

/// Runs one command inside its own savepoint; on failure rolls back to it and evicts what the
/// command touched. A failure to roll back breaks the whole batch (`$broken`).
macro_rules! step {
    ($self:ident, $conn:ident, $broken:ident, $call:expr) => {{
        $self.touched.clear();
        match sqlx::query("SAVEPOINT cmd").execute(&mut *$conn).await {
            Err(e) => {
                $broken = Some(e.to_string());
                Err(db_err(e))
            }
            Ok(_) => {
                let result = $call;
                let mut end = Ok(());
                if result.is_err() {
                    for id in $self.touched.drain(..) {
                        $self.cache.remove(&id);
                    }
                    end = sqlx::query("ROLLBACK TO cmd").execute(&mut *$conn).await.map(drop);
                }
                match end.and(sqlx::query("RELEASE cmd").execute(&mut *$conn).await) {
                    Ok(_) => result,
                    Err(e) => {
                        $broken = Some(e.to_string());
                        Err(db_err(e))
                    }
                }
            }
        }
    }};
}

impl Writer {
    pub(crate) fn new(pool: SqlitePool, clock: Arc<dyn Clock>, counters: Arc<Counters>) -> Self {
        Writer { pool, clock, counters, cache: FxHashMap::default(), next_entry_rowid: None, touched: Vec::new() }
    }

    /// Serves commands until every sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(BATCH_COMMANDS_MAX);
        while rx.recv_many(&mut batch, BATCH_COMMANDS_MAX).await > 0 {
            self.run_batch(&mut batch).await;
            if self.cache.len() > CACHE_ACCOUNTS_MAX {
                self.cache.clear();
            }
        }
    }

    /// Runs `batch` in one `BEGIN IMMEDIATE` transaction, commits once, then answers everyone.
    async fn run_batch(&mut self, batch: &mut Vec<Command>) {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.commands.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut conn = match self.pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => return batch.drain(..).for_each(|c| c.fail(&e.to_string())),
        };
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            return batch.drain(..).for_each(|c| c.fail(&e.to_string()));
        }
        let mut pending = Vec::with_capacity(batch.len());
        let mut broken: Option<String> = None;
        let mut commands = batch.drain(..);
        for command in commands.by_ref() {
            pending.push(self.execute(&mut conn, command, &mut broken).await);
            if broken.is_some() {
                break;
            }
        }
        let failure = match broken {
            Some(message) => Some(message),
            None => sqlx::query("COMMIT").execute(&mut *conn).await.err().map(|e| e.to_string()),
        };
        if let Some(message) = &failure {
            tracing::error!(error = %message, "ledger batch failed; rolled back");
            // The transaction may already be gone (a failed COMMIT can end it); either way
            // nothing of the batch is committed, and the cache may hold its effects: drop it.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            self.cache.clear();
            self.next_entry_rowid = None;
            commands.for_each(|c| c.fail(message));
        }
        for p in pending {
            p.answer(failure.as_deref());
        }
    }

    async fn execute(&mut self, conn: &mut SqliteConnection, command: Command, broken: &mut Option<String>) -> Pending {
        let mut b = None;
        let pending = match command {
            Command::Open(new, tx) => Pending::Account(tx, step!(self, conn, b, self.open_account(conn, new).await)),
            Command::SetStatus(id, status, tx) => {
                Pending::Account(tx, step!(self, conn, b, self.set_status(conn, id, status).await))
            }
            Command::Post(entries, tx) => {
                // No outer savepoint: `post_entry` writes nothing before its rules pass and then
                // writes the entry in its own savepoint. A storage failure fails the batch.
                let count = entries.len();
                let mut results = Vec::with_capacity(count);
                for entry in entries {
                    self.touched.clear();
                    let now = self.clock.now();
                    let result = self.post_entry(conn, entry, None, None, now).await;
                    if let Err(Error::Storage { message, .. }) = &result {
                        b = Some(message.clone());
                        results.push(result);
                        break;
                    }
                    results.push(result);
                }
                // A broken batch fails whole; every entry still gets its (failed) result.
                results.resize_with(count, || Err(batch_failed("not run")));
                Pending::Entries(tx, results)
            }
            Command::Reverse(reversal, tx) => {
                Pending::Entry(tx, step!(self, conn, b, self.reverse(conn, reversal).await))
            }
            Command::Hold(new, tx) => Pending::Hold(tx, step!(self, conn, b, self.hold(conn, new).await)),
            Command::PostHold(request, tx) => {
                Pending::Entry(tx, step!(self, conn, b, self.post_hold(conn, request).await))
            }
            Command::VoidHold(id, tx) => Pending::Hold(tx, step!(self, conn, b, self.void_hold(conn, id).await)),
            Command::ExpireHolds(tx) => Pending::Count(tx, step!(self, conn, b, self.expire_holds(conn).await)),
            // Touches no cached account (jobs must not write the ledger's tables). A job that
            // panics fails alone, rolled back to its savepoint, instead of killing the writer.
            Command::Job(job, tx) => {
                let result = step!(self, conn, b, {
                    let run = AssertUnwindSafe(job.run(&mut *conn)).catch_unwind().await;
                    run.unwrap_or_else(|_| Err(job_panicked()))
                });
                Pending::Job(tx, result)
            }
        };
        *broken = b;
        pending
    }

    /// The cached state of `id`, loaded (with its active holds) on first use; `None` if unknown.
    async fn load(&mut self, conn: &mut SqliteConnection, id: AccountId) -> Result<Option<&mut Cached>> {
        self.touched.push(id);
        match self.cache.entry(id) {
            Entry::Occupied(found) => Ok(Some(found.into_mut())),
            Entry::Vacant(slot) => {
                let Some(state) = rows::load_account(conn, id).await? else { return Ok(None) };
                let active_holds = rows::active_holds(conn, id)
                    .await?
                    .into_iter()
                    .map(|(expires_at, hold, amount)| ((expires_at, hold), amount))
                    .collect();
                Ok(Some(slot.insert(Cached { state, active_holds })))
            }
        }
    }

    /// Releases (and marks expired) the holds of `account` that lapsed by `now`; how many.
    async fn release_expired(
        &mut self,
        conn: &mut SqliteConnection,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let Some(cached) = self.load(conn, account).await? else { return Ok(0) };
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
            sqlx::query("UPDATE holds SET status = 'expired' WHERE id = ?1")
                .bind(hold.as_uuid())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        sqlx::query("UPDATE accounts SET held = ?1 WHERE id = ?2")
            .bind(held)
            .bind(account.as_uuid())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(expired.len() as u64)
    }

    async fn open_account(&mut self, conn: &mut SqliteConnection, new: NewAccount) -> Result<Account> {
        new.validate()?;
        let now = self.clock.now();
        if let Some(existing) = rows::load_account(conn, new.id).await? {
            return if existing.account.matches(&new) {
                Ok(existing.account)
            } else {
                Err(Error::KeyReused(format!("account id {}", new.id)))
            };
        }
        let owned: i64 = sqlx::query("SELECT count(*) FROM accounts WHERE owner = ?1")
            .bind(new.owner.as_uuid())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?
            .try_get(0)
            .map_err(db_err)?;
        if usize::try_from(owned).unwrap_or(usize::MAX) >= ACCOUNTS_PER_OWNER_MAX {
            return Err(Error::InvalidInput(format!("an owner may hold at most {ACCOUNTS_PER_OWNER_MAX} accounts")));
        }
        let account = Account::from_new(new, now);
        sqlx::query(
            "INSERT INTO accounts (id, owner, name, currency, kind, status, overdraft_limit, posted, held, sequence, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '0', '0', 0, ?8)",
        )
        .bind(account.id.as_uuid())
        .bind(account.owner.as_uuid())
        .bind(&account.name)
        .bind(account.currency.code())
        .bind(rows::kind_str(account.kind)?)
        .bind(rows::status_str(account.status))
        .bind(rows::limit_text(account.overdraft_limit))
        .bind(nanos(account.created_at)?)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        self.touched.push(account.id);
        self.cache
            .insert(account.id, Cached { state: AccountState::new(account.clone()), active_holds: BTreeMap::new() });
        Ok(account)
    }

    async fn set_status(
        &mut self,
        conn: &mut SqliteConnection,
        id: AccountId,
        status: AccountStatus,
    ) -> Result<Account> {
        let now = self.clock.now();
        self.release_expired(conn, id, now).await?;
        let cached = self.load(conn, id).await?.ok_or(Error::AccountNotFound(id))?;
        rules::check_status_change(&cached.state, status)?;
        sqlx::query("UPDATE accounts SET status = ?1 WHERE id = ?2")
            .bind(rows::status_str(status))
            .bind(id.as_uuid())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        cached.state.account.status = status;
        Ok(cached.state.account.clone())
    }

    /// Checks and records `entry` (releasing a hold, or reversing an entry, if asked).
    ///
    /// The rules run on the cache first, so a refused entry writes nothing (except releasing
    /// lapsed holds, which is true whatever happens next). The accepted entry is then written
    /// in **one** round trip to SQLite: its own savepoint, the entry, its lines and the account
    /// rows, as one multi-statement query (see [`entry_sql`]); the cache changes only once that
    /// succeeded. A conflicting key makes the insert fail; the savepoint is rolled back and the
    /// stored entry answers as a replay (or `KeyReused`).
    async fn post_entry(
        &mut self,
        conn: &mut SqliteConnection,
        entry: NewEntry,
        release: Option<(HoldId, Release)>,
        reverses: Option<EntryKey>,
        now: DateTime<Utc>,
    ) -> Result<PostedEntry> {
        let key = entry.key();
        for line in entry.lines() {
            self.release_expired(conn, line.account_id, now).await?;
        }
        let release_amount = release.map(|(_, r)| r);
        let cache = &self.cache;
        let lines = match rules::plan_entry(&entry, release_amount, |id| cache.get(&id).map(|c| &c.state)) {
            Ok(lines) => lines,
            // A used key answers as a replay (or KeyReused) whatever the state says now.
            Err(refused) => {
                return match rows::load_entry(conn, key).await? {
                    Some(posted) => replay_of(&entry, posted),
                    None => Err(refused),
                };
            }
        };
        let rowid = match self.next_entry_rowid {
            Some(rowid) => rowid,
            None => {
                let row = sqlx::query("SELECT coalesce(max(id), 0) + 1 FROM entries")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)?
            }
        };
        let id = EntryId::at(now);
        let sql = entry_sql(lines.len());
        let mut query = sqlx::query(&sql)
            .bind(rowid)
            .bind(*id.as_uuid())
            .bind(*key.transfer_id.as_uuid())
            .bind(i64::from(key.leg))
            .bind(entry.reference().to_owned())
            .bind(nanos(now)?)
            .bind(reverses.map(|k| *k.transfer_id.as_uuid()))
            .bind(reverses.map(|k| i64::from(k.leg)));
        let mut held_after = Vec::with_capacity(lines.len());
        for line in &lines {
            let state = &cache.get(&line.account_id).ok_or(Error::AccountNotFound(line.account_id))?.state;
            held_after.push(rules::held_after(state, release_amount)?.to_string());
            query = query
                .bind(rowid)
                .bind(*line.account_id.as_uuid())
                .bind(rows::side_str(line.side))
                .bind(line.money.value().to_string())
                .bind(line.money.currency.code())
                .bind(sql_sequence(line.sequence))
                .bind(line.balance_after.to_string());
        }
        for (line, held) in lines.iter().zip(held_after) {
            query = query
                .bind(line.balance_after.to_string())
                .bind(held)
                .bind(sql_sequence(line.sequence))
                .bind(*line.account_id.as_uuid());
        }
        if let Err(err) = query.execute(&mut *conn).await {
            // Undo whatever part of the query ran; failing that, the batch cannot go on.
            for undo in ["ROLLBACK TO post", "RELEASE post"] {
                sqlx::query(undo).execute(&mut *conn).await.map_err(|e| broken_batch(&e))?;
            }
            let conflict = matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation());
            if conflict && let Some(posted) = rows::load_entry(conn, key).await? {
                return replay_of(&entry, posted);
            }
            return Err(db_err(err));
        }
        self.next_entry_rowid = Some(rowid + 1);
        for line in &lines {
            let cached = self.cache.get_mut(&line.account_id).ok_or(Error::AccountNotFound(line.account_id))?;
            rules::apply_line(&mut cached.state, line, release_amount)?;
        }
        if let Some((hold_id, release)) = release {
            let updated = sqlx::query(
                "UPDATE holds SET status = 'posted', posted_transfer_id = ?1, posted_leg = ?2 \
                 WHERE id = ?3 AND status = 'active'",
            )
            .bind(key.transfer_id.as_uuid())
            .bind(i64::from(key.leg))
            .bind(hold_id.as_uuid())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
            if updated.rows_affected() != 1 {
                return Err(Error::Storage { message: format!("hold {hold_id} was not active"), retryable: false });
            }
            if let Some(cached) = self.cache.get_mut(&release.account_id) {
                cached.active_holds.retain(|(_, id), _| *id != hold_id);
            }
        }
        if let Some(original) = reverses {
            sqlx::query(
                "INSERT INTO reversals (original_transfer_id, original_leg, reversal_transfer_id, reversal_leg) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(original.transfer_id.as_uuid())
            .bind(i64::from(original.leg))
            .bind(key.transfer_id.as_uuid())
            .bind(i64::from(key.leg))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        }
        Ok(rules::posted_entry(id, entry, lines, now, reverses))
    }

    async fn reverse(&mut self, conn: &mut SqliteConnection, reversal: Reversal) -> Result<PostedEntry> {
        let now = self.clock.now();
        let original =
            rows::load_entry(conn, reversal.original).await?.ok_or(Error::EntryNotFound(reversal.original))?;
        let entry = reversal.to_entry(&original)?;
        if let Some(existing) = rows::load_entry(conn, entry.key()).await? {
            // The key is taken: a replay only if it reversed this very entry.
            if existing.reverses != Some(reversal.original) {
                return Err(Error::KeyReused(format!("entry key {}", entry.key())));
            }
            return replay_of(&entry, existing);
        }
        let reversed = sqlx::query("SELECT 1 FROM reversals WHERE original_transfer_id = ?1 AND original_leg = ?2")
            .bind(reversal.original.transfer_id.as_uuid())
            .bind(i64::from(reversal.original.leg))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        if reversed.is_some() {
            return Err(Error::AlreadyReversed(reversal.original));
        }
        self.post_entry(conn, entry, None, Some(reversal.original), now).await
    }

    async fn hold(&mut self, conn: &mut SqliteConnection, new: NewHold) -> Result<Hold> {
        let now = self.clock.now();
        if let Some(existing) = rows::load_hold(conn, new.id).await? {
            return if existing.matches(&new) {
                Ok(existing.as_of(now))
            } else {
                Err(Error::KeyReused(format!("hold id {}", new.id)))
            };
        }
        new.validate(now)?;
        self.release_expired(conn, new.account_id, now).await?;
        let cached = self.load(conn, new.account_id).await?.ok_or(Error::AccountNotFound(new.account_id))?;
        let held = rules::plan_hold(&cached.state, new.money)?;
        sqlx::query(
            "INSERT INTO holds (id, account_id, amount, currency, status, created_at, expires_at, reference) \
             VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7)",
        )
        .bind(new.id.as_uuid())
        .bind(new.account_id.as_uuid())
        .bind(new.money.value().to_string())
        .bind(new.money.currency.code())
        .bind(nanos(now)?)
        .bind(nanos(new.expires_at)?)
        .bind(&new.reference)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE accounts SET held = ?1 WHERE id = ?2")
            .bind(held.to_string())
            .bind(new.account_id.as_uuid())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        cached.state.held = held;
        cached.active_holds.insert((new.expires_at, new.id), new.money.value());
        Ok(Hold::from_new(new, now))
    }

    async fn post_hold(&mut self, conn: &mut SqliteConnection, request: PostHold) -> Result<PostedEntry> {
        let now = self.clock.now();
        let hold =
            rows::load_hold(conn, request.hold_id).await?.ok_or(Error::HoldNotFound(request.hold_id))?.as_of(now);
        let money = request.amount_from(&hold)?;
        let entry = NewEntry::transfer(request.key, hold.account_id, request.credit_account, money, request.reference)?;
        if let Some(existing) = rows::load_entry(conn, entry.key()).await? {
            // The key is taken: a replay only if it posted this very hold.
            if hold.posted_entry != Some(entry.key()) {
                return Err(Error::KeyReused(format!("entry key {}", entry.key())));
            }
            return replay_of(&entry, existing);
        }
        if hold.status != HoldStatus::Active {
            return Err(Error::HoldNotActive { hold: hold.id, status: hold.status });
        }
        let release = Release { account_id: hold.account_id, amount: hold.money.value() };
        self.post_entry(conn, entry, Some((hold.id, release)), None, now).await
    }

    async fn void_hold(&mut self, conn: &mut SqliteConnection, id: HoldId) -> Result<Hold> {
        let now = self.clock.now();
        let hold = rows::load_hold(conn, id).await?.ok_or(Error::HoldNotFound(id))?;
        self.release_expired(conn, hold.account_id, now).await?;
        let hold = hold.as_of(now);
        match hold.status {
            HoldStatus::Active => {
                let cached = self.load(conn, hold.account_id).await?.ok_or(Error::AccountNotFound(hold.account_id))?;
                let held = checked_sub(cached.state.held, hold.money.value())?;
                sqlx::query("UPDATE holds SET status = 'voided' WHERE id = ?1")
                    .bind(id.as_uuid())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                sqlx::query("UPDATE accounts SET held = ?1 WHERE id = ?2")
                    .bind(held.to_string())
                    .bind(hold.account_id.as_uuid())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                cached.state.held = held;
                cached.active_holds.remove(&(hold.expires_at, id));
                Ok(Hold { status: HoldStatus::Voided, ..hold })
            }
            HoldStatus::Voided | HoldStatus::Expired => Ok(hold),
            HoldStatus::Posted => Err(Error::HoldNotActive { hold: id, status: HoldStatus::Posted }),
        }
    }

    async fn expire_holds(&mut self, conn: &mut SqliteConnection) -> Result<u64> {
        let now = self.clock.now();
        let accounts =
            sqlx::query("SELECT DISTINCT account_id FROM holds WHERE status = 'active' AND expires_at <= ?1")
                .bind(nanos(now)?)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
        let mut expired = 0;
        for row in accounts {
            let account = rows::uuid_to(row.try_get(0).map_err(db_err)?, AccountId::from_uuid)?;
            expired += self.release_expired(conn, account, now).await?;
        }
        Ok(expired)
    }
}

/// A repeat of `entry` under its used key: the first result if it is the same request.
fn replay_of(entry: &NewEntry, posted: PostedEntry) -> Result<PostedEntry> {
    if entry.is_same_as(&posted) { Ok(posted) } else { Err(Error::KeyReused(format!("entry key {}", entry.key()))) }
}

/// A failure that leaves the transaction in an unknown state: the whole batch must roll back.
fn broken_batch(err: &sqlx::Error) -> Error {
    Error::Storage { message: format!("{BROKEN_BATCH}: {err}"), retryable: true }
}

fn job_panicked() -> Error {
    Error::Storage { message: "a writer job panicked; its writes were rolled back".into(), retryable: false }
}

/// Marks errors after which the batch cannot continue.
const BROKEN_BATCH: &str = "ledger transaction broken";

/// The one query that records an entry of `lines` lines: a savepoint, the entry, its lines, the
/// new state of each line's account, and the release of the savepoint. Parameters are
/// anonymous (`?`): sqlx binds them in order across the statements of a multi-statement query
/// (numbered `?NNN` parameters are not reliable there), so values used twice are bound twice:
/// the 8 entry columns; per line its 7 columns (row id first); per line the account's posted
/// balance, held amount, sequence and id.
fn entry_sql(lines: usize) -> String {
    let mut sql = String::with_capacity(256 + lines * 160);
    sql.push_str(
        "SAVEPOINT post; INSERT INTO entries (id, entry_id, transfer_id, leg, reference, posted_at, \
         reverses_transfer_id, reverses_leg) VALUES (?, ?, ?, ?, ?, ?, ?, ?); INSERT INTO entry_lines \
         (entry, line_no, account_id, side, amount, currency, sequence, balance_after) VALUES ",
    );
    for i in 0..lines {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?, {i}, ?, ?, ?, ?, ?, ?)"));
    }
    sql.push(';');
    for _ in 0..lines {
        sql.push_str(" UPDATE accounts SET posted = ?, held = ?, sequence = ? WHERE id = ?;");
    }
    sql.push_str(" RELEASE post;");
    sql
}
