//! The audit log: who did what to which resource, when, with what outcome, under which request —
//! hash-chained, committed to by signed checkpoints, and verifiable by anyone with the public key.
//!
//! Layout:
//! - here: the record's shape ([`NewAuditRecord`], [`AuditRecord`]) and the [`AuditLog`] port;
//! - [`encoding`]: the canonical, versioned bytes of a record (what is hashed, chained and put in
//!   the Merkle tree);
//! - [`tree`]: the RFC 6962 Merkle tree over those bytes (root, inclusion proofs, a streaming
//!   frontier), through `tlog_tiles`;
//! - [`checkpoint`]: the Ed25519 key, and checkpoints as C2SP `tlog-checkpoint` bodies in C2SP
//!   signed notes, through `signed_note`;
//! - [`seal`]: taking checkpoints every N records or T seconds and sealing each checkpoint's
//!   segment of records to the write-once [`crate::ports::BlobStore`];
//! - [`verify`]: checking the chain, every checkpoint and every sealed segment against the live
//!   store, naming the first bad record.
//!
//! Adapters keep the records in order, chain them (each record holds the SHA-256 of the previous
//! one), keep the tree's stored hashes and the checkpoints, and never change or delete a record
//! (the SQLite adapter's tables refuse `UPDATE` and `DELETE` with triggers; an attacker with the
//! file can drop them, which is what [`verify`] is for).
//!
//! A record holds ids, names of actions and outcomes — never a password, a token, a TOTP code or
//! a secret: its fields are bounded, typed where they can be, and filled by the callers from ids.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::CustomerId;

pub mod checkpoint;
pub mod encoding;
pub mod seal;
pub mod tree;
pub mod verify;

pub use encoding::{Digest, GENESIS_HASH};

/// Longest idempotency key of [`AuditLog::append_once`].
pub const AUDIT_ONCE_KEY_CHARS_MAX: usize = 256;
/// Most checkpoints one [`AuditLog::checkpoints`] answers.
pub const AUDIT_CHECKPOINT_PAGE_MAX: usize = 1000;

/// Longest `subject`, `action`, `request_id` or `client_ip` kept (longer ones are cut).
pub const AUDIT_FIELD_CHARS_MAX: usize = 128;
/// Longest `target` kept.
pub const AUDIT_TARGET_CHARS_MAX: usize = 256;
/// Most records one [`AuditLog::list`] answers.
pub const AUDIT_PAGE_MAX: usize = 1000;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// The action took effect (or was requested and recorded).
    Done,
    /// The action was refused (a rule, such as separation of duties, forbade it).
    Refused,
}

impl AuditOutcome {
    /// `"done"` or `"refused"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Done => "done",
            AuditOutcome::Refused => "refused",
        }
    }

    /// Parses [`AuditOutcome::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "done" => Some(AuditOutcome::Done),
            "refused" => Some(AuditOutcome::Refused),
            _ => None,
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditRecord {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who acted: a user id, or `cli` for the command line.
    pub subject: String,
    /// What was done, dotted (`deposit.requested`, `deposit.approved`, `user.created`).
    pub action: String,
    /// On what: `account:<id>`, `deposit-request:<id>`, `user:<id>`.
    pub target: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The HTTP request id, when there was one.
    pub request_id: Option<String>,
    /// The client address, when known.
    pub client_ip: Option<String>,
}

/// Who acts, and where the request came from: what every audit record of one request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user (an operator, for the actions audited today).
    pub user: CustomerId,
    /// The request id, if any.
    pub request_id: Option<String>,
    /// The client's address, if any.
    pub client_ip: Option<String>,
}

impl Actor {
    /// The record of this actor's `action` on `target` at `at`.
    pub fn record(&self, at: DateTime<Utc>, action: &str, target: String, outcome: AuditOutcome) -> NewAuditRecord {
        NewAuditRecord::new(at, self.user.to_string(), action, target, outcome)
            .with_request(self.request_id.clone(), self.client_ip.clone())
    }
}

impl NewAuditRecord {
    /// A record with its text fields cut to their bounds.
    pub fn new(
        at: DateTime<Utc>,
        subject: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        outcome: AuditOutcome,
    ) -> Self {
        NewAuditRecord {
            at,
            subject: bounded(subject.into(), AUDIT_FIELD_CHARS_MAX),
            action: bounded(action.into(), AUDIT_FIELD_CHARS_MAX),
            target: bounded(target.into(), AUDIT_TARGET_CHARS_MAX),
            outcome,
            request_id: None,
            client_ip: None,
        }
    }

    /// With the request's id and client address.
    pub fn with_request(mut self, request_id: Option<String>, client_ip: Option<String>) -> Self {
        self.request_id = request_id.map(|id| bounded(id, AUDIT_FIELD_CHARS_MAX));
        self.client_ip = client_ip.map(|ip| bounded(ip, AUDIT_FIELD_CHARS_MAX));
        self
    }
}

fn bounded(text: String, chars_max: usize) -> String {
    if text.chars().count() <= chars_max { text } else { text.chars().take(chars_max).collect() }
}

