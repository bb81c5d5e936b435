//! [`S3BlobStore`]: the [`BlobStore`] port on an S3 bucket with Object Lock — statements and
//! sealed audit segments, write-once, kept for their retention by S3 itself.
//!
//! - **Write once.** `put` sends `If-None-Match: *` (S3 conditional writes), so of concurrent
//!   writers of one key exactly one creates the object; a loser (412) or a later `put` reads the
//!   stored object and answers with [`replay_or_refuse`]: the stored metadata when its SHA-256 is
//!   the new bytes', else `Retained` or `KeyReused`.
//! - **Retention.** Every object is written with Object Lock mode `COMPLIANCE` and its
//!   `retain_until` (whole seconds, rounded up): until then S3 refuses to delete or overwrite that
//!   version, whoever asks — the root account included. The bucket must have Object Lock enabled
//!   (versioned); [`S3BlobStore::create_bucket`] makes one.
//! - **Integrity.** The SHA-256 is sent as the request's checksum (S3 verifies the upload) and
//!   kept as the object's `sha256` metadata; `get` recomputes it over the bytes read and refuses a
//!   mismatch.
//! - **Times.** `created_at` comes from the injected [`Clock`] (metadata `created-at`), so it is
//!   the same instant as on the other stores; `retain_until` is S3's lock date.
//! - **Delete** removes the object's version (a delete marker would leave it in place): refused
//!   as `Retained` while the lock holds (S3's own check, and ours before it).
//! - **Links.** `presign_get` is an S3 pre-signed GET (SigV4 query signature, `X-Amz-Expires`).
//!
//! What the emulator used in tests (moto 5) does not check — presigned URLs' signature and
//! expiry, COMPLIANCE retention being shortened — is listed in the crate README; the requests
//! built here are the ones real S3 needs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime as AwsDateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use bank_core::blob::{BlobMeta, check_key};
use bank_core::clock::Clock;
use bank_core::memory::blob::{check_deletable, check_expires_in, check_list, check_put, replay_or_refuse, sha256_hex};
use bank_core::ports::BlobStore;
use bank_core::{Error, Result};
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use crate::aws::sdk_err;

/// Metadata key of the object's hex SHA-256.
const META_SHA256: &str = "sha256";
/// Metadata key of the creation time (RFC 3339, from the store's clock).
const META_CREATED_AT: &str = "created-at";

/// Write-once objects with retention in an S3 bucket with Object Lock. Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    clock: Arc<dyn Clock>,
}

impl S3BlobStore {
    /// A store on `bucket` (which must exist, with Object Lock enabled) through `client`.
    pub fn new(client: Client, bucket: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        S3BlobStore { client, bucket: bucket.into(), clock }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates `bucket` with Object Lock enabled (hence versioned); an existing bucket of ours is
    /// fine. For first installs and emulators (`bank-server migrate --create-aws-resources`).
    pub async fn create_bucket(client: &Client, bucket: &str) -> Result<()> {
        match client.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(err) => Err(sdk_err("s3 CreateBucket", err)),
        }
    }

    /// Checks that the bucket exists and has Object Lock enabled (a start-up check).
    pub async fn check_bucket(&self) -> Result<()> {
        let lock = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|err| sdk_err("s3 GetObjectLockConfiguration", err))?;
        let enabled = lock
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            .is_some_and(|e| e.as_str() == "Enabled");
        if !enabled {
            return Err(Error::storage(format!("s3 bucket {} has no Object Lock", self.bucket), false));
        }
        Ok(())
    }

    /// The stored object's metadata and version, or `None` when there is none.
    async fn head_versioned(&self, key: &str) -> Result<Option<(BlobMeta, Option<String>)>> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => Ok(Some((meta_of(key, &head)?, head.version_id().map(str::to_owned)))),
            Err(err) if matches!(err.as_service_error(), Some(HeadObjectError::NotFound(_))) => Ok(None),
            Err(err) => Err(sdk_err("s3 HeadObject", err)),
        }
    }
}

/// `retain_until` as S3's lock date: whole seconds, rounded up (never shorter than asked).
fn lock_date(retain_until: DateTime<Utc>) -> AwsDateTime {
    let seconds = if retain_until.timestamp_subsec_nanos() == 0 {
        retain_until.timestamp()
    } else {
        retain_until.timestamp() + 1
    };
    AwsDateTime::from_secs(seconds)
}

fn chrono_of(at: &AwsDateTime) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(at.secs(), at.subsec_nanos()).ok_or_else(|| corrupt(format!("time {at}")))
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::storage(format!("s3 object metadata is not this store's: {what}"), false)
}

