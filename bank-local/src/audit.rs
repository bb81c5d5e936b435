//! [`SqliteAuditLog`]: the durable, hash-chained [`AuditLog`] in its own database file,
//! `audit.sqlite` (tables `audit_records`, `audit_tree`, `audit_checkpoints` of migration
//! `0011_audit_chain.sql`, whose triggers refuse every `UPDATE` and `DELETE`), and the log's
//! signing key in `audit.key` ([`load_or_create_key`]).
//!
//! Appends go through the file's single writer thread, so `seq` is gap-free in commit order and
//! chaining is race-free: a job reads the last record's hash and the few tree hashes it needs,
//! then writes the record and its new tree hashes, all inside the writer's transaction. Many
//! appends share one commit (group commit: one fsync for a batch); a call answers once its batch
//! committed. Audit records have their own file so that their fsyncs never queue behind the
//! bank's other writes, nor those behind them.
//!
//! Records of the table `audit_log` in `bank.sqlite` (where the log lived before it was chained)
//! are carried over once, in order and with their times, by [`carry_over_legacy`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bank_core::audit::checkpoint::AuditKey;
use bank_core::audit::tree::{self, tlog_tiles};
use bank_core::audit::{
    AUDIT_CHECKPOINT_PAGE_MAX, AUDIT_PAGE_MAX, AuditLog, AuditOutcome, AuditRecord, Digest, GENESIS_HASH,
    NewAuditRecord, StoredCheckpoint, check_next_checkpoint, check_once_key,
};
use bank_core::clock::Clock;
use bank_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::blob::{io_error, sync_dir, temp_name, write_file};
use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_all, nanos, sql_limit, time};
use crate::db::writer::WriterHandle;

/// File name of the audit log's database in the data directory.
pub const AUDIT_FILE_NAME: &str = "audit.sqlite";
/// File name of the audit log's signing key in the data directory.
pub const AUDIT_KEY_FILE_NAME: &str = "audit.key";
/// Largest key file read.
const KEY_FILE_BYTES_MAX: u64 = 4096;

/// The audit log in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteAuditLog {
    writer: WriterHandle,
    db: LocalDb,
}

impl SqliteAuditLog {
    /// A log over `db` (the audit file), appending through the file's one writer.
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        SqliteAuditLog { writer: WriterHandle::for_db(db, clock), db: db.clone() }
    }

    /// The database the log lives in.
    pub fn db(&self) -> &LocalDb {
        &self.db
    }
}

const ROW: RowOf = RowOf("audit row");
const COLUMNS: &str = "seq, at, subject, action, target, outcome, request_id, client_ip, prev_hash, hash";

fn digest(row: &Row<'_>, index: usize, column: &str) -> Result<Digest> {
    let bytes: Vec<u8> = ROW.at(row, index, column)?;
    bytes.try_into().map_err(|_| ROW.corrupt(format!("{column} is not 32 bytes")))
}

/// A record from a row of [`COLUMNS`], by position (the sealer reads every record once).
fn record_of(row: &Row<'_>) -> Result<AuditRecord> {
    let seq: i64 = ROW.at(row, 0, "seq")?;
    let outcome: String = ROW.at(row, 5, "outcome")?;
    Ok(AuditRecord {
        seq: u64::try_from(seq).map_err(|_| ROW.corrupt("negative seq"))?,
        record: NewAuditRecord {
            at: time(ROW.at(row, 1, "at")?),
            subject: ROW.at(row, 2, "subject")?,
            action: ROW.at(row, 3, "action")?,
            target: ROW.at(row, 4, "target")?,
            outcome: AuditOutcome::parse(&outcome).ok_or_else(|| ROW.corrupt(format!("outcome {outcome:?}")))?,
            request_id: ROW.at(row, 6, "request_id")?,
            client_ip: ROW.at(row, 7, "client_ip")?,
        },
        prev_hash: digest(row, 8, "prev_hash")?,
        hash: digest(row, 9, "hash")?,
    })
}

fn checkpoint_of(row: &Row<'_>) -> Result<StoredCheckpoint> {
    let ordinal: i64 = ROW.get(row, "ordinal")?;
    let size: i64 = ROW.get(row, "size")?;
    Ok(StoredCheckpoint {
        ordinal: u64::try_from(ordinal).map_err(|_| ROW.corrupt("negative ordinal"))?,
        size: u64::try_from(size).map_err(|_| ROW.corrupt("negative size"))?,
        at: time(ROW.get(row, "at")?),
        note: ROW.get(row, "note")?,
    })
}

