//! The audit log's file as an attacker with write access to the data directory would treat it:
//! drop the append-only triggers, then edit, delete, reorder, insert or truncate records (or
//! rewrite the whole chain with correct hashes). `verify` must fail on each, naming the first bad
//! `seq`. Plus: the legacy `audit_log` carried over, the key file, and what survives a reopen.
//!
//! Every case starts from the same log: 25 records, checkpoints at 10 and 20 (sealed to the blob
//! store unless a case says otherwise), records 21..=25 after the last checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use bank_core::audit::checkpoint::AuditKey;
use bank_core::audit::seal::{AuditSealer, SealPolicy};
use bank_core::audit::verify::{VerifyReport, verify};
use bank_core::audit::{AuditLog, AuditRecord, NewAuditRecord};
use bank_core::clock::{Clock, ManualClock};
use bank_core::testkit::audit::record;
use bank_local::audit::{AUDIT_FILE_NAME, AUDIT_KEY_FILE_NAME, SqliteAuditLog, carry_over_legacy, load_or_create_key};
use bank_local::blob::FileBlobStore;
use bank_local::db::LocalDb;
use chrono::TimeDelta;
use rusqlite::{Connection, params};
use tempfile::TempDir;

const ORIGIN: &str = "bank.example/audit";

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    log: Arc<SqliteAuditLog>,
    blobs: Arc<FileBlobStore>,
    key: Arc<AuditKey>,
}

/// 25 records; checkpoints at 10 and 20, sealed when `seal`.
async fn fixture(seal: bool) -> Fixture {
    let dir = TempDir::new().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let db = LocalDb::open_file(dir.path(), AUDIT_FILE_NAME).await.expect("open");
    let log = Arc::new(SqliteAuditLog::new(&db, Arc::clone(&clock)));
    let blobs = Arc::new(
        FileBlobStore::open(&dir.path().join("blobs"), Arc::clone(&clock), "http://127.0.0.1".into())
            .await
            .expect("blobs"),
    );
    let key = Arc::new(AuditKey::from_seed(ORIGIN, [3; 32]).expect("key"));
    let policy = SealPolicy { every_records: 10, every: TimeDelta::days(1), retention: TimeDelta::days(30) };
    let sealer = AuditSealer::new(log.clone(), blobs.clone(), Arc::clone(&key), clock, policy);
    for n in 1..=25 {
        log.append(record(n)).await.expect("append");
        if n % 10 == 0 {
            let checkpoint = sealer.checkpoint_if_due().await.expect("checkpoint").expect("due");
            assert_eq!(checkpoint.size, u64::try_from(n).expect("positive"));
            if seal {
                assert_eq!(sealer.seal_pending().await.expect("seal"), 1);
            }
        }
    }
    let path = db.path().to_owned();
    let fixture = Fixture { _dir: dir, path, log, blobs, key };
    assert!(fixture.verify().await.ok, "the untouched log verifies");
    fixture
}

impl Fixture {
    async fn verify(&self) -> VerifyReport {
        verify(self.log.as_ref(), self.blobs.as_ref(), &self.key.verifier(), 1).await.expect("verify")
    }

    /// A writable connection to the audit file with the triggers dropped, as an intruder's.
    fn intruder(&self) -> Connection {
        let conn = Connection::open(&self.path).expect("open the file");
        conn.execute_batch(
            "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;
             DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;",
        )
        .expect("drop the triggers");
        conn
    }

    async fn records(&self) -> Vec<AuditRecord> {
        self.log.list(1, 100).await.expect("list")
    }

