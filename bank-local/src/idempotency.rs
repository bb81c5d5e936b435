//! [`SqliteIdempotencyStore`]: the durable [`IdempotencyStore`], one row per key in the
//! `idempotency_keys` table (migration `0002_idempotency.sql`; rows kept in creation order with a
//! unique `(caller, key)` index since `0008_idempotency_in_time_order.sql`).
//!
//! Semantics are exactly those of the reference [`MemoryIdempotencyStore`]
//! (`bank_core::memory::idempotency`) and the contract on [`IdempotencyStore`]:
//! a lease is live while `now < lease_until`; a record is kept while `now < expires_at`
//! (`created_at` + [`IDEMPOTENCY_RETENTION_HOURS`]) and past that counts as absent everywhere;
//! a completed row keeps the completing token so that the same `complete` again is a no-op.
//!
//! # Why it is safe
//!
//! - *Atomicity*: every change (`begin`, `complete`, `release`, `purge_expired`) is one job of the
//!   database's single writer ([`WriterHandle::run`]): it reads the clock, reads the row, decides
//!   and writes with no other writer in between, so of many concurrent `begin`s on one key exactly
//!   one starts. A refused call writes nothing (its savepoint is rolled back).
//! - *Durability*: a call answers only after its batch committed (`synchronous=FULL`), so a key a
//!   caller saw started or completed survives a crash; a failed commit answers a retryable
//!   [`Error::Storage`] and leaves no trace.
//! - *Time* comes only from the injected [`Clock`], read inside the writer job.
//! - `abandoned` only reads, so it runs on a read-only connection; writes answer after COMMIT and
//!   WAL readers see every committed transaction, so it sees every earlier call's effect.
//!
//! Like the memory store, rows past retention are not deleted by a timer: `begin` replaces one it
//! meets, and the owner must call [`IdempotencyStore::purge_expired`] periodically.
//!
//! [`MemoryIdempotencyStore`]: bank_core::memory::idempotency::MemoryIdempotencyStore

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::idempotency::{
    Begin, IDEMPOTENCY_RETENTION_HOURS, IdempotencyKey, IdempotencyRecord, IdempotencyScope, LeaseToken, RecordState,
};
use bank_core::ports::IdempotencyStore;
use bank_core::transfer::Fingerprint;
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, fetch_optional, nanos, sql_limit, time};
use crate::db::writer::WriterHandle;

/// Column value of `state` for a key in flight.
const IN_FLIGHT: &str = "in_flight";
/// Column value of `state` for a completed key.
const COMPLETED: &str = "completed";

/// Idempotency records in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteIdempotencyStore {
    writer: WriterHandle,
    db: LocalDb,
    clock: Arc<dyn Clock>,
}

impl SqliteIdempotencyStore {
    /// A store over `db`, reading time from `clock`, writing through the database's one writer
    /// ([`WriterHandle::for_db`]: started here if no store of `db` runs it yet, in which case
    /// this must be called inside a Tokio runtime).
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        let writer = WriterHandle::for_db(db, Arc::clone(&clock));
        SqliteIdempotencyStore { writer, db: db.clone(), clock }
    }

    /// The database the keys are in.
    pub(crate) fn db(&self) -> &LocalDb {
        &self.db
    }
}

/// Rows of this store's tables.
const ROW: RowOf = RowOf("idempotency row");

fn fingerprint_of(row: &Row<'_>) -> Result<Fingerprint> {
    let bytes: Vec<u8> = ROW.get(row, "fingerprint")?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| ROW.corrupt("fingerprint is not 32 bytes"))?;
    Ok(Fingerprint(bytes))
}

fn token_of(row: &Row<'_>) -> Result<LeaseToken> {
    Ok(LeaseToken(ROW.get::<Uuid>(row, "lease_token")?))
}

/// `now + lease`, refusing a lease that protects nothing (zero or negative) or overflows.
fn lease_until(now: DateTime<Utc>, lease: TimeDelta) -> Result<DateTime<Utc>> {
    if lease <= TimeDelta::zero() {
        return Err(Error::InvalidInput("an idempotency lease must be positive".into()));
    }
    now.checked_add_signed(lease).ok_or_else(|| Error::InvalidInput("the idempotency lease is too long".into()))
}

/// The live row of a key in `begin`.
struct Live {
    fingerprint: Fingerprint,
    resource: String,
    state: String,
    lease_until: i64,
    response: Option<Vec<u8>>,
    created_at: i64,
}

/// A new key in flight (nothing if the key is taken).
const INSERT_NEW_KEY: &str = "INSERT OR IGNORE INTO idempotency_keys (caller, key, fingerprint, resource, state, \
     lease_token, lease_until, response, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9)";
