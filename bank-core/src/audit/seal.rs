//! [`AuditSealer`]: takes a signed checkpoint every N records or T seconds, and seals each
//! checkpoint's segment — the records it adds over the checkpoint before, plus the checkpoint
//! itself — to the write-once [`BlobStore`] with a retention date, where nobody (the bank's own
//! operators included) can change or delete it before the retention ends.
//!
//! - A checkpoint is **due** when at least `every_records` records are not in a checkpoint yet,
//!   or when the oldest of them is `every` old. It covers at most [`SEGMENT_RECORDS_MAX`] new
//!   records (a backlog becomes several checkpoints, one per run).
//! - It is stored in the log first ([`super::AuditLog::add_checkpoint`]), then sealed under
//!   [`segment_key`]`(ordinal)`. Checkpoint `k` is sealed only after `k - 1`, so segment `k`
//!   existing means every segment before it exists; a crash between the two steps leaves a
//!   checkpoint without its segment, which the next run seals (a segment's bytes are a function
//!   of the log, so sealing again is a replay, never a second version).
//!
//! Segment format (JSON, [`Segment`]): `format` (`"bank-audit-segment/v1"`), `ordinal`,
//! `first_seq`, `last_seq`, `checkpoint` (the signed note) and `records` (the records as
//! [`super::AuditRecord`] serializes them, hashes in hex).

use std::sync::Arc;

use chrono::TimeDelta;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::checkpoint::AuditKey;
use super::{AUDIT_PAGE_MAX, AuditLog, AuditRecord, StoredCheckpoint, tree};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ports::BlobStore;

/// Most records one checkpoint adds (so one segment stays a few MiB).
pub const SEGMENT_RECORDS_MAX: u64 = 10_000;
/// Where segments are kept in the blob store.
pub const SEGMENT_PREFIX: &str = "audit/segments/";
/// The `format` of the segments this module writes.
pub const SEGMENT_FORMAT: &str = "bank-audit-segment/v1";
/// Content type of a segment.
pub const SEGMENT_CONTENT_TYPE: &str = "application/json";

/// The key of segment `ordinal` (zero-padded, so keys sort as ordinals do).
pub fn segment_key(ordinal: u64) -> String {
    format!("{SEGMENT_PREFIX}{ordinal:020}.json")
}

/// A sealed segment: checkpoint `ordinal` and the records it adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// [`SEGMENT_FORMAT`].
    pub format: String,
    /// The checkpoint's ordinal.
    pub ordinal: u64,
    /// The first record's seq (the previous checkpoint's size + 1).
    pub first_seq: u64,
    /// The last record's seq (this checkpoint's size).
    pub last_seq: u64,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// Records `first_seq..=last_seq`.
    pub records: Vec<AuditRecord>,
}

/// When checkpoints are taken and how long segments are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealPolicy {
    /// A checkpoint is due once this many records wait (at least 1).
    pub every_records: u64,
    /// … or once the oldest waiting record is this old.
    pub every: TimeDelta,
    /// How long a sealed segment is retained (cannot be deleted or overwritten).
    pub retention: TimeDelta,
}

impl Default for SealPolicy {
    /// 1,000 records or 60 seconds; segments kept seven years.
    fn default() -> Self {
        SealPolicy { every_records: 1000, every: TimeDelta::seconds(60), retention: TimeDelta::days(7 * 365) }
    }
}

/// What one [`AuditSealer::run_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    /// The checkpoint taken, if one was due.
    pub checkpoint: Option<StoredCheckpoint>,
    /// Segments sealed.
    pub sealed: u64,
}

/// Takes checkpoints and seals segments (see the module docs).
#[derive(Debug)]
pub struct AuditSealer {
    log: Arc<dyn AuditLog>,
    blobs: Arc<dyn BlobStore>,
    key: Arc<AuditKey>,
    clock: Arc<dyn Clock>,
    policy: SealPolicy,
    /// The last ordinal known sealed (`None`: not looked up yet).
    sealed_through: Mutex<Option<u64>>,
}

impl AuditSealer {
    /// A sealer of `log` into `blobs`, signing with `key`.
    pub fn new(
        log: Arc<dyn AuditLog>,
        blobs: Arc<dyn BlobStore>,
        key: Arc<AuditKey>,
        clock: Arc<dyn Clock>,
        policy: SealPolicy,
    ) -> Self {
        let policy = SealPolicy { every_records: policy.every_records.max(1), ..policy };
        AuditSealer { log, blobs, key, clock, policy, sealed_through: Mutex::new(None) }
    }

    /// Takes a checkpoint if one is due, then seals every checkpoint not sealed yet.
    pub async fn run_once(&self) -> Result<SealReport> {
        let checkpoint = self.checkpoint_if_due().await?;
        let sealed = self.seal_pending().await?;
        Ok(SealReport { checkpoint, sealed })
    }

    /// Takes a checkpoint if the policy says one is due.
    pub async fn checkpoint_if_due(&self) -> Result<Option<StoredCheckpoint>> {
        let latest = self.log.latest_checkpoint().await?;
        let floor = latest.as_ref().map_or(0, |c| c.size);
        let size = self.log.size().await?;
        if size <= floor {
            return Ok(None);
        }
        let due = size - floor >= self.policy.every_records || {
            let oldest = self.log.list(floor + 1, 1).await?;
            oldest.first().is_some_and(|r| self.clock.now() - r.record.at >= self.policy.every)
        };
        if !due {
            return Ok(None);
        }
        self.take(latest, size).await
    }

