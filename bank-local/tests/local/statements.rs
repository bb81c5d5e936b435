//! The statements suite on the durable stores: the ledger in SQLite and the PDFs as write-once
//! files (`FileBlobStore`), each case in a fresh temporary directory.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::ports::{BlobStore, LedgerStore};
use bank_core::testkit::statements::StatementsHarness;
use bank_local::blob::FileBlobStore;
use bank_local::db::LocalDb;
use bank_local::ledger::SqliteLedger;
use parking_lot::Mutex;
use tempfile::TempDir;

/// Keeps each case's directories alive for the whole case.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl StatementsHarness for Harness {
    async fn stores(&self, clock: Arc<dyn Clock>) -> (Arc<dyn LedgerStore>, Arc<dyn BlobStore>) {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        let blobs =
            FileBlobStore::open(&dir.path().join("blobs"), Arc::clone(&clock), "http://127.0.0.1:8080/files".into())
                .await
                .expect("open blobs");
        self.dirs.lock().push(dir);
        (Arc::new(SqliteLedger::new(&db, clock)), Arc::new(blobs))
    }
}

bank_core::statements_tests!(Harness::default());