    /// Writes `record` as row `seq` (replacing what is there), hashes as given.
    fn write(conn: &Connection, record: &AuditRecord) {
        let r = &record.record;
        conn.execute(
            "INSERT OR REPLACE INTO audit_records (seq, at, subject, action, target, outcome, request_id, client_ip, \
             prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                i64::try_from(record.seq).expect("seq"),
                r.at.timestamp_nanos_opt().expect("time"),
                r.subject,
                r.action,
                r.target,
                r.outcome.as_str(),
                r.request_id,
                r.client_ip,
                &record.prev_hash[..],
                &record.hash[..],
            ],
        )
        .expect("write a row");
    }

    /// Rewrites records `from..` with correct hashes, so the chain itself holds.
    fn rechain(conn: &Connection, records: &[AuditRecord], from: u64) {
        let mut prev = records.iter().find(|r| r.seq == from - 1).map_or([0; 32], |r| r.hash);
        for r in records.iter().filter(|r| r.seq >= from) {
            let rechained = AuditRecord::chained(r.seq, r.record.clone(), prev);
            Fixture::write(conn, &rechained);
            prev = rechained.hash;
        }
    }
}

fn forged() -> NewAuditRecord {
    NewAuditRecord { subject: "mallory".into(), ..record(99) }
}

fn assert_bad(report: &VerifyReport, seq: u64) {
    assert!(!report.ok, "tampering went unnoticed: {report:?}");
    assert_eq!(report.first_bad_seq, Some(seq), "{report:?}");
    assert!(report.problem.is_some());
}

#[tokio::test]
async fn an_edited_field_is_named() {
    for seq in [1, 7, 23] {
        let f = fixture(true).await;
        f.intruder().execute("UPDATE audit_records SET subject = 'mallory' WHERE seq = ?1", [seq]).expect("edit");
        assert_bad(&f.verify().await, u64::try_from(seq).expect("seq"));
    }
}

#[tokio::test]
async fn an_edit_with_the_chain_rewritten_is_named_by_the_sealed_segment() {
    let f = fixture(true).await;
    let mut records = f.records().await;
    records[6].record.subject = "mallory".into();
    Fixture::rechain(&f.intruder(), &records, 7);
    let report = f.verify().await;
    assert_bad(&report, 7);
    assert!(report.problem.as_deref().is_some_and(|p| p.contains("sealed copy")), "{report:?}");
}

#[tokio::test]
async fn an_edit_with_the_chain_rewritten_fails_the_signed_root_without_segments() {
    let f = fixture(false).await;
    let mut records = f.records().await;
    records[13].record.action = "deposit.approved".into();
    Fixture::rechain(&f.intruder(), &records, 14);
    let report = f.verify().await;
    // The signed root of checkpoint 2 covers 11..=20; without a sealed copy the range is named.
    assert_bad(&report, 11);
    assert!(report.problem.as_deref().is_some_and(|p| p.contains("signed root")), "{report:?}");
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    for seq in [1, 12, 24] {
        let f = fixture(true).await;
        f.intruder().execute("DELETE FROM audit_records WHERE seq = ?1", [seq]).expect("delete");
        assert_bad(&f.verify().await, u64::try_from(seq).expect("seq"));
    }
}

#[tokio::test]
async fn a_deleted_record_with_the_rest_renumbered_and_rechained_is_named() {
    let f = fixture(true).await;
    let records = f.records().await;
    let conn = f.intruder();
    conn.execute("DELETE FROM audit_records WHERE seq >= 12", []).expect("delete the rest");
    let shifted: Vec<AuditRecord> = records
        .iter()
        .filter(|r| r.seq != 12)
        .map(|r| AuditRecord { seq: if r.seq > 12 { r.seq - 1 } else { r.seq }, ..r.clone() })
        .collect();
    Fixture::rechain(&conn, &shifted, 12);
    assert_bad(&f.verify().await, 12);
}

#[tokio::test]
async fn two_reordered_records_are_named() {
    for (a, b) in [(14_u64, 15_u64), (21, 22)] {
        let f = fixture(true).await;
        let records = f.records().await;
        let (first, second) =
            (&records[usize::try_from(a - 1).expect("index")], &records[usize::try_from(b - 1).expect("index")]);
        let conn = f.intruder();
        Fixture::write(&conn, &AuditRecord { seq: a, ..second.clone() });
        Fixture::write(&conn, &AuditRecord { seq: b, ..first.clone() });
        assert_bad(&f.verify().await, a);
    }
}

