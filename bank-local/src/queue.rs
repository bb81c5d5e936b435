//! [`SqliteQueue`]: the durable [`TransferQueue`], in the `queue_messages`, `queue_dedup` and
//! `queue_dead_letters` tables (migration `0004_queue.sql`).
//!
//! Semantics are exactly those of the reference [`MemoryQueue`] (`bank_core::memory::queue`) and
//! the contract on [`TransferQueue`]:
//!
//! - A group's head is its message with the lowest `seq` (enqueue order). A receive delivers a
//!   group's oldest messages, up to [`GROUP_RECEIVE_MAX`] in order, and only when none of them is
//!   hidden (`visible_at > now`: in flight, or delayed by `retry_later`): so the hidden messages of
//!   a group are always among its first [`GROUP_RECEIVE_MAX`], and a group is blocked exactly while
//!   one of those is hidden. `receive` serves the groups whose visible heads are oldest first.
//! - A receipt is `<seq>.<fresh UUID>` per delivery, stored on the message (the seq lets `ack`
//!   and `retry_later` find the row by key; the UUID must match it): it stays current until the
//!   message is acknowledged, dead-lettered or delivered again (a late ack still counts if nobody
//!   received the message since). A receipt not of that form is `InvalidInput`.
//! - Dead-lettering happens at receive time, when a message with `max_receives` deliveries would
//!   be delivered again; its group moves on to its next message in the same call. The dead-letter
//!   table keeps at most `capacity` messages (at least one): past that the oldest is dropped, with
//!   a warning.
//! - Deduplication is queue-wide, for `dedup_window_seconds` after the first accepted enqueue; a
//!   refused enqueue records nothing. Expired ids are pruned on every enqueue.
//! - Visibility timeouts and delays are 0 to [`VISIBILITY_MAX_SECONDS`]; dedup ids 1 to
//!   [`DEDUP_ID_BYTES_MAX`] bytes.
//!
//! # Why it is safe
//!
//! Every change (`enqueue`, `receive`, `ack`, `retry_later`) is one job of the database's single
//! writer ([`WriterHandle::run`]): it reads the clock, reads, decides and writes with no other
//! writer in between, and answers after COMMIT. So two concurrent `receive`s never deliver the same
//! head, and a refused call writes nothing. `stats` and `dead_letters` only read, on a read-only
//! connection, which sees every committed call. Since visibility is a stored time compared with the
//! clock, a message whose visibility ran out while the process was down is simply visible again.
//!
//! [`MemoryQueue`]: bank_core::memory::queue::MemoryQueue

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::ids::{AccountId, TransferId};
use bank_core::memory::queue::{DEDUP_ID_BYTES_MAX, VISIBILITY_MAX_SECONDS};
use bank_core::ports::TransferQueue;
use bank_core::queue::{
    Delivery, GROUP_RECEIVE_MAX, QueueConfig, QueueMessage, QueueStats, RECEIVE_BATCH_MAX, Receipt,
};
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, nanos, sql_limit, time};
use crate::db::writer::WriterHandle;

/// The transfer queue in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteQueue {
    writer: WriterHandle,
    db: LocalDb,
    clock: Arc<dyn Clock>,
    config: QueueConfig,
}

impl SqliteQueue {
    /// A queue over `db` with `config`'s limits, reading time from `clock`, writing through the
    /// database's one writer ([`WriterHandle::for_db`]: started here if no store of `db` runs it
    /// yet, in which case this must be called inside a Tokio runtime).
    ///
    /// `max_receives: 0` dead-letters every message on its first receive; `capacity: 0` refuses
    /// every enqueue.
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>, config: QueueConfig) -> Self {
        let writer = WriterHandle::for_db(db, Arc::clone(&clock));
        SqliteQueue { writer, db: db.clone(), clock, config }
    }

    /// The limits given at construction.
    pub fn config(&self) -> QueueConfig {
        self.config
    }

    /// The database the queue is in.
    pub(crate) fn db(&self) -> &LocalDb {
        &self.db
    }
}

