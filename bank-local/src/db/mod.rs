//! The embedded database machinery, knowing no store: opening one SQLite file in the data
//! directory (here), its single writer thread with group-committed batches of jobs
//! ([`writer`]), the WAL checkpoint thread ([`checkpoint`]) and the row helpers every store
//! decodes with ([`rows`]). Stores plug in from outside: they send jobs to the writer, keep
//! state inside its thread through [`writer::WriterState`] (the ledger's account cache), and
//! share per-database state through [`LocalDb::shared`] (the ledger's read cache).
//!
//! # Opening
//!
//! [`LocalDb::open_file`] owns the whole start-up check, in this order, and refuses with an
//! [`Error::Storage`] naming the path (never a panic, never a silent fresh database):
//!
//! 1. the data directory exists (created if missing) and is writable (a probe file is created and
//!    removed; root ignores permission bits, so this is the only honest test);
//! 2. no other process uses the file: an exclusive lock on its lock file (`bank.lock` for
//!    `bank.sqlite`, `ledger.lock` for `ledger.sqlite`) is taken (waiting up to [`LOCK_WAIT`]
//!    for a process that is just stopping) and held while any handle to the database or its
//!    writer thread lives. The writer's cache of account states and the read cache assume they
//!    see every write, so two processes on one database are refused;
//! 3. an existing file starts with the SQLite header (a garbage file is refused, not
//!    overwritten);
//! 4. it passes `PRAGMA quick_check` (a corrupt file is refused);
//! 5. its `PRAGMA application_id` is [`APPLICATION_ID`]; an existing database with another id, or
//!    with tables but id 0, belongs to some other program and is refused untouched (these checks
//!    run on a separate read-only connection, before anything writes to the file);
//! 6. the embedded migrations run (`PRAGMA user_version` counts those applied).
//!
//! Every file gets the whole schema, so any store can live in any file: [`LocalDb::open`] is the
//! whole bank in `bank.sqlite`, and [`crate::backend::LocalBackend`] keeps the ledger apart in
//! `ledger.sqlite` so that the two halves of a transfer's writes commit on two threads (see
//! there).
//!
//! Writes then go through one **writer thread** per file with its own connection (SQLite
//! serialises writers anyway; one thread makes that explicit and lets it group commits: see
//! [`writer`]); reads run on **read-only connections** taken from a small idle list
//! ([`LocalDb::read`]; WAL lets readers run beside the writer and see every committed
//! transaction).
//!
//! SQLite is used through `rusqlite`, synchronously, not through an async driver: measured here,
//! sqlx's SQLite driver hands every statement to a per-connection thread and back (two context
//! switches, ~30 µs on this VM), which capped the transfers pipeline at ~600 transfers/s; a
//! prepared statement run in place costs a few micro-seconds. SQLite itself is the one bundled
//! with `libsqlite3-sys` (compiled in, the same version everywhere): Debian's system library is
//! built without the lookaside allocator and with secure delete, and measured ~25% slower per
//! write here.
//!
//! Durability settings: `journal_mode=WAL` and `synchronous=FULL`. With `FULL`, SQLite fsyncs the
//! WAL at every commit, so a posting whose caller got an answer survives power loss (`NORMAL` in
//! WAL mode may lose the last commits). The fsync is the cost of a commit; the writer's group
//! commit amortises it over every write in the batch.
//!
//! Page size: a new database is created with pages of [`PAGE_SIZE`] (2 KiB, not SQLite's 4 KiB).
//! A commit writes every page it dirtied to the WAL whole, and a transfer's commits each touch
//! about one page in each of a dozen or more B-trees (tables and indexes: ~16 frames a commit in
//! `bank.sqlite`, ~8 in `ledger.sqlite`, counted from the WAL's frame headers under load), so
//! the bytes written and fsynced follow the page size, not the data. Measured at 1,000
//! transfers/s through the HTTP API (2026-12-06): the server wrote 1,042 MB to disk in 5 s with
//! 4 KiB pages, 660 MB with 2 KiB (454 MB with 1 KiB); transfers p99 20–33 ms against 6–15 ms
//! (p50 2.0–2.9 against 1.4–2.2 ms); CPU and the seed's peak unchanged within the noise. 2 KiB
//! rather than 1: the same latency, and a transfer row (~800 bytes) stays within one page (a
//! 1 KiB page keeps at most ~990 bytes of a row in place and spills the rest to overflow pages).
//! An existing database keeps the page size it was created with (SQLite cannot change it in WAL
//! mode).

