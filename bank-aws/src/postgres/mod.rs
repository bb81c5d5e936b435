//! PostgreSQL (Aurora PostgreSQL): [`PgDb`] owns the writer pool, the reader pool (a replica that
//! may lag), the embedded migrations and the refusal of a database that is not this bank's or was
//! migrated by a newer binary. The stores built on it: [`ledger`], [`transfers`] (with the outbox
//! and its relay), [`users`] (users and refresh tokens), [`audit`] (the hash-chained audit log),
//! [`notifications`] (the notification log) and [`approvals`] (four-eyes deposit requests).
//!
//! # Reads that must see the caller's own writes
//! Every port method reads the writer, except the views that may lag ([`PgDb::fresh_reader`]):
//! those go to the reader only once it has replayed the writer's WAL position taken when the read
//! began (so a read never misses a write that returned before it, whichever process wrote it);
//! if the reader is not there within [`READER_WAIT`], the read goes to the writer. Without
//! `BANK_DATABASE_READER_URL` both pools are one.

pub mod approvals;
pub mod audit;
pub(crate) mod batch;
mod error;
pub mod ledger;
pub mod notifications;
mod stores;
#[cfg(feature = "testkit")]
pub mod testing;
pub mod transfers;
pub mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use error::{PgError, Role};
pub(crate) use error::{RowOf, db_err, is_unique_violation};
pub use stores::PgStores;

/// The bank's migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a view that may lag waits for the reader to replay the caller's position before it
/// reads the writer instead.
pub const READER_WAIT: Duration = Duration::from_millis(100);

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The writer (`BANK_DATABASE_URL`).
    pub url: String,
    /// A reader (`BANK_DATABASE_READER_URL`); `None`: read the writer.
    pub reader_url: Option<String>,
    /// Connections per pool.
    pub max_connections: u32,
    /// A schema to work in instead of the user's default (`search_path`), for tests that share
    /// one database.
    pub schema: Option<String>,
    /// How long taking a connection may wait before the call fails (retryable).
    pub acquire_timeout: Duration,
    /// `application_name` of the connections (in `pg_stat_activity`) unless the URL names one.
    pub application_name: String,
}

impl PgConfig {
    /// The writer at `url`, read from too, with 16 connections.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            reader_url: None,
            max_connections: 16,
            schema: None,
            acquire_timeout: Duration::from_secs(5),
            application_name: "bank-sdk".into(),
        }
    }
}

/// What [`PgDb::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version before.
    pub from: i64,
    /// The schema version now (the binary's).
    pub to: i64,
}

/// The database: writer and reader pools. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgDb {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: PgPool,
    /// `None`: the writer serves reads too.
    reader: Option<PgPool>,
    /// The database's name (in messages).
    name: String,
    reads_on_reader: AtomicU64,
    reads_on_writer: AtomicU64,
}

impl PgDb {
    /// Connects both pools (each answers one query before this returns) without touching the
    /// schema; see [`PgDb::migrate`] and [`PgDb::check_schema`].
    pub async fn connect(config: &PgConfig) -> Result<PgDb, PgError> {
        let (writer, name) = pool(&config.url, config, Role::Writer).await?;
        let reader = match &config.reader_url {
            Some(url) if url != &config.url => Some(pool(url, config, Role::Reader).await?.0),
            _ => None,
        };
        Ok(PgDb {
            inner: Arc::new(Inner {
                writer,
                reader,
                name,
                reads_on_reader: AtomicU64::new(0),
                reads_on_writer: AtomicU64::new(0),
            }),
        })
    }

    /// The writer pool.
    pub fn writer(&self) -> &PgPool {
        &self.inner.writer
    }

