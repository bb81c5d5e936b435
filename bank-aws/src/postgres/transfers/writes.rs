//! The write batch of [`super::PgTransferStore`]: the inserts and updates queued while the last
//! commit was in flight, run in one transaction with a handful of set-based statements (the
//! arrays of a batch go in one round trip each), each op answered as if it had run alone, in
//! queue order.
//!
//! - *Order within a batch*: ops on different transfers commute; ops on one transfer (a retried
//!   insert, racing updates) go in successive *rounds*, so each statement touches a transfer at
//!   most once and the later op sees the earlier op's effect, as if run one after the other.
//! - *Insert*: `INSERT … ON CONFLICT (id) DO NOTHING RETURNING`: what comes back was created
//!   (version 0, the next `seq`); an id already taken (also by a concurrent batch, whose commit
//!   the statement waits for) reads the stored transfer: `Inserted::Existing`.
//! - *Update*: one `UPDATE` over the batch, in id order, changes the rows whose stored version is
//!   the caller's and whose status is not final; a concurrent batch's change of a row makes the
//!   version differ (PostgreSQL re-checks the condition on the row it waited for), so of
//!   concurrent updates of one version exactly one wins. The others answer `VersionConflict` (or
//!   `TransferNotFound`) alone; the rest of the batch commits.
//! - *Outbox*: each statement inserts the outbox rows of exactly the ops it wrote (a data-modifying
//!   CTE joined to its `RETURNING`), each op's messages in order, in the same transaction: both
//!   or neither.
//! - *Counts*: the status changes of the batch are added to one shard of `transfer_counts`, last,
//!   so that row is locked only for the commit.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::ids::TransferId;
use bank_core::ports::Inserted;
use bank_core::transfer::{Transfer, TransferStatus};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{ROW, sql_int, transfer_of, unsigned};
use crate::postgres::batch::BatchJob;
use crate::postgres::db_err;

/// One queued write.
#[derive(Debug)]
pub(super) enum Write {
    /// `TransferStore::insert`.
    Insert(Pending),
    /// `TransferStore::update`.
    Update(Pending),
}

impl Write {
    fn pending(&self) -> &Pending {
        match self {
            Write::Insert(pending) | Write::Update(pending) => pending,
        }
    }
}

/// A transfer and its outbox messages, encoded by the caller (not by the committer task).
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) transfer: Transfer,
    /// The transfer as JSON (its `seq` and `version` are stale there: the columns hold them).
    pub(super) body: String,
    /// Each message's group and JSON.
    pub(super) outbox: Vec<(Uuid, String)>,
}

/// A write's answer.
#[derive(Debug)]
pub(super) enum Written {
    Inserted(Inserted),
    Updated(Transfer),
}

/// The batch job.
#[derive(Debug)]
pub(super) struct TransferWrites {
    pub(super) clock: Arc<dyn Clock>,
}

#[async_trait]
impl BatchJob for TransferWrites {
    type Op = Write;
    type Out = Result<Written>;

    async fn run(&self, conn: &mut PgConnection, ops: &[Write]) -> Result<Vec<Result<Written>>> {
        let now = self.clock.now();
        let mut answers: Vec<Option<Result<Written>>> = ops.iter().map(|_| None).collect();
        let mut counts = Counts::default();
        for round in rounds(ops) {
            let (inserts, updates): (Vec<usize>, Vec<usize>) =
                round.into_iter().partition(|&i| matches!(ops[i], Write::Insert(_)));
            if !inserts.is_empty() {
                insert_all(conn, ops, &inserts, now, &mut answers, &mut counts).await?;
            }
            if !updates.is_empty() {
                update_all(conn, ops, &updates, now, &mut answers, &mut counts).await?;
            }
        }
        counts.add_to_shard(conn).await?;
        Ok(answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| Err(ROW.corrupt("a write of the batch was not answered"))))
            .collect())
    }

    fn failed(&self, error: &Error) -> Result<Written> {
        Err(Error::storage(error, error.is_retryable()))
    }
}

