//! `PgAuditLog` against the `AuditLog` conformance suite, plus what several processes sharing one
//! database add: two stores on two pools appending at once build one chain that seals and
//! verifies; keyed appends happen once across processes; concurrent sealers store one checkpoint;
//! and the database itself refuses to change or delete what the log holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bank_aws::postgres::PgDb;
use bank_aws::postgres::audit::PgAuditLog;
use bank_aws::postgres::testing::test_db;
use bank_core::audit::checkpoint::AuditKey;
use bank_core::audit::seal::{AuditSealer, SealPolicy};
use bank_core::audit::tree::{self, Frontier};
use bank_core::audit::verify::verify;
use bank_core::audit::{AuditLog, AuditRecord, GENESIS_HASH, NewAuditRecord, StoredCheckpoint};
use bank_core::clock::{Clock, ManualClock};
use bank_core::memory::blob::MemoryBlobStore;
use bank_core::ports::BlobStore;
use bank_core::testkit::audit::{AuditHarness, record};
use chrono::TimeDelta;

use crate::harness::reconnect;
use crate::raw::message;

/// Builds each case's log on the case's own fresh schema.
struct Harness(PgDb);

#[async_trait]
impl AuditHarness for Harness {
    async fn log(&self) -> Arc<dyn AuditLog> {
        Arc::new(PgAuditLog::new(&self.0))
    }
}

bank_core::audit_conformance_tests!(match test_db().await {
    Some(db) => Harness(db),
    None => return,
});

/// Every record of `log`, in order.
async fn all_records(log: &dyn AuditLog) -> Vec<AuditRecord> {
    let mut all = Vec::new();
    loop {
        let page = log.list(all.len() as u64 + 1, 1000).await.expect("list");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Asserts `records` are 1..=n, each linked to the one before and hashing its content.
fn assert_one_chain(records: &[AuditRecord]) {
    let mut prev = GENESIS_HASH;
    for (n, r) in (1..).zip(records) {
        assert_eq!(r.seq, n, "gap-free");
        assert_eq!(r.prev_hash, prev, "record {n} links to the one before");
        assert_eq!(r.hash, r.computed_hash(), "record {n} hashes its content");
        prev = r.hash;
    }
}

/// Two stores on two pools (two processes), each with many tasks appending singly, in batches
/// and once per key, all at once: one gap-free chain whose tree roots match its records, and the
/// sealer and verifier pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_appending_at_once_build_one_chain_that_verifies() {
    const TASKS_PER_PROCESS: i64 = 40;
    let Some(db) = test_db().await else { return };
    let other = reconnect(&db).await;
    let logs: [Arc<dyn AuditLog>; 2] = [Arc::new(PgAuditLog::new(&db)), Arc::new(PgAuditLog::new(&other))];
    let mut tasks = Vec::new();
    for (p, log) in (0_i64..).zip(&logs) {
        for t in 0..TASKS_PER_PROCESS {
            let log = Arc::clone(log);
            tasks.push(tokio::spawn(async move {
                let n = p * 1000 + t * 10;
                let mut appended = vec![log.append(record(n)).await.expect("append")];
                appended.extend(log.append_batch(vec![record(n + 1), record(n + 2)]).await.expect("batch"));
                // Both processes append under the same key: one record.
                appended.push(log.append_once(&format!("key-{t}"), record(n + 3)).await.expect("once"));
                appended
            }));
        }
    }
    let mut answered = Vec::new();
    for task in tasks {
        answered.extend(task.await.expect("task"));
    }
    // 2 × 40 × 3 plain records, plus one per key.
    let expected = 2 * TASKS_PER_PROCESS as u64 * 3 + TASKS_PER_PROCESS as u64;
    let all = all_records(logs[0].as_ref()).await;
    assert_eq!(all.len() as u64, expected);
    assert_eq!(logs[1].size().await.expect("size"), expected);
    assert_one_chain(&all);
    for r in &answered {
        assert_eq!(&all[usize::try_from(r.seq - 1).expect("seq")], r, "answers are what is stored");
    }
    let distinct: BTreeSet<u64> = answered.iter().map(|r| r.seq).collect();
    assert_eq!(distinct.len() as u64, expected, "each keyed append answered one record in both processes");

    let mut frontier = Frontier::new();
    for r in &all {
        frontier.push(tree::leaf_hash(&r.encode()));
    }
    assert_eq!(tree::root(logs[1].as_ref(), expected).await.expect("root"), frontier.root());

    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let blobs: Arc<dyn BlobStore> =
        Arc::new(MemoryBlobStore::new(Arc::clone(&clock), vec![7; 32], "http://127.0.0.1".into()));
    let key = Arc::new(AuditKey::from_seed("bank.example/audit", [5; 32]).expect("key"));
    let policy = SealPolicy { every_records: 50, every: TimeDelta::seconds(60), retention: TimeDelta::days(1) };
    let sealer = AuditSealer::new(Arc::clone(&logs[1]), Arc::clone(&blobs), Arc::clone(&key), clock, policy);
    assert!(sealer.checkpoint_now().await.expect("checkpoint").is_some());
    assert_eq!(sealer.seal_pending().await.expect("seal"), 1);
    let report = verify(logs[0].as_ref(), blobs.as_ref(), &key.verifier(), 1).await.expect("verify");
    assert!(report.ok && report.records_checked == expected, "{report:?}");
}

/// Keyed appends of one key from two processes at once: one record, answered to every caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_append_from_two_processes_happens_once() {
    let Some(db) = test_db().await else { return };
    let other = reconnect(&db).await;
    let logs: [Arc<dyn AuditLog>; 2] = [Arc::new(PgAuditLog::new(&db)), Arc::new(PgAuditLog::new(&other))];
    let tasks: Vec<_> = (0..20_i64)
        .map(|n| {
            let log = Arc::clone(&logs[usize::try_from(n % 2).expect("index")]);
            tokio::spawn(async move { log.append_once("transfer.settled:1", record(n)).await.expect("once") })
        })
        .collect();
    let mut answers = BTreeSet::new();
    for task in tasks {
        answers.insert(task.await.expect("task").hash);
    }
    assert_eq!(answers.len(), 1, "every caller got the one record");
    assert_eq!(logs[0].size().await.expect("size"), 1);
}

