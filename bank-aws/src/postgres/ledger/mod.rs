//! [`PgLedger`]: the production [`LedgerStore`] on PostgreSQL (Aurora PostgreSQL), built for
//! many concurrent callers and several server processes on one database.
//!
//! This module owns the port's methods and the ledger's schema (migration `0002_ledger.sql`); it
//! applies the money rules of [`bank_core::ledger::rules`] and never re-derives one in SQL. The
//! database enforces the rules that must hold whatever code writes to it (append-only journal,
//! balanced entries, gap-free sequences, balances equal to their lines, no overdraft, unique entry
//! keys: see the migration), so a bug here fails a commit rather than moves money.
//!
//! - `batch`: the money-moving operations (post, post_batch, reverse, hold, post_hold,
//!   void_hold) are jobs of a group commit (the crate's `Batcher`): one transaction, one commit,
//!   carries the operations of many callers.
//! - `locks`: how every writer locks account rows (in id order, all before writing: no
//!   deadlock), and the release of lapsed holds that follows.
//! - `lifecycle`: opening accounts (the per-owner cap, atomically), status changes and the
//!   expiry sweep, each in a transaction of its own.
//! - `rows`: column encodings and the shared reads.
//!
//! Reads use the writer pool, so a caller always reads its own writes; `history` and
//! `accounts_of` may use the reader once it has replayed the writer's position
//! ([`PgDb::fresh_reader`]). Business time comes only from the injected [`Clock`]. Holds past
//! their expiry stop reserving funds at once: every write releases the lapsed holds of the
//! accounts it locks, and `balance` and `get_hold` discount them as of the clock's time.

mod batch;
mod lifecycle;
mod locks;
mod reads;
mod rows;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bank_core::account::{Account, AccountStatus, Balance, NewAccount};
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, CustomerId, HoldId};
use bank_core::ledger::{
    EntryKey, HistoryItem, HistoryQuery, Hold, HoldMark, NewEntry, NewHold, Page, PostHold, PostedEntry, Reversal,
};
use bank_core::money::{Currency, checked_sub};
use bank_core::ports::{ACCOUNTS_PER_OWNER_MAX, LedgerStore};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;
use uuid::Uuid;

use self::batch::{Counters, LedgerJob, Op, Out, copy_error};
use self::reads::AccountReads;
use self::rows::{ACCOUNT_COLUMNS, HOLD_COLUMNS, get, nanos};
use super::batch::{Batcher, READ_BATCH_MAX, READ_COMMITTERS};
use super::{PgDb, db_err};

/// Committer tasks per ledger: batches in flight at once. One: whatever queues while a batch runs
/// becomes the next batch, so under load batches are as large as they get (~half the waiting
/// callers). More committers split the callers into smaller batches that still queue on the same
/// rows (a hot account, or any of the hundreds of accounts a batch locks): measured with
/// `benches/ledger_postgres.rs` (256 callers, 1,000 accounts, 2 cores shared with PostgreSQL),
/// two committers were 0–30% slower than one (batches of ~75 instead of ~128; the hot source
/// lost most), four 30–50% slower. Several server processes each run their own.
pub const COMMITTERS_DEFAULT: usize = 1;

/// Most operations one batch (one transaction) carries: a bound on the locks and rows one
/// transaction holds, above what 256 concurrent callers fill (their batches averaged ~128).
pub const BATCH_OPS_MAX_DEFAULT: usize = 512;

/// How a [`PgLedger`] batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Committer tasks (each holds a writer connection while it runs a batch).
    pub committers: usize,
    /// Most operations per batch.
    pub batch_ops_max: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { committers: COMMITTERS_DEFAULT, batch_ops_max: BATCH_OPS_MAX_DEFAULT }
    }
}

/// What the group commit did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Transactions run (including operations rerun one by one after a failed batch).
    pub batches: u64,
    /// Operations they carried (a `post_batch` counts once).
    pub operations: u64,
    /// The largest batch.
    pub largest: u64,
}

