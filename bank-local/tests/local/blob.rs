//! The file blob store: the shared conformance suite, plus what only files can get wrong (the
//! signing key across restarts, bytes changed on disk).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bank_core::Error;
use bank_core::blob::BlobMeta;
use bank_core::clock::{Clock, ManualClock};
use bank_core::ports::BlobStore;
use bank_core::testkit::blob::BlobHarness;
use bank_local::blob::FileBlobStore;
use chrono::{DateTime, TimeDelta, Utc};
use tempfile::TempDir;

const BASE_URL: &str = "http://127.0.0.1:8080/blobs";

/// A store in its own temporary directory, removed when the store is dropped.
#[derive(Debug)]
struct TempStore {
    store: FileBlobStore,
    _dir: TempDir,
}

#[async_trait]
impl BlobStore for TempStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        until: DateTime<Utc>,
    ) -> bank_core::Result<BlobMeta> {
        self.store.put(key, bytes, content_type, until).await
    }
    async fn get(&self, key: &str) -> bank_core::Result<(BlobMeta, Vec<u8>)> {
        self.store.get(key).await
    }
    async fn head(&self, key: &str) -> bank_core::Result<BlobMeta> {
        self.store.head(key).await
    }
    async fn delete(&self, key: &str) -> bank_core::Result<()> {
        self.store.delete(key).await
    }
    async fn list(&self, prefix: &str, limit: usize) -> bank_core::Result<Vec<BlobMeta>> {
        self.store.list(prefix, limit).await
    }
    async fn presign_get(&self, key: &str, expires_in: TimeDelta) -> bank_core::Result<String> {
        self.store.presign_get(key, expires_in).await
    }
}

struct FileBlobHarness;

#[async_trait]
impl BlobHarness for FileBlobHarness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn BlobStore> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileBlobStore::open(dir.path(), clock, BASE_URL.to_owned()).await.expect("open");
        Arc::new(TempStore { store, _dir: dir })
    }
}

bank_core::blob_conformance_tests!(FileBlobHarness);

async fn open(dir: &Path, clock: &ManualClock) -> FileBlobStore {
    FileBlobStore::open(dir, Arc::new(clock.clone()), BASE_URL.to_owned()).await.expect("open")
}

#[tokio::test]
async fn signing_key_and_objects_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let store = open(dir.path(), &clock).await;
    let until = clock.now() + TimeDelta::days(1);
    let meta = store.put("statements/s.pdf", b"hello".to_vec(), "application/pdf", until).await.expect("put");
    let url = store.presign_get("statements/s.pdf", TimeDelta::minutes(10)).await.expect("presign");
    drop(store);

    let key_file = dir.path().join("signing.key");
    assert_eq!(std::fs::read(&key_file).expect("signing.key").len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "signing.key must be private");
    }

    let reopened = open(dir.path(), &clock).await;
    assert_eq!(reopened.verify_url(&url).expect("URL signed before the reopen"), "statements/s.pdf");
    assert_eq!(reopened.get("statements/s.pdf").await.expect("get"), (meta, b"hello".to_vec()));

    let elsewhere = tempfile::tempdir().expect("temp dir");
    let other = open(elsewhere.path(), &clock).await;
    assert!(other.verify_url(&url).is_err(), "another directory's key verified the URL");
}