/// Rows of this store's tables.
const ROW: RowOf = RowOf("queue row");

fn message_of(row: &Row<'_>) -> Result<QueueMessage> {
    let transfer_id = TransferId::from_uuid(ROW.get(row, "transfer_id")?).map_err(|e| ROW.corrupt(e))?;
    let group = AccountId::from_uuid(ROW.get(row, "group_id")?).map_err(|e| ROW.corrupt(e))?;
    Ok(QueueMessage { transfer_id, group, dedup_id: ROW.get(row, "dedup_id")? })
}

/// `now + span` in nanoseconds for a visibility timeout or delay, refusing negative or over-long
/// spans.
fn hidden_until(now: DateTime<Utc>, span: TimeDelta, what: &str) -> Result<i64> {
    if span < TimeDelta::zero() || span > TimeDelta::seconds(VISIBILITY_MAX_SECONDS) {
        return Err(Error::InvalidInput(format!("{what} must be between 0 and {VISIBILITY_MAX_SECONDS} seconds")));
    }
    let until = now.checked_add_signed(span).ok_or_else(|| Error::InvalidInput(format!("{what} is out of range")))?;
    nanos(until)
}

/// The message seq and the full text of a receipt, checked to be one this queue could have
/// issued (`<seq>.<uuid>`).
pub(crate) fn parse_receipt(receipt: &Receipt) -> Result<(i64, String)> {
    let malformed = || Error::InvalidInput("malformed queue receipt".into());
    let (seq, uuid) = receipt.0.split_once('.').ok_or_else(malformed)?;
    let seq: i64 = seq.parse().map_err(|_| malformed())?;
    let uuid = Uuid::try_parse(uuid).map_err(|_| malformed())?;
    Ok((seq, receipt_text(seq, uuid)))
}

/// The writer job of `ack`: deletes message `seq` if `receipt` is its current delivery, else
/// `StaleReceipt` (and changes nothing). `seq` and `receipt` come from [`parse_receipt`].
pub(crate) fn ack_job(conn: &Connection, seq: i64, receipt: &str) -> Result<()> {
    let deleted = conn
        .prepare_cached("DELETE FROM queue_messages WHERE seq = ?1 AND receipt = ?2")
        .and_then(|mut statement| statement.execute(params![seq, receipt]))
        .map_err(db_err)?;
    if deleted == 0 { Err(Error::StaleReceipt) } else { Ok(()) }
}

/// The receipt of a delivery of message `seq`.
fn receipt_text(seq: i64, uuid: Uuid) -> String {
    format!("{seq}.{}", uuid.hyphenated())
}

/// Refuses a dedup id that is empty or longer than SQS allows.
pub(crate) fn check_dedup_ids(messages: &[QueueMessage]) -> Result<()> {
    if messages.iter().any(|m| m.dedup_id.is_empty() || m.dedup_id.len() > DEDUP_ID_BYTES_MAX) {
        return Err(Error::InvalidInput(format!("a dedup id must have 1 to {DEDUP_ID_BYTES_MAX} bytes")));
    }
    Ok(())
}