/// The ledger on PostgreSQL. See the module doc.
#[derive(Debug)]
pub struct PgLedger {
    db: PgDb,
    clock: Arc<dyn Clock>,
    batcher: Batcher<LedgerJob>,
    reads: Batcher<AccountReads>,
    counters: Arc<Counters>,
}

impl PgLedger {
    /// A ledger on `db` reading time from `clock`, with [`LedgerConfig::default`]. Starts its
    /// committer tasks, so it must be called inside a tokio runtime; they stop when the ledger is
    /// dropped.
    pub fn new(db: &PgDb, clock: Arc<dyn Clock>) -> PgLedger {
        PgLedger::with_config(db, clock, LedgerConfig::default())
    }

    /// [`PgLedger::new`] with the batching of `config`.
    pub fn with_config(db: &PgDb, clock: Arc<dyn Clock>, config: LedgerConfig) -> PgLedger {
        let counters = Arc::new(Counters::default());
        let job = LedgerJob { clock: Arc::clone(&clock), counters: Arc::clone(&counters) };
        let batcher = Batcher::start(db.writer().clone(), job, config.committers, config.batch_ops_max);
        let reads = Batcher::start(db.writer().clone(), AccountReads, READ_COMMITTERS, READ_BATCH_MAX);
        PgLedger { db: db.clone(), clock, batcher, reads, counters }
    }

    /// Batches and operations so far.
    pub fn batch_stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            operations: self.counters.ops.load(Ordering::Relaxed),
            largest: self.counters.largest.load(Ordering::Relaxed),
        }
    }

    /// Accounts whose stored balances disagree with the journal: `posted` is not the sum of
    /// their lines, `sequence` not their number of lines (or last sequence), or `held` not the sum
    /// of their holds still marked active. Empty on a sound ledger (the database's own checks keep
    /// it so); at most [`AUDIT_ACCOUNTS_MAX`]. Scans the whole journal: for audits, not requests.
    pub async fn audit_balances(&self) -> Result<Vec<AccountId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT a.id FROM accounts a \
             CROSS JOIN LATERAL (SELECT coalesce(sum(CASE side WHEN 'credit' THEN amount ELSE -amount END), 0) \
                                        AS posted, count(*) AS lines, coalesce(max(sequence), 0) AS last \
                                   FROM entry_lines WHERE account_id = a.id) l \
             CROSS JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS held FROM holds \
                                  WHERE account_id = a.id AND status = 'active') h \
             WHERE a.posted <> l.posted OR a.sequence <> l.lines OR a.sequence <> l.last OR a.held <> h.held \
             ORDER BY a.id LIMIT $1",
        )
        .bind(AUDIT_ACCOUNTS_MAX)
        .fetch_all(self.db.writer())
        .await
        .map_err(db_err)?;
        ids.into_iter().map(|id| AccountId::from_uuid(id).map_err(rows::corrupt)).collect()
    }

    async fn call(&self, op: Op) -> Out {
        self.batcher.call(op).await
    }
}

/// Most accounts [`PgLedger::audit_balances`] lists.
pub const AUDIT_ACCOUNTS_MAX: i64 = 1_000;

/// An answer of the wrong kind: a bug in this module.
fn mismatched(out: &Out) -> Error {
    Error::Storage { message: format!("postgresql ledger: unexpected batch answer {out:?}"), retryable: false }
}

fn entry_out(out: Out) -> Result<PostedEntry> {
    match out {
        Out::Entry(result) => result,
        Out::Failed(err) => Err(err),
        other => Err(mismatched(&other)),
    }
}

fn hold_out(out: Out) -> Result<Hold> {
    match out {
        Out::Hold(result) => result,
        Out::Failed(err) => Err(err),
        other => Err(mismatched(&other)),
    }
}

#[async_trait]
impl LedgerStore for PgLedger {
    async fn open_account(&self, new: NewAccount) -> Result<Account> {
        new.validate()?;
        lifecycle::open_account(self.db.writer(), new, self.clock.now()).await
    }