/// Two sealers storing checkpoint 1 at once: the same one twice is a replay for both; a
/// different one under the taken ordinal is refused and changes nothing.
#[tokio::test]
async fn concurrent_checkpoints_store_one() {
    let Some(db) = test_db().await else { return };
    let other = reconnect(&db).await;
    let (one, two) = (PgAuditLog::new(&db), PgAuditLog::new(&other));
    for n in 1..=4 {
        one.append(record(n)).await.expect("append");
    }
    let checkpoint = StoredCheckpoint { ordinal: 1, size: 3, at: chrono::DateTime::UNIX_EPOCH, note: "n\n".into() };
    let (a, b) = tokio::join!(one.add_checkpoint(checkpoint.clone()), two.add_checkpoint(checkpoint.clone()));
    a.expect("first sealer");
    b.expect("second sealer: a replay");
    let bigger = StoredCheckpoint { size: 4, ..checkpoint.clone() };
    assert!(two.add_checkpoint(bigger).await.is_err(), "ordinal 1 is taken by another checkpoint");
    assert_eq!(one.checkpoints(1, 10).await.expect("list"), vec![checkpoint]);
}

/// The database refuses every UPDATE, DELETE and TRUNCATE of records, tree hashes and
/// checkpoints, a head moved back or deleted, and a hand-inserted record that does not link to
/// the one before; the log verifies as it was afterwards.
#[tokio::test]
async fn the_database_refuses_to_change_or_delete_the_log() {
    let Some(db) = test_db().await else { return };
    let log = PgAuditLog::new(&db);
    for n in 1..=3 {
        log.append(record(n)).await.expect("append");
    }
    log.add_checkpoint(StoredCheckpoint { ordinal: 1, size: 2, at: chrono::DateTime::UNIX_EPOCH, note: "n\n".into() })
        .await
        .expect("checkpoint");
    let before = all_records(&log).await;
    let attempts = [
        ("UPDATE audit_records SET subject = 'mallory' WHERE seq = 2", "append-only"),
        ("DELETE FROM audit_records WHERE seq = 3", "append-only"),
        ("TRUNCATE audit_records CASCADE", "append-only"),
        ("UPDATE audit_tree SET hash = hash WHERE idx = 0", "append-only"),
        ("DELETE FROM audit_tree", "append-only"),
        ("TRUNCATE audit_tree", "append-only"),
        ("UPDATE audit_checkpoints SET size = 3", "append-only"),
        ("DELETE FROM audit_checkpoints", "append-only"),
        ("TRUNCATE audit_checkpoints", "append-only"),
        ("UPDATE audit_head SET seq = 1", "only moves forward"),
        ("DELETE FROM audit_head", "never deleted"),
        (
            "INSERT INTO audit_records (seq, at_seconds, at_nanos, subject, action, target, outcome, prev_hash, hash) \
             VALUES (4, 0, 0, 's', 'a', 't', 'done', '\\x00000000000000000000000000000000000000000000000000000000000000ff', \
             '\\x00000000000000000000000000000000000000000000000000000000000000ff')",
            "does not link",
        ),
        (
            "INSERT INTO audit_records (seq, at_seconds, at_nanos, subject, action, target, outcome, prev_hash, hash) \
             VALUES (6, 0, 0, 's', 'a', 't', 'done', '\\x00000000000000000000000000000000000000000000000000000000000000ff', \
             '\\x00000000000000000000000000000000000000000000000000000000000000ff')",
            "does not link",
        ),
    ];
    for (sql, expected) in attempts {
        let err = sqlx::query(sql).execute(db.writer()).await.expect_err(sql);
        assert!(message(&err).contains(expected), "{sql}: {err}");
    }
    // The control: a hand-made record that does link is accepted by the same check.
    let last = before.last().expect("records");
    let linked = AuditRecord::chained(4, record(4), last.hash);
    let mut tx = db.writer().begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO audit_records (seq, at_seconds, at_nanos, subject, action, target, outcome, prev_hash, hash) \
         VALUES (4, 0, 0, 's', 'a', 't', 'done', $1, $2)",
    )
    .bind(&linked.prev_hash[..])
    .bind(&linked.hash[..])
    .execute(&mut *tx)
    .await
    .expect("a linked record is accepted");
    tx.rollback().await.expect("rollback");
    assert_eq!(all_records(&log).await, before, "nothing changed");
    assert_eq!(log.size().await.expect("size"), 3);
}

