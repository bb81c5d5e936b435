//! [`FreshDb`]: one fresh database per case or seed, for harnesses that run many: the previous
//! database is closed and its directory removed when the next one opens (the last one when the
//! harness is dropped).

use bank_local::db::LocalDb;
use parking_lot::Mutex;
use tempfile::TempDir;

#[derive(Default)]
pub(crate) struct FreshDb {
    previous: Mutex<Option<(LocalDb, TempDir)>>,
}

impl FreshDb {
    /// Closes the previous database and opens (and migrates) a new one in a new directory.
    pub(crate) async fn next(&self) -> LocalDb {
        let previous = self.previous.lock().take();
        if let Some((db, dir)) = previous {
            db.close().await;
            drop(dir);
        }
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        *self.previous.lock() = Some((db.clone(), dir));
        db
    }
}

/// Databases in fresh temporary directories that all stay until the harness is dropped (a case
/// may open several at once).
#[derive(Default)]
pub(crate) struct KeptDbs {
    dirs: Mutex<Vec<TempDir>>,
}

impl KeptDbs {
    /// Opens (and migrates) a new database in a new directory.
    pub(crate) async fn open(&self) -> LocalDb {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        self.dirs.lock().push(dir);
        db
    }
}