#[tokio::test]
async fn an_inserted_record_is_named() {
    // Inserted in the middle, everything after moved up one and rechained (as well as an
    // attacker can): the sealed copy names the forged record.
    let f = fixture(true).await;
    let records = f.records().await;
    let conn = f.intruder();
    conn.execute("DELETE FROM audit_records WHERE seq >= 5", []).expect("make room");
    let mut moved: Vec<AuditRecord> =
        records.iter().map(|r| AuditRecord { seq: if r.seq >= 5 { r.seq + 1 } else { r.seq }, ..r.clone() }).collect();
    moved.push(AuditRecord { seq: 5, record: forged(), prev_hash: [0; 32], hash: [0; 32] });
    moved.sort_by_key(|r| r.seq);
    Fixture::rechain(&conn, &moved, 5);
    assert_bad(&f.verify().await, 5);

    // The same without sealed segments: the signed root of checkpoint 1 (records 1..=10) fails.
    let f = fixture(false).await;
    let records = f.records().await;
    let conn = f.intruder();
    conn.execute("DELETE FROM audit_records WHERE seq >= 5", []).expect("make room");
    let mut moved: Vec<AuditRecord> =
        records.iter().map(|r| AuditRecord { seq: if r.seq >= 5 { r.seq + 1 } else { r.seq }, ..r.clone() }).collect();
    moved.push(AuditRecord { seq: 5, record: forged(), prev_hash: [0; 32], hash: [0; 32] });
    moved.sort_by_key(|r| r.seq);
    Fixture::rechain(&conn, &moved, 5);
    assert_bad(&f.verify().await, 1);
}

#[tokio::test]
async fn a_truncated_tail_is_detected_through_the_checkpoints() {
    // Records 16.. cut (checkpoint 2 covers 20): named at 16, with or without the checkpoint rows
    // deleted too (the sealed segment still holds it).
    for delete_checkpoints in [false, true] {
        let f = fixture(true).await;
        let conn = f.intruder();
        conn.execute("DELETE FROM audit_records WHERE seq >= 16", []).expect("truncate");
        if delete_checkpoints {
            conn.execute("DELETE FROM audit_checkpoints WHERE ordinal >= 2", []).expect("delete checkpoint");
        }
        let report = f.verify().await;
        assert_bad(&report, 16);
        assert!(report.problem.as_deref().is_some_and(|p| p.contains("truncated")), "{report:?}");
    }
    // Without segments, the live checkpoint still names the cut.
    let f = fixture(false).await;
    f.intruder().execute("DELETE FROM audit_records WHERE seq >= 16", []).expect("truncate");
    assert_bad(&f.verify().await, 16);
}

#[tokio::test]
async fn truncating_only_records_after_the_last_checkpoint_is_the_documented_blind_spot() {
    // Records after the last checkpoint are protected by the chain alone; cutting them off is
    // invisible until checkpoints cover them. The README names this bound (N records or T seconds).
    let f = fixture(true).await;
    f.intruder().execute("DELETE FROM audit_records WHERE seq >= 21", []).expect("truncate the tail");
    let report = f.verify().await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records_checked, 20);
}