fn sql_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The tree's stored hashes as the writer (or a reader) sees them.
struct TreeOnConnection<'a>(&'a Connection);

impl tlog_tiles::HashReader for TreeOnConnection<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        let mut statement = self
            .0
            .prepare_cached("SELECT hash FROM audit_tree WHERE idx = ?1")
            .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
        indexes
            .iter()
            .map(|&index| {
                let bytes: Vec<u8> = statement
                    .query_row([sql_u64(index)], |row| row.get(0))
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
                bytes.try_into().map(tlog_tiles::Hash).map_err(|_| tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn size_in(conn: &Connection) -> Result<u64> {
    let size: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM audit_records")
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(db_err)?;
    u64::try_from(size).map_err(|_| ROW.corrupt("negative seq"))
}

/// Appends `record` inside the writer's transaction: chains it after the last record and stores
/// its tree hashes.
fn append_in(conn: &Connection, record: NewAuditRecord, once_key: Option<&str>) -> Result<AuditRecord> {
    let at = nanos(record.at)?;
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |row| Ok((row.get(0)?, row.get(1)?))).optional())
        .map_err(db_err)?;
    let (seq, prev_hash) = match last {
        None => (1, GENESIS_HASH),
        Some((seq, hash)) => {
            let seq = u64::try_from(seq).map_err(|_| ROW.corrupt("negative seq"))?;
            (seq + 1, hash.try_into().map_err(|_| ROW.corrupt("hash is not 32 bytes"))?)
        }
    };
    let appended = AuditRecord::chained(seq, record, prev_hash);
    let index = seq - 1;
    let hashes = tree::hashes_to_store(index, tree::leaf_hash(&appended.encode()), &TreeOnConnection(conn))?;
    let r = &appended.record;
    conn.prepare_cached(
        "INSERT INTO audit_records (seq, at, subject, action, target, outcome, request_id, client_ip, prev_hash, \
         hash, once_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            sql_u64(seq),
            at,
            &r.subject,
            &r.action,
            &r.target,
            r.outcome.as_str(),
            &r.request_id,
            &r.client_ip,
            &appended.prev_hash[..],
            &appended.hash[..],
            once_key
        ])
    })
    .map_err(db_err)?;
    let first = tree::stored_hash_index(0, index);
    let mut insert = conn.prepare_cached("INSERT INTO audit_tree (idx, hash) VALUES (?1, ?2)").map_err(db_err)?;
    for (offset, hash) in (0_u64..).zip(&hashes) {
        insert.execute(params![sql_u64(first + offset), &hash[..]]).map_err(db_err)?;
    }
    Ok(appended)
}

