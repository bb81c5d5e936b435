//! [`Checkpointer`]: the thread that copies committed WAL frames into the database file beside the
//! writer, so neither that copy nor its fsync is on the commit path.

use rusqlite::Connection;

use super::LocalDb;

/// WAL pages after which the writer checkpoints itself (a safety net: normally the checkpoint
/// thread has already copied them, and the writer's checkpoint only resets the log). 256 MiB at
/// 4 KiB pages: well above what one [`CHECKPOINT_EVERY`] adds at full load (~110 MB/s), so the
/// writer never copies pages on its commit path.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 65_536;
/// How often the checkpoint thread copies committed WAL frames into the database file. A page
/// written by many commits (an account row, the end of an index) is copied once per checkpoint,
/// so a longer interval copies less: measured, 1 s instead of 50 ms gave +7–15% settled transfers
/// per second. The cost is a bigger WAL (up to a second of writes) to replay after a crash.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

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
            // Nothing is ever sent: a timeout is the next checkpoint, a disconnect the end.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
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