/// The writer job of `enqueue` and `enqueue_batch`: prunes expired dedup ids once, then adds
/// each message unless its dedup id was seen (earlier, or earlier in `messages`). Refuses the
/// whole job with `QueueFull` if the messages do not fit (the savepoint undoes the rest). Also run
/// inside a transfer store job that delivers directly.
pub(crate) fn enqueue_job(
    conn: &Connection,
    now: DateTime<Utc>,
    config: QueueConfig,
    messages: Vec<QueueMessage>,
) -> Result<Vec<bool>> {
    let now_nanos = nanos(now)?;
    // A window opened at `first_seen` is over once `first_seen + window <= now`.
    let window_nanos = config.dedup_window_seconds.max(0).saturating_mul(1_000_000_000);
    let cutoff = now_nanos.saturating_sub(window_nanos);
    conn.prepare_cached("DELETE FROM queue_dedup WHERE first_seen <= ?1")
        .and_then(|mut statement| statement.execute([cutoff]))
        .map_err(db_err)?;
    let held: i64 = conn
        .prepare_cached("SELECT count(*) FROM queue_messages")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(db_err)?;
    let mut held = usize::try_from(held).unwrap_or(usize::MAX);
    let mut claim = conn
        .prepare_cached("INSERT INTO queue_dedup (dedup_id, first_seen) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
        .map_err(db_err)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO queue_messages (group_id, transfer_id, dedup_id, enqueued_at, visible_at, receipt, \
             receive_count) VALUES (?1, ?2, ?3, ?4, 0, NULL, 0)",
        )
        .map_err(db_err)?;
    let mut added = Vec::with_capacity(messages.len());
    for message in messages {
        // Claims the dedup id if it is new; an existing row (in the window) makes this a no-op.
        let claimed = claim.execute(params![message.dedup_id, now_nanos]).map_err(db_err)?;
        if claimed == 0 {
            added.push(false);
            continue;
        }
        if held >= config.capacity {
            return Err(Error::QueueFull);
        }
        held += 1;
        insert
            .execute(params![message.group.as_uuid(), message.transfer_id.as_uuid(), message.dedup_id, now_nanos])
            .map_err(db_err)?;
        added.push(true);
    }
    Ok(added)
}

/// A message selected by [`receive_job`].
struct Head {
    seq: i64,
    receive_count: u32,
    message: QueueMessage,
    enqueued_at: i64,
}

fn head_of(row: &Row<'_>) -> Result<Head> {
    let receive_count: i64 = ROW.get(row, "receive_count")?;
    Ok(Head {
        seq: ROW.get(row, "seq")?,
        receive_count: u32::try_from(receive_count).map_err(|_| ROW.corrupt("receive_count"))?,
        message: message_of(row)?,
        enqueued_at: ROW.get(row, "enqueued_at")?,
    })
}

/// The visible heads of unblocked groups, oldest first, at most `max`.
fn visible_heads(conn: &Connection, now_nanos: i64, max: usize) -> Result<Vec<Head>> {
    // Visible heads (no older message in the group) of groups whose first GROUP_RECEIVE_MAX
    // messages — where every hidden message of a group is — are all visible, oldest first.
    // `+visible_at` keeps the planner on the scan in seq order, which stops after `max` heads.
    fetch_all(
        conn,
        "SELECT seq, group_id, transfer_id, dedup_id, enqueued_at, receive_count FROM queue_messages m \
         WHERE +visible_at <= ?1 \
         AND NOT EXISTS (SELECT 1 FROM queue_messages p WHERE p.group_id = m.group_id AND p.seq < m.seq) \
         AND (SELECT max(visible_at) FROM (SELECT visible_at FROM queue_messages f \
              WHERE f.group_id = m.group_id ORDER BY f.seq LIMIT ?3)) <= ?1 \
         ORDER BY seq LIMIT ?2",
        params![now_nanos, sql_limit(max), sql_limit(GROUP_RECEIVE_MAX)],
        head_of,
    )
}

/// The messages of `group` after `after_seq`, oldest first, at most `max`.
fn group_after(conn: &Connection, group: AccountId, after_seq: i64, max: usize) -> Result<Vec<Head>> {
    fetch_all(
        conn,
        "SELECT seq, group_id, transfer_id, dedup_id, enqueued_at, receive_count FROM queue_messages \
         WHERE group_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        params![group.as_uuid(), after_seq, sql_limit(max)],
        head_of,
    )
}

