//! The [`BlobStore`] conformance suite: write-once objects, retention, listing, limits and
//! presigned URLs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::blob::{BLOB_BYTES_MAX, BlobMeta};
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::memory::blob::{BLOB_LIST_LIMIT_MAX, CONTENT_TYPE_LEN_MAX, PRESIGN_EXPIRES_SECONDS_MAX};
use crate::ports::BlobStore;

/// How to build a fresh, empty blob store for one test case.
#[async_trait]
pub trait BlobHarness: Send + Sync {
    /// A new empty store that reads time from `clock`.
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn BlobStore>;

    /// Where each case's manual clock starts. The epoch by default; a store whose retention is
    /// also enforced by a service on real time (S3 Object Lock refuses a lock date in the past)
    /// starts at the present.
    fn start(&self) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }
}

/// Expands to one `#[tokio::test]` per [`BlobStore`] conformance case.
#[macro_export]
macro_rules! blob_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(blob, $harness;
            put_get_head_round_trip,
            identical_bytes_replay_the_stored_meta,
            overwrite_is_refused_during_and_after_retention,
            delete_waits_for_retention,
            list_by_prefix_in_key_order_with_limit,
            keys_shaped_like_storage_names_do_not_collide,
            bad_input_is_refused_and_nothing_stored,
            presigned_url_names_key_and_expiry,
            concurrent_puts_have_one_winner,
        );
    };
}

/// The harness for [`crate::memory::blob::MemoryBlobStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBlobHarness;

#[async_trait]
impl BlobHarness for MemoryBlobHarness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn BlobStore> {
        Arc::new(crate::memory::blob::MemoryBlobStore::new(
            clock,
            b"conformance secret, 32 bytes!!!!".to_vec(),
            "https://blobs.example".to_owned(),
        ))
    }
}

const PDF: &str = "application/pdf";
/// SHA-256 of `b"hello"`.
const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

async fn setup(harness: &dyn BlobHarness) -> (Arc<dyn BlobStore>, ManualClock) {
    let clock = ManualClock::new(harness.start());
    (harness.store(Arc::new(clock.clone())).await, clock)
}

fn in_days(clock: &ManualClock, days: i64) -> DateTime<Utc> {
    clock.now() + TimeDelta::days(days)
}

fn keys(metas: &[BlobMeta]) -> Vec<&str> {
    metas.iter().map(|m| m.key.as_str()).collect()
}

/// What is written comes back, with its SHA-256, size, type and dates; unknown keys are
/// `BlobNotFound`.
pub async fn put_get_head_round_trip(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let key = "statements/2026-01/acct-1.pdf";
    let until = in_days(&clock, 30);
    let meta = store.put(key, b"hello".to_vec(), PDF, until).await.expect("put");
    let expected = BlobMeta {
        key: key.to_owned(),
        sha256: HELLO_SHA256.to_owned(),
        size: 5,
        content_type: PDF.to_owned(),
        created_at: clock.now(),
        retain_until: until,
    };
    assert_eq!(meta, expected);
    clock.advance(TimeDelta::seconds(5));
    let (got, bytes) = store.get(key).await.expect("get");
    assert_eq!((got, bytes), (expected.clone(), b"hello".to_vec()));
    assert_eq!(store.head(key).await.expect("head"), expected);
    let empty = store.put("empty", Vec::new(), "text/plain", until).await.expect("empty object");
    assert_eq!(empty.size, 0);
    assert_eq!(store.get("empty").await.expect("get empty").1, Vec::<u8>::new());
    assert!(
        matches!(store.get("statements/2026-01/other.pdf").await, Err(Error::BlobNotFound(k)) if k == "statements/2026-01/other.pdf")
    );
    assert!(matches!(store.head("missing").await, Err(Error::BlobNotFound(_))));
}

/// Writing identical bytes again returns the first write's metadata and changes nothing.
pub async fn identical_bytes_replay_the_stored_meta(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let first = store.put("audit/seg-1", b"segment".to_vec(), "application/octet-stream", in_days(&clock, 1)).await;
    let first = first.expect("put");
    clock.advance(TimeDelta::hours(2));
    let replay = store.put("audit/seg-1", b"segment".to_vec(), "application/octet-stream", in_days(&clock, 1)).await;
    assert_eq!(replay.expect("replay"), first, "a replay must return the stored metadata");
    // Replay also works once retention is over.
    clock.advance(TimeDelta::days(2));
    let late = store.put("audit/seg-1", b"segment".to_vec(), "application/octet-stream", in_days(&clock, 1)).await;
    assert_eq!(late.expect("late replay"), first);
    assert_eq!(store.head("audit/seg-1").await.expect("head"), first);
    assert_eq!(store.list("audit/", 10).await.expect("list").len(), 1);
}

