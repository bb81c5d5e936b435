//! [`PgAuditLog`]: the hash-chained [`AuditLog`] on PostgreSQL (migration `0005_audit.sql`),
//! shared by every process of a deployment.
//!
//! # Why the chain stays one chain with many writers
//! Every append transaction, whichever process runs it, first locks the single row of
//! `audit_head` (`SELECT seq, hash … FOR UPDATE`), which holds the last record's `seq` and `hash`.
//! Under that lock it chains its records after the head, computes their RFC 6962 tree hashes
//! (reading the few earlier stored hashes it needs), inserts records and tree hashes, moves the
//! head and commits. A second appender waits on the row lock and then reads the head the first
//! one committed. So `seq` is gap-free in commit order, each `prev_hash` is the hash of the record
//! committed before it, and a rolled-back append leaves no trace (its `seq` is reused by the
//! next). The database checks the links by itself as well (`audit_records_linked`), and refuses
//! any `UPDATE`, `DELETE` or `TRUNCATE` of records, tree hashes and checkpoints.
//!
//! # Group commit
//! Appends of one process queue on a [`Batcher`] with one committer: whatever queued while the
//! previous transaction ran goes into the next one (up to [`AUDIT_APPEND_BATCH_MAX`] calls), so the
//! head lock is taken once per batch, not once per record. `append_once` keys are looked up under
//! the lock (a key appended by another process is seen; two calls with one key in one batch
//! append once).
//!
//! Reads (`list`, `size`, `tree_hashes`, checkpoints) go to the writer: an operator reading the
//! log right after an action must see its record.

use std::cell::RefCell;
use std::collections::HashMap;

use async_trait::async_trait;
use bank_core::audit::tree::{self, tlog_tiles};
use bank_core::audit::{
    AUDIT_CHECKPOINT_PAGE_MAX, AUDIT_PAGE_MAX, AuditLog, AuditOutcome, AuditRecord, Digest, NewAuditRecord,
    StoredCheckpoint, check_next_checkpoint, check_once_key,
};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::batch::{BatchJob, Batcher};
use super::{PgDb, RowOf, db_err, is_unique_violation};

/// Most append calls (each one record, or one `append_batch`) one transaction carries.
pub const AUDIT_APPEND_BATCH_MAX: usize = 512;
/// Most records one `append_batch` call may carry (its records go in one transaction).
pub const AUDIT_BATCH_RECORDS_MAX: usize = 10_000;
/// Rounds of reading missing tree hashes before an append gives up (one suffices: the hashes a
/// batch needs from before it are the tree's frontier, read in one query).
const TREE_READ_ROUNDS_MAX: usize = 4;

const ROW: RowOf = RowOf("audit row");
const COLUMNS: &str =
    "seq, at_seconds, at_nanos, subject, action, target, outcome, request_id, client_ip, prev_hash, hash";

/// The audit log in PostgreSQL. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PgAuditLog {
    db: PgDb,
    appends: Batcher<AppendJob>,
}

impl PgAuditLog {
    /// A log over `db` (migrated). Must run inside a tokio runtime (it starts its group-commit
    /// task).
    pub fn new(db: &PgDb) -> Self {
        let appends = Batcher::start(db.writer().clone(), AppendJob, 1, AUDIT_APPEND_BATCH_MAX);
        PgAuditLog { db: db.clone(), appends }
    }

    async fn append_op(&self, op: AppendOp) -> Result<Vec<AuditRecord>> {
        self.appends.call(op).await
    }
}

/// One caller's append: its records, and the `append_once` key if any (then one record).
struct AppendOp {
    records: Vec<NewAuditRecord>,
    once_key: Option<String>,
}

struct AppendJob;

/// A record's time as stored: whole seconds and nanoseconds within the second, exactly what the
/// canonical encoding hashes (any `DateTime` round-trips).
fn time_columns(at: DateTime<Utc>) -> (i64, i32) {
    // At most 1,999,999,999 (a leap second), which fits an i32.
    (at.timestamp(), i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(i32::MAX))
}

fn time_of(seconds: i64, nanos: i32) -> Result<DateTime<Utc>> {
    let nanos = u32::try_from(nanos).map_err(|_| ROW.corrupt("negative nanoseconds"))?;
    DateTime::from_timestamp(seconds, nanos).ok_or_else(|| ROW.corrupt(format!("time {seconds}.{nanos:09}")))
}

fn sql_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| ROW.corrupt(format!("negative {what}")))
}

fn digest_of(bytes: Vec<u8>, what: &str) -> Result<Digest> {
    bytes.try_into().map_err(|_| ROW.corrupt(format!("{what} is not 32 bytes")))
}

