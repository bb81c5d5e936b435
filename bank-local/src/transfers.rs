//! [`SqliteTransferStore`]: the durable [`TransferStore`], transfers and their outbox in the
//! `transfers` and `outbox` tables (migration `0003_transfers.sql`).
//!
//! Semantics are exactly those of the reference [`MemoryTransferStore`]
//! (`bank_core::memory::transfers`): `insert` assigns the next `seq` and version 0, or returns the
//! transfer already stored under the id (writing no outbox message); `update` is a
//! compare-and-swap on `version`, refuses a final transfer with [`Error::VersionConflict`], bumps
//! the version and keeps the stored `seq`; the accounts a transfer is listed under are those it
//! was inserted with; `due` lists non-final transfers with a deadline at or before `now`, by
//! (deadline, seq).
//!
//! # Why it is safe
//!
//! - *Atomicity*: `insert` and `update` are each one job of the database's single writer
//!   ([`WriterHandle::run`]): the transfer row and its outbox rows are written in one savepoint of
//!   one transaction, so both are kept or neither, and a read-compare-write has no other writer
//!   in between (of many concurrent updates of one version exactly one wins). A refused call
//!   writes nothing.
//! - *Durability*: a call answers only after its batch committed (`synchronous=FULL`).
//! - *Order*: `seq` is the last one + 1, read inside the writer job; outbox positions come from an
//!   `AUTOINCREMENT` key, so they increase and are never reused, even after the outbox emptied.
//! - *Claims* ([`TransferStore::outbox_claim`], migration `0010_outbox_claims.sql`): a claim is one
//!   writer job, one `UPDATE … RETURNING` that takes, in `seq` order, the records no live claim
//!   holds and that no live-claimed record of their group precedes. Jobs run one at a time, so no
//!   two claims see each other half done: the rule holds exactly, without row locks.
//! - Reads run on read-only connections; writes answer after COMMIT and WAL readers see every
//!   committed transaction, so a read sees every earlier call's effect.
//! - *Time* comes only from the injected [`Clock`] (the outbox rows' `created_at`, the lag).
//!
//! Times are stored as INTEGER nanoseconds; a time past the storable range (years 1677–2262) is
//! clamped to the range's end in the query columns (the `body` keeps it exactly).
//!
//! # Direct delivery
//!
//! The outbox exists to make "change the database and tell the queue and the bus" atomic when
//! those live elsewhere. When they are tables of the same database ([`crate::queue::SqliteQueue`],
//! [`crate::events::SqliteEventBus`]), a store made with
//! [`SqliteTransferStore::delivering_directly`] writes each outbox message straight to its
//! destination in the same savepoint: a queue message into the queue (same deduplication and
//! capacity rules as `enqueue`), an event into the event log. Nothing goes through the `outbox`
//! table but audit records, so the relay has little to do, and about a quarter of the writes per
//! transfer are saved. A full queue then refuses the update itself (retryable), as a full outbox
//! would stall.
//! Audit records ([`OutboxMessage::Audit`]) still go through the `outbox` table: the audit log
//! has its own file, so the relay appends them there.
//!
//! # Deliveries acknowledged with the outcome
//!
//! When the transfer queue is in the same database ([`SqliteTransferStore::acking_deliveries_of`]),
//! [`TransferStore::update_acking`] writes a transfer's outcome and deletes the queue message it
//! was delivered by in one writer job: the worker's last two writes of a transfer in one commit
//! (one fsync, one wait for the writer fewer per settled transfer), and no moment at which the
//! transfer is final but its message still waits.
//!
//! # Keys completed with the insert
//!
//! Accepting a transfer writes it, then records the answer under the request's idempotency key.
//! When the keys are in the same database ([`SqliteTransferStore::completing_keys_of`]),
//! [`TransferStore::insert_completing`] does both in one writer job: one commit (one fsync, one
//! wait for the writer) fewer per accepted transfer, and no moment at which the transfer exists
//! but its key still reads as in flight.
//!
//! [`MemoryTransferStore`]: bank_core::memory::transfers::MemoryTransferStore

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::events::{OutboxMessage, OutboxRecord};
use bank_core::ids::{AccountId, ClaimToken, TransferId};
use bank_core::ports::{Inserted, KeyAnswer, TransferStore};
use bank_core::queue::{QueueConfig, QueueMessage, Receipt};
use bank_core::transfer::{Transfer, TransferStatus};
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, fetch_optional, sql_limit, time};
use crate::db::writer::{WriterHandle, exec};
use crate::events::{encode_events, publish_job};
use crate::idempotency::{SqliteIdempotencyStore, complete_job};
use crate::queue::{SqliteQueue, ack_job, check_dedup_ids, enqueue_job, parse_receipt};