/// Different bytes under a taken key: `Retained` while retained, `KeyReused` after; the first
/// object is untouched either way.
pub async fn overwrite_is_refused_during_and_after_retention(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let until = in_days(&clock, 7);
    let first = store.put("k", b"hello".to_vec(), PDF, until).await.expect("put");
    match store.put("k", b"other".to_vec(), PDF, until).await {
        Err(Error::Retained { key, until: u }) => assert_eq!((key.as_str(), u), ("k", until)),
        other => panic!("overwrite during retention: expected Retained, got {other:?}"),
    }
    clock.set(until);
    match store.put("k", b"other".to_vec(), PDF, in_days(&clock, 1)).await {
        Err(Error::KeyReused(_)) => {}
        other => panic!("overwrite after retention: expected KeyReused, got {other:?}"),
    }
    let (meta, bytes) = store.get("k").await.expect("get");
    assert_eq!((meta, bytes), (first, b"hello".to_vec()));
}

/// `delete` is `Retained` before `retain_until`, succeeds from then on, and frees the key.
pub async fn delete_waits_for_retention(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let until = in_days(&clock, 1);
    store.put("reports/r1", b"hello".to_vec(), PDF, until).await.expect("put");
    clock.advance(TimeDelta::hours(23));
    match store.delete("reports/r1").await {
        Err(Error::Retained { key, until: u }) => assert_eq!((key.as_str(), u), ("reports/r1", until)),
        other => panic!("delete during retention: expected Retained, got {other:?}"),
    }
    assert_eq!(store.get("reports/r1").await.expect("still there").1, b"hello".to_vec());
    clock.advance(TimeDelta::hours(1));
    store.delete("reports/r1").await.expect("delete after retention");
    assert!(matches!(store.get("reports/r1").await, Err(Error::BlobNotFound(_))));
    assert!(matches!(store.head("reports/r1").await, Err(Error::BlobNotFound(_))));
    assert!(matches!(store.delete("reports/r1").await, Err(Error::BlobNotFound(_))));
    assert!(store.list("reports/", 10).await.expect("list").is_empty(), "a deleted object is still listed");
    // The key is free again.
    let again = store.put("reports/r1", b"new".to_vec(), PDF, in_days(&clock, 1)).await.expect("reuse");
    assert_eq!(again.created_at, clock.now());
    assert_eq!(store.get("reports/r1").await.expect("get").1, b"new".to_vec());
}

/// `list` returns the objects under a prefix in key (byte) order, at most `limit`.
pub async fn list_by_prefix_in_key_order_with_limit(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let until = in_days(&clock, 1);
    for key in ["a/2", "b/1", "a/10", "ab", "a-x", "a/1", "a", "a/sub/z"] {
        store.put(key, key.as_bytes().to_vec(), "text/plain", until).await.expect(key);
    }
    let all = store.list("", 100).await.expect("list all");
    assert_eq!(keys(&all), ["a", "a-x", "a/1", "a/10", "a/2", "a/sub/z", "ab", "b/1"]);
    assert_eq!(all[0].sha256, crate::memory::blob::sha256_hex(b"a"));
    assert_eq!(keys(&store.list("a/", 100).await.expect("list")), ["a/1", "a/10", "a/2", "a/sub/z"]);
    assert_eq!(keys(&store.list("a/", 2).await.expect("list")), ["a/1", "a/10"]);
    assert_eq!(keys(&store.list("a/1", 100).await.expect("list")), ["a/1", "a/10"]);
    assert_eq!(keys(&store.list("a", 3).await.expect("list")), ["a", "a-x", "a/1"]);
    assert_eq!(keys(&store.list("a/s", 100).await.expect("list")), ["a/sub/z"]);
    assert!(store.list("c", 100).await.expect("list").is_empty());
    assert!(matches!(store.list("", 0).await, Err(Error::InvalidInput(_))));
    assert!(matches!(store.list("", BLOB_LIST_LIMIT_MAX + 1).await, Err(Error::InvalidInput(_))));
    assert!(matches!(store.list("a b", 10).await, Err(Error::InvalidInput(_))));
}

/// Keys that look like an adapter's own file names (an object beside a "directory" of the same
/// name, suffixes such as `.meta.json` or `.tmp`) are ordinary, independent objects.
pub async fn keys_shaped_like_storage_names_do_not_collide(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let until = in_days(&clock, 1);
    let tricky = [
        "x",
        "x/y",
        "x.meta.json",
        "x.obj",
        "x.obj.meta.json",
        "x.d/y",
        "x.tmp",
        ".tmp-0",
        "x/.tmp-1.tmp",
        "signing.key",
        "objects/x",
    ];
    for key in tricky {
        store.put(key, format!("bytes of {key}").into_bytes(), "text/plain", until).await.expect(key);
    }
    for key in tricky {
        let (meta, bytes) = store.get(key).await.expect(key);
        assert_eq!(meta.key, key);
        assert_eq!(bytes, format!("bytes of {key}").into_bytes(), "{key} came back with other bytes");
    }
    let mut sorted = tricky.to_vec();
    sorted.sort_unstable();
    assert_eq!(keys(&store.list("", 100).await.expect("list")), sorted);
}

