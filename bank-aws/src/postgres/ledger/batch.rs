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
//! 5. **Write all effects** (`write`) with a few multi-row statements (`INSERT … SELECT FROM
//!    UNNEST`, one `UPDATE … FROM UNNEST` for the balances); the batcher commits once and answers
//!    everyone.
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
use rustc_hash::{FxHashMap, FxHashSet};
use sqlx::PgConnection;
use uuid::Uuid;

mod write;

use self::write::Write;
use super::locks::{lock_accounts, release_lapsed};
use super::rows::{self, get};
use crate::postgres::batch::BatchJob;
use crate::postgres::db_err;

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
        // 1. What each operation touches. The holds read now only tell which accounts to lock
        // (they are read again below, after the locks); entries never change.
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
