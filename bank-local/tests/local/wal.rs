//! The write-ahead log starts over under steady writes with readers running all the time, so its
//! file stays bounded (see `bank_local::db::checkpoint`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bank_core::Error;
use bank_core::clock::SystemClock;
use bank_local::db::writer::WriterHandle;
use bank_local::db::{DB_FILE_NAME, LocalDb};
use tempfile::TempDir;

/// Bytes written per job, jobs, and the pause after each: 200 MiB at most ~100 MB/s (the
/// checkpoint thread looks every 200 ms, so ~20 MB land between two of its looks), more than the
/// writer's own auto-checkpoint bound (128 MiB), so a log that never started over before it
/// would be seen.
const BODY_BYTES: usize = 1 << 20;
const WRITES: i64 = 200;
const PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// The log starts over at 32 MiB of frames, plus what lands before the writer finishes the copy;
/// without the writer's part only the auto-checkpoint (128 MiB) bounds it. In between: room for
/// the thread to be ~800 ms late on a busy machine.
const WAL_FILE_MAX_BYTES: u64 = 120 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_starts_over_under_steady_writes_and_reads() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let writer = WriterHandle::for_db(&db, Arc::new(SystemClock));
    writer
        .run(|conn| {
            conn.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL)", [])
                .map_err(|e| Error::storage(e, false))
        })
        .await
        .expect("create the scratch table");

    // Readers all the time, each read a fresh snapshot (what kept a `RESTART` checkpoint waiting).
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (db, stop, reads) = (db.clone(), Arc::clone(&stop), Arc::clone(&reads));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rows: i64 = db
                    .read(|conn| {
                        conn.query_row("SELECT count(*) FROM scratch", [], |row| row.get(0))
                            .map_err(|e| Error::storage(e, false))
                    })
                    .expect("read beside the writer");
                assert!(rows <= 8, "the writer keeps eight rows at most, read {rows}");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let wal = dir.path().join(format!("{DB_FILE_NAME}-wal"));
    let mut largest = 0;
    for id in 0..WRITES {
        writer
            .run(move |conn| {
                let body = vec![u8::try_from(id % 251).unwrap_or(0); BODY_BYTES];
                conn.execute("INSERT INTO scratch (id, body) VALUES (?1, ?2)", rusqlite::params![id, body])
                    .map_err(|e| Error::storage(e, false))?;
                conn.execute("DELETE FROM scratch WHERE id <= ?1", [id - 8]).map_err(|e| Error::storage(e, false))
            })
            .await
            .expect("write");
        tokio::time::sleep(PAUSE).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader thread");

    assert!(reads.load(Ordering::Relaxed) > 0, "reads ran beside the writes");
    assert!(
        largest < WAL_FILE_MAX_BYTES,
        "the log grew to {largest} bytes for {} MiB written: it did not start over",
        WRITES * i64::try_from(BODY_BYTES >> 20).unwrap_or(1)
    );
    let (check, last): (String, i64) = db
        .read(|conn| {
            let check = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0));
            let last = conn.query_row("SELECT max(id) FROM scratch", [], |row| row.get(0));
            check.and_then(|check| last.map(|last| (check, last))).map_err(|e| Error::storage(e, false))
        })
        .expect("check");
    assert_eq!((check.as_str(), last), ("ok", WRITES - 1));
}
