//! `LocalDb::open` refuses what it must not touch — a garbage file, a corrupt database, another
//! program's database, an unwritable data directory — with an error naming the path, and never
//! creates a new database in their place; `LocalBackend` keeps the ledger in its own file and
//! refuses the layout from before that.

use std::path::Path;
use std::sync::Arc;

use bank_core::Error;
use bank_core::account::NewAccount;
use bank_core::clock::SystemClock;
use bank_core::ids::CustomerId;
use bank_core::money::Currency;
use bank_core::ports::LedgerStore;
use bank_local::backend::{LocalBackend, LocalConfig};
use bank_local::db::{APPLICATION_ID, DB_FILE_NAME, LEDGER_FILE_NAME, LOCK_FILE_NAME, LocalDb, PAGE_SIZE};
use bank_local::ledger::SqliteLedger;
use tempfile::TempDir;

/// Opening must fail with a non-retryable storage error whose message names `path`.
async fn assert_refused(data_dir: &Path, path: &Path, why: &str) -> String {
    match LocalDb::open(data_dir).await {
        Ok(_) => panic!("{why}: opened instead of refusing"),
        Err(Error::Storage { message, retryable }) => {
            assert!(!retryable, "{why}: a retry cannot fix this");
            assert!(message.contains(&path.display().to_string()), "{why}: {message:?} does not name {path:?}");
            message
        }
        Err(other) => panic!("{why}: unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join(DB_FILE_NAME);
    let garbage = b"this is not a database, just some bytes \x00\x01\x02\xff".repeat(100);
    std::fs::write(&path, &garbage).expect("write garbage");
    let message = assert_refused(dir.path(), &path, "garbage file").await;
    assert!(message.contains("not an SQLite database"), "{message}");
    assert_eq!(std::fs::read(&path).expect("read"), garbage, "the file was modified");
}

#[tokio::test]
async fn a_corrupt_database_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join(DB_FILE_NAME);
    let db = LocalDb::open(dir.path()).await.expect("create");
    db.close().await;
    drop(db);
    // Keep the 100-byte header (so it still looks like SQLite) and wreck every page after it.
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 4096, "the schema spans several pages");
    for (i, byte) in bytes.iter_mut().enumerate().skip(100) {
        *byte = u8::try_from(i % 251).unwrap_or(0);
    }
    std::fs::write(&path, &bytes).expect("corrupt");
    assert_refused(dir.path(), &path, "corrupt database").await;
}

#[tokio::test]
async fn another_programs_database_is_refused_and_left_alone() {
    // One with tables and no application id, one with another application id.
    for (setup, why) in [
        ("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", "tables, application_id 0"),
        ("PRAGMA application_id = 1234", "another application_id"),
    ] {
        let dir = TempDir::new().expect("temp dir");
        let path = dir.path().join(DB_FILE_NAME);
        let conn = rusqlite::Connection::open(&path).expect("create foreign database");
        conn.execute_batch(setup).expect("setup");
        drop(conn);
        let before = std::fs::read(&path).expect("read");

        let message = assert_refused(dir.path(), &path, why).await;
        assert!(message.contains("another application"), "{message}");
        assert_eq!(std::fs::read(&path).expect("read"), before, "{why}: the foreign database was modified");
        assert!(!dir.path().join(format!("{DB_FILE_NAME}-wal")).exists(), "{why}: switched to WAL");
    }
}

#[tokio::test]
async fn an_unwritable_data_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = TempDir::new().expect("temp dir");
    let locked = root.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    // Root ignores permission bits; then make creation itself impossible: a directory below a
    // regular file.
    let data_dir = if std::fs::write(locked.join("probe"), b"x").is_ok() {
        std::fs::remove_file(locked.join("probe")).expect("cleanup");
        let file = root.path().join("a-file");
        std::fs::write(&file, b"not a directory").expect("write");
        file.join("data")
    } else {
        locked.clone()
    };
    assert_refused(&data_dir, &data_dir, "unwritable data directory").await;
    assert!(!data_dir.join(DB_FILE_NAME).exists(), "a database was created");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).expect("chmod back");
}

#[tokio::test]
async fn a_new_directory_gets_a_claimed_database_that_reopens() {
    let root = TempDir::new().expect("temp dir");
    let data_dir = root.path().join("nested").join("data");
    let db = LocalDb::open(&data_dir).await.expect("create");
    assert_eq!(db.path(), data_dir.join(DB_FILE_NAME));
    let id: i32 = db
        .read(|c| c.query_row("PRAGMA application_id", [], |row| row.get(0)).map_err(|e| Error::storage(e, false)))
        .expect("read id");
    assert_eq!(id, APPLICATION_ID);
    let conn = db.connect().expect("connect");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("mode");
    assert_eq!(mode, "wal");
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0)).expect("page size");
    assert_eq!(page_size, PAGE_SIZE, "a new database has the crate's page size");
    drop(conn);
    db.close().await;
    drop(db);
    let again = LocalDb::open(&data_dir).await.expect("reopen");
    again.close().await;
}

