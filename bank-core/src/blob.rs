//! Immutable objects (statements, sealed audit segments) with a retention date.
//!
//! Write-once: a key is written once and then neither overwritten nor deleted before its
//! retention ends (S3 Object Lock in COMPLIANCE mode; the local store refuses the same way).
//! Writing the same bytes again under the same key is a harmless replay.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest object key.
pub const BLOB_KEY_LEN_MAX: usize = 512;
/// Largest object (statements and audit segments are far smaller).
pub const BLOB_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What the store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Its key.
    pub key: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type.
    pub content_type: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Before this, it cannot be deleted or overwritten.
    pub retain_until: DateTime<Utc>,
}

/// Checks an object key: 1..=512 characters of `[A-Za-z0-9/._-]`, no empty segment, no `..`.
pub fn check_key(key: &str) -> Result<()> {
    let ok_chars = key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    let ok_segments = key.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if key.is_empty() || key.len() > BLOB_KEY_LEN_MAX || !ok_chars || !ok_segments {
        return Err(Error::invalid(
            "object keys are 1 to 512 characters of A-Z a-z 0-9 / . _ - with no empty or dot segment",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("statements/2026-01/abc.pdf").is_ok());
        for bad in ["", "/a", "a/", "a//b", "../x", "a/../b", "a b", "a\\b", "ä"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_key(&"a".repeat(513)).is_err());
    }
}
