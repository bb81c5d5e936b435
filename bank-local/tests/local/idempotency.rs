//! `SqliteIdempotencyStore` against the `IdempotencyStore` conformance suite, plus what only a
//! durable store sharing the database's writer must show: a completed key survives a reopen,
//! the store and the ledger share one writer thread, and a failed job writes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::Error;
use bank_core::clock::{Clock, ManualClock};
use bank_core::idempotency::{Begin, IdempotencyKey, IdempotencyScope};
use bank_core::ports::IdempotencyStore;
use bank_core::testkit::idempotency::IdempotencyHarness;
use bank_core::transfer::Fingerprint;
use bank_local::db::LocalDb;
use bank_local::db::writer::WriterHandle;
use bank_local::idempotency::SqliteIdempotencyStore;
use bank_local::ledger::SqliteLedger;
use chrono::TimeDelta;
use parking_lot::Mutex;
use tempfile::TempDir;

/// Builds each case's store in a fresh temporary directory, kept alive for the whole case.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl IdempotencyHarness for Harness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn IdempotencyStore> {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        self.dirs.lock().push(dir);
        Arc::new(SqliteIdempotencyStore::new(&db, clock))
    }
}

bank_core::idempotency_conformance_tests!(Harness::default());

fn scope(key: &str) -> IdempotencyScope {
    IdempotencyScope { caller: "alice".into(), key: IdempotencyKey::new(key).expect("valid key") }
}

const RESPONSE: &[u8] = b"{\"id\":\"transfer-1\"}\x00\xff";

#[tokio::test]
async fn a_completed_key_survives_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let s = scope("durable");
    let started_at = clock.now();
    let in_flight = scope("in-flight");
    let in_flight_token = {
        let db = LocalDb::open(dir.path()).await.expect("open");
        let store = SqliteIdempotencyStore::new(&db, Arc::new(clock.clone()));
        let begin = store.begin(&s, Fingerprint([7; 32]), "transfer-1", TimeDelta::seconds(30)).await.expect("begin");
        let Begin::Started { token, .. } = begin else { panic!("expected a start, got {begin:?}") };
        store.complete(&s, token, RESPONSE.to_vec()).await.expect("complete");
        let begin =
            store.begin(&in_flight, Fingerprint([8; 32]), "transfer-2", TimeDelta::seconds(30)).await.expect("begin");
        let Begin::Started { token, .. } = begin else { panic!("expected a start, got {begin:?}") };
        drop(store);
        db.close().await;
        token
    };

    clock.advance(TimeDelta::minutes(5));
    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let store = SqliteIdempotencyStore::new(&db, Arc::new(clock.clone()));
    let replay = store.begin(&s, Fingerprint([7; 32]), "other", TimeDelta::seconds(30)).await.expect("replay");
    assert_eq!(replay, Begin::Replay { resource: "transfer-1".into(), response: RESPONSE.to_vec() });
    let mismatch = store.begin(&s, Fingerprint([9; 32]), "other", TimeDelta::seconds(30)).await;
    assert!(matches!(mismatch, Err(Error::IdempotencyMismatch)), "{mismatch:?}");

    // The in-flight key's lease ran out while the process was down: it is abandoned and taken
    // over with its first resource and time, and the dead attempt's token is refused.
    let abandoned = store.abandoned(10).await.expect("abandoned");
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert_eq!(abandoned[0].scope, in_flight);
    let takeover =
        store.begin(&in_flight, Fingerprint([8; 32]), "transfer-3", TimeDelta::seconds(30)).await.expect("takeover");
    assert!(
        matches!(&takeover, Begin::Started { resource, first_seen_at, takeover: true, .. }
            if resource == "transfer-2" && *first_seen_at == started_at),
        "{takeover:?}"
    );
    let stale = store.complete(&in_flight, in_flight_token, b"stale".to_vec()).await;
    assert!(matches!(stale, Err(Error::LeaseLost)), "{stale:?}");
    drop(store);
    db.close().await;
}

#[tokio::test]
async fn the_store_and_the_ledger_share_one_writer() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let ledger = SqliteLedger::new(&db, Arc::clone(&clock));
    let store = SqliteIdempotencyStore::new(&db, Arc::clone(&clock));
    let before = ledger.writer_stats();
    store.begin(&scope("shared"), Fingerprint([1; 32]), "transfer-1", TimeDelta::seconds(30)).await.expect("begin");
    store.purge_expired().await.expect("purge");
    let after = ledger.writer_stats();
    assert_eq!(after.commands, before.commands + 2, "the store's writes ran in the ledger's writer");
    assert_eq!(WriterHandle::for_db(&db, clock).stats(), after, "one writer per database");
}

#[tokio::test]
async fn a_failed_job_writes_nothing_and_the_batch_goes_on() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let writer = WriterHandle::for_db(&db, Arc::new(ManualClock::at_epoch()));
    let insert = "INSERT INTO idempotency_keys (caller, key, fingerprint, resource, state, lease_token, lease_until, \
                  created_at, expires_at) VALUES (?1, 'k', zeroblob(32), 'r', 'in_flight', zeroblob(16), 0, 0, 1)";
    let failed: Result<(), Error> = writer
        .run(move |conn| {
            conn.execute(insert, ["failing"]).map_err(|e| Error::storage(e, false))?;
            Err(Error::InvalidInput("refused after writing".into()))
        })
        .await;
    assert!(matches!(failed, Err(Error::InvalidInput(_))), "{failed:?}");
    let inserted: usize = writer
        .run(move |conn| conn.execute(insert, ["kept"]).map_err(|e| Error::storage(e, false)))
        .await
        .expect("a job after a failed one");
    assert_eq!(inserted, 1);
    let callers: Vec<String> = db
        .read(|conn| {
            let mut statement = conn
                .prepare("SELECT caller FROM idempotency_keys ORDER BY caller")
                .map_err(|e| Error::storage(e, false))?;
            let callers = statement.query_map([], |row| row.get(0)).map_err(|e| Error::storage(e, false))?;
            callers.collect::<Result<_, _>>().map_err(|e| Error::storage(e, false))
        })
        .expect("read");
    assert_eq!(callers, ["kept"], "the failed job's insert was rolled back");
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_the_writer_goes_on() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let writer = WriterHandle::for_db(&db, Arc::clone(&clock));
    let store = SqliteIdempotencyStore::new(&db, clock);
    store.begin(&scope("kept"), Fingerprint([1; 32]), "transfer-1", TimeDelta::seconds(30)).await.expect("begin");
    let panicked: Result<(), Error> = writer
        .run(|conn| {
            conn.execute("DELETE FROM idempotency_keys", []).map_err(|e| Error::storage(e, false))?;
            panic!("a bug in a job");
        })
        .await;
    assert!(matches!(panicked, Err(Error::Storage { retryable: false, .. })), "{panicked:?}");
    let kept = store.begin(&scope("kept"), Fingerprint([1; 32]), "transfer-1", TimeDelta::seconds(30)).await;
    assert!(matches!(kept, Err(Error::IdempotencyInFlight)), "the panicking job's delete was rolled back: {kept:?}");
    let begin = store.begin(&scope("after"), Fingerprint([1; 32]), "transfer-2", TimeDelta::seconds(30)).await;
    assert!(matches!(begin, Ok(Begin::Started { .. })), "the writer still runs: {begin:?}");
}