use std::any::{Any, TypeId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bank_core::Error;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};
use rustc_hash::FxHashMap;

use crate::db::writer::WriterSlot;

pub(crate) mod checkpoint;
pub(crate) mod rows;
pub mod writer;

/// Page size of a database this crate creates, in bytes (see the module docs).
pub const PAGE_SIZE: i64 = 2048;

/// `PRAGMA application_id` of a database created by this crate ("BANK" in ASCII).
pub const APPLICATION_ID: i32 = 0x4241_4E4B;
/// File name of the database inside the data directory ([`LocalDb::open`]).
pub const DB_FILE_NAME: &str = "bank.sqlite";
/// File name of the ledger's database in [`crate::backend::LocalBackend`]'s layout.
pub const LEDGER_FILE_NAME: &str = "ledger.sqlite";
/// Idle read-only connections kept for reuse (more are opened while reads overlap).
pub const READER_CONNECTIONS_MAX: usize = 8;
/// How long a connection waits for a lock held by another one before failing as busy.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;
/// File name of the lock file of [`DB_FILE_NAME`] (every database file `<name>.sqlite` is
/// locked through `<name>.lock`).
pub const LOCK_FILE_NAME: &str = "bank.lock";
/// How long opening waits for another holder of the data directory's lock to let go.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);
/// Prepared statements each connection keeps (every store's queries fit).
pub(crate) const STATEMENT_CACHE: usize = 256;

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The embedded migrations, in order; `PRAGMA user_version` records how many ran.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/0001_ledger.sql")),
        M::up(include_str!("../../migrations/0002_idempotency.sql")),
        M::up(include_str!("../../migrations/0003_transfers.sql")),
        M::up(include_str!("../../migrations/0004_queue.sql")),
        M::up(include_str!("../../migrations/0005_events.sql")),
        M::up(include_str!("../../migrations/0006_users.sql")),
        M::up(include_str!("../../migrations/0007_queue_indexes.sql")),
        M::up(include_str!("../../migrations/0008_idempotency_in_time_order.sql")),
        M::up(include_str!("../../migrations/0009_audit_and_deposit_requests.sql")),
        M::up(include_str!("../../migrations/0010_outbox_claims.sql")),
        M::up(include_str!("../../migrations/0011_audit_chain.sql")),
        M::up(include_str!("../../migrations/0012_deposit_requests_by_approval.sql")),
        M::up(include_str!("../../migrations/0013_transfer_counts.sql")),
        M::up(include_str!("../../migrations/0014_hold_marks.sql")),
    ])
}

/// The opened database: its path, its idle read-only connections, and (once a store starts it)
/// its one writer thread ([`writer::WriterHandle::for_db`]), shared by every clone.
#[derive(Debug, Clone)]
pub struct LocalDb {
    path: PathBuf,
    /// The data directory's lock, released when the last clone (the writer's included) drops.
    _lock: Arc<std::fs::File>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// State stores share per database (the ledger's read cache), by type: see [`LocalDb::shared`].
    shared: Arc<Mutex<FxHashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
    writer_slot: Arc<Mutex<WriterSlot>>,
}

impl LocalDb {
    /// Opens (creating if needed) `<data_dir>/bank.sqlite`, after the checks in the module docs.
    pub async fn open(data_dir: &Path) -> Result<LocalDb, Error> {
        LocalDb::open_file(data_dir, DB_FILE_NAME).await
    }

    /// Opens (creating if needed) `<data_dir>/<file_name>` (a name ending in `.sqlite`), after
    /// the checks in the module docs.
    pub async fn open_file(data_dir: &Path, file_name: &str) -> Result<LocalDb, Error> {
        let data_dir = data_dir.to_path_buf();
        let file_name = file_name.to_owned();
        tokio::task::spawn_blocking(move || LocalDb::open_blocking(&data_dir, &file_name))
            .await
            .map_err(|e| Error::Storage { message: format!("opening the database stopped: {e}"), retryable: false })?
    }