/// An appended record: the fields, its position and its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1, 2, 3, … in append order, with no gap.
    pub seq: u64,
    /// What was appended.
    #[serde(flatten)]
    pub record: NewAuditRecord,
    /// [`AuditRecord::hash`] of record `seq - 1` ([`GENESIS_HASH`], all zeros, for record 1).
    #[serde(with = "encoding::hex_digest")]
    pub prev_hash: Digest,
    /// SHA-256 of this record's canonical bytes ([`encoding::encode`]), which include
    /// `prev_hash`: changing any earlier record changes every hash after it.
    #[serde(with = "encoding::hex_digest")]
    pub hash: Digest,
}

impl AuditRecord {
    /// Record `seq` holding `record`, chained after a record whose hash is `prev_hash`.
    pub fn chained(seq: u64, record: NewAuditRecord, prev_hash: Digest) -> AuditRecord {
        let hash = encoding::chain_hash(&encoding::encode(seq, &record, &prev_hash));
        AuditRecord { seq, record, prev_hash, hash }
    }

    /// The canonical bytes of this record (the Merkle leaf; their SHA-256 is the chain hash).
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self.seq, &self.record, &self.prev_hash)
    }

    /// The hash the record's content gives, whatever its `hash` field says.
    pub fn computed_hash(&self) -> Digest {
        encoding::chain_hash(&self.encode())
    }
}

/// A signed checkpoint as the log keeps it: the `ordinal`-th checkpoint (1, 2, 3, …), committing
/// to the first `size` records, as the signed note text ([`checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    /// 1, 2, 3, … in the order taken; each has a larger `size` than the one before.
    pub ordinal: u64,
    /// Records it commits to (the tree size).
    pub size: u64,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The signed note (C2SP signed note holding a C2SP tlog-checkpoint body).
    pub note: String,
}

/// Where audit records go.
///
/// # Contract
/// - `append` is atomic and durable once it answers; records get `seq` 1, 2, 3, … in the order
///   appends complete, with no gap, and concurrent appends each get their own `seq`. Each record
///   is chained: its `prev_hash` is the previous record's `hash` ([`GENESIS_HASH`] for the first)
///   and its `hash` is [`AuditRecord::computed_hash`].
/// - `append_batch` appends its records in order, atomically and durably (one commit).
/// - `append_once(key, record)` appends `record` unless a record was appended under `key` before,
///   in which case it answers that record and appends nothing.
/// - A record is never changed or removed.
/// - `list(from_seq, limit)` answers the records with `seq >= from_seq` in order, at most
///   `min(limit, AUDIT_PAGE_MAX)`.
/// - `tree_hashes` answers the RFC 6962 tree's stored hashes (`tlog` stored-hash indexes, see
///   [`tree`]) of the records appended so far; an index not stored yet is an error.
/// - `add_checkpoint` stores checkpoint `ordinal` (the next one: `latest + 1`, with a larger size);
///   storing the identical checkpoint again is a harmless replay; anything else is refused.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `record`; answers it with its `seq` and hashes.
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord>;

    /// Appends `records` in order, in one commit.
    async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>>;

    /// Appends `record` once per `key` (at most [`AUDIT_ONCE_KEY_CHARS_MAX`] characters): a second
    /// call with the same key answers the first record.
    async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord>;

    /// [`append_once`](Self::append_once) for each `(key, record)` in order; stores may do it in
    /// one commit (the default makes one call each). A failure may leave a prefix appended: a
    /// retry of the whole batch appends the rest once.
    async fn append_once_batch(&self, records: Vec<(String, NewAuditRecord)>) -> Result<()> {
        for (key, record) in records {
            self.append_once(&key, record).await?;
        }
        Ok(())
    }

    /// Records from `from_seq` on, oldest first.
    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>>;

    /// How many records there are (the `seq` of the last one).
    async fn size(&self) -> Result<u64>;

    /// The stored tree hashes at `indexes` (see [`tree`]), in the order asked.
    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>>;

    /// Stores the next checkpoint.
    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()>;

    /// Checkpoints from `from_ordinal` on, oldest first, at most
    /// `min(limit, AUDIT_CHECKPOINT_PAGE_MAX)`.
    async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> Result<Vec<StoredCheckpoint>>;

    /// The latest checkpoint, if any.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>>;
}

/// Checks an [`AuditLog::append_once`] key.
pub fn check_once_key(key: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > AUDIT_ONCE_KEY_CHARS_MAX {
        return Err(crate::Error::invalid(format!("audit keys are 1 to {AUDIT_ONCE_KEY_CHARS_MAX} characters")));
    }
    Ok(())
}

/// Checks that `checkpoint` may follow `latest` (see the [`AuditLog`] contract): `Ok(true)` to
/// store it, `Ok(false)` for an identical replay, an error otherwise. `size` is the log's size.
pub fn check_next_checkpoint(
    latest: Option<&StoredCheckpoint>,
    checkpoint: &StoredCheckpoint,
    size: u64,
) -> Result<bool> {
    if latest.is_some_and(|l| l.ordinal == checkpoint.ordinal && l == checkpoint) {
        return Ok(false);
    }
    let (next, floor) = latest.map_or((1, 0), |l| (l.ordinal + 1, l.size));
    if checkpoint.ordinal != next || checkpoint.size <= floor || checkpoint.size > size {
        return Err(crate::Error::invalid(format!(
            "checkpoint {} of size {} cannot follow checkpoint {} of size {floor} in a log of {size} records",
            checkpoint.ordinal,
            checkpoint.size,
            next - 1
        )));
    }
    Ok(true)
}