fn get<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(|e| ROW.corrupt(format!("column {name}: {e}")))
}

fn record_of(row: &PgRow) -> Result<AuditRecord> {
    let outcome: String = get(row, "outcome")?;
    Ok(AuditRecord {
        seq: u64_of(get(row, "seq")?, "seq")?,
        record: NewAuditRecord {
            at: time_of(get(row, "at_seconds")?, get(row, "at_nanos")?)?,
            subject: get(row, "subject")?,
            action: get(row, "action")?,
            target: get(row, "target")?,
            outcome: AuditOutcome::parse(&outcome).ok_or_else(|| ROW.corrupt(format!("outcome {outcome:?}")))?,
            request_id: get(row, "request_id")?,
            client_ip: get(row, "client_ip")?,
        },
        prev_hash: digest_of(get(row, "prev_hash")?, "prev_hash")?,
        hash: digest_of(get(row, "hash")?, "hash")?,
    })
}

fn checkpoint_of(row: &PgRow) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        ordinal: u64_of(get(row, "ordinal")?, "ordinal")?,
        size: u64_of(get(row, "size")?, "size")?,
        at: time_of(get(row, "at_seconds")?, get(row, "at_nanos")?)?,
        note: get(row, "note")?,
    })
}

/// A once key: the core's rules, and no NUL (PostgreSQL text cannot hold it).
fn check_key(key: &str) -> Result<()> {
    check_once_key(key)?;
    if key.contains('\0') {
        return Err(Error::InvalidInput("audit keys may not contain NUL characters".into()));
    }
    Ok(())
}

/// PostgreSQL text cannot hold NUL: such a record is refused before anything is written.
fn check_text(record: &NewAuditRecord) -> Result<()> {
    let fields = [Some(&record.subject), Some(&record.action), Some(&record.target)]
        .into_iter()
        .chain([record.request_id.as_ref(), record.client_ip.as_ref()]);
    if fields.flatten().any(|text| text.contains('\0')) {
        return Err(Error::InvalidInput("audit record fields may not contain NUL characters".into()));
    }
    Ok(())
}

/// The stored tree hashes a batch has read or computed, noting the ones it lacked.
#[derive(Default)]
struct KnownHashes {
    known: HashMap<u64, tlog_tiles::Hash>,
    /// Indexes asked for and not known (the reader is called through `&self`).
    missing: RefCell<Vec<u64>>,
}

impl tlog_tiles::HashReader for KnownHashes {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        let mut found = Vec::with_capacity(indexes.len());
        let mut missing = self.missing.borrow_mut();
        for index in indexes {
            match self.known.get(index) {
                Some(hash) => found.push(*hash),
                None => missing.push(*index),
            }
        }
        if missing.is_empty() { Ok(found) } else { Err(tlog_tiles::Error::IndexesNotInTree) }
    }
}

async fn read_tree(conn: &mut PgConnection, indexes: &[u64]) -> Result<Vec<(u64, Digest)>> {
    let wanted: Vec<i64> = indexes.iter().map(|&i| sql_u64(i)).collect();
    let rows = sqlx::query("SELECT idx, hash FROM audit_tree WHERE idx = ANY($1)")
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(|row| Ok((u64_of(get(row, "idx")?, "idx")?, digest_of(get(row, "hash")?, "tree hash")?))).collect()
}

/// The hashes to store for leaf `index`, reading what `known` lacks from the table.
async fn tree_hashes_for(
    conn: &mut PgConnection,
    known: &mut KnownHashes,
    index: u64,
    leaf: Digest,
) -> Result<Vec<Digest>> {
    for _ in 0..TREE_READ_ROUNDS_MAX {
        known.missing.borrow_mut().clear();
        match tree::hashes_to_store(index, leaf, &*known) {
            Ok(hashes) => return Ok(hashes),
            Err(err) => {
                let missing = std::mem::take(&mut *known.missing.borrow_mut());
                if missing.is_empty() {
                    return Err(err);
                }
                let read = read_tree(conn, &missing).await?;
                if read.len() < missing.len() {
                    return Err(Error::storage(
                        format!("audit tree hashes of record {} are missing from audit_tree", index + 1),
                        false,
                    ));
                }
                known.known.extend(read.into_iter().map(|(i, h)| (i, tlog_tiles::Hash(h))));
            }
        }
    }
    Err(Error::storage("audit tree hashes could not be read", false))
}