/// The writer job of `receive`: picks the oldest visible heads of unblocked groups, dead-letters
/// the ones past their budget and marks the others in flight, all in one step.
fn receive_job(
    conn: &Connection,
    now: DateTime<Utc>,
    config: QueueConfig,
    max: usize,
    visibility: TimeDelta,
) -> Result<Vec<Delivery>> {
    let until = hidden_until(now, visibility, "a visibility timeout")?;
    let now_nanos = nanos(now)?;
    let max = max.min(RECEIVE_BATCH_MAX);
    let mut deliveries = Vec::new();
    'select: while deliveries.len() < max {
        // Groups delivered earlier in this call are hidden now, so they drop out of a re-selection.
        let wanted = max - deliveries.len();
        let heads = visible_heads(conn, now_nanos, wanted)?;
        let exhausted = heads.len() < wanted;
        for head in heads {
            if head.receive_count >= config.max_receives {
                dead_letter(conn, now_nanos, config, head.seq, &head.message, head.enqueued_at, head.receive_count)?;
                // The group's next message is now its head and may be older than the heads
                // still to come: select again, in order.
                continue 'select;
            }
            // The head, then the group's next messages, up to GROUP_RECEIVE_MAX delivered.
            let group = head.message.group;
            let (mut taken, mut last_seq, mut next) = (0, head.seq, vec![head]);
            'group: while !next.is_empty() {
                for message in next {
                    if taken == GROUP_RECEIVE_MAX || deliveries.len() == max {
                        break 'group;
                    }
                    last_seq = message.seq;
                    if message.receive_count >= config.max_receives {
                        let Head { seq, receive_count, message, enqueued_at } = message;
                        dead_letter(conn, now_nanos, config, seq, &message, enqueued_at, receive_count)?;
                        continue;
                    }
                    deliveries.push(deliver(conn, until, message)?);
                    taken += 1;
                }
                next = group_after(conn, group, last_seq, GROUP_RECEIVE_MAX - taken)?;
            }
            if deliveries.len() == max {
                break 'select;
            }
        }
        if exhausted {
            // Fewer heads than asked for and none dead-lettered: a new selection finds nothing.
            break;
        }
    }
    Ok(deliveries)
}

/// Marks `message` in flight until `until` with a fresh receipt; answers its delivery.
fn deliver(conn: &Connection, until: i64, head: Head) -> Result<Delivery> {
    let Head { seq, receive_count, message, enqueued_at } = head;
    let receipt = receipt_text(seq, Uuid::new_v4());
    let receive_count = receive_count + 1;
    conn.prepare_cached("UPDATE queue_messages SET visible_at = ?1, receipt = ?2, receive_count = ?3 WHERE seq = ?4")
        .and_then(|mut statement| statement.execute(params![until, receipt, i64::from(receive_count), seq]))
        .map_err(db_err)?;
    Ok(Delivery { message, receipt: Receipt(receipt), receive_count, enqueued_at: time(enqueued_at) })
}

/// Moves message `seq` to the dead letters, keeping at most `capacity` (at least one) of them.
fn dead_letter(
    conn: &Connection,
    now_nanos: i64,
    config: QueueConfig,
    seq: i64,
    message: &QueueMessage,
    enqueued_at: i64,
    receive_count: u32,
) -> Result<()> {
    tracing::warn!(
        transfer_id = %message.transfer_id,
        receive_count,
        "queue message moved to the dead-letter list"
    );
    conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
        .and_then(|mut statement| statement.execute([seq]))
        .map_err(db_err)?;
    conn.prepare_cached(
        "INSERT INTO queue_dead_letters (group_id, transfer_id, dedup_id, enqueued_at, receive_count, dead_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            message.group.as_uuid(),
            message.transfer_id.as_uuid(),
            message.dedup_id,
            enqueued_at,
            i64::from(receive_count),
            now_nanos,
        ])
    })
    .map_err(db_err)?;
    let dropped = conn
        .prepare_cached(
            "DELETE FROM queue_dead_letters WHERE seq NOT IN \
             (SELECT seq FROM queue_dead_letters ORDER BY seq DESC LIMIT ?1)",
        )
        .and_then(|mut statement| statement.execute([sql_limit(config.capacity.max(1))]))
        .map_err(db_err)?;
    if dropped > 0 {
        tracing::warn!(dropped, "dead-letter list full; dropped its oldest");
    }
    Ok(())
}

