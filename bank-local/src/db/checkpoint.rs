//! [`Checkpointer`]: the thread that copies committed WAL frames into the database file beside the
//! writer, so neither that copy nor its fsync is on the commit path, and keeps the WAL file from
//! growing under steady load.
//!
//! Why the second part: SQLite starts the WAL over from its beginning only when a writer begins
//! while every frame is already copied. Under steady load a commit always lands while the passive
//! checkpoint copies, so the log never starts over and grows to the auto-checkpoint bound —
//! measured at the seed's peak: `bank.sqlite-wal` and `audit.sqlite-wal` at 270 MB each within a
//! minute, for databases of 14 and 22 MB. So once the log holds [`WAL_RESTART_FRAMES`], the thread
//! copies once more at once (what came in during its pass: milliseconds of commits) and asks the
//! writer to finish the job ([`Checkpointer::restart_log`]): between two batches, when no commit
//! can land, the writer copies the last few frames itself, so its next commit starts the log over;
//! `journal_size_limit` then truncates the file to [`WAL_SIZE_LIMIT_BYTES`]. Until the writer has
//! tried, the thread makes no pass of its own (the two would only contend for the checkpoint lock).
//!
//! Not a `RESTART` checkpoint from the thread: it holds the write lock while it waits for every
//! reader of the old log to finish, and under a steady stream of reads (each one taking a fresh
//! snapshot of the log) that wait ran to its bound — measured at ten times the seed's peak
//! (`bank-load`, 30 s): `bank.sqlite`'s log restarted every ~0.8 s and each `RESTART` held its
//! writer for 2–124 ms (a third of them over 20 ms), every transfer behind it waiting. Copying the
//! last frames on the writer waits for nobody: a reader that starts once everything is copied
//! reads the database file alone and does not hold the log; one still reading older frames (a
//! snapshot taken microseconds before) only leaves the restart to the next round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::LocalDb;

/// WAL pages after which the writer checkpoints itself (a safety net: normally the checkpoint
/// thread has already copied them, and the writer's checkpoint only resets the log). 128 MiB at
/// 2 KiB pages: well above what one [`CHECKPOINT_EVERY`] adds at full load (~45 MB/s into
/// `bank.sqlite` at ten times the seed's peak), so the writer never copies many pages on its
/// commit path.
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
/// WAL frames (pages) after which the log is started over: 32 MiB at 2 KiB pages, about one
/// second of `bank.sqlite` at ten times the seed's peak.
pub(crate) const WAL_RESTART_FRAMES: i64 = 16_384;
/// Size the WAL file is truncated to when the log starts over (`journal_size_limit`).
pub(crate) const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// A thread that checkpoints the WAL (`PASSIVE`: never blocks the writer or readers) beside the
/// writer, so copying pages into the database file and its fsync are not on the commit path.
/// Stops as soon as it is dropped (its thread waits on the other end of `_stop`).
pub(crate) struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
    /// Set by the thread when the log is long: the writer's turn to start it over.
    restart: Arc<AtomicBool>,
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
        let restart = Arc::new(AtomicBool::new(false));
        let asked = Arc::clone(&restart);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("bank-local-checkpoint".into()).spawn(move || {
            // Nothing is ever sent: a timeout is the next checkpoint, a disconnect the end.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if !asked.load(Ordering::Acquire) && pass(&conn).is_some_and(|frames| frames >= WAL_RESTART_FRAMES) {
                    // What was committed during that pass, so the writer has little left to copy.
                    pass(&conn);
                    asked.store(true, Ordering::Release);
                }
            }
        });
        match spawned {
            Ok(_) => Some(Checkpointer { _stop: stop, restart }),
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread; the writer checkpoints alone");
                None
            }
        }
    }

    /// Called by the writer between batches, on its own connection: if the thread asked, copies
    /// what is left of the log so the next commit starts it over (see the module docs). One try
    /// per ask; the thread asks again after its next pass if the log is still long.
    pub(crate) fn restart_log(&self, writer: &Connection) {
        if self.restart.swap(false, Ordering::AcqRel) {
            pass(writer);
        }
    }
}

/// One `PASSIVE` checkpoint: copies what is committed and no reader still needs. Returns the
/// frames in the log, or `None` if the checkpoint failed (logged; the next pass retries).
fn pass(conn: &Connection) -> Option<i64> {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
        Ok(frames) => Some(frames),
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            None
        }
    }
}