#[tokio::test]
async fn expired_or_altered_urls_fail_verification() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let store = open(dir.path(), &clock).await;
    let until = clock.now() + TimeDelta::days(1);
    store.put("a/one", b"1".to_vec(), "text/plain", until).await.expect("put");
    store.put("a/two", b"2".to_vec(), "text/plain", until).await.expect("put");
    let url = store.presign_get("a/one", TimeDelta::seconds(60)).await.expect("presign");
    assert_eq!(store.verify_url(&url).expect("fresh URL"), "a/one");

    let expires = (clock.now() + TimeDelta::seconds(60)).timestamp();
    let (_, signature) = url.split_once("&signature=").expect("signature");
    let mut flipped = signature.to_owned();
    let last = if flipped.ends_with('0') { "1" } else { "0" };
    flipped.replace_range(63.., last);
    let altered = [
        url.replace("/a/one?", "/a/two?"),
        url.replace(&format!("expires={expires}"), &format!("expires={}", expires + 3600)),
        url.replace(signature, &flipped),
        url.replace(signature, "nothex"),
        url.replace(&format!("&signature={signature}"), ""),
        url.replace(BASE_URL, "http://evil.example"),
    ];
    for bad in &altered {
        assert!(matches!(store.verify_url(bad), Err(Error::InvalidInput(_))), "altered URL accepted: {bad}");
    }

    clock.advance(TimeDelta::seconds(59));
    store.verify_url(&url).expect("valid until its last second");
    clock.advance(TimeDelta::seconds(1));
    match store.verify_url(&url) {
        Err(Error::InvalidInput(message)) => assert!(message.contains("expired"), "{message}"),
        other => panic!("expired URL: expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn bytes_changed_on_disk_are_detected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let store = open(dir.path(), &clock).await;
    let until = clock.now() + TimeDelta::days(1);
    store.put("audit/seg-1", b"original".to_vec(), "application/octet-stream", until).await.expect("put");
    store.put("audit/seg-2", b"original".to_vec(), "application/octet-stream", until).await.expect("put");

    let objects = dir.path().join("objects");
    let first = objects.join("audit.d/seg-1.obj");
    let second = objects.join("audit.d/seg-2.obj");
    for file in [&first, &second] {
        let permissions = std::fs::metadata(file).expect("object file").permissions();
        assert!(permissions.readonly(), "{} is writable", file.display());
        assert!(std::fs::metadata(file.with_extension("obj.meta.json")).expect("sidecar").permissions().readonly());
    }
    // Same length, different bytes; then a truncated file.
    overwrite(&first, b"0riginal");
    overwrite(&second, b"orig");

    for key in ["audit/seg-1", "audit/seg-2"] {
        match store.get(key).await {
            Err(err @ Error::Storage { retryable: false, .. }) => {
                assert!(err.to_string().contains(key), "the error must name the key: {err}");
            }
            other => panic!("{key}: expected a non-retryable storage error, got {other:?}"),
        }
    }
    // The metadata is intact, so the object is still known (and still reported as damaged).
    assert_eq!(store.head("audit/seg-1").await.expect("head").size, 8);

    std::fs::remove_file(&first).expect("remove");
    assert!(matches!(store.get("audit/seg-1").await, Err(Error::Storage { retryable: false, .. })));
}

fn overwrite(path: &Path, bytes: &[u8]) {
    let mut permissions = std::fs::metadata(path).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).expect("chmod");
    std::fs::write(path, bytes).expect("tamper");
}

#[tokio::test]
async fn stray_files_are_ignored_and_leftovers_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let store = open(dir.path(), &clock).await;
    let objects = dir.path().join("objects");
    // A crash between the object and its sidecar leaves an orphan object and a temp file.
    std::fs::create_dir_all(objects.join("x.d")).expect("mkdir");
    std::fs::write(objects.join("x.d/y.obj"), b"half-written").expect("orphan");
    std::fs::write(objects.join("x.d/.tmp-1.tmp"), b"temp").expect("temp");
    std::fs::write(objects.join("README"), b"not ours").expect("stray");
    assert!(store.list("", 10).await.expect("list").is_empty());
    assert!(matches!(store.get("x/y").await, Err(Error::BlobNotFound(_))));
    let until = clock.now() + TimeDelta::days(1);
    store.put("x/y", b"complete".to_vec(), "text/plain", until).await.expect("put over the orphan");
    assert_eq!(store.get("x/y").await.expect("get").1, b"complete".to_vec());
    assert_eq!(store.list("", 10).await.expect("list").len(), 1);
}
