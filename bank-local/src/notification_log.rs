//! [`SqliteNotificationLog`]: the durable [`NotificationLog`], in the `notification_deliveries`
//! table (migration `0005_events.sql`).
//!
//! Semantics are exactly those of the reference, [`MemoryNotificationLog`], and of the contract
//! on the trait, with one addition: every record survives a restart.
//!
//! # Rules
//! - `claim` is one writer job inserting the key if absent (`ON CONFLICT DO NOTHING`): of any
//!   number of concurrent claims, exactly one inserts, so exactly one returns `true`, and the
//!   claim is durable once it answered (a claim after a restart still loses).
//! - `mark` records the outcome (recording the key anew if it was forgotten since the claim, so
//!   it stays claimed); `release` deletes a claim without outcome, refuses one with an outcome
//!   (`InvalidInput`) and ignores an unknown key; each is one writer job.
//! - `claim_all` and `mark_all` are one writer job each for the whole list (one commit): all
//!   claimed or, on an error, none.
//! - **Retention**: the records of the latest `capacity` claims (and marks of forgotten keys) are
//!   kept; a new record forgets those more than `capacity` record positions older. That bounds the
//!   table; an event redelivered after `capacity` newer deliveries could be notified again, far
//!   beyond any redelivery of this bus (it redelivers only what was not committed).
//!
//! [`MemoryNotificationLog`]: bank_core::notifications::MemoryNotificationLog

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::notifications::{Channel, DeliveryKey, DeliveryOutcome, DeliveryState, NotificationLog};
use bank_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, nanos, sql_limit};
use crate::db::writer::WriterHandle;

pub use bank_core::notifications::NOTIFICATION_LOG_CAPACITY_DEFAULT;

/// Rows of this store's tables.
const ROW: RowOf = RowOf("notification log row");

/// The notification log in SQLite (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct SqliteNotificationLog {
    writer: WriterHandle,
    db: LocalDb,
    clock: Arc<dyn Clock>,
    capacity: usize,
}

impl SqliteNotificationLog {
    /// A log over `db` keeping the records of the latest `capacity` claims (at least one), reading
    /// time from `clock`, writing through the database's one writer ([`WriterHandle::for_db`]).
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>, capacity: usize) -> Self {
        let writer = WriterHandle::for_db(db, Arc::clone(&clock));
        SqliteNotificationLog { writer, db: db.clone(), clock, capacity: capacity.max(1) }
    }

    /// How many record positions are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

fn channel_of(text: &str) -> Result<Channel> {
    Channel::ALL
        .into_iter()
        .find(|channel| channel.as_str() == text)
        .ok_or_else(|| ROW.corrupt(format!("channel {text:?}")))
}

/// Columns binding a key: event id, channel, recipient.
struct KeyColumns {
    event_id: Uuid,
    channel: &'static str,
    recipient: Uuid,
}

impl From<DeliveryKey> for KeyColumns {
    fn from(key: DeliveryKey) -> Self {
        KeyColumns {
            event_id: *key.event_id.as_uuid(),
            channel: key.channel.as_str(),
            recipient: *key.recipient.as_uuid(),
        }
    }
}

/// Inserts `key` with `state` if absent; true if it did. A new record forgets those more than
/// `capacity` positions older.
fn insert_record(
    conn: &Connection,
    now: i64,
    capacity: usize,
    key: &KeyColumns,
    state: &DeliveryState,
) -> Result<bool> {
    let (state, reason) = state.columns();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO notification_deliveries (event_id, channel, recipient, state, reason, claimed_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (event_id, channel, recipient) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![key.event_id, key.channel, key.recipient, state, reason, now])
        })
        .map_err(db_err)?;
    if inserted == 0 {
        return Ok(false);
    }
    let oldest_kept = conn.last_insert_rowid().saturating_sub(sql_limit(capacity));
    let forgotten = conn
        .prepare_cached("DELETE FROM notification_deliveries WHERE seq <= ?1")
        .and_then(|mut statement| statement.execute([oldest_kept]))
        .map_err(db_err)?;
    if forgotten > 0 {
        tracing::warn!(forgotten, "notification log full; forgot its oldest records");
    }
    Ok(true)
}