/// The columns of the rows one batch inserts.
#[derive(Default)]
struct NewRows {
    seq: Vec<i64>,
    at_seconds: Vec<i64>,
    at_nanos: Vec<i32>,
    subject: Vec<String>,
    action: Vec<String>,
    target: Vec<String>,
    outcome: Vec<&'static str>,
    request_id: Vec<Option<String>>,
    client_ip: Vec<Option<String>>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    once_key: Vec<Option<String>>,
    tree_idx: Vec<i64>,
    tree_hash: Vec<Vec<u8>>,
}

impl NewRows {
    fn push(&mut self, record: &AuditRecord, once_key: Option<String>, tree_first: u64, tree: &[Digest]) {
        let r = &record.record;
        let (seconds, nanos) = time_columns(r.at);
        self.seq.push(sql_u64(record.seq));
        self.at_seconds.push(seconds);
        self.at_nanos.push(nanos);
        self.subject.push(r.subject.clone());
        self.action.push(r.action.clone());
        self.target.push(r.target.clone());
        self.outcome.push(r.outcome.as_str());
        self.request_id.push(r.request_id.clone());
        self.client_ip.push(r.client_ip.clone());
        self.prev_hash.push(record.prev_hash.to_vec());
        self.hash.push(record.hash.to_vec());
        self.once_key.push(once_key);
        for (offset, hash) in (0_u64..).zip(tree) {
            self.tree_idx.push(sql_u64(tree_first + offset));
            self.tree_hash.push(hash.to_vec());
        }
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_records (seq, at_seconds, at_nanos, subject, action, target, outcome, request_id, \
             client_ip, prev_hash, hash, once_key) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int4[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[], $12::text[])",
        )
        .bind(&self.seq)
        .bind(&self.at_seconds)
        .bind(&self.at_nanos)
        .bind(&self.subject)
        .bind(&self.action)
        .bind(&self.target)
        .bind(&self.outcome)
        .bind(&self.request_id)
        .bind(&self.client_ip)
        .bind(&self.prev_hash)
        .bind(&self.hash)
        .bind(&self.once_key)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        sqlx::query("INSERT INTO audit_tree (idx, hash) SELECT * FROM UNNEST($1::int8[], $2::bytea[])")
            .bind(&self.tree_idx)
            .bind(&self.tree_hash)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl BatchJob for AppendJob {
    type Op = AppendOp;
    type Out = Result<Vec<AuditRecord>>;

    async fn run(&self, conn: &mut PgConnection, ops: &[AppendOp]) -> Result<Vec<Self::Out>> {
        // 1. The head, locked until commit: every appender of every process waits here.
        let head = sqlx::query("SELECT seq, hash FROM audit_head FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::storage("audit_head has no row (not migrated?)", false))?;
        let mut last_seq = u64_of(get(&head, "seq")?, "head seq")?;
        let mut prev_hash = digest_of(get(&head, "hash")?, "head hash")?;
        // 2. Records already appended under the keys asked for (by any process).
        let keys: Vec<&str> = ops.iter().filter_map(|op| op.once_key.as_deref()).collect();
        let mut by_key: HashMap<String, AuditRecord> = HashMap::new();
        if !keys.is_empty() {
            let rows = sqlx::query(&format!("SELECT once_key, {COLUMNS} FROM audit_records WHERE once_key = ANY($1)"))
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            for row in &rows {
                by_key.insert(get(row, "once_key")?, record_of(row)?);
            }
        }
        // 3. Chain, in call order.
        let mut known = KnownHashes::default();
        let mut rows = NewRows::default();
        let mut outs = Vec::with_capacity(ops.len());
        for op in ops {
            if let Some(existing) = op.once_key.as_ref().and_then(|key| by_key.get(key)) {
                outs.push(Ok(vec![existing.clone()]));
                continue;
            }
            if let Err(refused) = op.records.iter().try_for_each(check_text) {
                outs.push(Err(refused));
                continue;
            }
            let mut appended = Vec::with_capacity(op.records.len());
            for record in &op.records {
                let chained = AuditRecord::chained(last_seq + 1, record.clone(), prev_hash);
                let index = last_seq;
                let hashes = tree_hashes_for(conn, &mut known, index, tree::leaf_hash(&chained.encode())).await?;
                let first = tree::stored_hash_index(0, index);
                known.known.extend((first..).zip(hashes.iter().map(|h| tlog_tiles::Hash(*h))));
                rows.push(&chained, op.once_key.clone(), first, &hashes);
                last_seq = chained.seq;
                prev_hash = chained.hash;
                appended.push(chained);
            }
            if let (Some(key), [only]) = (&op.once_key, appended.as_slice()) {
                by_key.insert(key.clone(), only.clone());
            }
            outs.push(Ok(appended));
        }
        // 4. Write, and move the head.
        if !rows.seq.is_empty() {
            rows.insert(conn).await?;
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2")
                .bind(sql_u64(last_seq))
                .bind(&prev_hash[..])
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        Ok(outs)
    }

    fn failed(&self, error: &Error) -> Self::Out {
        Err(Error::storage(error, error.is_retryable()))
    }
}

impl PgAuditLog {
    async fn latest(&self) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(
            "SELECT ordinal, size, at_seconds, at_nanos, note FROM audit_checkpoints ORDER BY ordinal DESC LIMIT 1",
        )
        .fetch_optional(self.db.writer())
        .await
        .map_err(db_err)?;
        row.as_ref().map(checkpoint_of).transpose()
    }
}

#[async_trait]
impl AuditLog for PgAuditLog {
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        let mut appended = self.append_op(AppendOp { records: vec![record], once_key: None }).await?;
        appended.pop().ok_or_else(|| Error::storage("audit append answered no record", false))
    }

    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if records.len() > AUDIT_BATCH_RECORDS_MAX {
            return Err(Error::InvalidInput(format!("an audit batch holds at most {AUDIT_BATCH_RECORDS_MAX} records")));
        }
        self.append_op(AppendOp { records, once_key: None }).await
    }