    /// Takes a checkpoint of the records not in one yet, whatever the policy says (`None` when
    /// there are none).
    pub async fn checkpoint_now(&self) -> Result<Option<StoredCheckpoint>> {
        let latest = self.log.latest_checkpoint().await?;
        let size = self.log.size().await?;
        if size <= latest.as_ref().map_or(0, |c| c.size) {
            return Ok(None);
        }
        self.take(latest, size).await
    }

    /// Signs and stores the next checkpoint; `None` when another sealer (another process on the
    /// same log) stored that checkpoint first — its checkpoint stands, and nothing is lost.
    async fn take(&self, latest: Option<StoredCheckpoint>, size: u64) -> Result<Option<StoredCheckpoint>> {
        let (ordinal, floor) = latest.map_or((1, 0), |c| (c.ordinal + 1, c.size));
        let to = size.min(floor + SEGMENT_RECORDS_MAX);
        let root = tree::root(self.log.as_ref(), to).await?;
        let note = self.key.sign(to, root)?;
        let checkpoint = StoredCheckpoint { ordinal, size: to, at: self.clock.now(), note };
        if let Err(err) = self.log.add_checkpoint(checkpoint.clone()).await {
            let now = self.log.latest_checkpoint().await?;
            if now.is_some_and(|c| c.ordinal >= ordinal) {
                tracing::debug!(ordinal, "audit checkpoint taken by another sealer");
                return Ok(None);
            }
            return Err(err);
        }
        tracing::info!(ordinal, size = to, "audit checkpoint signed");
        Ok(Some(checkpoint))
    }

    /// Seals every checkpoint whose segment is not in the blob store yet, in order; answers how
    /// many it sealed.
    pub async fn seal_pending(&self) -> Result<u64> {
        let Some(latest) = self.log.latest_checkpoint().await? else {
            return Ok(0);
        };
        let known = *self.sealed_through.lock();
        let mut sealed_through = match known {
            Some(ordinal) => ordinal,
            None => self.find_sealed_through(latest.ordinal).await?,
        };
        let mut sealed = 0;
        while sealed_through < latest.ordinal {
            let ordinal = sealed_through + 1;
            self.seal(ordinal).await?;
            sealed_through = ordinal;
            *self.sealed_through.lock() = Some(ordinal);
            sealed += 1;
        }
        *self.sealed_through.lock() = Some(sealed_through);
        Ok(sealed)
    }

    /// The last sealed ordinal, looking backwards from `latest` (segments are sealed in order).
    async fn find_sealed_through(&self, latest: u64) -> Result<u64> {
        let mut ordinal = latest;
        while ordinal > 0 {
            match self.blobs.head(&segment_key(ordinal)).await {
                Ok(_) => return Ok(ordinal),
                Err(Error::BlobNotFound(_)) => ordinal -= 1,
                Err(other) => return Err(other),
            }
        }
        Ok(0)
    }

    async fn seal(&self, ordinal: u64) -> Result<()> {
        let segment = build_segment(self.log.as_ref(), ordinal).await?;
        let bytes = serde_json::to_vec(&segment).map_err(|e| Error::storage(e, false))?;
        let retain_until = self.clock.now() + self.policy.retention;
        self.blobs.put(&segment_key(ordinal), bytes, SEGMENT_CONTENT_TYPE, retain_until).await?;
        tracing::info!(ordinal, first_seq = segment.first_seq, last_seq = segment.last_seq, "audit segment sealed");
        Ok(())
    }
}

/// Segment `ordinal` as the log holds it now.
pub async fn build_segment(log: &dyn AuditLog, ordinal: u64) -> Result<Segment> {
    let pair = log.checkpoints(ordinal.saturating_sub(1).max(1), 2).await?;
    let (floor, checkpoint) = match pair.as_slice() {
        // The first segment, whether later checkpoints exist yet or not.
        [first, ..] if ordinal == 1 && first.ordinal == 1 => (0, first.clone()),
        [before, this, ..] if this.ordinal == ordinal && before.ordinal + 1 == ordinal => (before.size, this.clone()),
        _ => return Err(Error::storage(format!("audit checkpoint {ordinal} is missing"), false)),
    };
    let records = read_range(log, floor + 1, checkpoint.size).await?;
    Ok(Segment {
        format: SEGMENT_FORMAT.to_owned(),
        ordinal,
        first_seq: floor + 1,
        last_seq: checkpoint.size,
        checkpoint: checkpoint.note,
        records,
    })
}

/// Records `first..=last`, read page by page; fails if any is missing.
pub async fn read_range(log: &dyn AuditLog, first: u64, last: u64) -> Result<Vec<AuditRecord>> {
    let mut records = Vec::new();
    let mut next = first;
    while next <= last {
        let want = usize::try_from(last - next + 1).unwrap_or(usize::MAX).min(AUDIT_PAGE_MAX);
        let page = log.list(next, want).await?;
        if page.is_empty() {
            return Err(Error::storage(format!("audit record {next} is missing"), false));
        }
        for record in page.into_iter().take_while(|r| r.seq <= last) {
            if record.seq != next {
                return Err(Error::storage(format!("audit record {next} is missing"), false));
            }
            records.push(record);
            next += 1;
        }
    }
    Ok(records)
}