    fn open_blocking(data_dir: &Path, file_name: &str) -> Result<LocalDb, Error> {
        let Some(stem) = file_name.strip_suffix(".sqlite").filter(|stem| !stem.is_empty() && !stem.contains('/'))
        else {
            return Err(fatal(&data_dir.join(file_name), "refusing to open", "a database file name ends in .sqlite"));
        };
        prepare_dir(data_dir)?;
        let lock = lock_file(data_dir, &format!("{stem}.lock"))?;
        let path = data_dir.join(file_name);
        if check_existing_file(&path)? {
            check_existing_database(&path)?;
        }
        let mut conn = LocalDb::connect_at(&path).map_err(|e| fatal(&path, "cannot open the database", e))?;
        // Takes effect only while the file is empty: before the switch to WAL, which writes it.
        conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(|e| fatal(&path, "cannot open the database", e))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| fatal(&path, "cannot open the database", e))?;
        let id: i32 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(|e| fatal(&path, "cannot read the database", e))?;
        if id == 0 {
            // A database just created (or created by a start that stopped right after): the
            // checks above found it empty. Claim it, so a later open knows it is ours.
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(|e| fatal(&path, "cannot initialise the database", e))?;
        }
        migrations().to_latest(&mut conn).map_err(|e| fatal(&path, "cannot migrate the database", e))?;
        Ok(LocalDb {
            path,
            _lock: Arc::new(lock),
            readers: Arc::default(),
            shared: Arc::default(),
            writer_slot: Arc::default(),
        })
    }

    /// A new read-write connection with this crate's settings (`synchronous=FULL`, foreign
    /// keys, busy timeout, statement cache, the writer's page cache). The writer thread uses
    /// one; anything else writing beside a running writer would only contend with it.
    pub fn connect(&self) -> rusqlite::Result<Connection> {
        LocalDb::connect_at(&self.path)
    }

    fn connect_at(path: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        configure(&conn, WRITER_CACHE_KIB)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(conn)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The one `T` of this database, shared by every clone and every store on it (created on
    /// first use). A store keeps what must be common to all its handles here — the ledger its
    /// read cache — without this module knowing the store.
    pub(crate) fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut shared = self.shared.lock();
        let slot = shared.entry(TypeId::of::<T>()).or_insert_with(|| Arc::new(T::default()));
        match Arc::clone(slot).downcast::<T>() {
            Ok(value) => value,
            // The map is keyed by the type id, so the value is always a `T`.
            Err(_) => unreachable!("shared state stored under another type's id"),
        }
    }

    pub(crate) fn writer_slot(&self) -> &Mutex<WriterSlot> {
        &self.writer_slot
    }

    /// Runs `read` on a read-only connection and returns its result.
    ///
    /// It runs right here, on the caller's thread: the reads of this crate are point lookups
    /// and short pages (micro-seconds), far cheaper than handing them to another thread. WAL
    /// lets them run beside the writer; each statement sees every transaction committed before
    /// it started, and an explicit read transaction inside `read` sees one snapshot.
    pub fn read<T>(&self, read: impl FnOnce(&Connection) -> bank_core::Result<T>) -> bank_core::Result<T> {
        let idle = self.readers.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader().map_err(|e| fatal(&self.path, "cannot open the database for reading", e))?,
        };
        let result = read(&conn);
        if conn.is_autocommit() {
            let mut readers = self.readers.lock();
            if readers.len() < READER_CONNECTIONS_MAX {
                readers.push(conn);
            }
        }
        result
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn, READER_CACHE_KIB)?;
        Ok(conn)
    }

    /// Closes the idle read connections. The writer thread stops once every store using it is
    /// dropped.
    pub async fn close(&self) {
        self.readers.lock().clear();
    }
}

/// Page cache of a read-only connection, in KiB (64 MiB).
pub const READER_CACHE_KIB: i64 = 65_536;

/// Page cache of a read-write connection (the writer thread's), in KiB: 4,096 pages of 2 KiB.
///
/// Smaller than a reader's ([`READER_CACHE_KIB`]) on purpose. Every COMMIT ends with SQLite
/// dropping cached pages past the database's end (`pager_end_transaction` → `pcache1Truncate`), and
/// a B-tree balance that swaps two pages parks one of them, for a moment, at the lock-byte page's
/// number (page 524,289 with 2 KiB pages), so that the cache's largest page number stays far past
/// the end and the drop walks the cache's whole hash table and every page in it, on every commit,
/// as long as the connection lives (SQLite 3.46 to 3.54 alike). With 64 MiB (32,768 pages) that
/// walk was the hottest function of the SQLite pipeline bench (7.5% of its CPU; `perf`); 2.9% with
/// 8 MiB, 1.3% with 2 MiB. The writer's working set is small — the B-trees' inner pages and the
/// leaves where time-ordered ids land — so a miss is rare (`pread` 0.1–0.2% of the CPU at either
/// size) and costs a read from the OS's cache; 8 MiB leaves room for a large batch's dirty pages
/// (keys a client made at random land on random leaves) without spilling them before the commit.
pub const WRITER_CACHE_KIB: i64 = 8_192;