/// The [`BlobMeta`] of a `HeadObject` answer.
fn meta_of(key: &str, head: &HeadObjectOutput) -> Result<BlobMeta> {
    let metadata = head.metadata().ok_or_else(|| corrupt(format!("{key}: no metadata")))?;
    let sha256 = metadata.get(META_SHA256).ok_or_else(|| corrupt(format!("{key}: no sha256")))?.clone();
    let created_at = metadata
        .get(META_CREATED_AT)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .ok_or_else(|| corrupt(format!("{key}: no created-at")))?
        .with_timezone(&Utc);
    let retain_until = chrono_of(
        head.object_lock_retain_until_date().ok_or_else(|| corrupt(format!("{key}: no Object Lock retention")))?,
    )?;
    Ok(BlobMeta {
        key: key.to_owned(),
        sha256,
        size: head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        content_type: head.content_type().unwrap_or("application/octet-stream").to_owned(),
        created_at,
        retain_until,
    })
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<BlobMeta> {
        check_put(key, bytes.len(), content_type)?;
        let digest = Sha256::digest(&bytes);
        let sha256 = hex::encode(digest);
        if let Some((existing, _)) = self.head_versioned(key).await? {
            return replay_or_refuse(&existing, &sha256, self.clock.now());
        }
        let now = self.clock.now();
        let written = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .metadata(META_SHA256, &sha256)
            .metadata(META_CREATED_AT, now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(lock_date(retain_until))
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match written {
            Ok(_) => {}
            // Another writer created the key first (412), or S3 refuses while a concurrent
            // conditional write is in flight (409): the stored object decides.
            Err(err) if matches!(err.code(), Some("PreconditionFailed" | "ConditionalRequestConflict")) => {
                let (existing, _) = self.head_versioned(key).await?.ok_or_else(|| {
                    Error::storage(format!("s3 PutObject {key}: refused as existing, yet no object"), true)
                })?;
                return replay_or_refuse(&existing, &sha256, self.clock.now());
            }
            Err(err) => return Err(sdk_err("s3 PutObject", err)),
        }
        self.head(key).await
    }

    async fn get(&self, key: &str) -> Result<(BlobMeta, Vec<u8>)> {
        check_key(key)?;
        let object = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => object,
            Err(err) if matches!(err.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Err(Error::BlobNotFound(key.to_owned()));
            }
            Err(err) => return Err(sdk_err("s3 GetObject", err)),
        };
        let head = HeadObjectOutput::builder()
            .set_metadata(object.metadata().cloned())
            .set_content_length(object.content_length())
            .set_content_type(object.content_type().map(str::to_owned))
            .set_object_lock_retain_until_date(object.object_lock_retain_until_date().cloned())
            .build();
        let meta = meta_of(key, &head)?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|err| Error::storage(format!("s3 GetObject {key}: reading the body: {err}"), true))?
            .into_bytes()
            .to_vec();
        if sha256_hex(&bytes) != meta.sha256 {
            return Err(Error::storage(format!("s3 object {key}: its bytes do not match its SHA-256"), false));
        }
        Ok((meta, bytes))
    }

    async fn head(&self, key: &str) -> Result<BlobMeta> {
        check_key(key)?;
        Ok(self.head_versioned(key).await?.ok_or_else(|| Error::BlobNotFound(key.to_owned()))?.0)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let (existing, version) = self.head_versioned(key).await?.ok_or_else(|| Error::BlobNotFound(key.to_owned()))?;
        check_deletable(&existing, self.clock.now())?;
        let mut request = self.client.delete_object().bucket(&self.bucket).key(key);
        if let Some(version) = version {
            request = request.version_id(version);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            // The lock still holds by S3's clock.
            Err(err) if err.code() == Some("AccessDenied") => {
                Err(Error::Retained { key: key.to_owned(), until: existing.retain_until })
            }
            Err(err) => Err(sdk_err("s3 DeleteObject", err)),
        }
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<BlobMeta>> {
        check_list(prefix, limit)?;
        // One page: `check_list` caps `limit` at 1,000, S3's page size.
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|err| sdk_err("s3 ListObjectsV2", err))?;
        let mut metas = Vec::with_capacity(page.contents().len());
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            // Deleted meanwhile: not listed.
            if let Some((meta, _)) = self.head_versioned(key).await? {
                metas.push(meta);
            }
        }
        Ok(metas)
    }

    async fn presign_get(&self, key: &str, expires_in: TimeDelta) -> Result<String> {
        check_key(key)?;
        check_expires_in(expires_in)?;
        self.head(key).await?;
        let seconds = u64::try_from(expires_in.num_seconds()).unwrap_or(1).max(1);
        let config = PresigningConfig::builder()
            .start_time(std::time::SystemTime::from(self.clock.now()))
            .expires_in(Duration::from_secs(seconds))
            .build()
            .map_err(|err| Error::InvalidInput(format!("presigned URL: {err}")))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|err| sdk_err("s3 presign GetObject", err))?;
        Ok(presigned.uri().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_dates_round_up_to_whole_seconds() {
        let whole = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        assert_eq!(lock_date(whole).secs(), 1_800_000_000);
        let inside = DateTime::from_timestamp(1_800_000_000, 1).expect("time");
        assert_eq!(lock_date(inside).secs(), 1_800_000_001, "retention is never shortened");
    }
}
