//! [`LedgerJob`]: the ledger's money-moving operations (post, post_batch, reverse, hold,
//! post_hold, void_hold) as a group-commit job of [`Batcher`](crate::postgres::batch::Batcher):
//! one transaction carries the operations of many callers.
//!
//! One batch, in its transaction (READ COMMITTED, so each statement sees what committed before it):
//! 1. **Find the accounts** every operation touches: its lines; for a reversal, the original's
//!    lines, and for `post_hold` and `void_hold`, the hold's account (entries are immutable and a
//!    hold never changes account, so reading them before the locks is safe).
//! 2. **Lock them in one statement**, in id order ([`super::locks`]: how every writer locks, so
//!    none deadlocks). A hot account is locked once per batch, not once per operation.
//! 3. **Release the lapsed holds** of the locked accounts (one `UPDATE … RETURNING`), then read,
//!    *after* the locks, what the operations depend on: the entries already posted under their
//!    keys (replays), the originals already reversed, the holds they name.
//! 4. **Apply the rules** of [`bank_core::ledger::rules`] for each operation in order, on the
//!    in-memory account states: a refused operation answers its error and records nothing; an
//!    accepted one changes the states the next operations see.
//! 5. **Write all effects** with a few multi-row statements (`INSERT … SELECT FROM UNNEST`, one
//!    `UPDATE … FROM UNNEST` for the balances); the batcher commits once and answers everyone.
//!
//! Keys are unique in the database, so a process racing this one with the same entry key or hold
//! id for *other* accounts (a key reused for a different request: the only case where two
//! writers of one key do not share an account lock) makes a write fail with a unique violation.
//! Entries are inserted in key order and holds in id order, each in one statement, entries first,
//! so such waits cannot form a cycle either. The batch then fails as a whole (non-retryable) and
//! the batcher runs its operations again one per transaction, where the key lookup after the locks
//! finds the other process's row: a replay or `KeyReused`, and the innocent operations succeed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bank_core::account::AccountState;
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, EntryId, HoldId};
use bank_core::ledger::rules::{self, PostHoldPlan, Release};
use bank_core::ledger::{EntryKey, Hold, HoldStatus, NewEntry, NewHold, PostHold, PostedEntry, Reversal};
use bank_core::money::checked_sub;
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};
use sqlx::PgConnection;
use uuid::Uuid;

use super::locks::{lock_accounts, release_lapsed};
use super::rows::{self, get, nanos};
use crate::postgres::batch::BatchJob;
use crate::postgres::{db_err, is_unique_violation};

/// One caller's operation.
#[derive(Debug)]
pub(super) enum Op {
    Post(NewEntry),
    /// Entries posted in order, each with its own result.
    PostBatch(Vec<NewEntry>),
    Reverse(Reversal),
    Hold(NewHold),
    PostHold(PostHold),
    VoidHold(HoldId),
}

/// Its answer.
#[derive(Debug)]
pub(super) enum Out {
    Entry(Result<PostedEntry>),
    Entries(Vec<Result<PostedEntry>>),
    Hold(Result<Hold>),
    /// The batch failed as a whole (nothing of it was committed).
    Failed(Error),
}

/// Batches and operations the job ran, for tuning and the bench.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) batches: AtomicU64,
    pub(super) ops: AtomicU64,
    pub(super) largest: AtomicU64,
}

/// The ledger's group-commit job.
#[derive(Debug)]
pub(super) struct LedgerJob {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) counters: Arc<Counters>,
}

#[async_trait]
impl BatchJob for LedgerJob {
    type Op = Op;
    type Out = Out;

    async fn run(&self, conn: &mut PgConnection, ops: &[Op]) -> Result<Vec<Out>> {
        let size = u64::try_from(ops.len()).unwrap_or(u64::MAX);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.ops.fetch_add(size, Ordering::Relaxed);
        self.counters.largest.fetch_max(size, Ordering::Relaxed);

        let mut plan = Plan::prepare(conn, ops, self.clock.as_ref()).await?;
        let outs = ops.iter().map(|op| plan.apply(op)).collect();
        plan.write(conn).await.map_err(|err| match err {
            // Another process wrote one of the keys first. Alone, the operation's retry finds
            // it (a replay); in a batch, the batcher reruns the operations one by one.
            Write::Unique(err) => Error::Storage {
                message: format!("postgresql: a concurrent request wrote the same key: {err}"),
                retryable: ops.len() == 1,
            },
            Write::Other(err) => err,
        })?;
        Ok(outs)
    }