/// Selects the transfer with id `?1`, in the columns [`transfer_of`] reads.
const TRANSFER_BY_ID: &str = "SELECT seq, version, body FROM transfers WHERE id = ?1";

/// Transfers and their outbox in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteTransferStore {
    writer: WriterHandle,
    db: LocalDb,
    clock: Arc<dyn Clock>,
    direct: Option<Direct>,
    /// The idempotency keys are in this database (see the module docs).
    keys_here: bool,
    /// The transfer queue is in this database (see the module docs).
    queue_here: bool,
}

/// Where outbox messages go when delivered directly (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Direct {
    queue: QueueConfig,
    event_capacity: usize,
}

/// A call's outbox messages, encoded by the caller for the writer job.
enum Outgoing {
    /// Rows for the `outbox` table: the message as JSON and its group.
    Outbox(Vec<(String, Uuid)>),
    /// Straight to the queue and the event log, in order; what has no table here (audit
    /// records: the log is in its own file) to the `outbox` table, for the relay.
    Direct {
        direct: Direct,
        messages: Vec<QueueMessage>,
        events: Vec<(uuid::Uuid, String)>,
        relayed: Vec<(String, Uuid)>,
    },
}

impl SqliteTransferStore {
    /// A store over `db`, reading time from `clock`, writing through the database's one writer
    /// ([`WriterHandle::for_db`]: started here if no store of `db` runs it yet, in which case
    /// this must be called inside a Tokio runtime).
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        let writer = WriterHandle::for_db(db, Arc::clone(&clock));
        SqliteTransferStore { writer, db: db.clone(), clock, direct: None, keys_here: false, queue_here: false }
    }

    /// The same store, recording an idempotency key's answer in the insert's own write
    /// ([`TransferStore::insert_completing`]) — for a bank whose keys are `keys`, which must be
    /// on this store's database (else `InvalidInput`).
    pub fn completing_keys_of(self, keys: &SqliteIdempotencyStore) -> Result<Self> {
        self.on_this_db(keys.db(), "the idempotency keys are")?;
        Ok(SqliteTransferStore { keys_here: true, ..self })
    }

    /// The same store, acknowledging a delivery in the update that records its outcome
    /// ([`TransferStore::update_acking`]) — for a bank whose transfer queue is `queue`, which must
    /// be on this store's database (else `InvalidInput`).
    pub fn acking_deliveries_of(self, queue: &SqliteQueue) -> Result<Self> {
        self.on_this_db(queue.db(), "the transfer queue is")?;
        Ok(SqliteTransferStore { queue_here: true, ..self })
    }

    /// `InvalidInput` naming both files unless `other` (where `what`) is this store's database.
    fn on_this_db(&self, other: &LocalDb, what: &str) -> Result<()> {
        if other.path() == self.db.path() {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "{what} in {}, not in the transfers' database {}",
            other.path().display(),
            self.db.path().display()
        )))
    }

    /// A store that writes outbox messages straight into the queue and event tables of `db`
    /// (see the module docs): `queue` must be the limits of the [`crate::queue::SqliteQueue`] and
    /// `event_capacity` the capacity of the [`crate::events::SqliteEventBus`] on the same database.
    pub fn delivering_directly(db: &LocalDb, clock: Arc<dyn Clock>, queue: QueueConfig, event_capacity: usize) -> Self {
        let direct = Some(Direct { queue, event_capacity: event_capacity.max(1) });
        SqliteTransferStore { direct, ..SqliteTransferStore::new(db, clock) }
    }

    /// The outbox messages encoded for the writer job.
    fn outgoing(&self, outbox: &[OutboxMessage]) -> Result<Outgoing> {
        let Some(direct) = self.direct else { return Ok(Outgoing::Outbox(encode_outbox(outbox)?)) };
        let mut messages = Vec::new();
        let mut events = Vec::new();
        let mut relayed = Vec::new();
        for message in outbox {
            match message {
                OutboxMessage::Enqueue(message) => messages.push(message.clone()),
                OutboxMessage::Publish(event) => events.push(event),
                OutboxMessage::Audit(_) => relayed.push(message),
            }
        }
        check_dedup_ids(&messages)?;
        Ok(Outgoing::Direct { direct, messages, events: encode_events(events)?, relayed: encode_outbox(relayed)? })
    }
}

