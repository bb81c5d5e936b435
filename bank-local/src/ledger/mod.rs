//! [`SqliteLedger`]: the durable [`LedgerStore`], one SQLite file, group commit.
//!
//! # Design
//!
//! - **One writer thread** owns the only writing connection (shared with the database's other
//!   stores through [`WriterHandle`]: every write operation is a job of its batches, see
//!   [`crate::db::writer`]), with the ledger's cache of account states kept there as its
//!   `WriterState` (`state.rs`). Callers send a job over a bounded channel
//!   ([`WRITE_QUEUE_CAPACITY`]) and wait on a oneshot reply. The thread takes every job waiting
//!   (up to [`crate::db::writer::BATCH_JOBS_MAX`]), runs them in one `BEGIN IMMEDIATE`
//!   transaction — each in its own `SAVEPOINT`, so a refused one rolls back alone —, commits
//!   **once**, and only then answers them all. Under load one fsync (see
//!   [`crate::db`]: `synchronous=FULL`) thus serves hundreds of postings: group commit.
//! - A posting reads no row: the rules decide on the cached states, then a few prepared
//!   statements (run in place on the writer thread) insert the entry and its lines and update
//!   the account rows, inside the posting's savepoint.
//! - **Every money rule comes from [`bank_core::ledger::rules`]**; this module only stores what
//!   they decide. The writer keeps each account's [`AccountState`](bank_core::account::AccountState)
//!   (and its active holds) in memory, loaded on first use, so planning a posting reads no row.
//! - **Reads** (`account`, `accounts_of`, `balance`, `history`, `entry`, `get_hold`,
//!   `trial_balance`) run on read-only connections ([`LocalDb::read`]). The writer answers only after COMMIT and WAL readers
//!   see every committed transaction, so a caller always reads its own writes. `balance` and
//!   `get_hold` discount holds past their expiry in the same statement, exactly as if they had
//!   been released (which the writer does lazily, on the account's next use, or in
//!   `expire_holds`).
//! - Entries, lines and reversals are append-only in the schema too: triggers abort any UPDATE or
//!   DELETE.
//!
//! # Why it is safe
//!
//! - *Concurrency*: all changes run one at a time in the single writer, so calls are serializable
//!   by construction, and the cache cannot diverge from the database: a failed command rolls back
//!   to its savepoint and evicts the accounts it touched; a failed COMMIT rolls the batch back,
//!   clears the cache, and answers every command of the batch with a retryable
//!   [`Error::Storage`] (retrying is safe: every write is idempotent on its key or id).
//! - *Crash*: a batch is one SQLite transaction, so it is on disk entirely or not at all. A crash
//!   loses only batches that had not committed — and no caller of those got an answer, so none of
//!   them believes its posting happened; a retry with the same key posts it once.

pub(crate) mod rows;
mod state;
pub(crate) mod views;

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::account::{Account, AccountStatus, Balance, NewAccount};
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, CustomerId, HoldId};
use bank_core::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, HoldMark, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal, Side,
};
use bank_core::money::{Currency, checked_add, checked_sub};
use bank_core::ports::{ACCOUNTS_PER_OWNER_MAX, LedgerStore};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use rust_decimal::Decimal;
use state::LedgerState;
use views::AccountViews;

use crate::db::LocalDb;
use crate::db::rows::sql_limit;
use crate::db::writer::{WriterHandle, exec, writer_gone};
use rows::{ACCOUNT_COLUMNS, db_err, nanos, sql_sequence};

pub use crate::db::writer::{WRITE_QUEUE_CAPACITY, WriterStats};

/// The ledger in SQLite. Cheap to share behind an `Arc`; dropping the last handle stops the
/// writer thread once it has answered every queued command.
#[derive(Debug)]
pub struct SqliteLedger {
    writer: WriterHandle,
    db: LocalDb,
    views: Arc<AccountViews>,
    clock: Arc<dyn Clock>,
}

impl SqliteLedger {
    /// A ledger over `db`, reading time from `clock`, writing through the database's one writer
    /// thread ([`WriterHandle::for_db`]: started here if no store of `db` runs it yet).
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        let writer = WriterHandle::for_db(db, clock);
        let clock = Arc::clone(writer.clock());
        SqliteLedger { writer, db: db.clone(), views: db.shared::<AccountViews>(), clock }
    }

    /// Batches and commands the writer has run (for every store sharing it).
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// The database's writer, for stores that share it.
    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// Runs one of the ledger's write operations in the writer thread, on its [`LedgerState`].
    async fn write<T, F>(&self, operation: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut LedgerState, &Connection) -> Result<T> + Send + 'static,
    {
        self.writer.run_with(move |conn, ledger: &mut LedgerState| operation(ledger, conn)).await
    }
}