    fn failed(&self, error: &Error) -> Out {
        Out::Failed(copy_error(error))
    }
}

/// A failure handed to every operation of a failed batch (`Error` is not `Clone`).
pub(super) fn copy_error(error: &Error) -> Error {
    match error {
        Error::Storage { message, retryable } => Error::Storage { message: message.clone(), retryable: *retryable },
        other => Error::Storage { message: other.to_string(), retryable: other.is_retryable() },
    }
}

/// A failed write: a unique violation (a concurrent writer of the same key) or anything else.
enum Write {
    Unique(sqlx::Error),
    Other(Error),
}

impl From<sqlx::Error> for Write {
    fn from(err: sqlx::Error) -> Self {
        if is_unique_violation(&err) { Write::Unique(err) } else { Write::Other(db_err(err)) }
    }
}

impl From<Error> for Write {
    fn from(err: Error) -> Self {
        Write::Other(err)
    }
}

/// A batch: the locked accounts' states, what the operations depend on, and what they decided.
struct Plan {
    now: DateTime<Utc>,
    states: FxHashMap<AccountId, AccountState>,
    /// Accounts whose balance, held amount or sequence changed, in id order.
    changed: BTreeSet<AccountId>,
    /// Entries under the operations' keys: stored before the batch, or posted by it.
    entries: FxHashMap<EntryKey, PostedEntry>,
    /// Entries posted by the batch, to insert.
    posted: Vec<EntryKey>,
    /// Originals reversed (before or by the batch).
    reversed: FxHashSet<EntryKey>,
    /// Holds the operations name, as of `now` (stored, or placed by the batch).
    holds: FxHashMap<HoldId, Hold>,
    /// Holds placed by the batch, to insert (with their final status).
    placed: Vec<HoldId>,
    /// Stored holds the batch posted or voided, to update.
    ended: Vec<HoldId>,
}