    async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord> {
        check_key(key)?;
        let mut appended = self.append_op(AppendOp { records: vec![record], once_key: Some(key.to_owned()) }).await?;
        appended.pop().ok_or_else(|| Error::storage("audit append answered no record", false))
    }

    async fn append_once_batch(&self, records: Vec<(String, NewAuditRecord)>) -> Result<()> {
        for (key, _) in &records {
            check_key(key)?;
        }
        // Queued at once, in order (the batcher's channel is FIFO and has one committer), so
        // they share its transactions instead of one round trip each.
        let appends = records
            .into_iter()
            .map(|(key, record)| self.append_op(AppendOp { records: vec![record], once_key: Some(key) }));
        futures::future::try_join_all(appends).await.map(|_| ())
    }

    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let limit = i64::try_from(limit.min(AUDIT_PAGE_MAX)).unwrap_or(0);
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2"))
            .bind(sql_u64(from_seq))
            .bind(limit)
            .fetch_all(self.db.writer())
            .await
            .map_err(db_err)?;
        rows.iter().map(record_of).collect()
    }

    async fn size(&self) -> Result<u64> {
        let seq: i64 =
            sqlx::query_scalar("SELECT seq FROM audit_head").fetch_one(self.db.writer()).await.map_err(db_err)?;
        u64_of(seq, "head seq")
    }

    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>> {
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.writer().acquire().await.map_err(db_err)?;
        let found: HashMap<u64, Digest> = read_tree(&mut conn, indexes).await?.into_iter().collect();
        indexes
            .iter()
            .map(|index| {
                found
                    .get(index)
                    .copied()
                    .ok_or_else(|| Error::storage("audit tree hashes asked for are not stored", false))
            })
            .collect()
    }

    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
        if checkpoint.note.contains('\0') {
            return Err(Error::InvalidInput("a checkpoint note may not contain NUL characters".into()));
        }
        let size = self.size().await?;
        if !check_next_checkpoint(self.latest().await?.as_ref(), &checkpoint, size)? {
            return Ok(()); // an identical replay
        }
        let (seconds, nanos) = time_columns(checkpoint.at);
        let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints (ordinal, size, at_seconds, at_nanos, note) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sql_u64(checkpoint.ordinal))
        .bind(sql_u64(checkpoint.size))
        .bind(seconds)
        .bind(nanos)
        .bind(&checkpoint.note)
        .execute(self.db.writer())
        .await;
        match inserted {
            Ok(_) => Ok(()),
            // Another sealer stored this ordinal since we looked: fine if it is the same one.
            Err(err) if is_unique_violation(&err) => {
                match check_next_checkpoint(self.latest().await?.as_ref(), &checkpoint, size) {
                    Ok(false) => Ok(()),
                    Ok(true) => Err(Error::storage("audit checkpoint insert conflicted but is missing", true)),
                    Err(refused) => Err(refused),
                }
            }
            Err(err) => Err(db_err(err)),
        }
    }

    async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        let limit = i64::try_from(limit.min(AUDIT_CHECKPOINT_PAGE_MAX)).unwrap_or(0);
        let rows = sqlx::query(
            "SELECT ordinal, size, at_seconds, at_nanos, note FROM audit_checkpoints WHERE ordinal >= $1 \
             ORDER BY ordinal LIMIT $2",
        )
        .bind(sql_u64(from_ordinal))
        .bind(limit)
        .fetch_all(self.db.writer())
        .await
        .map_err(db_err)?;
        rows.iter().map(checkpoint_of).collect()
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.latest().await
    }
}