/// The ops' indexes in rounds: an op goes one round after the previous op on the same transfer.
fn rounds(ops: &[Write]) -> Vec<Vec<usize>> {
    let mut next_round: HashMap<TransferId, usize> = HashMap::with_capacity(ops.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let round = next_round.entry(op.pending().transfer.id).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    rounds
}

/// The outbox rows of `ops[indexes]` as arrays: the 1-based position of the op in `indexes`,
/// the group, the JSON.
fn outbox_arrays(ops: &[Write], indexes: &[usize]) -> (Vec<i64>, Vec<Uuid>, Vec<String>) {
    let mut arrays = (Vec::new(), Vec::new(), Vec::new());
    for (position, &i) in indexes.iter().enumerate() {
        for (group, json) in &ops[i].pending().outbox {
            arrays.0.push(i64::try_from(position + 1).unwrap_or(i64::MAX));
            arrays.1.push(*group);
            arrays.2.push(json.clone());
        }
    }
    arrays
}

/// Inserts `ops[indexes]` (distinct ids) with their outbox rows.
async fn insert_all(
    conn: &mut PgConnection,
    ops: &[Write],
    indexes: &[usize],
    now: DateTime<Utc>,
    answers: &mut [Option<Result<Written>>],
    counts: &mut Counts,
) -> Result<()> {
    const SQL: &str = "WITH input AS ( \
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::bool[], \
                                $7::timestamptz[], $8::text[]) WITH ORDINALITY \
             AS i(id, from_account, to_account, status, next_attempt_at, outcome_unknown, created_at, body, op)), \
         inserted AS ( \
           INSERT INTO transfers (id, seq, from_account, to_account, status, next_attempt_at, outcome_unknown, \
                                  version, created_at, body) \
           SELECT id, nextval('transfer_seq'), from_account, to_account, status, next_attempt_at, outcome_unknown, \
                  0, created_at, body::jsonb \
           FROM input ORDER BY op \
           ON CONFLICT (id) DO NOTHING \
           RETURNING id, seq), \
         written AS ( \
           INSERT INTO outbox (grp, message, created_at) \
           SELECT m.grp, m.message, $12 \
           FROM unnest($9::bigint[], $10::uuid[], $11::text[]) WITH ORDINALITY AS m(op, grp, message, n) \
           JOIN input i ON i.op = m.op JOIN inserted ins ON ins.id = i.id \
           ORDER BY m.n) \
         SELECT id, seq FROM inserted";
    let transfers: Vec<&Transfer> = indexes.iter().map(|&i| &ops[i].pending().transfer).collect();
    let ids: Vec<Uuid> = transfers.iter().map(|t| *t.id.as_uuid()).collect();
    let (outbox_ops, groups, messages) = outbox_arrays(ops, indexes);
    let rows = sqlx::query(SQL)
        .bind(&ids)
        .bind(transfers.iter().map(|t| *t.from_account_id.as_uuid()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.to_account_id().map(|a| *a.as_uuid())).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.next_attempt_at).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.outcome_unknown).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.created_at).collect::<Vec<_>>())
        .bind(indexes.iter().map(|&i| ops[i].pending().body.as_str()).collect::<Vec<_>>())
        .bind(outbox_ops)
        .bind(groups)
        .bind(messages)
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut created: HashMap<Uuid, i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        created.insert(row.try_get("id").map_err(db_err)?, row.try_get("seq").map_err(db_err)?);
    }
    let mut taken = Vec::new();
    for &i in indexes {
        let mut transfer = ops[i].pending().transfer.clone();
        match created.get(transfer.id.as_uuid()) {
            Some(&seq) => {
                transfer.seq = unsigned(seq, "seq")?;
                transfer.version = 0;
                counts.add(transfer.status, 1);
                answers[i] = Some(Ok(Written::Inserted(Inserted::Created(transfer))));
            }
            None => taken.push(i),
        }
    }
    if taken.is_empty() {
        return Ok(());
    }
    // Ids already taken: the stored transfers, unchanged.
    let taken_ids: Vec<Uuid> = taken.iter().map(|&i| *ops[i].pending().transfer.id.as_uuid()).collect();
    let rows = sqlx::query("SELECT id, seq, version, body::text AS body FROM transfers WHERE id = ANY($1)")
        .bind(&taken_ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut stored: HashMap<Uuid, Transfer> = HashMap::with_capacity(rows.len());
    for row in &rows {
        stored.insert(row.try_get("id").map_err(db_err)?, transfer_of(row)?);
    }
    for i in taken {
        let id = ops[i].pending().transfer.id;
        answers[i] = Some(match stored.remove(id.as_uuid()) {
            Some(existing) => Ok(Written::Inserted(Inserted::Existing(existing))),
            None => Err(ROW.corrupt(format!("the insert of {id} conflicted with no row"))),
        });
    }
    Ok(())
}