/// A new key in flight over one past retention.
const REPLACE_EXPIRED_KEY: &str = "INSERT OR REPLACE INTO idempotency_keys (caller, key, fingerprint, resource, \
     state, lease_token, lease_until, response, created_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9)";

/// The writer job of `begin`: read, decide and write in one step.
fn begin_job(
    conn: &Connection,
    now: DateTime<Utc>,
    scope: &IdempotencyScope,
    fingerprint: Fingerprint,
    resource: &str,
    lease: TimeDelta,
) -> Result<Begin> {
    // A lease past the storable range (year 2262) never runs out before it: store the maximum.
    let lease_until = lease_until(now, lease)?.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let expires_at = now.checked_add_signed(TimeDelta::hours(IDEMPOTENCY_RETENTION_HOURS)).ok_or_else(|| {
        Error::Storage { message: "the clock is out of range for retaining a key".into(), retryable: false }
    })?;
    let now_nanos = nanos(now)?;
    let expires_at = nanos(expires_at)?;
    let token = LeaseToken::new();
    let write = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut statement| {
                statement.execute(params![
                    scope.caller,
                    scope.key.as_str(),
                    &fingerprint.0[..],
                    resource,
                    IN_FLIGHT,
                    token.0,
                    lease_until,
                    now_nanos,
                    expires_at,
                ])
            })
            .map_err(db_err)
    };
    // The usual case, a new key, in one statement; a used key (live or past retention) is looked
    // at below.
    if write(INSERT_NEW_KEY)? == 1 {
        return Ok(Begin::Started { resource: resource.to_owned(), token, first_seen_at: now, takeover: false });
    }
    let live = fetch_optional(
        conn,
        "SELECT fingerprint, resource, state, lease_until, response, created_at FROM idempotency_keys \
         WHERE caller = ?1 AND key = ?2 AND expires_at > ?3",
        params![scope.caller, scope.key.as_str(), now_nanos],
        |row| {
            Ok(Live {
                fingerprint: fingerprint_of(row)?,
                resource: ROW.get(row, "resource")?,
                state: ROW.get(row, "state")?,
                lease_until: ROW.get(row, "lease_until")?,
                response: ROW.get(row, "response")?,
                created_at: ROW.get(row, "created_at")?,
            })
        },
    )?;
    if let Some(live) = live {
        if live.fingerprint != fingerprint {
            return Err(Error::IdempotencyMismatch);
        }
        let resource = live.resource;
        return match live.state.as_str() {
            COMPLETED => Ok(Begin::Replay { resource, response: live.response.unwrap_or_default() }),
            IN_FLIGHT if now_nanos < live.lease_until => Err(Error::IdempotencyInFlight),
            IN_FLIGHT => {
                // The first attempt died: take over its resource and first-seen time.
                let token = LeaseToken::new();
                conn.prepare_cached(
                    "UPDATE idempotency_keys SET lease_token = ?1, lease_until = ?2 WHERE caller = ?3 AND key = ?4",
                )
                .and_then(|mut statement| {
                    statement.execute(params![token.0, lease_until, scope.caller, scope.key.as_str()])
                })
                .map_err(db_err)?;
                let first_seen_at = time(live.created_at);
                Ok(Begin::Started { resource, token, first_seen_at, takeover: true })
            }
            other => Err(ROW.corrupt(format!("state {other:?}"))),
        };
    }
    // Past retention: replaced.
    write(REPLACE_EXPIRED_KEY)?;
    Ok(Begin::Started { resource: resource.to_owned(), token, first_seen_at: now, takeover: false })
}

/// The writer job of `complete` (also run inside a transfer insert's job, see
/// [`crate::transfers::SqliteTransferStore::completing_keys_of`]).
pub(crate) fn complete_job(
    conn: &Connection,
    now: DateTime<Utc>,
    scope: &IdempotencyScope,
    token: LeaseToken,
    response: Vec<u8>,
) -> Result<()> {
    // The usual case in one statement: in flight under this token.
    let now_nanos = nanos(now)?;
    let completed = conn
        .prepare_cached(
            "UPDATE idempotency_keys SET state = ?1, response = ?2 \
             WHERE caller = ?3 AND key = ?4 AND state = ?5 AND lease_token = ?6 AND expires_at > ?7",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                COMPLETED,
                response,
                scope.caller,
                scope.key.as_str(),
                IN_FLIGHT,
                token.0,
                now_nanos
            ])
        })
        .map_err(db_err)?;
    if completed == 1 {
        return Ok(());
    }
    let stored = fetch_optional(
        conn,
        "SELECT state, lease_token FROM idempotency_keys WHERE caller = ?1 AND key = ?2 AND expires_at > ?3",
        params![scope.caller, scope.key.as_str(), now_nanos],
        |row| Ok((token_of(row)?, ROW.get::<String>(row, "state")?)),
    )?;
    let Some((stored_token, state)) = stored else { return Err(Error::LeaseLost) };
    if stored_token != token {
        // Taken over, or completed by another token.
        return Err(Error::LeaseLost);
    }
    match state.as_str() {
        // The token is current until another attempt takes over, even past its lease.
        IN_FLIGHT => {
            conn.prepare_cached("UPDATE idempotency_keys SET state = ?1, response = ?2 WHERE caller = ?3 AND key = ?4")
                .and_then(|mut statement| {
                    statement.execute(params![COMPLETED, response, scope.caller, scope.key.as_str()])
                })
                .map_err(db_err)?;
            Ok(())
        }
        // The same completion again: the first response stays, as clients may have seen it.
        COMPLETED => Ok(()),
        other => Err(ROW.corrupt(format!("state {other:?}"))),
    }
}