impl Plan {
    /// Steps 1 to 3 of the module doc: locks the touched accounts and reads what the operations
    /// depend on.
    async fn prepare(conn: &mut PgConnection, ops: &[Op], clock: &dyn Clock) -> Result<Plan> {
        // 1. What each operation touches. Originals and holds read now only tell which accounts
        // to lock (they are read again below, after the locks, where it matters).
        let original_keys: Vec<EntryKey> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Reverse(r) => Some(r.original),
                _ => None,
            })
            .collect();
        let originals = rows::load_entries(&mut *conn, original_keys.iter().copied()).await?;
        let named_holds: Vec<Uuid> = ops
            .iter()
            .filter_map(|op| match op {
                Op::PostHold(p) => Some(*p.hold_id.as_uuid()),
                Op::VoidHold(id) => Some(*id.as_uuid()),
                Op::Hold(new) => Some(*new.id.as_uuid()),
                _ => None,
            })
            .collect();
        let hold_accounts = hold_accounts(&mut *conn, ops).await?;
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Post(entry) => touched.extend(entry.lines().iter().map(|l| *l.account_id.as_uuid())),
                Op::PostBatch(entries) => {
                    touched.extend(entries.iter().flat_map(|e| e.lines().iter().map(|l| *l.account_id.as_uuid())));
                }
                Op::Reverse(r) => {
                    if let Some(original) = originals.get(&r.original) {
                        touched.extend(original.lines.iter().map(|l| *l.account_id.as_uuid()));
                    }
                }
                Op::Hold(new) => {
                    touched.insert(*new.account_id.as_uuid());
                }
                Op::PostHold(p) => {
                    touched.insert(*p.credit_account.as_uuid());
                }
                Op::VoidHold(_) => {}
            }
        }
        touched.extend(hold_accounts);
        let touched: Vec<Uuid> = touched.into_iter().collect();

        // 2. The locks, in id order, in one statement.
        let states = lock_accounts(&mut *conn, &touched).await?;
        // The time of the whole batch, read once its accounts are ours.
        let now = clock.now();
        let mut plan = Plan {
            now,
            states,
            changed: BTreeSet::new(),
            entries: FxHashMap::default(),
            posted: Vec::new(),
            reversed: FxHashSet::default(),
            holds: FxHashMap::default(),
            placed: Vec::new(),
            ended: Vec::new(),
        };

        // 3. Lapsed holds stop reserving funds; then what the operations depend on.
        plan.changed.extend(release_lapsed(&mut *conn, &mut plan.states, now).await?);
        let keys = ops.iter().flat_map(|op| -> Vec<EntryKey> {
            match op {
                Op::Post(entry) => vec![entry.key()],
                Op::PostBatch(entries) => entries.iter().map(NewEntry::key).collect(),
                Op::Reverse(r) => vec![r.key],
                Op::PostHold(p) => vec![p.key],
                Op::Hold(_) | Op::VoidHold(_) => Vec::new(),
            }
        });
        plan.entries = rows::load_entries(&mut *conn, keys).await?;
        // Entries never change: the originals read before the locks stand.
        plan.entries.extend(originals);
        plan.reversed = rows::reversed(&mut *conn, &original_keys).await?.into_iter().collect();
        plan.holds =
            rows::load_holds(&mut *conn, &named_holds).await?.into_iter().map(|(id, h)| (id, h.as_of(now))).collect();
        Ok(plan)
    }

    /// Step 4: one operation on the batch's states.
    fn apply(&mut self, op: &Op) -> Out {
        match op {
            Op::Post(entry) => Out::Entry(self.post(entry.clone(), None, None)),
            Op::PostBatch(entries) => {
                Out::Entries(entries.iter().map(|entry| self.post(entry.clone(), None, None)).collect())
            }
            Op::Reverse(reversal) => Out::Entry(self.reverse(reversal)),
            Op::Hold(new) => Out::Hold(self.hold(new)),
            Op::PostHold(request) => Out::Entry(self.post_hold(request)),
            Op::VoidHold(id) => Out::Hold(self.void_hold(*id)),
        }
    }

    /// Checks and records `entry` (releasing a hold, or reversing an entry); on error nothing
    /// changed.
    fn post(
        &mut self,
        entry: NewEntry,
        release: Option<(HoldId, Release)>,
        reverses: Option<EntryKey>,
    ) -> Result<PostedEntry> {
        let key = entry.key();
        if let Some(stored) = self.entries.get(&key) {
            return replay_of(&entry, stored);
        }
        let release_amount = release.map(|(_, r)| r);
        let states = &self.states;
        let lines = rules::plan_entry(&entry, release_amount, |id| states.get(&id))?;
        // Applied to copies first, so a failure half-way leaves the batch's states as they were.
        let mut after = Vec::with_capacity(lines.len());
        for line in &lines {
            let mut state = states.get(&line.account_id).ok_or(Error::AccountNotFound(line.account_id))?.clone();
            rules::apply_line(&mut state, line, release_amount)?;
            after.push(state);
        }
        for state in after {
            self.changed.insert(state.account.id);
            self.states.insert(state.account.id, state);
        }
        if let Some((hold_id, _)) = release
            && let Some(hold) = self.holds.get_mut(&hold_id)
        {
            hold.status = HoldStatus::Posted;
            hold.posted_entry = Some(key);
            self.ended.push(hold_id);
        }
        if let Some(original) = reverses {
            self.reversed.insert(original);
        }
        let posted = rules::posted_entry(EntryId::at(self.now), entry, lines, self.now, reverses);
        self.entries.insert(key, posted.clone());
        self.posted.push(key);
        Ok(posted)
    }

    fn reverse(&mut self, reversal: &Reversal) -> Result<PostedEntry> {
        let original = self.entries.get(&reversal.original).ok_or(Error::EntryNotFound(reversal.original))?;
        let entry = reversal.to_entry(original)?;
        if let Some(stored) = self.entries.get(&entry.key()) {
            // The key is taken: a replay only if it reversed this very entry.
            if stored.reverses != Some(reversal.original) {
                return Err(Error::KeyReused(format!("entry key {}", entry.key())));
            }
            return replay_of(&entry, stored);
        }
        if self.reversed.contains(&reversal.original) {
            return Err(Error::AlreadyReversed(reversal.original));
        }
        self.post(entry, None, Some(reversal.original))
    }

    fn hold(&mut self, new: &NewHold) -> Result<Hold> {
        if let Some(stored) = self.holds.get(&new.id) {
            return if stored.matches(new) {
                Ok(stored.clone())
            } else {
                Err(Error::KeyReused(format!("hold id {}", new.id)))
            };
        }
        new.validate(self.now)?;
        let state = self.states.get_mut(&new.account_id).ok_or(Error::AccountNotFound(new.account_id))?;
        state.held = rules::plan_hold(state, new.money)?;
        self.changed.insert(new.account_id);
        let hold = Hold::from_new(new.clone(), self.now);
        self.holds.insert(hold.id, hold.clone());
        self.placed.push(hold.id);
        Ok(hold)
    }

    /// A hold the batch may change: one whose account it locked. (A hold placed by another
    /// process after this batch looked for it, on an account it did not lock, did not exist yet
    /// as far as this batch is concerned.)
    fn locked_hold(&self, id: HoldId) -> Result<&Hold> {
        self.holds.get(&id).filter(|hold| self.states.contains_key(&hold.account_id)).ok_or(Error::HoldNotFound(id))
    }

    fn post_hold(&mut self, request: &PostHold) -> Result<PostedEntry> {
        let hold = self.locked_hold(request.hold_id)?;
        let key_used = self.entries.contains_key(&request.key);
        match rules::plan_post_hold(hold, request.clone(), key_used)? {
            PostHoldPlan::Replay(entry) => match self.entries.get(&entry.key()) {
                Some(stored) => replay_of(&entry, stored),
                None => Err(Error::EntryNotFound(entry.key())),
            },
            PostHoldPlan::Post(entry, release) => {
                let hold_id = hold.id;
                self.post(entry, Some((hold_id, release)), None)
            }
        }
    }

    fn void_hold(&mut self, id: HoldId) -> Result<Hold> {
        self.locked_hold(id)?;
        let hold = self.holds.get_mut(&id).ok_or(Error::HoldNotFound(id))?;
        if !rules::plan_void_hold(hold)? {
            return Ok(hold.clone());
        }
        let state = self.states.get_mut(&hold.account_id).ok_or(Error::AccountNotFound(hold.account_id))?;
        state.held = checked_sub(state.held, hold.money.value())?;
        self.changed.insert(hold.account_id);
        hold.status = HoldStatus::Voided;
        self.ended.push(id);
        Ok(hold.clone())
    }

    /// Step 5: writes what the batch decided, in a fixed order (entries, lines, new holds, ended
    /// holds, balances), each a single statement.
    async fn write(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        self.insert_entries(conn).await?;
        self.insert_holds(conn).await?;
        self.end_holds(conn).await?;
        self.update_accounts(conn).await?;
        Ok(())
    }

    async fn insert_entries(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        if self.posted.is_empty() {
            return Ok(());
        }
        // In key order: see the module doc.
        let mut keys = self.posted.clone();
        keys.sort_unstable();
        let entries: Vec<&PostedEntry> = keys.iter().filter_map(|k| self.entries.get(k)).collect();
        let posted_at = nanos(self.now)?;
        let mut e = EntryColumns::default();
        let mut l = LineColumns::default();
        for entry in &entries {
            // At most ENTRY_LINES_MAX (16) lines.
            let line_count = i16::try_from(entry.lines.len())
                .map_err(|_| Error::InvalidInput(format!("an entry of {} lines", entry.lines.len())))?;
            e.transfer_ids.push(*entry.key.transfer_id.as_uuid());
            e.legs.push(i32::from(entry.key.leg));
            e.entry_ids.push(*entry.id.as_uuid());
            e.line_counts.push(line_count);
            e.references.push(entry.reference.as_str());
            e.reverses_transfer_ids.push(entry.reverses.map(|k| *k.transfer_id.as_uuid()));
            e.reverses_legs.push(entry.reverses.map(|k| i32::from(k.leg)));
            for (line_no, line) in (0i16..).zip(&entry.lines) {
                l.transfer_ids.push(*entry.key.transfer_id.as_uuid());
                l.legs.push(i32::from(entry.key.leg));
                l.line_nos.push(line_no);
                l.line_counts.push(line_count);
                l.account_ids.push(*line.account_id.as_uuid());
                l.sides.push(rows::side_str(line.side));
                l.amounts.push(line.money.value());
                l.currencies.push(line.money.currency.code());
                l.sequences.push(rows::sql_sequence(line.sequence));
                l.balances.push(line.balance_after);
            }
        }
        sqlx::query(
            "INSERT INTO entries (transfer_id, leg, entry_id, line_count, reference, posted_at_ns, \
                                  reverses_transfer_id, reverses_leg) \
             SELECT t, l, e, n, r, $6, rt, rl \
               FROM UNNEST($1::uuid[], $2::int4[], $3::uuid[], $4::int2[], $5::text[], $7::uuid[], $8::int4[]) \
                    AS u (t, l, e, n, r, rt, rl)",
        )
        .bind(&e.transfer_ids)
        .bind(&e.legs)
        .bind(&e.entry_ids)
        .bind(&e.line_counts)
        .bind(&e.references)
        .bind(posted_at)
        .bind(&e.reverses_transfer_ids)
        .bind(&e.reverses_legs)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO entry_lines (transfer_id, leg, line_no, line_count, account_id, side, amount, currency, \
                                      sequence, balance_after) \
             SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int2[], $4::int2[], $5::uuid[], $6::text[], \
                                  $7::numeric[], $8::text[], $9::int8[], $10::numeric[])",
        )
        .bind(&l.transfer_ids)
        .bind(&l.legs)
        .bind(&l.line_nos)
        .bind(&l.line_counts)
        .bind(&l.account_ids)
        .bind(&l.sides)
        .bind(&l.amounts)
        .bind(&l.currencies)
        .bind(&l.sequences)
        .bind(&l.balances)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn insert_holds(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        if self.placed.is_empty() {
            return Ok(());
        }
        // In id order: see the module doc.
        let mut ids = self.placed.clone();
        ids.sort_unstable();
        let mut h = HoldColumns::default();
        for hold in ids.iter().filter_map(|id| self.holds.get(id)) {
            h.ids.push(*hold.id.as_uuid());
            h.accounts.push(*hold.account_id.as_uuid());
            h.amounts.push(hold.money.value());
            h.currencies.push(hold.money.currency.code());
            h.statuses.push(rows::hold_status_str(hold.status));
            h.created.push(nanos(hold.created_at)?);
            h.expires.push(nanos(hold.expires_at)?);
            h.references.push(hold.reference.as_str());
            h.posted_transfer_ids.push(hold.posted_entry.map(|k| *k.transfer_id.as_uuid()));
            h.posted_legs.push(hold.posted_entry.map(|k| i32::from(k.leg)));
        }
        sqlx::query(
            "INSERT INTO holds (id, account_id, amount, currency, status, created_at_ns, expires_at_ns, reference, \
                                posted_transfer_id, posted_leg) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::numeric[], $4::text[], $5::text[], $6::int8[], \
                                  $7::int8[], $8::text[], $9::uuid[], $10::int4[])",
        )
        .bind(&h.ids)
        .bind(&h.accounts)
        .bind(&h.amounts)
        .bind(&h.currencies)
        .bind(&h.statuses)
        .bind(&h.created)
        .bind(&h.expires)
        .bind(&h.references)
        .bind(&h.posted_transfer_ids)
        .bind(&h.posted_legs)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Posted or voided stored holds (a hold placed by this batch is inserted as it ended).
    async fn end_holds(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        let placed: FxHashSet<HoldId> = self.placed.iter().copied().collect();
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut transfer_ids = Vec::new();
        let mut legs = Vec::new();
        for hold in self.ended.iter().filter(|id| !placed.contains(id)).filter_map(|id| self.holds.get(id)) {
            ids.push(*hold.id.as_uuid());
            statuses.push(rows::hold_status_str(hold.status));
            transfer_ids.push(hold.posted_entry.map(|k| *k.transfer_id.as_uuid()));
            legs.push(hold.posted_entry.map(|k| i32::from(k.leg)));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let updated = sqlx::query(
            "UPDATE holds h SET status = u.status, posted_transfer_id = u.t, posted_leg = u.l \
               FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int4[]) AS u (id, status, t, l) \
              WHERE h.id = u.id AND h.status = 'active'",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&transfer_ids)
        .bind(&legs)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated != u64::try_from(ids.len()).unwrap_or(u64::MAX) {
            // Every hold changes under its account's lock, which this batch holds: a hold that
            // is no longer active here means that rule was broken somewhere.
            return Err(Write::Other(Error::Storage {
                message: format!("postgresql: only {updated} of {} holds to end were still active", ids.len()),
                retryable: false,
            }));
        }
        Ok(())
    }

    async fn update_accounts(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(self.changed.len());
        let mut posted = Vec::with_capacity(self.changed.len());
        let mut held = Vec::with_capacity(self.changed.len());
        let mut sequences = Vec::with_capacity(self.changed.len());
        for state in self.changed.iter().filter_map(|id| self.states.get(id)) {
            ids.push(*state.account.id.as_uuid());
            posted.push(state.posted);
            held.push(state.held);
            sequences.push(rows::sql_sequence(state.sequence));
        }
        sqlx::query(
            "UPDATE accounts a SET posted = u.posted, held = u.held, sequence = u.sequence \
               FROM UNNEST($1::uuid[], $2::numeric[], $3::numeric[], $4::int8[]) AS u (id, posted, held, sequence) \
              WHERE a.id = u.id",
        )
        .bind(&ids)
        .bind(&posted)
        .bind(&held)
        .bind(&sequences)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// The accounts of the holds that `post_hold` and `void_hold` operations name (a hold never
/// changes account, so this read needs no lock).
async fn hold_accounts(conn: &mut PgConnection, ops: &[Op]) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = ops
        .iter()
        .filter_map(|op| match op {
            Op::PostHold(p) => Some(*p.hold_id.as_uuid()),
            Op::VoidHold(id) => Some(*id.as_uuid()),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query("SELECT DISTINCT account_id FROM holds WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(|row| get(row, "account_id")).collect()
}

/// A repeat of `entry` under its used key: the first result if it is the same request.
fn replay_of(entry: &NewEntry, stored: &PostedEntry) -> Result<PostedEntry> {
    if entry.is_same_as(stored) {
        Ok(stored.clone())
    } else {
        Err(Error::KeyReused(format!("entry key {}", entry.key())))
    }
}

#[derive(Default)]
struct EntryColumns<'a> {
    transfer_ids: Vec<Uuid>,
    legs: Vec<i32>,
    entry_ids: Vec<Uuid>,
    line_counts: Vec<i16>,
    references: Vec<&'a str>,
    reverses_transfer_ids: Vec<Option<Uuid>>,
    reverses_legs: Vec<Option<i32>>,
}

#[derive(Default)]
struct LineColumns {
    transfer_ids: Vec<Uuid>,
    legs: Vec<i32>,
    line_nos: Vec<i16>,
    line_counts: Vec<i16>,
    account_ids: Vec<Uuid>,
    sides: Vec<&'static str>,
    amounts: Vec<Decimal>,
    currencies: Vec<&'static str>,
    sequences: Vec<i64>,
    balances: Vec<Decimal>,
}

#[derive(Default)]
struct HoldColumns<'a> {
    ids: Vec<Uuid>,
    accounts: Vec<Uuid>,
    amounts: Vec<Decimal>,
    currencies: Vec<&'static str>,
    statuses: Vec<&'static str>,
    created: Vec<i64>,
    expires: Vec<i64>,
    references: Vec<&'a str>,
    posted_transfer_ids: Vec<Option<Uuid>>,
    posted_legs: Vec<Option<i32>>,
}