/// Rows of this store's tables.
const ROW: RowOf = RowOf("transfer row");

/// A time as stored in a query column: nanoseconds, clamped to the storable range.
fn nanos_clamped(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// A count or position as SQLite's signed integer (saturating; none gets near the limit).
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| ROW.corrupt(format!("{column} {value}")))
}

fn status_of(text: &str) -> Result<TransferStatus> {
    TransferStatus::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| ROW.corrupt(format!("status {text:?}")))
}

/// The transfer of a row of `seq, version, body`: its body, with the columns' `seq` and
/// `version`.
fn transfer_of(row: &Row<'_>) -> Result<Transfer> {
    let body: String = ROW.get(row, "body")?;
    let mut transfer: Transfer = serde_json::from_str(&body).map_err(|e| ROW.corrupt(format!("body: {e}")))?;
    transfer.seq = unsigned(ROW.get(row, "seq")?, "seq")?;
    transfer.version = unsigned(ROW.get(row, "version")?, "version")?;
    Ok(transfer)
}

fn body_of(transfer: &Transfer) -> Result<String> {
    serde_json::to_string(transfer)
        .map_err(|e| Error::Storage { message: format!("cannot encode a transfer: {e}"), retryable: false })
}

fn record_of(row: &Row<'_>) -> Result<OutboxRecord> {
    let message: String = ROW.get(row, "message")?;
    Ok(OutboxRecord {
        seq: unsigned(ROW.get(row, "seq")?, "seq")?,
        message: serde_json::from_str(&message).map_err(|e| ROW.corrupt(format!("outbox message: {e}")))?,
        created_at: time(ROW.get(row, "created_at")?),
    })
}

/// Outbox messages as JSON with their groups, encoded by the caller so the writer thread does not.
fn encode_outbox<'a>(messages: impl IntoIterator<Item = &'a OutboxMessage>) -> Result<Vec<(String, Uuid)>> {
    messages
        .into_iter()
        .map(|message| {
            let json = serde_json::to_string(message).map_err(|e| Error::Storage {
                message: format!("cannot encode an outbox message: {e}"),
                retryable: false,
            })?;
            Ok((json, *message.group().as_uuid()))
        })
        .collect()
}

/// Writes a call's outbox messages: to the outbox table, or straight to the queue and the event
/// log.
fn push_outbox(conn: &Connection, outgoing: Outgoing, now: DateTime<Utc>) -> Result<()> {
    match outgoing {
        Outgoing::Outbox(rows) => insert_outbox(conn, rows, now),
        Outgoing::Direct { direct, messages, events, relayed } => {
            if !messages.is_empty() {
                enqueue_job(conn, now, direct.queue, messages)?;
            }
            if !events.is_empty() {
                publish_job(conn, nanos_clamped(now), direct.event_capacity, events)?;
            }
            insert_outbox(conn, relayed, now)
        }
    }
}

/// Inserts encoded outbox rows.
fn insert_outbox(conn: &Connection, rows: Vec<(String, Uuid)>, now: DateTime<Utc>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let now = nanos_clamped(now);
    let mut insert =
        conn.prepare_cached("INSERT INTO outbox (message, created_at, grp) VALUES (?1, ?2, ?3)").map_err(db_err)?;
    for (json, group) in rows {
        insert.execute(params![json, now, group]).map_err(db_err)?;
    }
    Ok(())
}

