//! The [`AuditLog`] conformance suite: gap-free `seq` in append order (also under concurrent
//! appends), records read back exactly, paging by `from_seq` and `limit`, the hash chain, batch
//! and keyed appends, the Merkle tree's stored hashes (roots and inclusion proofs), checkpoints,
//! and the sealer plus verifier passing an intact log.
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl bank_core::testkit::audit::AuditHarness for Harness {
//!     async fn log(&self) -> Arc<dyn AuditLog> { /* fresh, empty log */ }
//! }
//! bank_core::audit_conformance_tests!(Harness);
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::audit::checkpoint::AuditKey;
use crate::audit::seal::{AuditSealer, SealPolicy, segment_key};
use crate::audit::tree::{self, Frontier};
use crate::audit::verify::verify;
use crate::audit::{AUDIT_PAGE_MAX, AuditLog, AuditOutcome, GENESIS_HASH, NewAuditRecord, StoredCheckpoint};
use crate::clock::{Clock, ManualClock};
use crate::memory::blob::MemoryBlobStore;
use crate::ports::BlobStore;

/// How to build a fresh, empty log for one test case.
#[async_trait]
pub trait AuditHarness: Send + Sync {
    /// A new empty log.
    async fn log(&self) -> Arc<dyn AuditLog>;
}

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! audit_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(audit, $harness;
            appends_get_gap_free_seq_and_read_back_exactly,
            list_pages_from_a_seq,
            concurrent_appends_each_get_their_own_seq,
            records_are_hash_chained,
            batch_appends_are_in_order,
            keyed_appends_happen_once,
            keyed_batches_append_each_key_once,
            tree_roots_and_proofs_match_the_records,
            checkpoints_follow_each_other,
            an_intact_log_seals_and_verifies,
            a_sealer_that_loses_the_race_for_a_checkpoint_goes_on,
        );
    };
}

/// The harness for [`crate::memory::audit::MemoryAuditLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryAuditHarness;

#[async_trait]
impl AuditHarness for MemoryAuditHarness {
    async fn log(&self) -> Arc<dyn AuditLog> {
        Arc::new(crate::memory::audit::MemoryAuditLog::new())
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(seconds)
}

/// A record numbered `n`.
pub fn record(n: i64) -> NewAuditRecord {
    let outcome = if n % 2 == 0 { AuditOutcome::Done } else { AuditOutcome::Refused };
    NewAuditRecord::new(at(n), format!("operator-{n}"), "deposit.requested", format!("account:{n}"), outcome)
        .with_request(Some(format!("req-{n}")), (n % 3 != 0).then(|| "192.0.2.7".to_owned()))
}

/// Seqs are 1, 2, 3 in append order; every field reads back as appended.
pub async fn appends_get_gap_free_seq_and_read_back_exactly(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    assert!(log.list(1, 10).await.expect("list").is_empty());
    for n in 1..=3 {
        let appended = log.append(record(n)).await.expect("append");
        assert_eq!(appended.seq, u64::try_from(n).expect("positive"));
        assert_eq!(appended.record, record(n));
    }
    let all = log.list(1, 10).await.expect("list");
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    for (n, read) in (1..=3).zip(&all) {
        assert_eq!(read.record, record(n), "read back exactly");
    }
    let long = NewAuditRecord::new(at(9), "s".repeat(1000), "a", "t".repeat(1000), AuditOutcome::Done);
    let appended = log.append(long).await.expect("append a long record");
    assert_eq!(appended.record.subject.chars().count(), crate::audit::AUDIT_FIELD_CHARS_MAX);
    assert_eq!(log.list(4, 1).await.expect("list")[0], appended);
}

/// `list(from_seq, limit)`: records from `from_seq` on, at most `limit` (and the page bound).
pub async fn list_pages_from_a_seq(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    for n in 1..=7 {
        log.append(record(n)).await.expect("append");
    }
    let page = log.list(3, 2).await.expect("list");
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    let rest = log.list(5, 100).await.expect("list");
    assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
    assert!(log.list(8, 10).await.expect("list").is_empty());
    assert_eq!(log.list(0, 10).await.expect("from 0 is from the start").len(), 7);
    assert_eq!(log.list(1, usize::MAX).await.expect("list").len().min(AUDIT_PAGE_MAX), 7);
}

/// 64 concurrent appends: 64 distinct seqs, 1 to 64.
pub async fn concurrent_appends_each_get_their_own_seq(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    let tasks: Vec<_> = (1..=64)
        .map(|n| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(record(n)).await.expect("append").seq })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for task in tasks {
        seqs.insert(task.await.expect("task"));
    }
    assert_eq!(seqs, (1..=64).collect::<BTreeSet<u64>>());
    assert_eq!(log.list(1, 100).await.expect("list").len(), 64);
}