#[async_trait]
impl TransferQueue for SqliteQueue {
    async fn enqueue(&self, message: QueueMessage) -> Result<bool> {
        let added = self.enqueue_batch(vec![message]).await?;
        Ok(added.first().copied().unwrap_or(false))
    }

    async fn enqueue_batch(&self, messages: Vec<QueueMessage>) -> Result<Vec<bool>> {
        check_dedup_ids(&messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let clock = Arc::clone(&self.clock);
        let config = self.config;
        self.writer.run(move |conn| enqueue_job(conn, clock.now(), config, messages)).await
    }

    async fn receive(&self, max: usize, visibility: TimeDelta) -> Result<Vec<Delivery>> {
        // Refuse bad input before queueing a job for the writer.
        hidden_until(self.clock.now(), visibility, "a visibility timeout")?;
        let clock = Arc::clone(&self.clock);
        let config = self.config;
        self.writer.run(move |conn| receive_job(conn, clock.now(), config, max, visibility)).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let (seq, receipt) = parse_receipt(receipt)?;
        self.writer.run(move |conn| ack_job(conn, seq, &receipt)).await
    }

    async fn retry_later(&self, receipt: &Receipt, delay: TimeDelta) -> Result<()> {
        hidden_until(self.clock.now(), delay, "a retry delay")?;
        let (seq, receipt) = parse_receipt(receipt)?;
        let clock = Arc::clone(&self.clock);
        self.writer
            .run(move |conn| {
                let until = hidden_until(clock.now(), delay, "a retry delay")?;
                let updated = conn
                    .prepare_cached("UPDATE queue_messages SET visible_at = ?1 WHERE seq = ?2 AND receipt = ?3")
                    .and_then(|mut statement| statement.execute(params![until, seq, receipt]))
                    .map_err(db_err)?;
                if updated == 0 { Err(Error::StaleReceipt) } else { Ok(()) }
            })
            .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let now = self.clock.now();
        let now_nanos = nanos(now)?;
        let (visible, in_flight, dead, oldest) = self.db.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT \
                       (SELECT count(*) FROM queue_messages WHERE visible_at <= ?1) AS visible, \
                       (SELECT count(*) FROM queue_messages WHERE visible_at > ?1) AS in_flight, \
                       (SELECT count(*) FROM queue_dead_letters) AS dead, \
                       (SELECT enqueued_at FROM queue_messages ORDER BY seq LIMIT 1) AS oldest",
                )
                .map_err(db_err)?;
            let mut rows = statement.query([now_nanos]).map_err(db_err)?;
            let row = rows.next().map_err(db_err)?.ok_or_else(|| ROW.corrupt("no stats row"))?;
            let count = |column: &str| -> Result<u64> {
                u64::try_from(ROW.get::<i64>(row, column)?).map_err(|_| ROW.corrupt(format!("{column} count")))
            };
            Ok((count("visible")?, count("in_flight")?, count("dead")?, ROW.get::<Option<i64>>(row, "oldest")?))
        })?;
        let age_ms = |at: DateTime<Utc>| u64::try_from((now - at).num_milliseconds()).unwrap_or(0);
        Ok(QueueStats { visible, in_flight, dead_letters: dead, oldest_age_ms: oldest.map(time).map(age_ms) })
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<QueueMessage>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.db.read(|conn| {
            fetch_all(
                conn,
                "SELECT group_id, transfer_id, dedup_id FROM queue_dead_letters ORDER BY seq LIMIT ?1",
                [sql_limit(max)],
                message_of,
            )
        })
    }
}