    /// The reader pool (the writer's when no reader is configured). Reads here may miss recent
    /// writes; see [`PgDb::fresh_reader`].
    pub fn reader(&self) -> &PgPool {
        self.inner.reader.as_ref().unwrap_or(&self.inner.writer)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A pool whose reads see every write committed before this call: the reader once it has
    /// replayed the writer's current WAL position (waiting up to [`READER_WAIT`]), else the writer.
    pub async fn fresh_reader(&self) -> bank_core::Result<&PgPool> {
        let Some(reader) = &self.inner.reader else {
            return Ok(&self.inner.writer);
        };
        let target = self.writer_position().await.map_err(db_err)?;
        let deadline = Instant::now() + READER_WAIT;
        loop {
            let caught_up: Option<bool> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn")
                .bind(&target)
                .fetch_one(reader)
                .await
                .ok();
            match caught_up {
                Some(true) => {
                    self.inner.reads_on_reader.fetch_add(1, Ordering::Relaxed);
                    return Ok(reader);
                }
                // Behind: wait a little, within the bound.
                Some(false) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(2)).await,
                // Behind past the bound, not a replica (NULL), or unreachable: the writer answers.
                _ => {
                    self.inner.reads_on_writer.fetch_add(1, Ordering::Relaxed);
                    return Ok(&self.inner.writer);
                }
            }
        }
    }

    /// The writer's current WAL position (`pg_lsn` as text), which a reader compares with what it
    /// has replayed.
    async fn writer_position(&self) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&self.inner.writer).await
    }

    /// Reads that [`PgDb::fresh_reader`] sent to the reader and to the writer, for metrics.
    pub fn fresh_reads(&self) -> (u64, u64) {
        (self.inner.reads_on_reader.load(Ordering::Relaxed), self.inner.reads_on_writer.load(Ordering::Relaxed))
    }

    /// How far the reader is behind the writer: zero when it has replayed the writer's current
    /// position (or is the writer), else the time since the last transaction it replayed was
    /// committed. `None` when the reader does not answer.
    pub async fn replica_lag(&self) -> Option<Duration> {
        let reader = self.inner.reader.as_ref()?;
        let target = self.writer_position().await.ok()?;
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT CASE
                 WHEN NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= $1::text::pg_lsn THEN 0::float8
                 ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
             END",
        )
        .bind(&target)
        .fetch_one(reader)
        .await
        .ok()?;
        Some(Duration::from_secs_f64(seconds.unwrap_or(0.0)))
    }

    /// Checks that the writer (and the reader, if any) answer a query: for readiness probes.
    pub async fn ready(&self) -> bank_core::Result<()> {
        sqlx::query("SELECT 1").execute(&self.inner.writer).await.map_err(db_err)?;
        if let Some(reader) = &self.inner.reader {
            sqlx::query("SELECT 1").execute(reader).await.map_err(db_err)?;
        }
        Ok(())
    }

    /// A server setting as the writer reports it (`SHOW`-style, e.g. `synchronous_commit`).
    pub async fn setting(&self, name: &str) -> bank_core::Result<String> {
        sqlx::query_scalar("SELECT current_setting($1)").bind(name).fetch_one(&self.inner.writer).await.map_err(db_err)
    }

    /// Brings the schema to this binary's version, refusing a database that is not this bank's or
    /// that a newer binary migrated (see [`PgDb::check_schema`]). Safe to run from several
    /// processes at once (the migrator takes an advisory lock).
    pub async fn migrate(&self) -> Result<Migrated, PgError> {
        let from = self.applied_version().await?;
        MIGRATOR
            .run(&self.inner.writer)
            .await
            .map_err(|source| PgError::Migrate { database: self.name().into(), source })?;
        Ok(Migrated { from, to: latest_version() })
    }

    /// Refuses a schema that is not exactly this binary's: not this bank's, newer, or not yet
    /// migrated (`bank-server migrate` fixes the last).
    pub async fn check_schema(&self) -> Result<(), PgError> {
        let applied = self.applied_version().await?;
        if applied < latest_version() {
            return Err(PgError::NotMigrated { database: self.name().into(), applied, binary: latest_version() });
        }
        Ok(())
    }

    /// The version the schema is at (0: empty), after refusing a foreign or newer one.
    async fn applied_version(&self) -> Result<i64, PgError> {
        let pool = &self.inner.writer;
        let query_err = |source| PgError::Query { database: self.name().into(), source };
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .map_err(query_err)?;
        if tables.is_empty() {
            return Ok(0);
        }
        let not_ours = |found: String| PgError::NotThisBank { database: self.name().into(), found };
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            let listed: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
            return Err(not_ours(format!("tables {} and no migration history", listed.join(", "))));
        }
        let applied: Vec<(i64, Vec<u8>, bool)> =
            sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(pool)
                .await
                .map_err(query_err)?;
        let Some(first) = applied.first() else {
            return Ok(0);
        };
        let ours = MIGRATOR.iter().next().map(|m| (m.version, m.checksum.as_ref()));
        if ours != Some((first.0, first.1.as_slice())) {
            return Err(not_ours(format!(
                "a migration history that does not start with this bank's (version {})",
                first.0
            )));
        }
        let version = applied.iter().filter(|(_, _, success)| *success).map(|(v, _, _)| *v).max().unwrap_or(0);
        if version > latest_version() {
            return Err(PgError::Newer { database: self.name().into(), applied: version, binary: latest_version() });
        }
        Ok(version)
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        if let Some(reader) = &self.inner.reader {
            reader.close().await;
        }
    }
}