/// Bad keys, content types and sizes are `InvalidInput`, and nothing is stored.
pub async fn bad_input_is_refused_and_nothing_stored(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    let until = in_days(&clock, 1);
    for bad in ["", "/a", "a/", "a//b", "../x", "a/../b", "a/./b", "a b", "a\nb", "ä"] {
        let put = store.put(bad, b"x".to_vec(), PDF, until).await;
        assert!(matches!(put, Err(Error::InvalidInput(_))), "key {bad:?} accepted: {put:?}");
        assert!(matches!(store.get(bad).await, Err(Error::InvalidInput(_))), "get {bad:?}");
        assert!(matches!(store.head(bad).await, Err(Error::InvalidInput(_))), "head {bad:?}");
        assert!(matches!(store.delete(bad).await, Err(Error::InvalidInput(_))), "delete {bad:?}");
    }
    let long = "k".repeat(513);
    assert!(matches!(store.put(&long, b"x".to_vec(), PDF, until).await, Err(Error::InvalidInput(_))));
    for content_type in [String::new(), "t".repeat(CONTENT_TYPE_LEN_MAX + 1), "text/plain\n".to_owned()] {
        let put = store.put("ct", b"x".to_vec(), &content_type, until).await;
        assert!(matches!(put, Err(Error::InvalidInput(_))), "content type {content_type:?} accepted");
    }
    let longest_type = "t".repeat(CONTENT_TYPE_LEN_MAX);
    let oversize = store.put("big", vec![0; BLOB_BYTES_MAX + 1], PDF, until).await;
    assert!(matches!(oversize, Err(Error::InvalidInput(_))), "oversize object accepted");
    assert!(matches!(store.get("big").await, Err(Error::BlobNotFound(_))));
    assert!(matches!(store.get("ct").await, Err(Error::BlobNotFound(_))));
    assert!(store.list("", BLOB_LIST_LIMIT_MAX).await.expect("list").is_empty(), "a refused put stored something");
    // The limits themselves are allowed.
    store.put("ct", b"x".to_vec(), &longest_type, until).await.expect("longest content type");
    store.put(&"k".repeat(512), b"x".to_vec(), PDF, until).await.expect("longest key");
}

/// A presigned URL names the key and expires `expires_in` from now; it is refused for unknown
/// keys and out-of-range validity.
pub async fn presigned_url_names_key_and_expiry(harness: &dyn BlobHarness) {
    let (store, clock) = setup(harness).await;
    store.put("statements/s-1.pdf", b"hello".to_vec(), PDF, in_days(&clock, 1)).await.expect("put");
    store.put("statements/s-2.pdf", b"hello".to_vec(), PDF, in_days(&clock, 1)).await.expect("put");
    clock.advance(TimeDelta::seconds(42));
    let expires_in = TimeDelta::minutes(15);
    let url = store.presign_get("statements/s-1.pdf", expires_in).await.expect("presign");
    let expires = (clock.now() + expires_in).timestamp();
    let (path, query) = url.split_once('?').expect("the URL has a query");
    assert!(path.ends_with("/statements/s-1.pdf"), "{url}");
    let signature = query.strip_prefix(&format!("expires={expires}&signature=")).unwrap_or_else(|| panic!("{url}"));
    assert_eq!(signature.len(), 64, "a hex HMAC-SHA256: {url}");
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()), "{url}");
    let other = store.presign_get("statements/s-2.pdf", expires_in).await.expect("presign");
    assert!(!other.ends_with(signature), "two keys got the same signature");
    clock.advance(TimeDelta::seconds(1));
    let later = store.presign_get("statements/s-1.pdf", expires_in).await.expect("presign");
    assert!(later.contains(&format!("expires={}&", expires + 1)), "{later}");
    assert!(matches!(store.presign_get("statements/none.pdf", expires_in).await, Err(Error::BlobNotFound(_))));
    for bad in [TimeDelta::zero(), TimeDelta::seconds(-1), TimeDelta::seconds(PRESIGN_EXPIRES_SECONDS_MAX + 1)] {
        let presigned = store.presign_get("statements/s-1.pdf", bad).await;
        assert!(matches!(presigned, Err(Error::InvalidInput(_))), "validity {bad} accepted");
    }
    assert!(matches!(store.presign_get("../x", expires_in).await, Err(Error::InvalidInput(_))));
}

/// Concurrent writers of different bytes under one key: exactly one wins, and its bytes are the
/// ones stored.
pub async fn concurrent_puts_have_one_winner(harness: &dyn BlobHarness) {
    const WRITERS: u8 = 16;
    const SIZE: usize = 256 * 1024;
    let (store, clock) = setup(harness).await;
    let until = in_days(&clock, 1);
    let start = Arc::new(tokio::sync::Barrier::new(usize::from(WRITERS)));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                (i, store.put("race", vec![i; SIZE], "application/octet-stream", until).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        let (i, result) = writer.await.expect("writer task");
        match result {
            Ok(meta) => winners.push((i, meta)),
            Err(Error::Retained { .. }) => {}
            Err(other) => panic!("writer {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "expected exactly one winner, got writers {:?}",
        winners.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    let (i, meta) = &winners[0];
    let (stored, bytes) = store.get("race").await.expect("get");
    assert_eq!(stored, *meta);
    assert!(bytes == vec![*i; SIZE], "the stored bytes are not the winner's");
}
