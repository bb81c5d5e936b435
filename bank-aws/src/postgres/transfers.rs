//! [`PgTransferStore`]: the [`TransferStore`] on PostgreSQL: transfers, their outbox, and the
//! claims through which several relays (several server processes) share the outbox (migration
//! `0003_transfers.sql`).
//!
//! Semantics are those of the reference `MemoryTransferStore` (`bank_core::memory::transfers`):
//! `insert` assigns the next `seq` and version 0, or returns the transfer stored under the id
//! (writing no outbox row); `update` is a compare-and-swap on `version`, refuses a final transfer
//! with `VersionConflict`, bumps the version and keeps `seq`; the accounts a transfer is listed
//! under are those it was inserted with.
//!
//! # Writes: group commit
//! `insert` and `update` queue on a [`Batcher`]: a few committer tasks each run what queued while
//! the previous commit was in flight as one transaction of a handful of set-based statements
//! ([`writes`] says how each op stays exact: per-row compare-and-swap, `Inserted::Existing`, the
//! outbox rows of exactly the ops that wrote). One commit carries tens to hundreds of writes
//! (as many as queued meanwhile), not one: the pipeline makes ~3 transfer writes per transfer,
//! and 5,000 transfers/s is more commits than a disk flushes one by one (figures in the crate's
//! README).
//!
//! # The outbox and its claims
//! [`TransferStore::outbox_claim`] is one statement ([`CLAIM`]): `FOR UPDATE SKIP LOCKED` picks,
//! in `seq` order, records no live claim holds, of groups no live claim holds; of those, it keeps
//! each group's records only up to the first record of the group it did not pick (one another
//! claim is taking at this moment, locked and so skipped, or one past the limit), stamps them with
//! the relay's token and the lease's end, and records the claim (its groups and positions)
//! in `outbox_claims`. Two concurrent claims therefore never hold one record, nor records of one
//! group, while the claims are live. The claim columns are not indexed, so stamping a row is a
//! HOT update (the table leaves room on each page for it); `outbox_claims` is what claims consult
//! instead of an index. `outbox_done` deletes the delivered rows (and a claim all of whose rows
//! are gone); `outbox_release` deletes the claim and clears the rows it still holds.
//!
//! This is a little stricter than the port's rule: while a claim is live, nothing of its groups
//! is claimed, even a record older than the ones it holds (one whose transaction committed after
//! the claim, or one a partial `outbox_done` left): such a record waits for the claim to end.
//!
//! Outbox positions come from an identity column: they increase in the order drawn, which for
//! concurrent transactions is not always the order of their commits. A claim sees only committed
//! rows, so a record written by a batch that commits late may be relayed after a later position
//! of its group: only records of *concurrent* writes (neither had answered when the other began),
//! which no order relates. A write that starts after another answered always gets later
//! positions, so everything causally ordered (a transfer's successive updates) stays in order.
//!
//! # Reads
//! Every read goes to the writer, except `list_for_account`, a view that may lag by design, which
//! reads [`PgDb::fresh_reader`] (it sees every write that answered before the call).
//!
//! *Time* comes only from the injected [`Clock`] (outbox `created_at`, leases, the lag), never from
//! PostgreSQL's `now()`. Column times are microseconds; a transfer's own times are exact in `body`.

mod reads;
mod writes;

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::events::{OutboxMessage, OutboxRecord};
use bank_core::ids::{AccountId, ClaimToken, TransferId};
use bank_core::ports::{Inserted, TransferStore};
use bank_core::transfer::{Transfer, TransferStatus};
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use self::reads::TransferReads;
use self::writes::{Pending, TransferWrites, Write, Written};
use super::batch::{Batcher, READ_BATCH_MAX, READ_COMMITTERS};
use super::{PgDb, RowOf, db_err};

/// Committer tasks per store: concurrent write transactions (each holds a writer connection while
/// it commits).
pub const WRITE_COMMITTERS: usize = 4;