/// The writer job of `insert`: the transfer already stored under the id, or the new one with its
/// outbox messages. `body` is the transfer's JSON, encoded by the caller (its `seq` and `version`
/// are stale there: the columns are authoritative, see [`transfer_of`]).
fn insert_job(
    conn: &Connection,
    now: DateTime<Utc>,
    mut transfer: Transfer,
    body: String,
    outbox: Outgoing,
) -> Result<Inserted> {
    // One statement in the usual case: the next seq, the row, and nothing if the id is taken.
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO transfers (id, seq, owner, from_account, to_account, status, next_attempt_at, version, \
             created_at, body) SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8 FROM transfers \
             WHERE true ON CONFLICT (id) DO NOTHING RETURNING seq",
        )
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![
                        transfer.id.as_uuid(),
                        transfer.owner.as_uuid(),
                        transfer.from_account_id.as_uuid(),
                        transfer.to_account_id().map(|a| *a.as_uuid()),
                        transfer.status.as_str(),
                        transfer.next_attempt_at.map(nanos_clamped),
                        nanos_clamped(transfer.created_at),
                        body,
                    ],
                    |row| row.get(0),
                )
                .optional()
        })
        .map_err(db_err)?;
    let Some(seq) = inserted else {
        let existing = fetch_optional(conn, TRANSFER_BY_ID, [transfer.id.as_uuid()], transfer_of)?;
        return existing.map(Inserted::Existing).ok_or_else(|| ROW.corrupt("an insert conflicted with no row"));
    };
    transfer.seq = unsigned(seq, "seq")?;
    transfer.version = 0;
    push_outbox(conn, outbox, now)?;
    Ok(Inserted::Created(transfer))
}

/// The writer job of `update`: compare-and-swap on the version, never changing a final transfer.
/// `body` as for [`insert_job`].
fn update_job(
    conn: &Connection,
    now: DateTime<Utc>,
    mut transfer: Transfer,
    body: String,
    outbox: Outgoing,
) -> Result<Transfer> {
    // The usual case in one statement: the stored version is the caller's and not final.
    let next_version = transfer.version.checked_add(1).ok_or_else(|| ROW.corrupt("version overflow"))?;
    let updated: Option<i64> = conn
        .prepare_cached(
            "UPDATE transfers SET owner = ?1, status = ?2, next_attempt_at = ?3, version = ?4, created_at = ?5, \
             body = ?6 WHERE id = ?7 AND version = ?8 AND status NOT IN ('settled', 'failed') RETURNING seq",
        )
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![
                        transfer.owner.as_uuid(),
                        transfer.status.as_str(),
                        transfer.next_attempt_at.map(nanos_clamped),
                        sql_int(next_version),
                        nanos_clamped(transfer.created_at),
                        body,
                        transfer.id.as_uuid(),
                        sql_int(transfer.version),
                    ],
                    |row| row.get(0),
                )
                .optional()
        })
        .map_err(db_err)?;
    let Some(stored_seq) = updated else {
        // Missing, another version, or final (a final transfer never changes: a caller holding
        // an old copy lost a race).
        let exists =
            fetch_optional(conn, "SELECT 1 FROM transfers WHERE id = ?1", [transfer.id.as_uuid()], |_| Ok(()))?;
        return Err(if exists.is_some() { Error::VersionConflict } else { Error::TransferNotFound(transfer.id) });
    };
    transfer.version = next_version;
    transfer.seq = unsigned(stored_seq, "seq")?;
    push_outbox(conn, outbox, now)?;
    Ok(transfer)
}

