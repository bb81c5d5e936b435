//! Idempotency keys with Stripe semantics.
//!
//! A key is scoped to the caller and stored with a fingerprint of the request:
//! - same key, same request, first one finished → the first response, replayed;
//! - same key, different request → [`crate::Error::IdempotencyMismatch`] (HTTP 422);
//! - same key while the first is still running → [`crate::Error::IdempotencyInFlight`] (409);
//! - records are kept [`IDEMPOTENCY_RETENTION_HOURS`] hours, then forgotten.
//!
//! A request holds its key with a *lease*. If the process dies mid-request, the lease runs out and
//! the next attempt with the same key takes over the same `resource` (for transfers, the same
//! transfer id), so finishing the work is idempotent rather than doubled.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::transfer::Fingerprint;

/// How long a finished key is remembered.
pub const IDEMPOTENCY_RETENTION_HOURS: i64 = 24;
/// Longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// A client-chosen key: 1 to 255 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::invalid(format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters"
            )));
        }
        Ok(IdempotencyKey(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        IdempotencyKey::new(value)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> String {
        key.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// A key in its caller's scope: two callers may use the same key independently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdempotencyScope {
    /// Who is calling (the authenticated subject).
    pub caller: String,
    /// Their key.
    pub key: IdempotencyKey,
}

/// Proof of holding a key's lease; `complete` and `release` need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub uuid::Uuid);

impl LeaseToken {
    /// A fresh token.
    pub fn new() -> Self {
        LeaseToken(uuid::Uuid::now_v7())
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`crate::ports::IdempotencyStore::begin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The caller holds the key and must do the work, then `complete` or `release`.
    Started {
        /// The resource this key names: the one given now, or, when taking over an abandoned
        /// attempt, the one the first attempt recorded.
        resource: String,
        /// The lease.
        token: LeaseToken,
        /// When the key was first used (a takeover sees the first attempt's time).
        first_seen_at: DateTime<Utc>,
        /// True when an earlier attempt's lease ran out and this one took over.
        takeover: bool,
    },
    /// The work was done before; here is its response.
    Replay {
        /// The resource.
        resource: String,
        /// The stored response.
        response: Vec<u8>,
    },
}

/// The state of a stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// Work in progress until `lease_until`.
    InFlight {
        /// The current lease.
        token: LeaseToken,
        /// When it runs out.
        lease_until: DateTime<Utc>,
    },
    /// Work done; the response to replay.
    Completed {
        /// The stored response.
        response: Vec<u8>,
    },
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The key.
    pub scope: IdempotencyScope,
    /// The request it was first used with.
    pub fingerprint: Fingerprint,
    /// The resource it names.
    pub resource: String,
    /// In flight or completed.
    pub state: RecordState,
    /// First use.
    pub created_at: DateTime<Utc>,
    /// When it is forgotten (`created_at` + retention).
    pub expires_at: DateTime<Utc>,
}