#[tokio::test]
async fn an_altered_or_foreign_checkpoint_is_refused() {
    let f = fixture(false).await;
    let checkpoints = f.log.checkpoints(1, 10).await.expect("checkpoints");
    let altered = checkpoints[1].note.replacen("\n20\n", "\n19\n", 1);
    f.intruder().execute("UPDATE audit_checkpoints SET note = ?1 WHERE ordinal = 2", [&altered]).expect("alter");
    let report = f.verify().await;
    assert_bad(&report, 11);
    assert!(report.problem.as_deref().is_some_and(|p| p.contains("signature")), "{report:?}");

    // Signed by another key (an attacker's own): refused by the published key.
    let f = fixture(false).await;
    let theirs = AuditKey::from_seed(ORIGIN, [4; 32]).expect("key");
    let root = bank_core::audit::tree::root(f.log.as_ref(), 10).await.expect("root");
    let note = theirs.sign(10, root).expect("sign");
    f.intruder().execute("UPDATE audit_checkpoints SET note = ?1 WHERE ordinal = 1", [&note]).expect("replace");
    assert_bad(&f.verify().await, 1);

    // A sealed checkpoint deleted from the log.
    let f = fixture(true).await;
    f.intruder().execute("DELETE FROM audit_checkpoints WHERE ordinal = 1", []).expect("delete checkpoint 1");
    let report = f.verify().await;
    assert_bad(&report, 10);
    assert!(report.problem.as_deref().is_some_and(|p| p.contains("missing from the log")), "{report:?}");
}

/// An inclusion proof from the SQLite tree checks against the signed checkpoint's root.
#[tokio::test]
async fn inclusion_proofs_verify_against_the_signed_checkpoint() {
    let f = fixture(true).await;
    let latest = f.log.latest_checkpoint().await.expect("latest").expect("a checkpoint");
    let head = f.key.verifier().open(&latest.note).expect("signed");
    assert_eq!(head.size, 20);
    for r in f.records().await.iter().filter(|r| r.seq <= 20) {
        let proof = bank_core::audit::tree::inclusion_proof(f.log.as_ref(), r.seq - 1, head.size).await.expect("proof");
        let leaf = bank_core::audit::tree::leaf_hash(&r.encode());
        assert!(bank_core::audit::tree::check_inclusion(&proof, head.size, head.root, r.seq - 1, leaf), "{}", r.seq);
        let mut edited = r.clone();
        edited.record.subject = "mallory".into();
        let forged_leaf = bank_core::audit::tree::leaf_hash(&edited.encode());
        assert!(!bank_core::audit::tree::check_inclusion(&proof, head.size, head.root, r.seq - 1, forged_leaf));
    }
}

/// The records of the old `audit_log` table of `bank.sqlite` are carried into the chained log
/// once, in order, with their content; a second open carries nothing.
#[tokio::test]
async fn legacy_records_are_carried_over_once() {
    let dir = TempDir::new().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let bank = LocalDb::open(dir.path()).await.expect("bank.sqlite");
    let writable = Connection::open(bank.path()).expect("open");
    for n in 1..=3 {
        let r = record(n);
        writable
            .execute(
                "INSERT INTO audit_log (at, subject, action, target, outcome, request_id, client_ip) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.at.timestamp_nanos_opt(),
                    r.subject,
                    r.action,
                    r.target,
                    r.outcome.as_str(),
                    r.request_id,
                    r.client_ip
                ],
            )
            .expect("legacy row");
    }
    let audit_db = LocalDb::open_file(dir.path(), AUDIT_FILE_NAME).await.expect("audit.sqlite");
    let log = SqliteAuditLog::new(&audit_db, clock);
    assert_eq!(carry_over_legacy(&bank, &log).await.expect("carry"), 3);
    assert_eq!(carry_over_legacy(&bank, &log).await.expect("again"), 0);
    let records = log.list(1, 10).await.expect("list");
    assert_eq!(records.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), (1..=3).map(record).collect::<Vec<_>>());
    assert_eq!(records[1].prev_hash, records[0].hash);
    log.append(record(4)).await.expect("append after");
    assert_eq!(carry_over_legacy(&bank, &log).await.expect("after new records"), 0);
}