/// Each record's `prev_hash` is the previous record's `hash` (zeros for the first), and its
/// `hash` is the SHA-256 of its canonical bytes; what `append` answers is what `list` reads.
pub async fn records_are_hash_chained(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    let mut answered = Vec::new();
    for n in 1..=5 {
        answered.push(log.append(record(n)).await.expect("append"));
    }
    let all = log.list(1, 10).await.expect("list");
    assert_eq!(all, answered, "read back with the same hashes");
    let mut prev = GENESIS_HASH;
    for r in &all {
        assert_eq!(r.prev_hash, prev, "record {} links to the one before", r.seq);
        assert_eq!(r.hash, r.computed_hash(), "record {} hashes its content", r.seq);
        prev = r.hash;
    }
    assert_eq!(log.size().await.expect("size"), 5);
}

/// A batch gets consecutive seqs in its order, chained like single appends.
pub async fn batch_appends_are_in_order(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    log.append(record(1)).await.expect("append");
    let batch = log.append_batch((2..=6).map(record).collect()).await.expect("batch");
    assert_eq!(batch.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
    for (n, r) in (2..=6).zip(&batch) {
        assert_eq!(r.record, record(n));
    }
    let all = log.list(1, 10).await.expect("list");
    assert_eq!(&all[1..], &batch[..]);
    assert_eq!(all[1].prev_hash, all[0].hash);
    assert!(log.append_batch(Vec::new()).await.expect("empty batch").is_empty());
    assert_eq!(log.size().await.expect("size"), 6);
}

/// `append_once` appends once per key; the same key again (even with another record) answers the
/// first record and appends nothing.
pub async fn keyed_appends_happen_once(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    let first = log.append_once("transfer.settled:1", record(1)).await.expect("append once");
    let again = log.append_once("transfer.settled:1", record(2)).await.expect("replay");
    assert_eq!(again, first);
    let other = log.append_once("transfer.settled:2", record(2)).await.expect("another key");
    assert_eq!(other.seq, 2);
    assert_eq!(log.size().await.expect("size"), 2);
    assert!(log.append_once("", record(3)).await.is_err(), "empty key");
    assert!(log.append_once(&"k".repeat(300), record(3)).await.is_err(), "long key");
}

/// `append_once_batch` appends its records in order, each key once: a key already in the log,
/// or earlier in the same batch, appends nothing; the whole batch again (a relay's redelivery)
/// appends nothing; a bad key is refused.
pub async fn keyed_batches_append_each_key_once(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    log.append_once("transfer.created:1", record(1)).await.expect("append once");
    let batch = vec![
        ("transfer.created:1".to_owned(), record(9)),
        ("transfer.created:2".to_owned(), record(2)),
        ("transfer.settled:1".to_owned(), record(3)),
        ("transfer.created:2".to_owned(), record(8)),
    ];
    log.append_once_batch(batch.clone()).await.expect("batch");
    let all = log.list(1, 10).await.expect("list");
    let got: Vec<&NewAuditRecord> = all.iter().map(|r| &r.record).collect();
    assert_eq!(got, vec![&record(1), &record(2), &record(3)], "each key once, in order");
    log.append_once_batch(batch).await.expect("redelivery");
    log.append_once_batch(Vec::new()).await.expect("empty");
    assert_eq!(log.size().await.expect("size"), 3);
    assert_eq!(log.append_once("transfer.settled:1", record(7)).await.expect("replay").record, record(3));
    assert!(log.append_once_batch(vec![(String::new(), record(4))]).await.is_err(), "empty key");
    assert_eq!(log.size().await.expect("size"), 3);
}

/// The roots computed from the stored tree hashes equal the roots of the records' leaves at every
/// size, and every record's inclusion proof checks against them.
pub async fn tree_roots_and_proofs_match_the_records(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    assert_eq!(tree::root(log.as_ref(), 0).await.expect("empty root"), tree::EMPTY_HASH.0);
    for n in 1..=11 {
        log.append(record(n)).await.expect("append");
    }
    let all = log.list(1, 20).await.expect("list");
    let mut frontier = Frontier::new();
    for r in &all {
        frontier.push(tree::leaf_hash(&r.encode()));
        let size = r.seq;
        let root = tree::root(log.as_ref(), size).await.expect("root");
        assert_eq!(root, frontier.root(), "root at {size}");
    }
    let root = frontier.root();
    for r in &all {
        let proof = tree::inclusion_proof(log.as_ref(), r.seq - 1, 11).await.expect("proof");
        assert!(tree::check_inclusion(&proof, 11, root, r.seq - 1, tree::leaf_hash(&r.encode())), "{}", r.seq);
    }
    assert!(tree::inclusion_proof(log.as_ref(), 11, 11).await.is_err(), "record 12 is not in the tree");
    assert!(log.tree_hashes(&[tree::stored_hash_count(11) + 5]).await.is_err(), "an index not stored yet");
}

fn checkpoint(ordinal: u64, size: u64) -> StoredCheckpoint {
    StoredCheckpoint {
        ordinal,
        size,
        at: at(100 + i64::try_from(ordinal).unwrap_or(0)),
        note: format!("note {ordinal}\n"),
    }
}

/// Checkpoints are stored in ordinal order with growing sizes within the log; an identical
/// replay is accepted, anything else refused; they read back in order.
pub async fn checkpoints_follow_each_other(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    assert_eq!(log.latest_checkpoint().await.expect("latest"), None);
    for n in 1..=6 {
        log.append(record(n)).await.expect("append");
    }
    assert!(log.add_checkpoint(checkpoint(2, 3)).await.is_err(), "ordinals start at 1");
    assert!(log.add_checkpoint(checkpoint(1, 7)).await.is_err(), "not beyond the log");
    log.add_checkpoint(checkpoint(1, 3)).await.expect("first");
    log.add_checkpoint(checkpoint(1, 3)).await.expect("identical replay");
    assert!(log.add_checkpoint(StoredCheckpoint { note: "other\n".into(), ..checkpoint(1, 3) }).await.is_err());
    assert!(log.add_checkpoint(checkpoint(2, 3)).await.is_err(), "must grow");
    log.add_checkpoint(checkpoint(2, 6)).await.expect("second");
    assert_eq!(log.latest_checkpoint().await.expect("latest"), Some(checkpoint(2, 6)));
    assert_eq!(log.checkpoints(1, 10).await.expect("list"), vec![checkpoint(1, 3), checkpoint(2, 6)]);
    assert_eq!(log.checkpoints(2, 10).await.expect("list"), vec![checkpoint(2, 6)]);
    assert_eq!(log.checkpoints(1, 1).await.expect("list").len(), 1);
}

/// The sealer takes checkpoints when due (N records or T seconds) and seals them in order; the
/// verifier passes the intact log, from the start and from a later seq.
pub async fn an_intact_log_seals_and_verifies(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    let clock = ManualClock::new(at(0));
    let clock_port: Arc<dyn Clock> = Arc::new(clock.clone());
    let blobs: Arc<dyn BlobStore> =
        Arc::new(MemoryBlobStore::new(Arc::clone(&clock_port), vec![7; 32], "http://127.0.0.1".into()));
    let key = Arc::new(AuditKey::from_seed("bank.example/audit", [5; 32]).expect("key"));
    let policy = SealPolicy { every_records: 10, every: TimeDelta::seconds(60), retention: TimeDelta::days(1) };
    let sealer = AuditSealer::new(Arc::clone(&log), Arc::clone(&blobs), Arc::clone(&key), clock_port, policy);
    let verifier = key.verifier();

    let report = verify(log.as_ref(), blobs.as_ref(), &verifier, 1).await.expect("verify empty");
    assert!(report.ok && report.records_checked == 0, "{report:?}");
    for n in 1..=9 {
        log.append(record(n)).await.expect("append");
    }
    assert_eq!(sealer.run_once().await.expect("run").checkpoint, None, "9 records, none old enough");
    log.append(record(10)).await.expect("append");
    let taken = sealer.run_once().await.expect("run");
    assert_eq!(taken.checkpoint.as_ref().map(|c| (c.ordinal, c.size)), Some((1, 10)));
    assert_eq!(taken.sealed, 1);
    assert!(blobs.head(&segment_key(1)).await.is_ok());
    for n in 11..=14 {
        log.append(record(n)).await.expect("append");
    }
    // The oldest waiting record (record 11, written at 11 s) becomes 60 s old.
    assert_eq!(sealer.run_once().await.expect("run").checkpoint, None);
    clock.set(at(11 + 60));
    let taken = sealer.run_once().await.expect("run");
    assert_eq!(taken.checkpoint.as_ref().map(|c| (c.ordinal, c.size)), Some((2, 14)));
    let head = key.verifier().open(&taken.checkpoint.expect("taken").note).expect("signed");
    assert_eq!(head.root, tree::root(log.as_ref(), 14).await.expect("root"));
    for n in 15..=17 {
        log.append(record(n)).await.expect("append");
    }
    for from_seq in [1, 5, 11, 12, 15, 17, 99] {
        let report = verify(log.as_ref(), blobs.as_ref(), &verifier, from_seq).await.expect("verify");
        assert!(report.ok, "from {from_seq}: {report:?}");
        assert_eq!(report.first_bad_seq, None);
        assert_eq!(report.records_checked, 17 - report.from_seq + 1, "from {from_seq}");
    }
    let full = verify(log.as_ref(), blobs.as_ref(), &verifier, 1).await.expect("verify");
    assert_eq!((full.checkpoints_checked, full.segments_checked), (2, 2));
    let later = verify(log.as_ref(), blobs.as_ref(), &verifier, 15).await.expect("verify");
    assert_eq!(later.from_seq, 15, "starts after checkpoint 2, authenticated by its root");
    let other_key = AuditKey::from_seed("bank.example/audit", [6; 32]).expect("key").verifier();
    let refused = verify(log.as_ref(), blobs.as_ref(), &other_key, 1).await.expect("verify");
    assert_eq!(refused.first_bad_seq, Some(1), "checkpoints signed by another key: {refused:?}");
}

/// A log whose first `latest_checkpoint` answer is stale (`None`): what a sealer in another
/// process sees when it read the log just before a rival stored a checkpoint.
#[derive(Debug)]
struct StaleOnce {
    log: Arc<dyn AuditLog>,
    stale: parking_lot::Mutex<bool>,
}

#[async_trait]
impl AuditLog for StaleOnce {
    async fn append(&self, record: NewAuditRecord) -> crate::Result<crate::audit::AuditRecord> {
        self.log.append(record).await
    }
    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> crate::Result<Vec<crate::audit::AuditRecord>> {
        self.log.append_batch(records).await
    }
    async fn append_once(&self, key: &str, record: NewAuditRecord) -> crate::Result<crate::audit::AuditRecord> {
        self.log.append_once(key, record).await
    }
    async fn list(&self, from_seq: u64, limit: usize) -> crate::Result<Vec<crate::audit::AuditRecord>> {
        self.log.list(from_seq, limit).await
    }
    async fn size(&self) -> crate::Result<u64> {
        self.log.size().await
    }
    async fn tree_hashes(&self, indexes: &[u64]) -> crate::Result<Vec<crate::audit::Digest>> {
        self.log.tree_hashes(indexes).await
    }
    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> crate::Result<()> {
        self.log.add_checkpoint(checkpoint).await
    }
    async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> crate::Result<Vec<StoredCheckpoint>> {
        self.log.checkpoints(from_ordinal, limit).await
    }
    async fn latest_checkpoint(&self) -> crate::Result<Option<StoredCheckpoint>> {
        if std::mem::take(&mut *self.stale.lock()) {
            return Ok(None);
        }
        self.log.latest_checkpoint().await
    }
}

/// Two sealers on one log (two processes): the one whose checkpoint another stored first gets no
/// error — the stored checkpoint stands — and both go on sealing; the log verifies.
pub async fn a_sealer_that_loses_the_race_for_a_checkpoint_goes_on(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    let clock = ManualClock::new(at(0));
    let clock_port: Arc<dyn Clock> = Arc::new(clock.clone());
    let blobs: Arc<dyn BlobStore> =
        Arc::new(MemoryBlobStore::new(Arc::clone(&clock_port), vec![7; 32], "http://127.0.0.1".into()));
    let key = Arc::new(AuditKey::from_seed("bank.example/audit", [5; 32]).expect("key"));
    let policy = SealPolicy { every_records: 1, every: TimeDelta::seconds(60), retention: TimeDelta::days(1) };
    let winner =
        AuditSealer::new(Arc::clone(&log), Arc::clone(&blobs), Arc::clone(&key), Arc::clone(&clock_port), policy);
    let stale: Arc<dyn AuditLog> = Arc::new(StaleOnce { log: Arc::clone(&log), stale: parking_lot::Mutex::new(true) });
    let loser = AuditSealer::new(stale, Arc::clone(&blobs), Arc::clone(&key), clock_port, policy);
    for n in 1..=3 {
        log.append(record(n)).await.expect("append");
    }
    let first = winner.checkpoint_now().await.expect("checkpoint").expect("records to checkpoint");
    assert_eq!((first.ordinal, first.size), (1, 3));
    clock.advance(TimeDelta::seconds(1));
    // The loser signs checkpoint 1 too (a second later: not the same checkpoint), and is refused.
    assert_eq!(loser.checkpoint_now().await.expect("a lost race is no error"), None);
    assert_eq!(log.latest_checkpoint().await.expect("latest"), Some(first), "the first one stands");
    log.append(record(4)).await.expect("append");
    let report = loser.run_once().await.expect("the loser goes on");
    assert_eq!(report.checkpoint.map(|c| (c.ordinal, c.size)), Some((2, 4)));
    assert_eq!(winner.seal_pending().await.expect("seal") + report.sealed, 2, "each segment sealed once");
    let verified = verify(log.as_ref(), blobs.as_ref(), &key.verifier(), 1).await.expect("verify");
    assert!(verified.ok, "{verified:?}");
}