/// Checks that `url` is a PostgreSQL URL sqlx can use (`postgres://user:password@host:port/db`,
/// with options such as `sslmode=require`); the reason, when not, never repeats the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected postgres://user:password@host:5432/database".into());
    }
    PgConnectOptions::from_str(url).map(|_| ()).map_err(|err| match err {
        // sqlx's message may quote the URL; say only what kind of problem it is.
        sqlx::Error::Configuration(_) => "not a valid PostgreSQL URL (check the host, port and options)".into(),
        other => other.to_string(),
    })
}

/// The newest migration this binary has.
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Planner settings of every connection of the bank's pools (sent at start-up, no round trip).
///
/// Every statement the stores run reads through an index (a key, an account's lines, a group of
/// the outbox); none is meant to read a whole table. But PostgreSQL keeps a prepared statement's
/// generic plan, and a trigger's plans, for the connection's life, planned with the sizes the
/// tables had *then*: planned on a new database, a lookup by key stays a scan of the whole table
/// as the table grows (seen: `holds` read whole, 12,000 rows for 10, and the line check
/// hash-joining all of `entry_lines`, until an ANALYZE happened to invalidate the plans; the
/// pipeline benchmark ran 5–20% slower for it, and the scans grow with the tables). With
/// sequential scans priced out, a plan made on an empty table is the index plan it needs when
/// the table is large. JIT is off with it: a scan that has no alternative (a table of a few rows
/// read whole) would otherwise look expensive enough to compile, ~300 ms each time; and compiling
/// pays off only for long analytical queries, which the bank does not run on these pools.
const PLANNER_SETTINGS: [(&str, &str); 2] = [("enable_seqscan", "off"), ("jit", "off")];

async fn pool(url: &str, config: &PgConfig, role: Role) -> Result<(PgPool, String), PgError> {
    let mut options = PgConnectOptions::from_str(url).map_err(|source| PgError::Connect { role, source })?;
    if !url.contains("application_name=") {
        options = options.application_name(&config.application_name);
    }
    if let Some(schema) = &config.schema {
        options = options.options([("search_path", schema.as_str())]);
    }
    options = options.options(PLANNER_SETTINGS);
    // No ping before each use (a round trip per batch): a connection that died fails its query
    // with a retryable error, is dropped by the pool, and the caller's retry gets a fresh one.
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|source| PgError::Connect { role, source })?;
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&pool)
        .await
        .map_err(|source| PgError::Connect { role, source })?;
    Ok((pool, name))
}