/// The writer job of `release`: forgets the key only if it is in flight under `token`.
fn release_job(conn: &Connection, now: DateTime<Utc>, scope: &IdempotencyScope, token: LeaseToken) -> Result<()> {
    let now = nanos(now)?;
    let deleted = conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE caller = ?1 AND key = ?2 AND state = ?3 AND lease_token = ?4 \
             AND expires_at > ?5",
        )
        .and_then(|mut statement| statement.execute(params![scope.caller, scope.key.as_str(), IN_FLIGHT, token.0, now]))
        .map_err(db_err)?;
    // Absent, expired, taken over, or completed (its effect happened: never forget it).
    if deleted == 1 { Ok(()) } else { Err(Error::LeaseLost) }
}

/// The writer job of `purge_expired`.
fn purge_job(conn: &Connection, now: DateTime<Utc>) -> Result<u64> {
    let now = nanos(now)?;
    let deleted = conn
        .prepare_cached("DELETE FROM idempotency_keys WHERE expires_at <= ?1")
        .and_then(|mut statement| statement.execute([now]))
        .map_err(db_err)?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

fn abandoned_record(row: &Row<'_>) -> Result<IdempotencyRecord> {
    let key: String = ROW.get(row, "key")?;
    Ok(IdempotencyRecord {
        scope: IdempotencyScope {
            caller: ROW.get(row, "caller")?,
            key: IdempotencyKey::new(key).map_err(|e| ROW.corrupt(e))?,
        },
        fingerprint: fingerprint_of(row)?,
        resource: ROW.get(row, "resource")?,
        state: RecordState::InFlight { token: token_of(row)?, lease_until: time(ROW.get(row, "lease_until")?) },
        created_at: time(ROW.get(row, "created_at")?),
        expires_at: time(ROW.get(row, "expires_at")?),
    })
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: Fingerprint,
        resource: &str,
        lease: TimeDelta,
    ) -> Result<Begin> {
        if lease <= TimeDelta::zero() {
            return Err(Error::InvalidInput("an idempotency lease must be positive".into()));
        }
        let clock = Arc::clone(&self.clock);
        let scope = scope.clone();
        let resource = resource.to_owned();
        self.writer.run(move |conn| begin_job(conn, clock.now(), &scope, fingerprint, &resource, lease)).await
    }

    async fn complete(&self, scope: &IdempotencyScope, token: LeaseToken, response: Vec<u8>) -> Result<()> {
        let clock = Arc::clone(&self.clock);
        let scope = scope.clone();
        self.writer.run(move |conn| complete_job(conn, clock.now(), &scope, token, response)).await
    }

    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> Result<()> {
        let clock = Arc::clone(&self.clock);
        let scope = scope.clone();
        self.writer.run(move |conn| release_job(conn, clock.now(), &scope, token)).await
    }

    async fn abandoned(&self, limit: usize) -> Result<Vec<IdempotencyRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = nanos(self.clock.now())?;
        let limit = sql_limit(limit);
        self.db.read(|conn| {
            fetch_all(
                conn,
                "SELECT caller, key, fingerprint, resource, lease_token, lease_until, created_at, expires_at \
                 FROM idempotency_keys WHERE state = ?1 AND lease_until <= ?2 AND expires_at > ?2 \
                 ORDER BY created_at, caller, key LIMIT ?3",
                params![IN_FLIGHT, now, limit],
                abandoned_record,
            )
        })
    }

    async fn purge_expired(&self) -> Result<u64> {
        let clock = Arc::clone(&self.clock);
        self.writer.run(move |conn| purge_job(conn, clock.now())).await
    }
}