/// A database created with another page size (before this crate chose one) is opened as it is.
#[tokio::test]
async fn an_existing_database_keeps_its_page_size() {
    let root = TempDir::new().expect("temp dir");
    let data_dir = root.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("mkdir");
    {
        let conn = rusqlite::Connection::open(data_dir.join(DB_FILE_NAME)).expect("create");
        conn.pragma_update(None, "page_size", 4096).expect("page size");
        conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
        conn.pragma_update(None, "application_id", APPLICATION_ID).expect("claim");
    }
    let db = LocalDb::open(&data_dir).await.expect("open");
    let page_size: i64 =
        db.connect().expect("connect").query_row("PRAGMA page_size", [], |row| row.get(0)).expect("page size");
    assert_eq!(page_size, 4096);
    db.close().await;
}

#[tokio::test]
async fn a_data_directory_in_use_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    let db = LocalDb::open(dir.path()).await.expect("open");
    let message = match LocalDb::open(dir.path()).await {
        Ok(_) => panic!("a second open of a data directory in use succeeded"),
        Err(err) => err.to_string(),
    };
    assert!(message.contains("in use"), "{message}");
    assert!(message.contains(&dir.path().display().to_string()), "the message names the directory: {message}");
    drop(db);
    LocalDb::open(dir.path()).await.expect("open again once the first is gone");
}

/// `LocalBackend` keeps the ledger in `ledger.sqlite` and everything else in `bank.sqlite`, each
/// file locked on its own, and the layout reopens.
#[tokio::test]
async fn the_backend_keeps_the_ledger_in_its_own_file() {
    let dir = TempDir::new().expect("temp dir");
    let config = LocalConfig { currencies: vec![Currency::Usd], ..LocalConfig::new(dir.path()) };
    let backend = LocalBackend::open(&config, Arc::new(SystemClock)).await.expect("open");
    let account = backend
        .ledger
        .open_account(NewAccount::customer(CustomerId::new(), "a", Currency::Usd))
        .await
        .expect("account");
    let count = |db: &LocalDb| -> i64 {
        db.read(|c| {
            c.query_row("SELECT count(*) FROM accounts", [], |row| row.get(0)).map_err(|e| Error::storage(e, false))
        })
        .expect("count")
    };
    assert_eq!(count(&backend.db), 0, "no ledger rows in bank.sqlite");
    assert!(count(&backend.ledger_db) > 1, "the customer's and the bank's own accounts are in ledger.sqlite");
    assert_eq!(backend.ledger_db.path(), dir.path().join(LEDGER_FILE_NAME));
    assert!(dir.path().join("ledger.lock").exists() && dir.path().join(LOCK_FILE_NAME).exists());
    // Either file in use refuses a second process.
    let message = LocalDb::open_file(dir.path(), LEDGER_FILE_NAME).await.expect_err("ledger in use").to_string();
    assert!(message.contains("in use"), "{message}");
    backend.close().await;
    drop(backend);
    let again = LocalBackend::open(&config, Arc::new(SystemClock)).await.expect("reopen");
    assert_eq!(again.ledger.account(account.id).await.expect("still there").id, account.id);
}

/// A data directory from before `ledger.sqlite` (the ledger's rows in `bank.sqlite`) is refused
/// by name instead of getting a second, empty ledger.
#[tokio::test]
async fn a_ledger_left_in_bank_sqlite_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    {
        let db = LocalDb::open(dir.path()).await.expect("open");
        let ledger = SqliteLedger::new(&db, Arc::new(SystemClock));
        ledger.open_account(NewAccount::customer(CustomerId::new(), "old", Currency::Usd)).await.expect("account");
        db.close().await;
    }
    let config = LocalConfig { currencies: vec![Currency::Usd], ..LocalConfig::new(dir.path()) };
    let message = match LocalBackend::open(&config, Arc::new(SystemClock)).await {
        Ok(_) => panic!("opened a directory whose ledger is in bank.sqlite"),
        Err(err) => err.to_string(),
    };
    assert!(message.contains(&dir.path().join(DB_FILE_NAME).display().to_string()), "{message}");
    assert!(message.contains("holds the ledger"), "{message}");
    assert!(!dir.path().join(LEDGER_FILE_NAME).exists(), "no empty ledger was created");
}

#[tokio::test]
async fn a_database_file_name_must_end_in_sqlite() {
    let dir = TempDir::new().expect("temp dir");
    for name in ["ledger.db", ".sqlite", "x/y.sqlite"] {
        assert!(LocalDb::open_file(dir.path(), name).await.is_err(), "{name} accepted");
    }
}