/// Updates `ops[indexes]` (distinct ids), each only if its stored version is the caller's and
/// its status not final, with the outbox rows of those that changed.
async fn update_all(
    conn: &mut PgConnection,
    ops: &[Write],
    indexes: &[usize],
    now: DateTime<Utc>,
    answers: &mut [Option<Result<Written>>],
    counts: &mut Counts,
) -> Result<()> {
    // `old` is the row as the statement's snapshot saw it: when the update went through, the
    // version it checked was unchanged, so that is the row it replaced (its status before).
    const SQL: &str = "WITH input AS ( \
           SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::bool[], $6::text[]) \
             WITH ORDINALITY AS i(id, version, status, next_attempt_at, outcome_unknown, body, op)), \
         updated AS ( \
           UPDATE transfers t SET status = i.status, next_attempt_at = i.next_attempt_at, \
                  outcome_unknown = i.outcome_unknown, version = i.version + 1, body = i.body::jsonb \
           FROM input i JOIN transfers old ON old.id = i.id \
           WHERE t.id = i.id AND t.version = i.version AND t.status NOT IN ('settled', 'failed') \
           RETURNING t.id, t.seq, old.status AS before), \
         written AS ( \
           INSERT INTO outbox (grp, message, created_at) \
           SELECT m.grp, m.message, $10 \
           FROM unnest($7::bigint[], $8::uuid[], $9::text[]) WITH ORDINALITY AS m(op, grp, message, n) \
           JOIN input i ON i.op = m.op JOIN updated u ON u.id = i.id \
           ORDER BY m.n) \
         SELECT id, seq, before FROM updated";
    // In id order: the statement locks the rows as it walks its input (a nested loop over the
    // primary key, the plan for a batch against a table of any size), so two batches touching
    // the same transfers lock them in the same order and cannot deadlock. Should another plan
    // ever lock otherwise, PostgreSQL breaks the deadlock by failing one batch, retryably.
    let mut indexes = indexes.to_vec();
    indexes.sort_by_key(|&i| ops[i].pending().transfer.id);
    let transfers: Vec<&Transfer> = indexes.iter().map(|&i| &ops[i].pending().transfer).collect();
    let (outbox_ops, groups, messages) = outbox_arrays(ops, &indexes);
    let rows = sqlx::query(SQL)
        .bind(transfers.iter().map(|t| *t.id.as_uuid()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| sql_int(t.version)).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.next_attempt_at).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.outcome_unknown).collect::<Vec<_>>())
        .bind(indexes.iter().map(|&i| ops[i].pending().body.as_str()).collect::<Vec<_>>())
        .bind(outbox_ops)
        .bind(groups)
        .bind(messages)
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    // Per updated id: its seq and its status before.
    let mut updated: HashMap<Uuid, (i64, String)> = HashMap::with_capacity(rows.len());
    for row in &rows {
        updated.insert(
            row.try_get("id").map_err(db_err)?,
            (row.try_get("seq").map_err(db_err)?, row.try_get("before").map_err(db_err)?),
        );
    }
    let mut refused = Vec::new();
    for &i in &indexes {
        let mut transfer = ops[i].pending().transfer.clone();
        let Some((seq, before)) = updated.get(transfer.id.as_uuid()) else {
            refused.push(i);
            continue;
        };
        counts.add(super::status_of(before)?, -1);
        counts.add(transfer.status, 1);
        transfer.seq = unsigned(*seq, "seq")?;
        transfer.version = transfer.version.checked_add(1).ok_or_else(|| ROW.corrupt("version overflow"))?;
        answers[i] = Some(Ok(Written::Updated(transfer)));
    }
    if refused.is_empty() {
        return Ok(());
    }
    // Not updated: another version or final (a conflict), or no such transfer. Transfers are
    // never deleted, so one that exists now existed when the update looked.
    let refused_ids: Vec<Uuid> = refused.iter().map(|&i| *ops[i].pending().transfer.id.as_uuid()).collect();
    let existing: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM transfers WHERE id = ANY($1)")
        .bind(&refused_ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    for i in refused {
        let id = ops[i].pending().transfer.id;
        answers[i] = Some(if existing.contains(id.as_uuid()) {
            Err(Error::VersionConflict)
        } else {
            Err(Error::TransferNotFound(id))
        });
    }
    Ok(())
}

/// A batch's changes to the count of each status, in [`TransferStatus::ALL`] order.
#[derive(Debug, Default)]
struct Counts([i64; 5]);

impl Counts {
    fn add(&mut self, status: TransferStatus, n: i64) {
        if let Some(i) = TransferStatus::ALL.iter().position(|s| *s == status) {
            self.0[i] += n;
        }
    }

    /// Adds the changes to the shard of this connection (its backend's pid picks one of 64).
    async fn add_to_shard(&self, conn: &mut PgConnection) -> Result<()> {
        if self.0.iter().all(|n| *n == 0) {
            return Ok(());
        }
        sqlx::query(
            "UPDATE transfer_counts SET accepted = accepted + $1, processing = processing + $2, \
             pending = pending + $3, settled = settled + $4, failed = failed + $5 \
             WHERE shard = pg_backend_pid() % 64",
        )
        .bind(self.0[0])
        .bind(self.0[1])
        .bind(self.0[2])
        .bind(self.0[3])
        .bind(self.0[4])
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
