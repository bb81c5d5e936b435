//! [`MemoryBlobStore`]: write-once objects with retention in one mutex, plus the pieces every
//! [`BlobStore`] adapter shares so they cannot drift apart:
//!
//! - [`check_put`], [`check_list`], [`check_expires_in`]: the input limits of the contract;
//! - [`replay_or_refuse`]: what a `put` on an existing key returns (replay, `Retained` or
//!   `KeyReused`);
//! - [`UrlSigner`]: presigned URLs, `{base_url}/{key}?expires={unix_seconds}&signature={hex}`,
//!   where the signature is HMAC-SHA256 over `key + "\n" + expires` and is checked in constant
//!   time. Keys cannot contain `\n` ([`check_key`]), so the signed message is unambiguous.
//!
//! This module holds no business rule about what objects mean; it never logs the signing secret.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::blob::{BLOB_BYTES_MAX, BLOB_KEY_LEN_MAX, BlobMeta, check_key};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ports::BlobStore;

/// Longest content type.
pub const CONTENT_TYPE_LEN_MAX: usize = 100;
/// Most objects one `list` call returns.
pub const BLOB_LIST_LIMIT_MAX: usize = 1_000;
/// Longest validity of a presigned URL (S3's limit too).
pub const PRESIGN_EXPIRES_SECONDS_MAX: i64 = 7 * 24 * 60 * 60;
/// Shortest signing secret accepted.
pub const SIGNING_SECRET_BYTES_MIN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// Hex SHA-256 of `bytes`, as recorded in [`BlobMeta::sha256`].
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the arguments of a `put`: the key, the size and the content type.
pub fn check_put(key: &str, size: usize, content_type: &str) -> Result<()> {
    check_key(key)?;
    if size > BLOB_BYTES_MAX {
        return Err(Error::invalid(format!("object of {size} bytes exceeds the limit of {BLOB_BYTES_MAX} bytes")));
    }
    let printable = content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
    if content_type.is_empty() || content_type.len() > CONTENT_TYPE_LEN_MAX || !printable {
        return Err(Error::invalid(format!(
            "content types are 1 to {CONTENT_TYPE_LEN_MAX} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Checks the arguments of a `list`: a prefix of allowed key characters and a limit in
/// `1..=BLOB_LIST_LIMIT_MAX`. The prefix may be empty or end in `/`, unlike a key.
pub fn check_list(prefix: &str, limit: usize) -> Result<()> {
    let ok_chars = prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    if prefix.len() > BLOB_KEY_LEN_MAX || !ok_chars {
        return Err(Error::invalid("a list prefix is at most 512 characters of A-Z a-z 0-9 / . _ -"));
    }
    if limit == 0 || limit > BLOB_LIST_LIMIT_MAX {
        return Err(Error::invalid(format!("list limit must be between 1 and {BLOB_LIST_LIMIT_MAX}")));
    }
    Ok(())
}

/// Checks a presigned URL's validity period: positive and at most
/// [`PRESIGN_EXPIRES_SECONDS_MAX`].
pub fn check_expires_in(expires_in: TimeDelta) -> Result<()> {
    if expires_in <= TimeDelta::zero() || expires_in > TimeDelta::seconds(PRESIGN_EXPIRES_SECONDS_MAX) {
        return Err(Error::invalid(format!("a presigned URL is valid for 1 to {PRESIGN_EXPIRES_SECONDS_MAX} seconds")));
    }
    Ok(())
}

/// The outcome of a `put` on a key that already holds `existing`: the stored metadata when the
/// new bytes (by their SHA-256) are identical, otherwise `Retained` while retained and
/// `KeyReused` after.
pub fn replay_or_refuse(existing: &BlobMeta, new_sha256: &str, now: DateTime<Utc>) -> Result<BlobMeta> {
    if existing.sha256 == new_sha256 {
        return Ok(existing.clone());
    }
    if now < existing.retain_until {
        return Err(Error::Retained { key: existing.key.clone(), until: existing.retain_until });
    }
    Err(Error::KeyReused(format!("object key {}", existing.key)))
}

/// Refuses to delete an object still under retention.
pub fn check_deletable(existing: &BlobMeta, now: DateTime<Utc>) -> Result<()> {
    if now < existing.retain_until {
        return Err(Error::Retained { key: existing.key.clone(), until: existing.retain_until });
    }
    Ok(())
}

/// Signs and verifies presigned URLs (see the module docs for the format). Shared by every
/// adapter that serves objects itself (memory, local files).
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
    base_url: String,
}

impl fmt::Debug for UrlSigner {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl UrlSigner {
    /// A signer for URLs under `base_url` (a trailing `/` is dropped).
    ///
    /// # Panics
    /// If `secret` is shorter than [`SIGNING_SECRET_BYTES_MIN`]: a short secret makes every URL
    /// forgeable, and it is always a programming or configuration error.
    pub fn new(secret: Vec<u8>, base_url: impl Into<String>) -> Self {
        assert!(secret.len() >= SIGNING_SECRET_BYTES_MIN, "URL signing secrets are at least 16 bytes");
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        UrlSigner { secret, base_url }
    }

    /// The base URL objects are served under.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn mac(&self, key: &str, expires_unix: i64) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires_unix.to_string().as_bytes());
        mac
    }

    /// The hex signature of `key` valid until `expires_unix` (seconds since the epoch).
    pub fn signature(&self, key: &str, expires_unix: i64) -> String {
        hex::encode(self.mac(key, expires_unix).finalize().into_bytes())
    }

    /// `{base_url}/{key}?expires={unix_seconds}&signature={hex}`.
    pub fn url(&self, key: &str, expires: DateTime<Utc>) -> String {
        let expires_unix = expires.timestamp();
        format!("{}/{key}?expires={expires_unix}&signature={}", self.base_url, self.signature(key, expires_unix))
    }

    /// Checks a signature in constant time, then that `now` is before the expiry. Any altered
    /// part (key, expiry, signature) or an expired URL is `InvalidInput`.
    pub fn verify(&self, key: &str, expires_unix: i64, signature: &str, now: DateTime<Utc>) -> Result<()> {
        check_key(key)?;
        let tag = hex::decode(signature).map_err(|_| Error::invalid("signed URL signature is not hex"))?;
        self.mac(key, expires_unix)
            .verify_slice(&tag)
            .map_err(|_| Error::invalid("signed URL signature does not match its key and expiry"))?;
        if now.timestamp() >= expires_unix {
            return Err(Error::invalid(format!("signed URL expired at unix time {expires_unix}")));
        }
        Ok(())
    }

    /// Parses and verifies a URL made by [`UrlSigner::url`]; returns the key it grants.
    pub fn verify_url(&self, url: &str, now: DateTime<Utc>) -> Result<String> {
        let malformed = || Error::invalid("not a signed object URL");
        let rest = url.strip_prefix(self.base_url.as_str()).and_then(|r| r.strip_prefix('/')).ok_or_else(malformed)?;
        let (key, query) = rest.split_once('?').ok_or_else(malformed)?;
        let (expires, signature) =
            query.strip_prefix("expires=").and_then(|q| q.split_once("&signature=")).ok_or_else(malformed)?;
        let expires_unix: i64 = expires.parse().map_err(|_| Error::invalid("signed URL expiry is not a number"))?;
        self.verify(key, expires_unix, signature, now)?;
        Ok(key.to_owned())
    }
}

struct StoredBlob {
    meta: BlobMeta,
    bytes: Arc<Vec<u8>>,
}

/// In-memory [`BlobStore`] with the full write-once and retention contract.
pub struct MemoryBlobStore {
    clock: Arc<dyn Clock>,
    signer: UrlSigner,
    objects: Mutex<BTreeMap<String, StoredBlob>>,
}

impl fmt::Debug for MemoryBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBlobStore")
            .field("signer", &self.signer)
            .field("objects", &self.objects.lock().len())
            .finish_non_exhaustive()
    }
}

impl MemoryBlobStore {
    /// An empty store reading time from `clock`, signing URLs under `base_url` with
    /// `signing_secret`.
    ///
    /// # Panics
    /// If `signing_secret` is shorter than [`SIGNING_SECRET_BYTES_MIN`].
    pub fn new(clock: Arc<dyn Clock>, signing_secret: Vec<u8>, base_url: String) -> Self {
        MemoryBlobStore { clock, signer: UrlSigner::new(signing_secret, base_url), objects: Mutex::default() }
    }

    /// The URL signer, to verify URLs this store handed out.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Verifies a URL from [`BlobStore::presign_get`] against the store's clock; returns the key.
    pub fn verify_url(&self, url: &str) -> Result<String> {
        self.signer.verify_url(url, self.clock.now())
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<BlobMeta> {
        check_put(key, bytes.len(), content_type)?;
        let sha256 = sha256_hex(&bytes);
        let now = self.clock.now();
        let mut objects = self.objects.lock();
        if let Some(existing) = objects.get(key) {
            return replay_or_refuse(&existing.meta, &sha256, now);
        }
        let meta = BlobMeta {
            key: key.to_owned(),
            sha256,
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            created_at: now,
            retain_until,
        };
        objects.insert(key.to_owned(), StoredBlob { meta: meta.clone(), bytes: Arc::new(bytes) });
        Ok(meta)
    }

    async fn get(&self, key: &str) -> Result<(BlobMeta, Vec<u8>)> {
        check_key(key)?;
        let objects = self.objects.lock();
        let stored = objects.get(key).ok_or_else(|| Error::BlobNotFound(key.to_owned()))?;
        let (meta, bytes) = (stored.meta.clone(), Arc::clone(&stored.bytes));
        drop(objects);
        // Copy outside the lock: objects can be large.
        Ok((meta, bytes.as_ref().clone()))
    }

    async fn head(&self, key: &str) -> Result<BlobMeta> {
        check_key(key)?;
        let objects = self.objects.lock();
        objects.get(key).map(|s| s.meta.clone()).ok_or_else(|| Error::BlobNotFound(key.to_owned()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let now = self.clock.now();
        let mut objects = self.objects.lock();
        let stored = objects.get(key).ok_or_else(|| Error::BlobNotFound(key.to_owned()))?;
        check_deletable(&stored.meta, now)?;
        objects.remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<BlobMeta>> {
        check_list(prefix, limit)?;
        let objects = self.objects.lock();
        Ok(objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(_, s)| s.meta.clone())
            .collect())
    }

    async fn presign_get(&self, key: &str, expires_in: TimeDelta) -> Result<String> {
        check_key(key)?;
        check_expires_in(expires_in)?;
        if !self.objects.lock().contains_key(key) {
            return Err(Error::BlobNotFound(key.to_owned()));
        }
        Ok(self.signer.url(key, self.clock.now() + expires_in))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(b"0123456789abcdef0123456789abcdef".to_vec(), "https://files.example/")
    }

    #[test]
    fn signed_urls_verify_until_they_expire() {
        let s = signer();
        let now = DateTime::from_timestamp(1_767_225_600, 0).expect("valid time");
        let url = s.url("a/b.pdf", now + TimeDelta::seconds(60));
        // HMAC-SHA256(secret, "a/b.pdf\n1767225660"), computed independently (Python's hmac).
        let expected = "b9c6ffcf6a2f62912f2515ec55aba0dee6cde86f548710516eaa7f782e4f1231";
        assert_eq!(url, format!("https://files.example/a/b.pdf?expires=1767225660&signature={expected}"));
        assert_eq!(s.verify_url(&url, now).expect("valid"), "a/b.pdf");
        assert!(s.verify_url(&url, now + TimeDelta::seconds(60)).is_err(), "expired URL accepted");
        for altered in [
            url.replace("a/b.pdf", "a/c.pdf"),
            url.replace("1767225660", "1767225999"),
            url.replace("signature=", "signature=zz"),
            url.replace("expires=", "expires=x"),
        ] {
            assert!(matches!(s.verify_url(&altered, now), Err(Error::InvalidInput(_))), "{altered}");
        }
        let last = url.chars().last().expect("non-empty");
        let flipped = format!("{}{}", &url[..url.len() - 1], if last == '0' { '1' } else { '0' });
        assert!(s.verify_url(&flipped, now).is_err(), "altered signature accepted");
        let other = UrlSigner::new(b"another secret, also 32 bytes!!!".to_vec(), "https://files.example");
        assert!(other.verify_url(&url, now).is_err(), "URL verified under another secret");
        assert!(!format!("{s:?}").contains("0123456789abcdef"), "secret in Debug output");
    }
}