/// The writer job of `outbox_claim`: one statement taking, in `seq` order, at most `limit` records
/// that no live claim holds and that no live-claimed record of their group precedes (the groups'
/// first live-claimed positions come from the `claimed_until` index), under `token`.
fn claim_job(
    conn: &Connection,
    now: DateTime<Utc>,
    token: ClaimToken,
    limit: usize,
    lease: TimeDelta,
) -> Result<Vec<OutboxRecord>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let until = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
    const SQL: &str = "UPDATE outbox SET claim = ?1, claimed_until = ?2 WHERE seq IN ( \
           SELECT o.seq FROM outbox o \
           LEFT JOIN (SELECT grp, min(seq) AS first FROM outbox WHERE claimed_until > ?3 GROUP BY grp) AS held \
             ON held.grp = o.grp \
           WHERE (o.claimed_until IS NULL OR o.claimed_until <= ?3) AND (held.first IS NULL OR o.seq < held.first) \
           ORDER BY o.seq LIMIT ?4) \
         RETURNING seq, message, created_at";
    let mut records = fetch_all(
        conn,
        SQL,
        params![token.as_uuid(), nanos_clamped(until), nanos_clamped(now), sql_limit(limit)],
        record_of,
    )?;
    // RETURNING has no order.
    records.sort_by_key(|record| record.seq);
    Ok(records)
}

#[async_trait]
impl TransferStore for SqliteTransferStore {
    async fn insert(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Inserted> {
        let clock = Arc::clone(&self.clock);
        let (body, outbox) = (body_of(&transfer)?, self.outgoing(&outbox)?);
        self.writer.run(move |conn| insert_job(conn, clock.now(), transfer, body, outbox)).await
    }

    async fn insert_completing(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        key: &KeyAnswer,
    ) -> Result<(Inserted, Option<Result<()>>)> {
        if !self.keys_here {
            return Ok((self.insert(transfer, outbox).await?, None));
        }
        let clock = Arc::clone(&self.clock);
        let (body, outbox, key) = (body_of(&transfer)?, self.outgoing(&outbox)?, key.clone());
        self.writer
            .run(move |conn| {
                let now = clock.now();
                let inserted = insert_job(conn, now, transfer, body, outbox)?;
                let Inserted::Created(created) = &inserted else { return Ok((inserted, None)) };
                // A key taken over meanwhile keeps the insert (as a separate `complete` would);
                // any other failure undoes both.
                match complete_job(conn, now, &key.scope, key.token, (key.answer)(created)) {
                    Ok(()) => Ok((inserted, Some(Ok(())))),
                    Err(Error::LeaseLost) => Ok((inserted, Some(Err(Error::LeaseLost)))),
                    Err(other) => Err(other),
                }
            })
            .await
    }

    async fn get(&self, id: TransferId) -> Result<Transfer> {
        self.db
            .read(|conn| fetch_optional(conn, TRANSFER_BY_ID, [id.as_uuid()], transfer_of))?
            .ok_or(Error::TransferNotFound(id))
    }

    async fn update(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer> {
        let clock = Arc::clone(&self.clock);
        let (body, outbox) = (body_of(&transfer)?, self.outgoing(&outbox)?);
        self.writer.run(move |conn| update_job(conn, clock.now(), transfer, body, outbox)).await
    }

    async fn update_acking(
        &self,
        transfer: Transfer,
        outbox: Vec<OutboxMessage>,
        receipt: &Receipt,
    ) -> Result<(Transfer, Option<Result<()>>)> {
        // A receipt the queue could not have issued is left for its own `ack` to refuse.
        let parsed = if self.queue_here { parse_receipt(receipt).ok() } else { None };
        let Some((seq, receipt)) = parsed else { return Ok((self.update(transfer, outbox).await?, None)) };
        let clock = Arc::clone(&self.clock);
        let (body, outbox) = (body_of(&transfer)?, self.outgoing(&outbox)?);
        self.writer
            .run(move |conn| {
                let updated = update_job(conn, clock.now(), transfer, body, outbox)?;
                // A delivery taken over meanwhile keeps the update (as a separate `ack` would);
                // any other failure undoes both.
                match ack_job(conn, seq, &receipt) {
                    Ok(()) => Ok((updated, Some(Ok(())))),
                    Err(Error::StaleReceipt) => Ok((updated, Some(Err(Error::StaleReceipt)))),
                    Err(other) => Err(other),
                }
            })
            .await
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
        // Each side walks its own index backwards from `before_seq`; at most `limit` of each.
        const SQL: &str = "SELECT seq, version, body FROM transfers WHERE seq IN ( \
               SELECT seq FROM (SELECT seq FROM transfers WHERE from_account = ?1 AND seq < ?2 \
                                ORDER BY seq DESC LIMIT ?3) \
               UNION \
               SELECT seq FROM (SELECT seq FROM transfers WHERE to_account = ?1 AND seq < ?2 \
                                ORDER BY seq DESC LIMIT ?3)) \
             ORDER BY seq DESC LIMIT ?3";
        let (before, limit) = (before_seq.map_or(i64::MAX, sql_int), sql_limit(limit));
        self.db.read(|conn| fetch_all(conn, SQL, params![account.as_uuid(), before, limit], transfer_of))
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Transfer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The WHERE repeats the partial index's, so the `transfers_due` index serves it.
        const SQL: &str = "SELECT seq, version, body FROM transfers \
             WHERE status NOT IN ('settled', 'failed') AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, seq LIMIT ?2";
        self.db.read(|conn| fetch_all(conn, SQL, [nanos_clamped(now), sql_limit(limit)], transfer_of))
    }

    async fn count_by_status(&self) -> Result<Vec<(TransferStatus, u64)>> {
        let rows = self.db.read(|conn| {
            // Kept by triggers with every insert and status change (migration 0013).
            fetch_all(conn, "SELECT status, n FROM transfer_counts", [], |row| {
                Ok((status_of(&ROW.get::<String>(row, "status")?)?, unsigned(ROW.get(row, "n")?, "count")?))
            })
        })?;
        let mut counts = TransferStatus::ALL.map(|s| (s, 0_u64));
        for (status, n) in rows {
            if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == status) {
                entry.1 = n;
            }
        }
        Ok(counts.to_vec())
    }

    async fn unresolved(&self, limit: usize) -> Result<Vec<Transfer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The WHERE repeats the partial index's, so `transfers_unresolved` serves it in order.
        const SQL: &str = "SELECT seq, version, body FROM transfers \
             WHERE status = 'pending' AND json_extract(body, '$.outcome_unknown') = 1 ORDER BY seq LIMIT ?1";
        self.db.read(|conn| fetch_all(conn, SQL, [sql_limit(limit)], transfer_of))
    }

