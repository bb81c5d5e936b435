//! [`verify`]: checks the live audit log against itself, against its signed checkpoints and
//! against the sealed segments in the write-once blob store, and names the first bad record.
//!
//! Walking the records in `seq` order, checkpoint by checkpoint:
//! 1. **the chain** — every `seq` is there (a gap is a deleted record), every record's `hash` is
//!    the SHA-256 of its canonical bytes (an edited field, a reordered row) and its `prev_hash`
//!    is the hash of the record before (a removed or inserted record);
//! 2. **the checkpoints** — each checkpoint's signature verifies with the published key, and the
//!    RFC 6962 root of the records it covers equals the signed root (a chain rewritten whole,
//!    hashes and all, by someone with the file: SHA-256 has no secret, the signature has);
//! 3. **the sealed segments** — every record a segment holds equals the live one field for field
//!    (this names the exact record of a rewrite), the segment's checkpoint equals the live one,
//!    and records a segment or checkpoint covers must exist (a truncated tail).
//!
//! The result names the first bad `seq` and what is wrong with it; a storage failure is an
//! `Err`, never a verdict. What it cannot see: records appended after the last checkpoint are
//! protected by the chain only, so someone with write access to the file can truncate or rewrite
//! that tail undetected — checkpoints every N records or T seconds bound that window.
//!
//! `from_seq` starts later: at the last checkpoint before `from_seq`, whose tree frontier is read
//! from the live store and accepted only if it hashes to that checkpoint's signed root (and the
//! record before is proven included), so the walk goes on from authenticated state without
//! rereading everything; otherwise it falls back to the start.

use serde::{Deserialize, Serialize};

use super::checkpoint::{AuditVerifier, TreeHead};
use super::seal::{SEGMENT_FORMAT, Segment, segment_key};
use super::tree::{self, Frontier};
use super::{AUDIT_CHECKPOINT_PAGE_MAX, AUDIT_PAGE_MAX, AuditLog, AuditRecord, Digest, GENESIS_HASH, StoredCheckpoint};
use crate::error::{Error, Result};
use crate::ports::BlobStore;

/// The verdict of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Whether every check passed.
    pub ok: bool,
    /// The first `seq` walked (1, or the start of the checkpoint before the `from_seq` asked).
    pub from_seq: u64,
    /// Records walked.
    pub records_checked: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_checked: u64,
    /// Sealed segments compared with the live records.
    pub segments_checked: u64,
    /// The first bad record, if any.
    pub first_bad_seq: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

/// A tampering found: the first bad seq and why.
struct Bad(u64, String);

/// Checks the log (see the module docs) from `from_seq` on (1 for everything).
pub async fn verify(
    log: &dyn AuditLog,
    blobs: &dyn BlobStore,
    verifier: &AuditVerifier,
    from_seq: u64,
) -> Result<VerifyReport> {
    let start = match from_seq {
        0 | 1 => Start::beginning(),
        seq => Start::before(log, blobs, verifier, seq).await?.unwrap_or_else(Start::beginning),
    };
    let mut walk = Walk {
        log,
        blobs,
        verifier,
        report: VerifyReport {
            ok: true,
            from_seq: start.floor + 1,
            records_checked: 0,
            checkpoints_checked: 0,
            segments_checked: 0,
            first_bad_seq: None,
            problem: None,
        },
        records: Cursor::new(start.floor + 1),
        checkpoints: CheckpointCursor::new(start.ordinal + 1),
        frontier: start.frontier,
        prev_hash: start.prev_hash,
        floor: start.floor,
    };
    if let Err(bad) = walk.run().await? {
        walk.report.ok = false;
        walk.report.first_bad_seq = Some(bad.0);
        walk.report.problem = Some(bad.1);
    }
    Ok(walk.report)
}

/// Where a walk starts: after checkpoint `ordinal` of `floor` records.
struct Start {
    ordinal: u64,
    floor: u64,
    frontier: Frontier,
    prev_hash: Digest,
}

impl Start {
    fn beginning() -> Start {
        Start { ordinal: 0, floor: 0, frontier: Frontier::new(), prev_hash: GENESIS_HASH }
    }