/// Settings every connection gets. `temp_store=MEMORY` keeps statement and savepoint journals
/// in memory: the writer opens a savepoint per command, and with the default (a temp file) the
/// first change of a page in each savepoint was copied out to disk (measured: a fifth of the
/// writer's time). They only ever serve rollbacks inside a transaction, never recovery.
///
/// `cache_kib`: the connection's page cache in KiB ([`READER_CACHE_KIB`], [`WRITER_CACHE_KIB`]).
fn configure(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The WAL file shrinks back to this when the log starts over (see `checkpoint`).
    conn.pragma_update(None, "journal_size_limit", checkpoint::WAL_SIZE_LIMIT_BYTES)?;
    // A negative size is in KiB.
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn fatal(path: &Path, what: &str, err: impl std::fmt::Display) -> Error {
    Error::Storage { message: format!("{what} {}: {err}", path.display()), retryable: false }
}

/// Creates `dir` if missing and proves it writable by creating and removing a probe file.
fn prepare_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| fatal(dir, "cannot create the data directory", e))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| fatal(dir, "the data directory is not writable", e))?;
    std::fs::remove_file(&probe).map_err(|e| fatal(dir, "the data directory is not writable", e))?;
    Ok(())
}

/// Takes the exclusive lock `<dir>/<name>` of one database file (see the module docs).
fn lock_file(dir: &Path, name: &str) -> Result<std::fs::File, Error> {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fatal(&path, "cannot create the lock file", e))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(fatal(dir, "refusing to open", "the data directory is in use by another bank process"));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fatal(&path, "cannot lock the data directory", e)),
        }
    }
}

