//! [`Checkpointer`]: the thread that copies committed WAL frames into the database file beside the
//! writer, so neither that copy nor its fsync is on the commit path, and keeps the WAL file from
//! growing under steady load.
//!
//! Why the second part: SQLite starts the WAL over from its beginning only when a writer begins
//! while every frame is already copied. Under steady load a commit always lands while the passive
//! checkpoint copies, so the log never starts over and grows to the auto-checkpoint bound —
//! measured at the seed's peak: `bank.sqlite-wal` and `audit.sqlite-wal` at 270 MB each within a
//! minute, for databases of 14 and 22 MB. So once the log holds [`WAL_RESTART_FRAMES`], the thread
//! follows its passive pass with a `RESTART` checkpoint: it copies what the passive pass missed
//! (a few frames), then waits up to [`RESTART_WAIT`] for readers of the old log, so the next
//! commit starts the log over; `journal_size_limit` then truncates the file to
//! [`WAL_SIZE_LIMIT_BYTES`]. While it runs (milliseconds: the remainder and one fsync) writers
//! wait; if a long reader keeps the old log busy past the wait, it gives up until the next pass.

use rusqlite::Connection;

use super::LocalDb;

/// WAL pages after which the writer checkpoints itself (a safety net: normally the checkpoint
/// thread has already copied them, and the writer's checkpoint only resets the log). 256 MiB at
/// 4 KiB pages: well above what one [`CHECKPOINT_EVERY`] adds at full load (~110 MB/s), so the
/// writer never copies pages on its commit path.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 65_536;
/// How often the checkpoint thread copies committed WAL frames into the database file. Each pass
/// ends with an fsync of the database file, and a commit whose own fsync lands during that flush
/// waits for it: the longer the interval, the more each pass flushes and the longer those waits.
/// Measured through the HTTP API at the seed's peak (`bank-load`, 60 s runs): every 10 s,
/// transfers p99 7.2 ms and p99.9 52–60 ms; every 1 s, p99 5.0–5.7 ms; every 200 ms, p99
/// 4.4–4.6 ms. A page written by many commits (an account row, the end of an index) is copied
/// once per pass, so shorter is more copying: 50 ms cost 7–15% of the pipeline benchmark's
/// throughput; 200 ms measured within its noise of 1 s (4.0–4.7 K/s against 4.3 K/s the same
/// day). The WAL to replay after a crash is at most one interval of writes.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// WAL frames (pages) after which a passive pass is followed by a `RESTART` one: 64 MiB at
/// 4 KiB pages, ten to twenty seconds of the seed's peak.
pub(crate) const WAL_RESTART_FRAMES: i64 = 16_384;
/// Size the WAL file is truncated to when the log starts over (`journal_size_limit`).
pub(crate) const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// Longest a `RESTART` checkpoint waits for the writer and for readers of the old log (writers
/// wait while it holds the write lock).
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A thread that checkpoints the WAL (`PASSIVE`: never blocks the writer or readers) beside the
/// writer, so copying pages into the database file and its fsync are not on the commit path.
/// Stops as soon as it is dropped (its thread waits on the other end of `_stop`).
pub(crate) struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    pub(crate) fn start(db: &LocalDb, writer: &Connection) -> Option<Checkpointer> {
        if let Err(e) = writer.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES) {
            tracing::warn!(error = %e, "cannot raise the WAL auto-checkpoint; the writer checkpoints alone");
            return None;
        }
        let conn = match db.connect() {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread; the writer checkpoints alone");
                return None;
            }
        };
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("bank-local-checkpoint".into()).spawn(move || {
            if let Err(e) = conn.busy_timeout(RESTART_WAIT) {
                tracing::warn!(error = %e, "cannot shorten the checkpoint's busy wait");
            }
            // Nothing is ever sent: a timeout is the next checkpoint, a disconnect the end.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                checkpoint(&conn);
            }
        });
        match spawned {
            Ok(_) => Some(Checkpointer { _stop: stop }),
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread; the writer checkpoints alone");
                None
            }
        }
    }
}

/// One pass: copy what is committed (`PASSIVE`); if the log is long, start it over (`RESTART`).
fn checkpoint(conn: &Connection) {
    let log_frames =
        |mode: &str| conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| row.get::<_, i64>(1));
    match log_frames("PASSIVE") {
        Ok(frames) if frames >= WAL_RESTART_FRAMES => {
            if let Err(e) = log_frames("RESTART") {
                tracing::warn!(error = %e, frames, "WAL restart checkpoint failed; retrying");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
    }
}
