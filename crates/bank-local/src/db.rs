//! Opening the embedded database: one SQLite file in the data directory, in WAL mode.
//!
//! [`LocalDb::open`] owns the whole start-up check, in this order, and refuses with an
//! [`Error::Storage`] naming the path (never a panic, never a silent fresh database):
//!
//! 1. the data directory exists (created if missing) and is writable (a probe file is created and
//!    removed; root ignores permission bits, so this is the only honest test);
//! 2. an existing `bank.sqlite` starts with the SQLite header (a garbage file is refused, not
//!    overwritten);
//! 3. it passes `PRAGMA quick_check` (a corrupt file is refused);
//! 4. its `PRAGMA application_id` is [`APPLICATION_ID`]; an existing database with another id, or
//!    with tables but id 0, belongs to some other program and is refused untouched (these checks
//!    run on a separate read-only connection, before anything writes to the file);
//! 5. the embedded migrations run.
//!
//! It then hands out two pools: a **single-connection writer** (SQLite serialises writers anyway;
//! one connection owned by one task makes that explicit and lets the ledger batch commits) and a
//! small **read-only reader** pool (WAL lets readers run beside the writer and see every
//! committed transaction).
//!
//! Durability settings: `journal_mode=WAL` and `synchronous=FULL`. With `FULL`, SQLite fsyncs the
//! WAL at every commit, so a posting whose caller got an answer survives power loss (`NORMAL` in
//! WAL mode may lose the last commits). The fsync is the cost of a commit; the ledger's group
//! commit amortises it over every posting in the batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bank_core::Error;
use parking_lot::Mutex;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use crate::writer::WriterSlot;

/// `PRAGMA application_id` of a database created by this crate ("BANK" in ASCII).
pub const APPLICATION_ID: i32 = 0x4241_4E4B;
/// File name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "bank.sqlite";
/// Connections in the read-only pool.
pub const READER_CONNECTIONS_MAX: u32 = 4;
/// How long a connection waits for a lock held by another one before failing as busy.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The opened database: its path, its two pools, and (once a store starts it) its one writer
/// task ([`crate::writer::WriterHandle::for_db`]), shared by every clone.
#[derive(Debug, Clone)]
pub struct LocalDb {
    path: PathBuf,
    writer: SqlitePool,
    reader: SqlitePool,
    writer_slot: Arc<Mutex<WriterSlot>>,
}

impl LocalDb {
    /// Opens (creating if needed) `<data_dir>/bank.sqlite`, after the checks in the module docs.
    pub async fn open(data_dir: &Path) -> Result<LocalDb, Error> {
        prepare_dir(data_dir).await?;
        let path = data_dir.join(DB_FILE_NAME);
        let exists = check_existing_file(&path).await?;
        if exists {
            check_existing_database(&path).await?;
        }
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .foreign_keys(true);
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(writer_options)
            .await
            .map_err(|e| fatal(&path, "cannot open the database", e))?;
        let id: i32 = sqlx::query_scalar("PRAGMA application_id")
            .fetch_one(&writer)
            .await
            .map_err(|e| fatal(&path, "cannot read the database", e))?;
        if id == 0 {
            // A database just created (or created by a start that stopped right after): the
            // checks above found it empty. Claim it, so a later open knows it is ours.
            sqlx::query(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                .execute(&writer)
                .await
                .map_err(|e| fatal(&path, "cannot initialise the database", e))?;
        }
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(|e| fatal(&path, "cannot migrate the database", e))?;
        // Readers open the file only after it exists and is in WAL mode (a persistent setting).
        let reader = SqlitePoolOptions::new()
            .max_connections(READER_CONNECTIONS_MAX)
            .connect_with(base.read_only(true))
            .await
            .map_err(|e| fatal(&path, "cannot open the database for reading", e))?;
        Ok(LocalDb { path, writer, reader, writer_slot: Arc::default() })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The single-connection writer pool. Only one task should write: the writer task behind
    /// [`crate::writer::WriterHandle`]; stores send their writes there.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Where the running writer task of this database is remembered.
    pub(crate) fn writer_slot(&self) -> &Mutex<WriterSlot> {
        &self.writer_slot
    }

    /// The read-only pool.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes both pools, waiting for their connections to finish.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn fatal(path: &Path, what: &str, err: impl std::fmt::Display) -> Error {
    Error::Storage { message: format!("{what} {}: {err}", path.display()), retryable: false }
}

/// Creates `dir` if missing and proves it writable by creating and removing a probe file.
async fn prepare_dir(dir: &Path) -> Result<(), Error> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| fatal(dir, "cannot create the data directory", e))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    tokio::fs::write(&probe, b"probe").await.map_err(|e| fatal(dir, "the data directory is not writable", e))?;
    tokio::fs::remove_file(&probe).await.map_err(|e| fatal(dir, "the data directory is not writable", e))?;
    Ok(())
}

/// Whether the database file exists; refuses a file that is not SQLite. An empty file is what
/// SQLite itself treats as an empty database, so it counts as absent.
async fn check_existing_file(path: &Path) -> Result<bool, Error> {
    use tokio::io::AsyncReadExt;
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(fatal(path, "cannot read the database file", e)),
    };
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    (&mut file)
        .take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut header)
        .await
        .map_err(|e| fatal(path, "cannot read the database file", e))?;
    if header.is_empty() {
        return Ok(false);
    }
    if header != SQLITE_HEADER {
        return Err(fatal(path, "refusing to open", "the file is not an SQLite database"));
    }
    Ok(true)
}

/// Integrity and ownership checks on an existing file, through a read-only connection so a
/// foreign database is left exactly as found.
async fn check_existing_database(path: &Path) -> Result<(), Error> {
    let options =
        SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS));
    let mut conn =
        SqliteConnection::connect_with(&options).await.map_err(|e| fatal(path, "cannot open the database", e))?;
    let result = async {
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| fatal(path, "refusing to open a corrupt database", e))?;
        if check != "ok" {
            return Err(fatal(path, "refusing to open a corrupt database", check));
        }
        let id: i32 = sqlx::query_scalar("PRAGMA application_id")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| fatal(path, "cannot read the database", e))?;
        if id == APPLICATION_ID {
            return Ok(());
        }
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| fatal(path, "cannot read the database", e))?;
        if id != 0 || tables > 0 {
            return Err(fatal(
                path,
                "refusing to open",
                format!(
                    "the database belongs to another application (application_id {id:#x}, {tables} schema objects)"
                ),
            ));
        }
        Ok(())
    }
    .await;
    // Closing a read-only connection cannot lose data; its error adds nothing to `result`.
    let _ = conn.close().await;
    result
}