/// Most writes one transaction carries.
pub const WRITE_BATCH_MAX: usize = 512;

/// Transfers and their outbox in PostgreSQL. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PgTransferStore {
    db: PgDb,
    clock: Arc<dyn Clock>,
    writes: Batcher<TransferWrites>,
    reads: Batcher<TransferReads>,
}

impl PgTransferStore {
    /// A store over `db` reading time from `clock`, with [`WRITE_COMMITTERS`] committer tasks
    /// started on the current Tokio runtime (so this must be called inside one).
    pub fn new(db: &PgDb, clock: Arc<dyn Clock>) -> Self {
        let job = TransferWrites { clock: Arc::clone(&clock) };
        let writes = Batcher::start(db.writer().clone(), job, WRITE_COMMITTERS, WRITE_BATCH_MAX);
        let reads = Batcher::start(db.writer().clone(), TransferReads, READ_COMMITTERS, READ_BATCH_MAX);
        PgTransferStore { db: db.clone(), clock, writes, reads }
    }

    /// The write `make` builds, queued for the next batch.
    async fn write(&self, transfer: Transfer, outbox: &[OutboxMessage], make: fn(Pending) -> Write) -> Result<Written> {
        let pending = Pending { body: body_of(&transfer)?, outbox: encode_outbox(outbox)?, transfer };
        self.writes.call(make(pending)).await
    }
}

/// Decoding this store's rows.
const ROW: RowOf = RowOf("transfer row");

/// A count or position as PostgreSQL's BIGINT (saturating; none gets near the limit).
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A count as `LIMIT`'s BIGINT.
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsigned(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| ROW.corrupt(format!("{column} {value}")))
}

fn status_of(text: &str) -> Result<TransferStatus> {
    TransferStatus::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| ROW.corrupt(format!("status {text:?}")))
}

/// The transfer of a row of `seq, version, body` (`body` as text): its body, with the columns'
/// `seq` and `version`.
fn transfer_of(row: &PgRow) -> Result<Transfer> {
    let body: String = row.try_get("body").map_err(db_err)?;
    let mut transfer: Transfer = serde_json::from_str(&body).map_err(|e| ROW.corrupt(format!("body: {e}")))?;
    transfer.seq = unsigned(row.try_get("seq").map_err(db_err)?, "seq")?;
    transfer.version = unsigned(row.try_get("version").map_err(db_err)?, "version")?;
    Ok(transfer)
}

fn transfers_of(rows: &[PgRow]) -> Result<Vec<Transfer>> {
    rows.iter().map(transfer_of).collect()
}

fn body_of(transfer: &Transfer) -> Result<String> {
    serde_json::to_string(transfer).map_err(|e| Error::storage(format!("cannot encode a transfer: {e}"), false))
}

/// Each message's group and JSON.
fn encode_outbox(messages: &[OutboxMessage]) -> Result<Vec<(uuid::Uuid, String)>> {
    messages
        .iter()
        .map(|message| {
            let json = serde_json::to_string(message)
                .map_err(|e| Error::storage(format!("cannot encode an outbox message: {e}"), false))?;
            Ok((*message.group().as_uuid(), json))
        })
        .collect()
}

