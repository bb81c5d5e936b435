//! [`S3BlobStore`] on the emulator: the blob conformance suite (a fresh bucket per case), and what
//! only S3 does — its own presigned URLs, Object Lock on delete, the bucket check, the SHA-256
//! check on read.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Builder as S3ConfigBuilder;
use aws_sdk_s3::primitives::{ByteStream, DateTime as AwsDateTime};
use aws_sdk_s3::types::ObjectLockMode;
use bank_aws::aws::testing::{emulator_config, unique_name};
use bank_aws::s3::S3BlobStore;
use bank_core::clock::{Clock, SystemClock};
use bank_core::ports::BlobStore;
use bank_core::testkit::blob::BlobHarness;
use bank_core::{Error, conformance_cases};
use chrono::{DateTime, TimeDelta, Utc};

/// A client on the emulator (path-style addressing: `http://host:port/bucket/key`).
async fn client() -> Option<Client> {
    let config = emulator_config().await?;
    Some(Client::from_conf(S3ConfigBuilder::from(&config).force_path_style(true).build()))
}

/// A store on a new Object Lock bucket; `None` when the emulator is absent.
async fn store(clock: Arc<dyn Clock>) -> Option<(S3BlobStore, Client)> {
    let client = client().await?;
    let bucket = unique_name("bank-test");
    S3BlobStore::create_bucket(&client, &bucket).await.expect("create the bucket");
    Some((S3BlobStore::new(client.clone(), bucket, clock), client))
}

struct S3Harness;

#[async_trait]
impl BlobHarness for S3Harness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn BlobStore> {
        match store(Arc::clone(&clock)).await {
            Some((store, _)) => Arc::new(store),
            // No emulator (and services not required): the case runs on the memory store, on
            // the case's clock; `emulator_config` printed why.
            None => Arc::new(bank_core::memory::blob::MemoryBlobStore::new(
                clock,
                b"unused when the emulator is absent".to_vec(),
                "https://absent.invalid".to_owned(),
            )),
        }
    }

    fn start(&self) -> DateTime<Utc> {
        // Object Lock dates must be in the future by S3's own clock: the cases start now.
        DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now")
    }
}

// Not run here: `delete_waits_for_retention` (it moves the store's clock past retention, but S3
// keeps the lock by its own clock: `deletes_are_refused_until_the_lock_ends` below waits out a
// short real lock instead) and `presigned_url_names_key_and_expiry` (it checks the local stores'
// HMAC link format: `presigned_urls_are_sigv4_links_for_the_key` checks S3's).
conformance_cases!(blob, S3Harness;
    put_get_head_round_trip,
    identical_bytes_replay_the_stored_meta,
    overwrite_is_refused_during_and_after_retention,
    list_by_prefix_in_key_order_with_limit,
    keys_shaped_like_storage_names_do_not_collide,
    bad_input_is_refused_and_nothing_stored,
    concurrent_puts_have_one_winner,
);

#[tokio::test]
async fn presigned_urls_are_sigv4_links_for_the_key() {
    let Some((store, _)) = store(Arc::new(SystemClock)).await else { return };
    let until = Utc::now() + TimeDelta::days(1);
    store.put("statements/s-1.pdf", b"hello".to_vec(), "application/pdf", until).await.expect("put");
    let url = store.presign_get("statements/s-1.pdf", TimeDelta::minutes(5)).await.expect("presign");
    let (path, query) = url.split_once('?').expect("a query");
    assert!(path.ends_with(&format!("/{}/statements/s-1.pdf", store.bucket())), "{url}");
    for part in ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Expires=300", "X-Amz-Signature=", "X-Amz-Credential="] {
        assert!(query.contains(part), "{part} missing from {url}");
    }
    assert!(matches!(
        store.presign_get("statements/none.pdf", TimeDelta::minutes(5)).await,
        Err(Error::BlobNotFound(_))
    ));
    for bad in [TimeDelta::zero(), TimeDelta::days(8)] {
        assert!(matches!(store.presign_get("statements/s-1.pdf", bad).await, Err(Error::InvalidInput(_))));
    }
}

#[tokio::test]
async fn deletes_are_refused_until_the_lock_ends() {
    let Some((store, _)) = store(Arc::new(SystemClock)).await else { return };
    let until = DateTime::from_timestamp(Utc::now().timestamp() + 3, 0).expect("time");
    let meta = store.put("reports/r1", b"hello".to_vec(), "text/plain", until).await.expect("put");
    assert_eq!(meta.retain_until, until, "S3's lock date is the one asked");
    match store.delete("reports/r1").await {
        Err(Error::Retained { key, until: u }) => assert_eq!((key.as_str(), u), ("reports/r1", until)),
        other => panic!("delete during retention: expected Retained, got {other:?}"),
    }
    assert_eq!(store.get("reports/r1").await.expect("still there").1, b"hello".to_vec());
    // S3 keeps the lock by its own clock: wait it out (3 s).
    tokio::time::sleep((until - Utc::now() + TimeDelta::milliseconds(500)).to_std().unwrap_or_default()).await;
    store.delete("reports/r1").await.expect("delete after the lock");
    assert!(matches!(store.get("reports/r1").await, Err(Error::BlobNotFound(_))));
    assert!(matches!(store.delete("reports/r1").await, Err(Error::BlobNotFound(_))));
    assert!(store.list("reports/", 10).await.expect("list").is_empty());
    store.put("reports/r1", b"new".to_vec(), "text/plain", until + TimeDelta::days(1)).await.expect("the key is free");
}

#[tokio::test]
async fn the_bucket_check_wants_object_lock() {
    let Some((store, client)) = store(Arc::new(SystemClock)).await else { return };
    store.check_bucket().await.expect("a bucket made by create_bucket has Object Lock");
    let plain = unique_name("bank-plain");
    client.create_bucket().bucket(&plain).send().await.expect("a plain bucket");
    let plain = S3BlobStore::new(client, plain, Arc::new(SystemClock));
    assert!(plain.check_bucket().await.is_err(), "a bucket without Object Lock is refused");
}

#[tokio::test]
async fn a_read_whose_bytes_do_not_match_their_sha256_is_refused() {
    let Some((store, client)) = store(Arc::new(SystemClock)).await else { return };
    // Written behind the store's back, with the SHA-256 of other bytes.
    client
        .put_object()
        .bucket(store.bucket())
        .key("tampered")
        .body(ByteStream::from_static(b"forged"))
        .metadata("sha256", bank_core::memory::blob::sha256_hex(b"genuine"))
        .metadata("created-at", Utc::now().to_rfc3339())
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(AwsDateTime::from_secs(Utc::now().timestamp() + 3600))
        .send()
        .await
        .expect("put behind the store's back");
    match store.get("tampered").await {
        Err(Error::Storage { message, retryable: false }) => assert!(message.contains("SHA-256"), "{message}"),
        other => panic!("expected a refused read, got {other:?}"),
    }
}
