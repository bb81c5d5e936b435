//! [`SqliteEventBus`]: the durable event bus ([`EventPublisher`] + [`EventSubscriber`]), in the
//! `events` and `event_subscriptions` tables (migration `0005_events.sql`).
//!
//! Semantics are exactly those of the reference, [`MemoryEventBus`], and of the contracts on the
//! traits, with one addition: everything survives a restart.
//!
//! # The bus
//! - `publish` appends a whole batch or nothing, in order, in one writer job, so concurrent
//!   publishes never interleave inside a batch. Each event gets a `seq` (publish order) and is
//!   stored as JSON.
//! - A subscription is a row (name, committed seq): every event with `seq <= committed_seq` is
//!   committed. **Cursors are durable**: after a restart, a subscription of the same name polls
//!   exactly the events after its last commit, without repeating a committed one.
//! - A subscription created late starts at the oldest event still held (as the memory bus does).
//! - `poll` reads after the cursor on a read-only connection without moving it (at-least-once);
//!   `commit(id)` moves the cursor past the first pending occurrence of `id` (a duplicate
//!   published by a retrying relay is delivered again); an id that is not pending moves nothing.
//! - **Bounded**: the log holds at most `capacity` events. When a publish does not fit, the job
//!   first deletes every event all subscriptions have committed (everything with no subscription
//!   at all); if it still does not fit, the publish fails with a retryable [`Error::Storage`] and
//!   appends nothing. A batch larger than the capacity is refused for good. Trimming is lazy (only
//!   when full), and deletes only a prefix of the log, so the events held are the contiguous
//!   `seq` range `min..=max` (their count is `max - min + 1`, read from the primary key without a
//!   scan).
//!
//! [`MemoryEventBus`]: bank_core::memory::bus::MemoryEventBus

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::events::Event;
use bank_core::ids::EventId;
use bank_core::notifications::{EVENT_POLL_MAX, EventSubscriber, EventSubscription};
use bank_core::ports::EventPublisher;
use bank_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, nanos, sql_limit};
use crate::db::writer::WriterHandle;

pub use bank_core::memory::bus::EVENT_BUS_CAPACITY_DEFAULT;

/// Rows of this store's tables.
const ROW: RowOf = RowOf("event bus row");

/// The event bus in SQLite (see the module docs). Cloning shares the bus.
#[derive(Debug, Clone)]
pub struct SqliteEventBus {
    writer: WriterHandle,
    db: LocalDb,
    clock: Arc<dyn Clock>,
    capacity: usize,
}

impl SqliteEventBus {
    /// A bus over `db` holding at most `capacity` events (at least one), reading time from
    /// `clock`, writing through the database's one writer ([`WriterHandle::for_db`]: started here
    /// if no store of `db` runs it yet, in which case this must be called inside a Tokio runtime).
    /// The capacity is not stored: reopening with a smaller one only makes publishes wait for
    /// trimming sooner.
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>, capacity: usize) -> Self {
        let writer = WriterHandle::for_db(db, Arc::clone(&clock));
        SqliteEventBus { writer, db: db.clone(), clock, capacity: capacity.max(1) }
    }

    /// How many events the log may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The events held, oldest first, duplicates included (see the module docs on trimming). For
    /// tests.
    pub async fn published(&self) -> Result<Vec<Event>> {
        self.db.read(|conn| {
            fetch_all(conn, "SELECT body FROM events ORDER BY seq", [], |row| {
                decode_event(&ROW.get::<String>(row, "body")?)
            })
        })
    }

    /// The subscription called `name`, created at the oldest event held if new; an existing one
    /// keeps its committed cursor (across restarts too).
    pub async fn subscription(&self, name: &str) -> Result<SqliteSubscription> {
        let clock = Arc::clone(&self.clock);
        let owned = name.to_owned();
        self.writer
            .run(move |conn| {
                let now = nanos(clock.now())?;
                // Just before the oldest event held; with none held, after the last one ever
                // published (the next seq AUTOINCREMENT hands out is one more).
                conn.prepare_cached(
                    "INSERT INTO event_subscriptions (name, committed_seq, created_at, updated_at) \
                     VALUES (?1, COALESCE((SELECT min(seq) - 1 FROM events), \
                     (SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), ?2, ?2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(params![owned, now]))
                .map_err(db_err)?;
                Ok(())
            })
            .await?;
        Ok(SqliteSubscription {
            writer: self.writer.clone(),
            db: self.db.clone(),
            clock: Arc::clone(&self.clock),
            name: name.to_owned(),
        })
    }
}

fn decode_event(body: &str) -> Result<Event> {
    serde_json::from_str(body).map_err(|e| ROW.corrupt(format!("event body: {e}")))
}

/// How many events the log holds. Only a prefix is ever deleted, so they are the range
/// `min..=max`. Two subqueries, because SQLite answers a lone `min()` or `max()` from the
/// index's end but scans the whole table for both in one select.
fn held(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT COALESCE((SELECT max(seq) FROM events) - (SELECT min(seq) FROM events) + 1, 0)")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(db_err)
}