    /// After the last checkpoint whose size is below `seq`, if its state can be authenticated.
    async fn before(
        log: &dyn AuditLog,
        blobs: &dyn BlobStore,
        verifier: &AuditVerifier,
        seq: u64,
    ) -> Result<Option<Start>> {
        let mut found: Option<StoredCheckpoint> = None;
        let mut cursor = CheckpointCursor::new(1);
        while let Some(checkpoint) = cursor.next(log).await? {
            if checkpoint.size >= seq {
                break;
            }
            found = Some(checkpoint);
        }
        let Some(checkpoint) = found else {
            return Ok(None);
        };
        // The sealed copy of the checkpoint, if there is one, is the one to trust.
        let note = match read_segment(blobs, checkpoint.ordinal).await? {
            Some(Ok(segment)) => segment.checkpoint,
            _ => checkpoint.note,
        };
        let Ok(head) = verifier.open(&note) else {
            return Ok(None);
        };
        let hashes = log.tree_hashes(&Frontier::stored_indexes(head.size)).await;
        let Some(frontier) = hashes.ok().and_then(|h| Frontier::from_stored(head.size, &h).ok()) else {
            return Ok(None);
        };
        if frontier.root() != head.root {
            return Ok(None);
        }
        let last = log.list(head.size, 1).await?;
        let Some(last) = last.into_iter().next().filter(|r| r.seq == head.size) else {
            return Ok(None);
        };
        let proof = tree::inclusion_proof(log, head.size - 1, head.size).await;
        let included = proof.is_ok_and(|proof| {
            tree::check_inclusion(&proof, head.size, head.root, head.size - 1, tree::leaf_hash(&last.encode()))
        });
        if !included || last.computed_hash() != last.hash {
            return Ok(None);
        }
        Ok(Some(Start { ordinal: checkpoint.ordinal, floor: head.size, frontier, prev_hash: last.hash }))
    }
}

struct Walk<'a> {
    log: &'a dyn AuditLog,
    blobs: &'a dyn BlobStore,
    verifier: &'a AuditVerifier,
    report: VerifyReport,
    records: Cursor,
    checkpoints: CheckpointCursor,
    frontier: Frontier,
    prev_hash: Digest,
    /// Records checked against a checkpoint so far.
    floor: u64,
}

impl Walk<'_> {
    async fn run(&mut self) -> Result<std::result::Result<(), Bad>> {
        let mut ordinal = self.checkpoints.from_ordinal;
        loop {
            let live = self.checkpoints.take(self.log, ordinal).await?;
            let sealed = read_segment(self.blobs, ordinal).await?;
            if live.is_none() && sealed.is_none() {
                if let Some(later) = self.checkpoints.peek(self.log).await? {
                    let first = self.floor + 1;
                    let why = format!("checkpoint {ordinal} is missing (checkpoint {} exists)", later.ordinal);
                    return Ok(Err(Bad(first, why)));
                }
                break;
            }
            if let Err(bad) = self.range(ordinal, live, sealed).await? {
                return Ok(Err(bad));
            }
            ordinal += 1;
        }
        // The tail after the last checkpoint: the chain only.
        let mut seq = self.floor + 1;
        while let Some(record) = self.records.next(self.log).await? {
            if let Err(bad) = self.record(seq, Some(record), None) {
                return Ok(Err(bad));
            }
            seq += 1;
        }
        Ok(Ok(()))
    }

    /// Checks the records of checkpoint `ordinal` against it and its sealed segment.
    async fn range(
        &mut self,
        ordinal: u64,
        live: Option<StoredCheckpoint>,
        sealed: Option<std::result::Result<Segment, String>>,
    ) -> Result<std::result::Result<(), Bad>> {
        let first = self.floor + 1;
        let sealed = match sealed {
            Some(Err(why)) => return Ok(Err(Bad(first, format!("sealed segment {ordinal} is unreadable: {why}")))),
            Some(Ok(segment)) => Some(segment),
            None => None,
        };
        let note = match (&sealed, &live) {
            (Some(segment), _) => segment.checkpoint.clone(),
            (None, Some(live)) => live.note.clone(),
            (None, None) => return Ok(Ok(())),
        };
        let head: TreeHead = match self.verifier.open(&note) {
            Ok(head) => head,
            Err(why) => return Ok(Err(Bad(first, format!("checkpoint {ordinal}: {why}")))),
        };
        if head.size < first {
            return Ok(Err(Bad(first, format!("checkpoint {ordinal} does not grow the log (size {})", head.size))));
        }
        if let Some(segment) = &sealed {
            let count = segment.records.len() as u64;
            if segment.format != SEGMENT_FORMAT
                || segment.ordinal != ordinal
                || segment.first_seq != first
                || segment.last_seq != head.size
                || count != head.size - first + 1
            {
                return Ok(Err(Bad(first, format!("sealed segment {ordinal} does not cover {first}..={}", head.size))));
            }
        }
        for seq in first..=head.size {
            let live_record = self.records.next(self.log).await?;
            let sealed_record = sealed.as_ref().and_then(|s| s.records.get(usize::try_from(seq - first).ok()?));
            if let Err(bad) = self.record(seq, live_record, sealed_record) {
                return Ok(Err(bad));
            }
        }
        if self.frontier.root() != head.root {
            return Ok(Err(Bad(
                first,
                format!(
                    "records {first}..={} do not hash to checkpoint {ordinal}'s signed root: one of them was rewritten",
                    head.size
                ),
            )));
        }
        self.report.checkpoints_checked += 1;
        if let Some(segment) = &sealed {
            self.report.segments_checked += 1;
            match &live {
                Some(live) if live.note == segment.checkpoint && live.size == head.size => {}
                Some(_) => {
                    return Ok(Err(Bad(head.size, format!("checkpoint {ordinal} differs from its sealed copy"))));
                }
                None => {
                    return Ok(Err(Bad(head.size, format!("checkpoint {ordinal} is sealed but missing from the log"))));
                }
            }
        }
        self.floor = head.size;
        Ok(Ok(()))
    }

    /// Checks record `seq` (as the live store answered it, and its sealed copy if any).
    fn record(
        &mut self,
        seq: u64,
        live: Option<AuditRecord>,
        sealed: Option<&AuditRecord>,
    ) -> std::result::Result<(), Bad> {
        let Some(record) = live else {
            return Err(Bad(seq, format!("record {seq} is missing: the log ends before it (truncated)")));
        };
        if record.seq != seq {
            return Err(Bad(seq, format!("record {seq} is missing (the next record is {})", record.seq)));
        }
        if record.computed_hash() != record.hash {
            return Err(Bad(seq, format!("record {seq} was altered: its hash does not match its content")));
        }
        if record.prev_hash != self.prev_hash {
            return Err(Bad(seq, format!("record {seq} does not follow record {}: the chain is broken", seq - 1)));
        }
        if let Some(sealed) = sealed
            && sealed != &record
        {
            return Err(Bad(seq, format!("record {seq} differs from its sealed copy")));
        }
        self.frontier.push(tree::leaf_hash(&record.encode()));
        self.prev_hash = record.hash;
        self.report.records_checked += 1;
        Ok(())
    }
}