/// Whether the database file exists; refuses a file that is not SQLite. An empty file is what
/// SQLite itself treats as an empty database, so it counts as absent.
fn check_existing_file(path: &Path) -> Result<bool, Error> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(fatal(path, "cannot read the database file", e)),
    };
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    file.take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut header)
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
fn check_existing_database(path: &Path) -> Result<(), Error> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| fatal(path, "cannot open the database", e))?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(|e| fatal(path, "cannot open the database", e))?;
    let check: String = conn
        .pragma_query_value(None, "quick_check", |row| row.get(0))
        .map_err(|e| fatal(path, "refusing to open a corrupt database", e))?;
    if check != "ok" {
        return Err(fatal(path, "refusing to open a corrupt database", check));
    }
    let id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|e| fatal(path, "cannot read the database", e))?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(|e| fatal(path, "cannot read the database", e))?;
    if id != 0 || tables > 0 {
        return Err(fatal(
            path,
            "refusing to open",
            format!("the database belongs to another application (application_id {id:#x}, {tables} schema objects)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0008 rebuilds `idempotency_keys` in creation order: every row of the old table
    /// is kept, and one record per (caller, key) is still enforced.
    #[test]
    fn idempotency_records_survive_the_reorder() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrations().to_version(&mut conn, 7).expect("migrate to 7");
        let insert = "INSERT INTO idempotency_keys (caller, key, fingerprint, resource, state, lease_token, \
                      lease_until, response, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 5, ?7, ?8, 99)";
        let rows = [("bob", "k2", "in_flight", None, 20), ("alice", "k1", "completed", Some(vec![1_u8, 2]), 10)];
        for (caller, key, state, response, created_at) in &rows {
            conn.execute(
                insert,
                rusqlite::params![caller, key, [7_u8; 32], "res", state, [1_u8; 16], response, created_at],
            )
            .expect("insert");
        }
        migrations().to_latest(&mut conn).expect("migrate to latest");
        let mut statement = conn
            .prepare("SELECT caller, key, state, response, created_at FROM idempotency_keys ORDER BY id")
            .expect("select");
        type Row = (String, String, String, Option<Vec<u8>>, i64);
        let after: Vec<Row> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let expected: Vec<_> = rows
            .iter()
            .rev()
            .map(|(c, k, s, r, at)| (c.to_string(), k.to_string(), s.to_string(), r.clone(), *at))
            .collect();
        assert_eq!(after, expected, "every row kept, in creation order");
        let again = conn
            .execute(
                "INSERT OR IGNORE INTO idempotency_keys (caller, key, fingerprint, resource, state, lease_token, \
                 lease_until, created_at, expires_at) VALUES ('alice', 'k1', ?1, 'other', 'in_flight', ?2, 0, 30, 99)",
                rusqlite::params![[7_u8; 32], [1_u8; 16]],
            )
            .expect("insert or ignore");
        assert_eq!(again, 0, "(caller, key) is still unique");
    }
    /// Migration 0010 rebuilds `outbox` with groups and claims: every record is kept with its
    /// position and gets the group its message names, and positions are still never reused.
    #[test]
    fn outbox_records_get_their_groups_and_keep_their_positions() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrations().to_version(&mut conn, 9).expect("migrate to 9");
        let group = uuid::Uuid::now_v7();
        let debited = uuid::Uuid::now_v7();
        let enqueue = format!(r#"{{"type":"enqueue","transfer_id":"{}","group":"{group}","dedup_id":"x"}}"#, debited);
        let publish = format!(r#"{{"type":"publish","from_account_id":"{debited}"}}"#);
        for message in [&enqueue, &enqueue, &publish] {
            conn.execute("INSERT INTO outbox (message, created_at) VALUES (?1, 7)", [message]).expect("insert");
        }
        conn.execute("DELETE FROM outbox WHERE seq = 2", []).expect("relayed");
        migrations().to_latest(&mut conn).expect("migrate to latest");
        let mut statement = conn.prepare("SELECT seq, grp, claim FROM outbox ORDER BY seq").expect("select");
        let rows: Vec<(i64, uuid::Uuid, Option<i64>)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(rows, vec![(1, group, None), (3, debited, None)], "positions, groups, no claims");
        conn.execute("DELETE FROM outbox", []).expect("empty");
        conn.execute("INSERT INTO outbox (message, created_at, grp) VALUES ('{}', 8, ?1)", [group]).expect("insert");
        let next: i64 = conn.query_row("SELECT seq FROM outbox", [], |r| r.get(0)).expect("seq");
        assert_eq!(next, 4, "positions go on after the rebuild");
    }

    fn transfer_counts(conn: &Connection) -> Vec<(String, i64)> {
        let mut statement = conn.prepare("SELECT status, n FROM transfer_counts ORDER BY status").expect("select");
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    fn counts(accepted: i64, failed: i64, pending: i64, processing: i64, settled: i64) -> Vec<(String, i64)> {
        [
            ("accepted", accepted),
            ("failed", failed),
            ("pending", pending),
            ("processing", processing),
            ("settled", settled),
        ]
        .map(|(s, n)| (s.to_owned(), n))
        .to_vec()
    }

    /// Migration 0013 counts the transfers an existing database holds per status, and its
    /// triggers keep the counts with every insert and status change after it; a transfer cannot
    /// be deleted (a count would go wrong) and a write rolled back takes its count change along.
    #[test]
    fn transfer_counts_start_from_the_rows_and_follow_every_write() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrations().to_version(&mut conn, 12).expect("migrate to 12");
        let insert = "INSERT INTO transfers (id, seq, owner, from_account, status, version, created_at, body) \
                      VALUES (randomblob(16), ?1, x'00', x'01', ?2, 0, 0, '{}')";
        for (seq, status) in [(1, "settled"), (2, "settled"), (3, "pending"), (4, "accepted")] {
            conn.execute(insert, rusqlite::params![seq, status]).expect("insert");
        }
        migrations().to_latest(&mut conn).expect("migrate to latest");
        assert_eq!(transfer_counts(&conn), counts(1, 0, 1, 0, 2), "counted from the rows");

        conn.execute(insert, rusqlite::params![5, "accepted"]).expect("insert");
        conn.execute("UPDATE transfers SET status = 'processing' WHERE seq = 4", []).expect("update");
        conn.execute("UPDATE transfers SET status = 'failed', version = 1 WHERE seq = 3", []).expect("update");
        conn.execute("UPDATE transfers SET version = 2 WHERE seq = 3", []).expect("same status");
        assert_eq!(transfer_counts(&conn), counts(1, 1, 0, 1, 2), "every insert and status change");

        conn.execute_batch(
            "SAVEPOINT job; UPDATE transfers SET status = 'settled' WHERE seq = 4; ROLLBACK TO job; RELEASE job;",
        )
        .expect("rolled back");
        assert_eq!(transfer_counts(&conn), counts(1, 1, 0, 1, 2), "a rolled-back change counts nothing");
        let deleted = conn.execute("DELETE FROM transfers WHERE seq = 1", []);
        assert!(deleted.is_err(), "transfers are never deleted: {deleted:?}");
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT seq FROM transfers WHERE status = 'pending' \
                 AND json_extract(body, '$.outcome_unknown') = 1 ORDER BY seq LIMIT 10",
                [],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("transfers_unresolved"), "the unresolved query reads its partial index: {plan}");
    }
}