#[async_trait]
impl LedgerStore for SqliteLedger {
    async fn open_account(&self, new: NewAccount) -> Result<Account> {
        new.validate()?;
        self.write(move |l, conn| l.open_account(conn, new)).await
    }

    async fn account(&self, id: AccountId) -> Result<Account> {
        if let Some(view) = self.views.get(id) {
            return Ok(view.account());
        }
        self.db.read(|conn| Ok(rows::load_account(conn, id)?.ok_or(Error::AccountNotFound(id))?.account))
    }

    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE owner = ?1 ORDER BY rowid LIMIT ?2");
        self.db.read(|conn| {
            rows::fetch_all(conn, &sql, params![owner.as_uuid(), ACCOUNTS_PER_OWNER_MAX as i64], |row| {
                Ok(rows::account_state(row)?.account)
            })
        })
    }

    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account> {
        self.write(move |l, conn| l.set_status(conn, id, status)).await
    }

    async fn post(&self, entry: NewEntry) -> Result<PostedEntry> {
        let mut results = self.post_batch(vec![entry]).await;
        results.pop().unwrap_or_else(|| Err(writer_gone()))
    }

    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        if entries.is_empty() {
            return Vec::new();
        }
        let count = entries.len();
        match self.write(move |l, conn| l.post_batch(conn, entries)).await {
            Ok(results) => results,
            // The whole job failed (storage, or the writer is gone): every entry fails with it.
            Err(err) => (0..count)
                .map(|_| Err(Error::Storage { message: err.to_string(), retryable: err.is_retryable() }))
                .collect(),
        }
    }

    async fn entry(&self, key: EntryKey) -> Result<PostedEntry> {
        self.db.read(|conn| rows::load_entry(conn, key)?.ok_or(Error::EntryNotFound(key)))
    }

    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry> {
        self.write(move |l, conn| l.reverse(conn, reversal)).await
    }

    async fn hold(&self, hold: NewHold) -> Result<Hold> {
        self.write(move |l, conn| l.hold(conn, hold)).await
    }

    async fn get_hold(&self, id: HoldId) -> Result<Hold> {
        let now = self.clock.now();
        self.db.read(|conn| Ok(rows::load_hold(conn, id)?.ok_or(Error::HoldNotFound(id))?.as_of(now)))
    }

    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry> {
        self.write(move |l, conn| l.post_hold(conn, request)).await
    }

    async fn void_hold(&self, id: HoldId) -> Result<Hold> {
        self.write(move |l, conn| l.void_hold(conn, id)).await
    }

    async fn expire_holds(&self) -> Result<u64> {
        self.write(|l, conn| l.expire_holds(conn)).await
    }

    async fn mark_hold(&self, id: HoldId) -> Result<()> {
        let at = nanos(self.clock.now())?;
        self.write(move |_, conn| {
            exec(
                conn,
                "INSERT INTO hold_marks (id, marked_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                params![id.as_uuid(), at],
            )
            .map(drop)
        })
        .await
    }

    async fn marked_holds(&self, after: Option<HoldId>, limit: usize) -> Result<Vec<HoldMark>> {
        let now = self.clock.now();
        let after = after.map_or(uuid::Uuid::nil(), |id| *id.as_uuid());
        self.db.read(|conn| {
            let marks = rows::fetch_all(
                conn,
                "SELECT id, marked_at FROM hold_marks WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![after, sql_limit(limit)],
                |row| {
                    let id = rows::uuid_to(rows::ROW.get(row, "id")?, HoldId::from_uuid)?;
                    Ok((id, rows::time(rows::ROW.get(row, "marked_at")?)))
                },
            )?;
            marks
                .into_iter()
                .map(|(id, marked_at)| {
                    Ok(HoldMark { id, marked_at, hold: rows::load_hold(conn, id)?.map(|hold| hold.as_of(now)) })
                })
                .collect()
        })
    }

    async fn unmark_holds(&self, ids: &[HoldId]) -> Result<()> {
        let ids = ids.to_vec();
        self.write(move |_, conn| {
            for id in ids {
                exec(conn, "DELETE FROM hold_marks WHERE id = ?1", params![id.as_uuid()])?;
            }
            Ok(())
        })
        .await
    }

    async fn balance(&self, id: AccountId) -> Result<Balance> {
        let now = self.clock.now();
        if let Some(view) = self.views.get(id) {
            return view.balance(now);
        }
        // One statement, so the account row and its lapsed holds are read from one snapshot.
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS}, (SELECT group_concat(amount, ' ') FROM holds \
             WHERE account_id = a.id AND status = 'active' AND expires_at <= ?2) AS lapsed \
             FROM accounts a WHERE id = ?1"
        );
        let at = nanos(now)?;
        let (mut state, lapsed) = self.db.read(|conn| {
            let mut statement = conn.prepare_cached(&sql).map_err(db_err)?;
            let mut rows = statement.query(params![id.as_uuid(), at]).map_err(db_err)?;
            let row = rows.next().map_err(db_err)?.ok_or(Error::AccountNotFound(id))?;
            let lapsed: Option<String> = rows::ROW.get(row, "lapsed")?;
            Ok((rows::account_state(row)?, lapsed))
        })?;
        for amount in lapsed.as_deref().unwrap_or_default().split_whitespace() {
            state.held = checked_sub(state.held, rows::decimal(amount)?)?;
        }
        state.balance()
    }

    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>> {
        let items: Vec<HistoryItem> = self.db.read(|conn| {
            let items = rows::fetch_all(
                conn,
                rows::HISTORY_PAGE,
                params![id.as_uuid(), sql_sequence(query.before_sequence()), i64::from(query.limit())],
                rows::history_item,
            )?;
            if items.is_empty() && rows::load_account(conn, id)?.is_none() {
                return Err(Error::AccountNotFound(id));
            }
            Ok(items)
        })?;
        let next_cursor = items.last().and_then(|last| query.next_cursor(items.len(), last.sequence));
        Ok(Page { items, next_cursor })
    }

    async fn balance_at(&self, id: AccountId, at: DateTime<Utc>) -> Result<Decimal> {
        // Amounts are exact decimal TEXT, so they are summed here, not by SQL (which would use
        // floating point); one snapshot reads the account and its lines.
        let at = nanos(at)?;
        let lines: Vec<(Side, Decimal)> = self.db.read(|conn| {
            if rows::load_account(conn, id)?.is_none() {
                return Err(Error::AccountNotFound(id));
            }
            rows::fetch_all(
                conn,
                "SELECT l.side, l.amount FROM entry_lines l JOIN entries e ON e.id = l.entry \
                 WHERE l.account_id = ?1 AND e.posted_at < ?2",
                params![id.as_uuid(), at],
                |row| Ok((rows::side_column(row)?, rows::decimal_column(row, "amount")?)),
            )
        })?;
        lines.into_iter().try_fold(Decimal::ZERO, |sum, (side, amount)| checked_add(sum, side.signed(amount)))
    }

    async fn accounts_after(&self, after: Option<AccountId>, limit: usize) -> Result<Vec<Account>> {
        bank_core::ports::check_accounts_page(limit)?;
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2");
        // A 16-byte blob of zeros sorts before every UUID (the nil id is never an account's).
        let after = after.map_or(uuid::Uuid::nil(), |id| *id.as_uuid());
        self.db.read(|conn| {
            rows::fetch_all(conn, &sql, params![after, sql_limit(limit)], |row| Ok(rows::account_state(row)?.account))
        })
    }

    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>> {
        let rows: Vec<(Currency, Decimal)> = self.db.read(|conn| {
            rows::fetch_all(conn, "SELECT currency, posted FROM accounts", [], |row| {
                Ok((rows::currency_column(row)?, rows::decimal_column(row, "posted")?))
            })
        })?;
        let mut totals: Vec<(Currency, Decimal)> = Vec::new();
        for (currency, posted) in rows {
            match totals.iter_mut().find(|(c, _)| *c == currency) {
                Some((_, sum)) => *sum = checked_add(*sum, posted)?,
                None => totals.push((currency, posted)),
            }
        }
        totals.sort_by_key(|(c, _)| *c);
        Ok(totals)
    }
}