/// Segment `ordinal` from the blob store: `None` if absent, `Some(Err)` if unreadable as one.
pub async fn read_segment(blobs: &dyn BlobStore, ordinal: u64) -> Result<Option<std::result::Result<Segment, String>>> {
    match blobs.get(&segment_key(ordinal)).await {
        Ok((_, bytes)) => Ok(Some(serde_json::from_slice::<Segment>(&bytes).map_err(|e| e.to_string()))),
        Err(Error::BlobNotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Live records in `seq` order, a page at a time.
struct Cursor {
    next_seq: u64,
    page: std::vec::IntoIter<AuditRecord>,
    done: bool,
}

impl Cursor {
    fn new(from_seq: u64) -> Self {
        Cursor { next_seq: from_seq, page: Vec::new().into_iter(), done: false }
    }

    async fn next(&mut self, log: &dyn AuditLog) -> Result<Option<AuditRecord>> {
        if let Some(record) = self.page.next() {
            return Ok(Some(record));
        }
        if self.done {
            return Ok(None);
        }
        let page = log.list(self.next_seq, AUDIT_PAGE_MAX).await?;
        match page.last() {
            Some(last) => self.next_seq = last.seq + 1,
            None => self.done = true,
        }
        self.page = page.into_iter();
        Ok(self.page.next())
    }
}

/// Live checkpoints in ordinal order, a page at a time.
struct CheckpointCursor {
    from_ordinal: u64,
    page: std::collections::VecDeque<StoredCheckpoint>,
    fetch_from: u64,
    done: bool,
}

impl CheckpointCursor {
    fn new(from_ordinal: u64) -> Self {
        CheckpointCursor { from_ordinal, page: Default::default(), fetch_from: from_ordinal, done: false }
    }

    /// The next live checkpoint, not consumed.
    async fn peek(&mut self, log: &dyn AuditLog) -> Result<Option<&StoredCheckpoint>> {
        if self.page.is_empty() && !self.done {
            let page = log.checkpoints(self.fetch_from, AUDIT_CHECKPOINT_PAGE_MAX).await?;
            match page.last() {
                Some(last) => self.fetch_from = last.ordinal + 1,
                None => self.done = true,
            }
            self.page = page.into();
        }
        Ok(self.page.front())
    }

    /// The next live checkpoint (consumed).
    async fn next(&mut self, log: &dyn AuditLog) -> Result<Option<StoredCheckpoint>> {
        self.peek(log).await?;
        Ok(self.page.pop_front())
    }

    /// Checkpoint `ordinal` if it is the next one (a later one stays for its turn).
    async fn take(&mut self, log: &dyn AuditLog, ordinal: u64) -> Result<Option<StoredCheckpoint>> {
        while let Some(next) = self.peek(log).await? {
            if next.ordinal > ordinal {
                return Ok(None);
            }
            let next = self.page.pop_front();
            if next.as_ref().is_some_and(|c| c.ordinal == ordinal) {
                return Ok(next);
            }
        }
        Ok(None)
    }
}