fn latest_in(conn: &Connection) -> Result<Option<StoredCheckpoint>> {
    fetch_all(
        conn,
        "SELECT ordinal, size, at, note FROM audit_checkpoints ORDER BY ordinal DESC LIMIT 1",
        [],
        checkpoint_of,
    )
    .map(|mut all| all.pop())
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        self.writer.run(move |conn| append_in(conn, record, None)).await
    }

    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.run(move |conn| records.into_iter().map(|record| append_in(conn, record, None)).collect()).await
    }

    async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord> {
        check_once_key(key)?;
        let key = key.to_owned();
        self.writer
            .run(move |conn| {
                let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE once_key = ?1");
                if let Some(existing) = fetch_all(conn, &sql, [&key], record_of)?.pop() {
                    return Ok(existing);
                }
                append_in(conn, record, Some(&key))
            })
            .await
    }

    async fn append_once_batch(&self, records: Vec<(String, NewAuditRecord)>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        for (key, _) in &records {
            check_once_key(key)?;
        }
        self.writer
            .run(move |conn| {
                let mut seen =
                    conn.prepare_cached("SELECT 1 FROM audit_records WHERE once_key = ?1").map_err(db_err)?;
                for (key, record) in records {
                    if !seen.exists([&key]).map_err(db_err)? {
                        append_in(conn, record, Some(&key))?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let from = sql_u64(from_seq);
        let limit = sql_limit(limit.min(AUDIT_PAGE_MAX));
        let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
        self.db.read(|conn| fetch_all(conn, &sql, params![from, limit], record_of))
    }

    async fn size(&self) -> Result<u64> {
        self.db.read(size_in)
    }

    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>> {
        self.db.read(|conn| {
            tlog_tiles::HashReader::read_hashes(&TreeOnConnection(conn), indexes)
                .map(|hashes| hashes.into_iter().map(|h| h.0).collect())
                .map_err(|_| Error::storage("audit tree hashes asked for are not stored", false))
        })
    }

    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
        let at = nanos(checkpoint.at)?;
        self.writer
            .run(move |conn| {
                let size = size_in(conn)?;
                if check_next_checkpoint(latest_in(conn)?.as_ref(), &checkpoint, size)? {
                    conn.prepare_cached(
                        "INSERT INTO audit_checkpoints (ordinal, size, at, note) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![sql_u64(checkpoint.ordinal), sql_u64(checkpoint.size), at, &checkpoint.note])
                    })
                    .map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        let from = sql_u64(from_ordinal);
        let limit = sql_limit(limit.min(AUDIT_CHECKPOINT_PAGE_MAX));
        self.db.read(|conn| {
            fetch_all(
                conn,
                "SELECT ordinal, size, at, note FROM audit_checkpoints WHERE ordinal >= ?1 ORDER BY ordinal LIMIT ?2",
                params![from, limit],
                checkpoint_of,
            )
        })
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.db.read(latest_in)
    }
}

/// Carries the records of the legacy table `audit_log` of `legacy` (`bank.sqlite`) over into
/// `log`, once and in order: record `n` of the old table becomes record `n` of the chain, so a
/// carry-over cut short by a crash resumes where it stopped on the next open. Returns how many it
/// carried (0 once done, and on a data directory that never had the old table filled).
pub async fn carry_over_legacy(legacy: &LocalDb, log: &SqliteAuditLog) -> Result<u64> {
    let mut carried = 0;
    loop {
        let next = log.size().await? + 1;
        let page = legacy.read(|conn| {
            fetch_all(
                conn,
                "SELECT seq, at, subject, action, target, outcome, request_id, client_ip FROM audit_log \
                 WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
                params![sql_u64(next), sql_limit(AUDIT_PAGE_MAX)],
                |row| {
                    let outcome: String = ROW.get(row, "outcome")?;
                    Ok(NewAuditRecord {
                        at: time(ROW.get(row, "at")?),
                        subject: ROW.get(row, "subject")?,
                        action: ROW.get(row, "action")?,
                        target: ROW.get(row, "target")?,
                        outcome: AuditOutcome::parse(&outcome)
                            .ok_or_else(|| ROW.corrupt(format!("outcome {outcome:?}")))?,
                        request_id: ROW.get(row, "request_id")?,
                        client_ip: ROW.get(row, "client_ip")?,
                    })
                },
            )
        })?;
        if page.is_empty() {
            return Ok(carried);
        }
        carried += page.len() as u64;
        log.append_batch(page).await?;
    }
}

/// The log's signing key from `<data_dir>/audit.key`, created (32 random bytes from the OS,
/// file mode 0600) for `origin` on first use. A key made for another origin is refused: a log
/// keeps its name for life, and its published verifier key with it.
pub fn load_or_create_key(data_dir: &Path, origin: &str) -> Result<AuditKey> {
    let path = data_dir.join(AUDIT_KEY_FILE_NAME);
    if let Some(key) = read_key(&path)? {
        return same_origin(&path, key, origin);
    }
    let mut seed = [0_u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let key = AuditKey::from_seed(origin, seed)?;
    let temp = data_dir.join(temp_name());
    write_file(&temp, format!("{}\n", key.private_key()).as_bytes(), 0o600)
        .map_err(|e| io_error("writing", &temp, e))?;
    // A hard link publishes the complete file only if none exists yet (as for signing.key).
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(data_dir)?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let key = read_key(&path)?.ok_or_else(|| Error::storage(format!("{} vanished", path.display()), false))?;
            same_origin(&path, key, origin)
        }
        Err(e) => Err(io_error("creating", &path, e)),
    }
}

fn read_key(path: &Path) -> Result<Option<AuditKey>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("reading", path, e)),
    };
    let mut text = String::new();
    file.take(KEY_FILE_BYTES_MAX).read_to_string(&mut text).map_err(|e| io_error("reading", path, e))?;
    AuditKey::parse(&text)
        .map(Some)
        .map_err(|_| Error::storage(format!("{} is not an audit signing key (corrupted?)", path.display()), false))
}

fn same_origin(path: &Path, key: AuditKey, origin: &str) -> Result<AuditKey> {
    if key.origin() != origin {
        return Err(Error::storage(
            format!(
                "{} is the key of the audit log {:?}, not {origin:?}: a log keeps its origin (BANK_AUDIT_ORIGIN)",
                path.display(),
                key.origin()
            ),
            false,
        ));
    }
    Ok(key)
}