/// Records `outcome` of `key`'s delivery.
fn mark_record(conn: &Connection, now: i64, capacity: usize, key: DeliveryKey, outcome: DeliveryOutcome) -> Result<()> {
    let columns = KeyColumns::from(key);
    let state = DeliveryState::from(outcome);
    let (name, reason) = state.columns();
    let updated = conn
        .prepare_cached(
            "UPDATE notification_deliveries SET state = ?1, reason = ?2, updated_at = ?3 \
             WHERE event_id = ?4 AND channel = ?5 AND recipient = ?6",
        )
        .and_then(|mut statement| {
            statement.execute(params![name, reason, now, columns.event_id, columns.channel, columns.recipient])
        })
        .map_err(db_err)?;
    if updated == 0 {
        // Forgotten since the claim (the log overflowed mid-send): record it anew, so the
        // delivery stays claimed.
        insert_record(conn, now, capacity, &columns, &state)?;
    }
    Ok(())
}

#[async_trait]
impl NotificationLog for SqliteNotificationLog {
    async fn claim(&self, key: DeliveryKey) -> Result<bool> {
        Ok(self.claim_all(&[key]).await?.first().copied().unwrap_or(false))
    }

    async fn mark(&self, key: DeliveryKey, outcome: DeliveryOutcome) -> Result<()> {
        self.mark_all(vec![(key, outcome)]).await
    }

    async fn claim_all(&self, keys: &[DeliveryKey]) -> Result<Vec<bool>> {
        let clock = Arc::clone(&self.clock);
        let capacity = self.capacity;
        let keys = keys.to_vec();
        self.writer
            .run(move |conn| {
                let now = nanos(clock.now())?;
                keys.into_iter()
                    .map(|key| insert_record(conn, now, capacity, &key.into(), &DeliveryState::Claimed))
                    .collect()
            })
            .await
    }

    async fn mark_all(&self, outcomes: Vec<(DeliveryKey, DeliveryOutcome)>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let clock = Arc::clone(&self.clock);
        let capacity = self.capacity;
        self.writer
            .run(move |conn| {
                let now = nanos(clock.now())?;
                outcomes.into_iter().try_for_each(|(key, outcome)| mark_record(conn, now, capacity, key, outcome))
            })
            .await
    }

    async fn release(&self, key: DeliveryKey) -> Result<()> {
        self.writer
            .run(move |conn| {
                let columns = KeyColumns::from(key);
                let key_params = params![columns.event_id, columns.channel, columns.recipient];
                let state: Option<String> = conn
                    .prepare_cached(
                        "SELECT state FROM notification_deliveries \
                         WHERE event_id = ?1 AND channel = ?2 AND recipient = ?3",
                    )
                    .and_then(|mut statement| statement.query_row(key_params, |row| row.get(0)).optional())
                    .map_err(db_err)?;
                match state.as_deref() {
                    None => Ok(()),
                    Some("claimed") => {
                        conn.prepare_cached(
                            "DELETE FROM notification_deliveries \
                             WHERE event_id = ?1 AND channel = ?2 AND recipient = ?3",
                        )
                        .and_then(|mut statement| statement.execute(key_params))
                        .map_err(db_err)?;
                        Ok(())
                    }
                    Some(_) => Err(Error::InvalidInput("a delivery with a recorded outcome cannot be released".into())),
                }
            })
            .await
    }

    async fn state(&self, key: DeliveryKey) -> Result<Option<DeliveryState>> {
        let columns = KeyColumns::from(key);
        self.db.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT channel, state, reason FROM notification_deliveries \
                     WHERE event_id = ?1 AND channel = ?2 AND recipient = ?3",
                )
                .map_err(db_err)?;
            let mut rows =
                statement.query(params![columns.event_id, columns.channel, columns.recipient]).map_err(db_err)?;
            let Some(row) = rows.next().map_err(db_err)? else { return Ok(None) };
            // Decoding the channel checks the row is one this log wrote.
            channel_of(&ROW.get::<String>(row, "channel")?)?;
            {
                let state: String = ROW.get(row, "state")?;
                DeliveryState::from_columns(&state, ROW.get(row, "reason")?)
                    .map(Some)
                    .ok_or_else(|| ROW.corrupt(format!("delivery state {state:?}")))
            }
        })
    }
}