    async fn account(&self, id: AccountId) -> Result<Account> {
        self.reads.call(id).await?.ok_or(Error::AccountNotFound(id))
    }

    async fn accounts_of(&self, owner: CustomerId) -> Result<Vec<Account>> {
        let pool = self.db.fresh_reader().await?;
        let found =
            sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE owner = $1 ORDER BY ord LIMIT $2"))
                .bind(owner.as_uuid())
                .bind(i64::try_from(ACCOUNTS_PER_OWNER_MAX).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
        found.iter().map(|row| Ok(rows::account_state(row)?.account)).collect()
    }

    async fn set_status(&self, id: AccountId, status: AccountStatus) -> Result<Account> {
        lifecycle::set_status(self.db.writer(), id, status, self.clock.now()).await
    }

    async fn post(&self, entry: NewEntry) -> Result<PostedEntry> {
        entry_out(self.call(Op::Post(entry)).await)
    }

    async fn post_batch(&self, entries: Vec<NewEntry>) -> Vec<Result<PostedEntry>> {
        if entries.is_empty() {
            return Vec::new();
        }
        let count = entries.len();
        match self.call(Op::PostBatch(entries)).await {
            Out::Entries(results) if results.len() == count => results,
            Out::Failed(err) => (0..count).map(|_| Err(copy_error(&err))).collect(),
            other => {
                let err = mismatched(&other);
                (0..count).map(|_| Err(copy_error(&err))).collect()
            }
        }
    }

    async fn entry(&self, key: EntryKey) -> Result<PostedEntry> {
        rows::load_entries(self.db.writer(), [key]).await?.remove(&key).ok_or(Error::EntryNotFound(key))
    }

    async fn reverse(&self, reversal: Reversal) -> Result<PostedEntry> {
        entry_out(self.call(Op::Reverse(reversal)).await)
    }

    async fn hold(&self, hold: NewHold) -> Result<Hold> {
        hold_out(self.call(Op::Hold(hold)).await)
    }

    async fn get_hold(&self, id: HoldId) -> Result<Hold> {
        let now = self.clock.now();
        let row = sqlx::query(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(self.db.writer())
            .await
            .map_err(db_err)?
            .ok_or(Error::HoldNotFound(id))?;
        Ok(rows::hold(&row)?.as_of(now))
    }

    async fn post_hold(&self, request: PostHold) -> Result<PostedEntry> {
        entry_out(self.call(Op::PostHold(request)).await)
    }

    async fn void_hold(&self, id: HoldId) -> Result<Hold> {
        hold_out(self.call(Op::VoidHold(id)).await)
    }

    async fn expire_holds(&self) -> Result<u64> {
        lifecycle::expire_holds(self.db.writer(), self.clock.now()).await
    }

    async fn mark_hold(&self, id: HoldId) -> Result<()> {
        sqlx::query("INSERT INTO hold_marks (id, marked_at_ns) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id.as_uuid())
            .bind(nanos(self.clock.now())?)
            .execute(self.db.writer())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn marked_holds(&self, after: Option<HoldId>, limit: usize) -> Result<Vec<HoldMark>> {
        let now = self.clock.now();
        let marks = sqlx::query("SELECT id, marked_at_ns FROM hold_marks WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.map_or(Uuid::nil(), |id| *id.as_uuid()))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db.writer())
            .await
            .map_err(db_err)?;
        let ids = marks.iter().map(|row| get(row, "id")).collect::<Result<Vec<Uuid>>>()?;
        let mut holds = rows::load_holds(self.db.writer(), &ids).await?;
        marks
            .iter()
            .zip(ids)
            .map(|(row, id)| {
                let id = HoldId::from_uuid(id)?;
                let hold = holds.remove(&id).map(|hold| hold.as_of(now));
                Ok(HoldMark { id, marked_at: rows::time(get(row, "marked_at_ns")?), hold })
            })
            .collect()
    }

    async fn unmark_holds(&self, ids: &[HoldId]) -> Result<()> {
        let ids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        sqlx::query("DELETE FROM hold_marks WHERE id = ANY($1)")
            .bind(&ids)
            .execute(self.db.writer())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn balance(&self, id: AccountId) -> Result<Balance> {
        let now = self.clock.now();
        // One statement, so the account row and its lapsed holds are read from one snapshot.
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, (SELECT coalesce(sum(amount), 0) FROM holds h \
              WHERE h.account_id = a.id AND h.status = 'active' AND h.expires_at_ns <= $2) AS lapsed \
             FROM accounts a WHERE a.id = $1"
        ))
        .bind(id.as_uuid())
        .bind(nanos(now)?)
        .fetch_optional(self.db.writer())
        .await
        .map_err(db_err)?
        .ok_or(Error::AccountNotFound(id))?;
        let mut state = rows::account_state(&row)?;
        state.held = checked_sub(state.held, get(&row, "lapsed")?)?;
        state.balance()
    }

    async fn history(&self, id: AccountId, query: HistoryQuery) -> Result<Page<HistoryItem>> {
        let pool = self.db.fresh_reader().await?;
        let found = sqlx::query(
            "SELECT l.sequence, l.side, l.amount, l.currency, l.balance_after, e.entry_id, e.transfer_id, e.leg, \
                    e.reference, e.posted_at_ns \
               FROM entry_lines l JOIN entries e ON e.transfer_id = l.transfer_id AND e.leg = l.leg \
              WHERE l.account_id = $1 AND l.sequence < $2 \
              ORDER BY l.sequence DESC LIMIT $3",
        )
        .bind(id.as_uuid())
        .bind(rows::sql_sequence(query.before_sequence()))
        .bind(i64::from(query.limit()))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        let items = found.iter().map(rows::history_item).collect::<Result<Vec<_>>>()?;
        if items.is_empty() && rows::load_account(pool, id).await?.is_none() {
            return Err(Error::AccountNotFound(id));
        }
        let next_cursor = items.last().and_then(|last| query.next_cursor(items.len(), last.sequence));
        Ok(Page { items, next_cursor })
    }

    async fn balance_at(&self, id: AccountId, at: DateTime<Utc>) -> Result<Decimal> {
        // NUMERIC sums exactly; one statement reads the account and its lines in one snapshot.
        let row = sqlx::query(
            "SELECT (SELECT coalesce(sum(CASE l.side WHEN 'credit' THEN l.amount ELSE -l.amount END), 0) \
                       FROM entry_lines l JOIN entries e ON e.transfer_id = l.transfer_id AND e.leg = l.leg \
                      WHERE l.account_id = a.id AND e.posted_at_ns < $2) AS balance \
               FROM accounts a WHERE a.id = $1",
        )
        .bind(id.as_uuid())
        .bind(nanos(at)?)
        .fetch_optional(self.db.fresh_reader().await?)
        .await
        .map_err(db_err)?;
        get(&row.ok_or(Error::AccountNotFound(id))?, "balance")
    }

    async fn accounts_after(&self, after: Option<AccountId>, limit: usize) -> Result<Vec<Account>> {
        bank_core::ports::check_accounts_page(limit)?;
        // The nil id sorts before every UUID and is never an account's.
        let after = after.map_or(Uuid::nil(), |id| *id.as_uuid());
        let found = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2"))
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db.fresh_reader().await?)
            .await
            .map_err(db_err)?;
        found.iter().map(|row| Ok(rows::account_state(row)?.account)).collect()
    }

    async fn trial_balance(&self) -> Result<Vec<(Currency, Decimal)>> {
        let found = sqlx::query("SELECT currency, sum(posted) AS total FROM accounts GROUP BY currency")
            .fetch_all(self.db.writer())
            .await
            .map_err(db_err)?;
        let mut totals = Vec::with_capacity(found.len());
        for row in &found {
            let code: &str = get(row, "currency")?;
            let currency = Currency::from_str(code).map_err(|_| rows::corrupt(format!("currency {code:?}")))?;
            totals.push((currency, get(row, "total")?));
        }
        totals.sort_by_key(|(c, _)| *c);
        Ok(totals)
    }
}