/// The writer job of `publish` (also run inside a transfer store job that delivers directly).
pub(crate) fn publish_job(conn: &Connection, now: i64, capacity: usize, events: Vec<(Uuid, String)>) -> Result<()> {
    let incoming = sql_limit(events.len());
    let capacity = sql_limit(capacity);
    if held(conn)?.saturating_add(incoming) > capacity {
        let slowest: Option<i64> = conn
            .prepare_cached("SELECT min(committed_seq) FROM event_subscriptions")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(db_err)?;
        match slowest {
            Some(committed) => conn
                .prepare_cached("DELETE FROM events WHERE seq <= ?1")
                .and_then(|mut statement| statement.execute([committed])),
            None => conn.prepare_cached("DELETE FROM events").and_then(|mut statement| statement.execute([])),
        }
        .map_err(db_err)?;
        if held(conn)?.saturating_add(incoming) > capacity {
            let slowest: String = conn
                .prepare_cached("SELECT name FROM event_subscriptions ORDER BY committed_seq, name LIMIT 1")
                .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
                .map_err(db_err)?
                .unwrap_or_default();
            return Err(Error::Storage {
                message: format!("event bus full ({capacity} events): subscription {slowest:?} is behind"),
                retryable: true,
            });
        }
    }
    let mut insert =
        conn.prepare_cached("INSERT INTO events (event_id, body, published_at) VALUES (?1, ?2, ?3)").map_err(db_err)?;
    for (id, body) in events {
        insert.execute(params![id, body, now]).map_err(db_err)?;
    }
    Ok(())
}

/// Events as `(id, JSON body)` rows, encoded by the caller so the writer thread does not.
pub(crate) fn encode_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Vec<(Uuid, String)>> {
    events
        .into_iter()
        .map(|event| {
            serde_json::to_string(event)
                .map(|body| (*event.id.as_uuid(), body))
                .map_err(|e| Error::Storage { message: format!("cannot encode an event: {e}"), retryable: false })
        })
        .collect()
}

#[async_trait]
impl EventPublisher for SqliteEventBus {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let capacity = self.capacity;
        if events.len() > capacity {
            // It would never fit: retrying cannot help.
            return Err(Error::Storage {
                message: format!("a batch of {} events exceeds the event bus capacity of {capacity}", events.len()),
                retryable: false,
            });
        }
        if events.is_empty() {
            return Ok(());
        }
        let rows = encode_events(events)?;
        let clock = Arc::clone(&self.clock);
        self.writer.run(move |conn| publish_job(conn, nanos(clock.now())?, capacity, rows)).await
    }
}

#[async_trait]
impl EventSubscriber for SqliteEventBus {
    async fn subscribe(&self, name: &str) -> Result<Arc<dyn EventSubscription>> {
        Ok(Arc::new(self.subscription(name).await?))
    }
}

/// A handle to one named, durable cursor of a [`SqliteEventBus`]. Handles to one name share it.
#[derive(Debug, Clone)]
pub struct SqliteSubscription {
    writer: WriterHandle,
    db: LocalDb,
    clock: Arc<dyn Clock>,
    name: String,
}

impl SqliteSubscription {
    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn no_subscription(name: &str) -> Error {
    Error::InvalidInput(format!("no subscription {name:?}"))
}

#[async_trait]
impl EventSubscription for SqliteSubscription {
    async fn poll(&self, max: usize) -> Result<Vec<Event>> {
        let max = max.min(EVENT_POLL_MAX);
        if max == 0 {
            return Ok(Vec::new());
        }
        // One statement, so the cursor and the events come from one snapshot; the subscription's
        // row comes back (with a NULL body) even when nothing is pending.
        let bodies = self.db.read(|conn| {
            fetch_all(
                conn,
                "SELECT e.body AS body FROM event_subscriptions s LEFT JOIN events e ON e.seq > s.committed_seq \
                 WHERE s.name = ?1 ORDER BY e.seq LIMIT ?2",
                params![self.name, sql_limit(max)],
                |row| ROW.get::<Option<String>>(row, "body"),
            )
        })?;
        if bodies.is_empty() {
            return Err(no_subscription(&self.name));
        }
        bodies.into_iter().flatten().map(|body| decode_event(&body)).collect()
    }

    async fn commit(&self, through: EventId) -> Result<()> {
        let name = self.name.clone();
        let clock = Arc::clone(&self.clock);
        self.writer
            .run(move |conn| {
                let committed: i64 = conn
                    .prepare_cached("SELECT committed_seq FROM event_subscriptions WHERE name = ?1")
                    .and_then(|mut statement| statement.query_row([&name], |row| row.get(0)).optional())
                    .map_err(db_err)?
                    .ok_or_else(|| no_subscription(&name))?;
                let found: Option<i64> = conn
                    .prepare_cached("SELECT min(seq) FROM events WHERE event_id = ?1 AND seq > ?2")
                    .and_then(|mut statement| {
                        statement.query_row(params![through.as_uuid(), committed], |row| row.get(0))
                    })
                    .map_err(db_err)?;
                if let Some(seq) = found {
                    let now = nanos(clock.now())?;
                    conn.prepare_cached(
                        "UPDATE event_subscriptions SET committed_seq = ?1, updated_at = ?2 WHERE name = ?3",
                    )
                    .and_then(|mut statement| statement.execute(params![seq, now, name]))
                    .map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }
}