/// The key is made once (mode 0600), read back the same on the next open, and an existing key
/// of another origin is refused rather than replaced.
#[tokio::test]
async fn the_signing_key_is_made_once_and_keeps_its_origin() {
    let dir = TempDir::new().expect("temp dir");
    let first = load_or_create_key(dir.path(), ORIGIN).expect("create");
    let again = load_or_create_key(dir.path(), ORIGIN).expect("load");
    assert_eq!(first.verifier_key(), again.verifier_key());
    assert!(first.verifier_key().starts_with("bank.example/audit+"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(AUDIT_KEY_FILE_NAME)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let refused = load_or_create_key(dir.path(), "other.example/audit").expect_err("another origin");
    assert!(refused.to_string().contains("keeps its origin"), "{refused}");
    std::fs::write(dir.path().join(AUDIT_KEY_FILE_NAME), "garbage").expect("corrupt");
    assert!(load_or_create_key(dir.path(), ORIGIN).is_err(), "a corrupt key is refused, not replaced");
}

/// Records, tree and checkpoints survive closing and reopening the file; the log goes on
/// chaining and verifies.
#[tokio::test]
async fn the_chain_survives_a_reopen() {
    let f = fixture(true).await;
    let dir = f.path.parent().expect("dir").to_owned();
    let before = f.records().await;
    f.log.db().close().await;
    let Fixture { _dir, log, blobs, key, .. } = f;
    drop(log);
    let db = LocalDb::open_file(&dir, AUDIT_FILE_NAME).await.expect("reopen");
    let log = Arc::new(SqliteAuditLog::new(&db, Arc::new(ManualClock::at_epoch())));
    assert_eq!(log.list(1, 100).await.expect("list"), before);
    let next = log.append(record(26)).await.expect("append");
    assert_eq!((next.seq, next.prev_hash), (26, before[24].hash));
    let report = verify(log.as_ref(), blobs.as_ref(), &key.verifier(), 1).await.expect("verify");
    assert!(report.ok && report.records_checked == 26, "{report:?}");
}

/// `verify --from`: starting after checkpoint 2 (records 21..), a bad record there is named; an
/// edit before the start is outside what was asked; and tree hashes forged to fake the start
/// make verify fall back to the beginning, where the edit is found.
#[tokio::test]
async fn verify_from_a_later_seq_starts_at_an_authenticated_checkpoint() {
    let f = fixture(true).await;
    let from = |seq| {
        let (log, blobs, verifier) = (f.log.clone(), f.blobs.clone(), f.key.verifier());
        async move { verify(log.as_ref(), blobs.as_ref(), &verifier, seq).await.expect("verify") }
    };
    let conn = f.intruder();
    conn.execute("UPDATE audit_records SET subject = 'mallory' WHERE seq = 24", []).expect("edit the tail");
    let report = from(22).await;
    assert_eq!(report.from_seq, 21, "the walk starts after checkpoint 2");
    assert_bad(&report, 24);

    let f = fixture(true).await;
    let conn = f.intruder();
    conn.execute("UPDATE audit_records SET subject = 'mallory' WHERE seq = 3", []).expect("edit early");
    let late = verify(f.log.as_ref(), f.blobs.as_ref(), &f.key.verifier(), 22).await.expect("verify");
    assert!(late.ok && late.from_seq == 21 && late.records_checked == 5, "{late:?}");
    assert_bad(&f.verify().await, 3);
    // Forge the stored tree hashes: the frontier no longer hashes to the signed root, so the
    // walk starts over from record 1 and finds the edit.
    conn.execute_batch("DROP TRIGGER audit_tree_no_update").expect("drop");
    conn.execute("UPDATE audit_tree SET hash = zeroblob(32)", []).expect("forge the tree");
    let fallback = verify(f.log.as_ref(), f.blobs.as_ref(), &f.key.verifier(), 22).await.expect("verify");
    assert_eq!(fallback.from_seq, 1, "{fallback:?}");
    assert_bad(&fallback, 3);
}