fn record_of(row: &PgRow) -> Result<OutboxRecord> {
    let message: String = row.try_get("message").map_err(db_err)?;
    Ok(OutboxRecord {
        seq: unsigned(row.try_get("seq").map_err(db_err)?, "outbox seq")?,
        message: serde_json::from_str(&message).map_err(|e| ROW.corrupt(format!("outbox message: {e}")))?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

/// The claim statement (see the module docs). `$1` lease end, `$2` now, `$3` limit, `$4` token.
///
/// - `picked`: in `seq` order, rows no live claim holds, of groups no live claim holds (the
///   groups of the live claims of `outbox_claims`, a hashed set), locked, skipping rows a
///   concurrent claim has locked. The row's own `claimed_until` decides "no live claim holds
///   it", so a row a concurrent claim took and committed meanwhile is re-checked and dropped when
///   the lock is taken.
/// - `gaps`: per group picked, its first row not picked (one a concurrent claim has locked or
///   took, or one past the limit); only the group's rows before it are claimed.
/// - `claimed` stamps the rows (a HOT update: no index covers the claim columns), `registered`
///   records the claim in `outbox_claims`, `expired` drops claims past their lease from there.
const CLAIM: &str = "WITH picked AS MATERIALIZED ( \
       SELECT o.seq, o.grp FROM outbox o \
       WHERE (o.claimed_until IS NULL OR o.claimed_until <= $2) \
         AND o.grp NOT IN (SELECT unnest(c.grps) FROM outbox_claims c WHERE c.until > $2) \
       ORDER BY o.seq LIMIT $3 \
       FOR UPDATE OF o SKIP LOCKED), \
     gaps AS MATERIALIZED ( \
       SELECT g.grp, (SELECT min(o.seq) FROM outbox o \
                      WHERE o.grp = g.grp AND o.seq NOT IN (SELECT seq FROM picked)) AS gap \
       FROM (SELECT DISTINCT grp FROM picked) g), \
     claimed AS ( \
       UPDATE outbox o SET claim = $4, claimed_until = $1 \
       FROM picked p JOIN gaps g ON g.grp = p.grp \
       WHERE o.seq = p.seq AND (g.gap IS NULL OR p.seq < g.gap) \
       RETURNING o.seq, o.grp, o.message, o.created_at), \
     registered AS ( \
       INSERT INTO outbox_claims (token, until, grps, seqs) \
       SELECT $4, $1, array_agg(DISTINCT grp), array_agg(seq) FROM claimed \
       HAVING count(*) > 0), \
     expired AS (DELETE FROM outbox_claims WHERE until <= $2) \
     SELECT seq, message, created_at FROM claimed";

#[async_trait]
impl TransferStore for PgTransferStore {
    async fn insert(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Inserted> {
        match self.write(transfer, &outbox, Write::Insert).await? {
            Written::Inserted(inserted) => Ok(inserted),
            Written::Updated(_) => Err(ROW.corrupt("an insert was answered as an update")),
        }
    }

    async fn get(&self, id: TransferId) -> Result<Transfer> {
        self.reads.call(id).await
    }

    async fn update(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer> {
        match self.write(transfer, &outbox, Write::Update).await? {
            Written::Updated(transfer) => Ok(transfer),
            Written::Inserted(_) => Err(ROW.corrupt("an update was answered as an insert")),
        }
    }

    async fn list_for_account(
        &self,
        account: AccountId,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<Transfer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Each side walks its own index backwards from `before_seq`; at most `limit` of each. A
        // transfer is never from and to one account, so the sides do not overlap.
        const SQL: &str = "(SELECT seq, version, body::text AS body FROM transfers \
                WHERE from_account = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3) \
             UNION ALL \
             (SELECT seq, version, body::text AS body FROM transfers \
                WHERE to_account = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3) \
             ORDER BY seq DESC LIMIT $3";
        let rows = sqlx::query(SQL)
            .bind(account.as_uuid())
            .bind(before_seq.map_or(i64::MAX, sql_int))
            .bind(sql_limit(limit))
            .fetch_all(self.db.fresh_reader().await?)
            .await
            .map_err(db_err)?;
        transfers_of(&rows)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Transfer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The WHERE repeats the partial index's, so `transfers_due` serves it.
        const SQL: &str = "SELECT seq, version, body::text AS body FROM transfers \
             WHERE status NOT IN ('settled', 'failed') AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, seq LIMIT $2";
        let rows =
            sqlx::query(SQL).bind(now).bind(sql_limit(limit)).fetch_all(self.db.writer()).await.map_err(db_err)?;
        transfers_of(&rows)
    }

    async fn count_by_status(&self) -> Result<Vec<(TransferStatus, u64)>> {
        let row = sqlx::query(
            "SELECT sum(accepted)::bigint AS accepted, sum(processing)::bigint AS processing, \
             sum(pending)::bigint AS pending, sum(settled)::bigint AS settled, sum(failed)::bigint AS failed \
             FROM transfer_counts",
        )
        .fetch_one(self.db.writer())
        .await
        .map_err(db_err)?;
        TransferStatus::ALL
            .into_iter()
            .map(|status| {
                let n: Option<i64> = row.try_get(status.as_str()).map_err(db_err)?;
                Ok((status, unsigned(n.unwrap_or(0), "count")?))
            })
            .collect()
    }

    async fn unresolved(&self, limit: usize) -> Result<Vec<Transfer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        const SQL: &str = "SELECT seq, version, body::text AS body FROM transfers \
             WHERE status = 'pending' AND outcome_unknown ORDER BY seq LIMIT $1";
        let rows = sqlx::query(SQL).bind(sql_limit(limit)).fetch_all(self.db.writer()).await.map_err(db_err)?;
        transfers_of(&rows)
    }

    async fn outbox_claim(&self, token: ClaimToken, limit: usize, lease: TimeDelta) -> Result<Vec<OutboxRecord>> {
        if lease <= TimeDelta::zero() {
            return Err(Error::InvalidInput("an outbox lease must be positive".into()));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let until = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
        // One statement, so its own transaction. The outbox is a queue: rows come and go faster
        // than statistics follow, and dead rows pile up between vacuums; the pools' planner
        // settings (no sequential scans, no JIT: see `super::pool`) keep its plan on the
        // primary key in `seq` order.
        let rows = sqlx::query(CLAIM)
            .bind(until)
            .bind(now)
            .bind(sql_limit(limit))
            .bind(token.as_uuid())
            .fetch_all(self.db.writer())
            .await
            .map_err(db_err)?;
        let mut records = rows.iter().map(record_of).collect::<Result<Vec<_>>>()?;
        // RETURNING has no order.
        records.sort_by_key(|record| record.seq);
        Ok(records)
    }

    async fn outbox_done(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = seqs.iter().map(|seq| sql_int(*seq)).collect();
        // A claim all of whose rows are gone is over. (One partly done stays as it was until it
        // is released or runs out: its groups stay held from where they were.)
        sqlx::query(
            "WITH gone AS (DELETE FROM outbox WHERE seq = ANY($1) RETURNING seq, claim) \
             DELETE FROM outbox_claims c WHERE c.token IN (SELECT claim FROM gone WHERE claim IS NOT NULL) \
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = ANY(c.seqs) AND o.claim = c.token \
                                 AND o.seq NOT IN (SELECT seq FROM gone))",
        )
        .bind(seqs)
        .execute(self.db.writer())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn outbox_release(&self, token: ClaimToken) -> Result<()> {
        // The claim's row says which rows it holds; those it still holds are given back.
        sqlx::query(
            "WITH gone AS (DELETE FROM outbox_claims WHERE token = $1 RETURNING seqs) \
             UPDATE outbox SET claim = NULL, claimed_until = NULL \
             WHERE seq IN (SELECT unnest(seqs) FROM gone) AND claim = $1",
        )
        .bind(token.as_uuid())
        .execute(self.db.writer())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn outbox_lag(&self) -> Result<(u64, Option<u64>)> {
        let now = self.clock.now();
        let row = sqlx::query(
            "SELECT count(*) AS n, (SELECT created_at FROM outbox ORDER BY seq LIMIT 1) AS oldest FROM outbox",
        )
        .fetch_one(self.db.writer())
        .await
        .map_err(db_err)?;
        let count = unsigned(row.try_get("n").map_err(db_err)?, "count")?;
        let oldest: Option<DateTime<Utc>> = row.try_get("oldest").map_err(db_err)?;
        let age = oldest.map(|at| u64::try_from((now - at).num_milliseconds()).unwrap_or(0));
        Ok((count, age))
    }
}