    async fn outbox_claim(&self, token: ClaimToken, limit: usize, lease: TimeDelta) -> Result<Vec<OutboxRecord>> {
        if lease <= TimeDelta::zero() {
            return Err(Error::InvalidInput("an outbox lease must be positive".into()));
        }
        let clock = Arc::clone(&self.clock);
        self.writer.run(move |conn| claim_job(conn, clock.now(), token, limit, lease)).await
    }

    async fn outbox_done(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = seqs.iter().map(|seq| sql_int(*seq)).collect();
        self.writer
            .run(move |conn| {
                let mut delete = conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1").map_err(db_err)?;
                for seq in seqs {
                    delete.execute([seq]).map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn outbox_release(&self, token: ClaimToken) -> Result<()> {
        let token = *token.as_uuid();
        self.writer
            .run(move |conn| {
                // `claimed_until IS NOT NULL` lets the partial index find the claimed rows.
                exec(
                    conn,
                    "UPDATE outbox SET claim = NULL, claimed_until = NULL \
                     WHERE claimed_until IS NOT NULL AND claim = ?1",
                    [token],
                )?;
                Ok(())
            })
            .await
    }

    async fn outbox_lag(&self) -> Result<(u64, Option<u64>)> {
        let now = self.clock.now();
        let lag = self.db.read(|conn| {
            fetch_optional(
                conn,
                "SELECT (SELECT count(*) FROM outbox) AS n, (SELECT created_at FROM outbox ORDER BY seq LIMIT 1) AS oldest",
                [],
                |row| Ok((unsigned(ROW.get(row, "n")?, "count")?, ROW.get::<Option<i64>>(row, "oldest")?)),
            )
        })?;
        let (count, oldest) = lag.ok_or_else(|| ROW.corrupt("no outbox lag row"))?;
        let age = oldest.map(|at| u64::try_from((now - time(at)).num_milliseconds()).unwrap_or(0));
        Ok((count, age))
    }
}