/// A record PostgreSQL text cannot hold (NUL) is refused as bad input, alone: the records
/// appended with it in the same batch are stored, and the chain has no gap.
#[tokio::test]
async fn a_record_with_nul_is_refused_alone() {
    let Some(db) = test_db().await else { return };
    let log = Arc::new(PgAuditLog::new(&db));
    let bad = NewAuditRecord { subject: "a\0b".into(), ..record(2) };
    let (one, refused, three) = tokio::join!(log.append(record(1)), log.append(bad), log.append(record(3)));
    assert!(matches!(refused, Err(bank_core::Error::InvalidInput(_))), "{refused:?}");
    let (one, three) = (one.expect("append"), three.expect("append"));
    assert_eq!(BTreeSet::from([one.seq, three.seq]), BTreeSet::from([1, 2]));
    assert!(matches!(log.append_once("k\0", record(4)).await, Err(bank_core::Error::InvalidInput(_))));
    assert_one_chain(&all_records(log.as_ref()).await);
    assert_eq!(log.size().await.expect("size"), 2);
}

/// Appends per second with 256 callers in each of two processes (`cargo test --release -p
/// bank-aws --features testkit --test postgres -- --ignored --nocapture audit_appends`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement"]
async fn audit_appends_throughput() {
    const CALLERS: i64 = 256;
    const PER_CALLER: i64 = 40;
    let Some(db) = test_db().await else { return };
    let other = reconnect(&db).await;
    let logs: [Arc<dyn AuditLog>; 2] = [Arc::new(PgAuditLog::new(&db)), Arc::new(PgAuditLog::new(&other))];
    let started = Instant::now();
    let tasks: Vec<_> = (0..2 * CALLERS)
        .map(|c| {
            let log = Arc::clone(&logs[usize::try_from(c % 2).expect("index")]);
            tokio::spawn(async move {
                for i in 0..PER_CALLER {
                    log.append(record(c * PER_CALLER + i)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed();
    let total = 2 * CALLERS * PER_CALLER;
    println!(
        "{total} appends from two processes in {elapsed:?}: {:.0} appends/s",
        total as f64 / elapsed.as_secs_f64()
    );
    assert_one_chain(&all_records(logs[0].as_ref()).await);
}
