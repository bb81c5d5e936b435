//! [`AuditRecorder`]: how the server writes audit records without putting an fsync on the read
//! path, and what a crash can lose.
//!
//! Two ways in, chosen per action:
//! - **durable** ([`AuditRecorder::durable`]): the caller waits until the record is committed
//!   (fsynced) before it answers. Every action that changes state or grants access goes this way
//!   — register, login (success and every refusal), refresh, logout, account opening, transfer
//!   creation, deposits and approvals, every operator action, statements generated — and the
//!   worker's settle / fail. Concurrent appends share one commit (the audit file's writer groups
//!   everything waiting into one transaction), so a burst costs one fsync, not one per request.
//!   If the append fails, the request fails (503): an answered action always has its record.
//! - **queued** ([`AuditRecorder::queued`]): reads (account, history, transfer and audit views)
//!   and refused tokens. The record goes to a bounded in-memory queue of
//!   [`AUDIT_QUEUE_MAX`] records and the request answers at once; the flusher task appends
//!   everything waiting in batches of up to [`AUDIT_FLUSH_BATCH_MAX`] (one commit each), a batch
//!   waiting up to [`AUDIT_FLUSH_LINGER`] from its first record for others to join it (a full
//!   batch or a [`flush`](AuditRecorder::flush) goes at once). **When the queue is full** the caller waits
//!   for room (back-pressure): memory stays bounded and no record is dropped; reads then slow to
//!   the audit file's commit rate. If appends keep failing, the flusher retries every
//!   [`AUDIT_RETRY_BACKOFF`] keeping its batch, the queue fills and reads wait (and time out
//!   with 503): a read that cannot be audited is not served for long.
//!
//! **What a crash can lose**: nothing that was answered as durable. Of the queued records, those
//! not yet committed: at most `AUDIT_QUEUE_MAX + AUDIT_FLUSH_BATCH_MAX` records (4,352), all of
//! them reads or refused tokens answered since the flusher's last commit began — in practice the
//! last [`AUDIT_FLUSH_LINGER`] of reads and the commit under way. A graceful stop ([`AuditRecorder::flush`], called by `serve`
//! after the HTTP server stopped) loses nothing.

use std::sync::Arc;
use std::time::Duration;

use bank_core::audit::{AuditLog, AuditRecord, NewAuditRecord};
use bank_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

/// Queued records waiting for the flusher (bounded: callers wait for room beyond it).
pub const AUDIT_QUEUE_MAX: usize = 4096;
/// Most queued records one commit takes.
pub const AUDIT_FLUSH_BATCH_MAX: usize = 256;
/// Longest a queued record waits for others to share its commit.
pub const AUDIT_FLUSH_LINGER: Duration = Duration::from_millis(10);
/// Pause before the flusher retries a batch whose append failed.
pub const AUDIT_RETRY_BACKOFF: Duration = Duration::from_millis(500);

enum Queued {
    Record(NewAuditRecord),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Writes audit records (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct AuditRecorder {
    log: Arc<dyn AuditLog>,
    queue: mpsc::Sender<Queued>,
    capacity: usize,
}

/// The recorder's bounds (the defaults are the constants above; tests shrink them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderLimits {
    /// Queued records before callers wait (at least 1).
    pub queue_max: usize,
    /// Pause before a failed batch is retried.
    pub retry_backoff: Duration,
    /// Longest a batch waits from its first record for others to join it.
    pub linger: Duration,
}

impl Default for RecorderLimits {
    fn default() -> Self {
        RecorderLimits { queue_max: AUDIT_QUEUE_MAX, retry_backoff: AUDIT_RETRY_BACKOFF, linger: AUDIT_FLUSH_LINGER }
    }
}

impl std::fmt::Debug for AuditRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRecorder").field("queued", &self.queue_len()).field("capacity", &self.capacity).finish()
    }
}

impl AuditRecorder {
    /// A recorder over `log` with a queue of [`AUDIT_QUEUE_MAX`]; spawns its flusher on the
    /// current tokio runtime (it stops once every clone of the recorder is dropped, after
    /// committing what was queued).
    pub fn start(log: Arc<dyn AuditLog>) -> AuditRecorder {
        AuditRecorder::with_limits(log, RecorderLimits::default())
    }

    /// The same with other bounds.
    pub fn with_limits(log: Arc<dyn AuditLog>, limits: RecorderLimits) -> AuditRecorder {
        let capacity = limits.queue_max.max(1);
        let (queue, receiver) = mpsc::channel(capacity);
        tokio::spawn(flusher(Arc::clone(&log), receiver, limits));
        AuditRecorder { log, queue, capacity }
    }

    /// The log written to.
    pub fn log(&self) -> &Arc<dyn AuditLog> {
        &self.log
    }

    /// Appends `record` and waits until it is committed.
    pub async fn durable(&self, record: NewAuditRecord) -> Result<AuditRecord> {
        self.log.append(record).await
    }

    /// Queues `record` for the flusher, waiting only while the queue is full.
    pub async fn queued(&self, record: NewAuditRecord) -> Result<()> {
        self.queue.send(Queued::Record(record)).await.map_err(|_| flusher_gone())
    }

    /// Waits until every record queued before this call is committed.
    pub async fn flush(&self) -> Result<()> {
        let (done, committed) = oneshot::channel();
        self.queue.send(Queued::Flush(done)).await.map_err(|_| flusher_gone())?;
        committed.await.map_err(|_| flusher_gone())
    }

    /// Records (and flush requests) waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.capacity - self.queue.capacity()
    }
}

fn flusher_gone() -> Error {
    Error::Storage { message: "the audit flusher has stopped".into(), retryable: false }
}

/// Appends queued records in batches until every sender is gone and the queue is empty.
async fn flusher(log: Arc<dyn AuditLog>, mut receiver: mpsc::Receiver<Queued>, limits: RecorderLimits) {
    let mut batch = Vec::with_capacity(AUDIT_FLUSH_BATCH_MAX);
    let mut waiters = Vec::new();
    while let Some(first) = receiver.recv().await {
        // A batch waits up to `linger` from its first record for more (not when it is full or
        // someone waits for a flush): at a thousand reads a second, a commit every 10 ms instead
        // of one per read (measured at the seed's peak: ~1,000 audit commits a second before,
        // ~280 after, durable records included) — fsyncs a cloud volume counts against its IOPS.
        let linger_until = tokio::time::Instant::now() + limits.linger;
        let mut next = Some(first);
        loop {
            while let Some(item) = next.take() {
                match item {
                    Queued::Record(record) => batch.push(record),
                    Queued::Flush(done) => waiters.push(done),
                }
                if batch.len() < AUDIT_FLUSH_BATCH_MAX {
                    next = receiver.try_recv().ok();
                }
            }
            if batch.len() >= AUDIT_FLUSH_BATCH_MAX || !waiters.is_empty() || limits.linger.is_zero() {
                break;
            }
            match tokio::time::timeout_at(linger_until, receiver.recv()).await {
                Ok(Some(item)) => next = Some(item),
                Ok(None) | Err(_) => break,
            }
        }
        while !batch.is_empty() {
            match log.append_batch(batch.clone()).await {
                Ok(_) => batch.clear(),
                Err(error) => {
                    tracing::error!(%error, records = batch.len(), "audit batch not committed; retrying");
                    tokio::time::sleep(limits.retry_backoff).await;
                }
            }
        }
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::audit::{AuditOutcome, Digest, StoredCheckpoint};
    use bank_core::memory::audit::MemoryAuditLog;
    use futures::FutureExt as _;
    use tokio::sync::Semaphore;

    fn view(n: i64) -> NewAuditRecord {
        NewAuditRecord::new(
            chrono::DateTime::from_timestamp(n, 0).expect("time"),
            "customer",
            "account.view",
            format!("account:{n}"),
            AuditOutcome::Done,
        )
    }

    /// A log whose batch appends wait for a permit (a slow or stuck disk), and fail while told to.
    #[derive(Debug)]
    struct Gated {
        inner: MemoryAuditLog,
        gate: Semaphore,
        failing: parking_lot::Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl AuditLog for Gated {
        async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord> {
            self.inner.append(record).await
        }
        async fn append_batch(&self, records: Vec<NewAuditRecord>) -> Result<Vec<AuditRecord>> {
            self.gate.acquire().await.map_err(|e| Error::storage(e, false))?.forget();
            {
                let mut failing = self.failing.lock();
                if *failing > 0 {
                    *failing -= 1;
                    return Err(Error::storage("disk full", true));
                }
            }
            self.inner.append_batch(records).await
        }
        async fn append_once(&self, key: &str, record: NewAuditRecord) -> Result<AuditRecord> {
            self.inner.append_once(key, record).await
        }
        async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
            self.inner.list(from_seq, limit).await
        }
        async fn size(&self) -> Result<u64> {
            self.inner.size().await
        }
        async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>> {
            self.inner.tree_hashes(indexes).await
        }
        async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
            self.inner.add_checkpoint(checkpoint).await
        }
        async fn checkpoints(&self, from_ordinal: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
            self.inner.checkpoints(from_ordinal, limit).await
        }
        async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
            self.inner.latest_checkpoint().await
        }
    }

    fn gated(failing: u32) -> Arc<Gated> {
        Arc::new(Gated {
            inner: MemoryAuditLog::new(),
            gate: Semaphore::new(0),
            failing: parking_lot::Mutex::new(failing),
        })
    }

    /// Queued records are committed in order by the flusher; `flush` returns once they are.
    #[tokio::test]
    async fn queued_records_are_committed_in_order() {
        let log = gated(0);
        log.gate.add_permits(1000);
        let recorder = AuditRecorder::start(log.clone());
        for n in 1..=300 {
            recorder.queued(view(n)).await.expect("queued");
        }
        recorder.flush().await.expect("flush");
        let all = log.list(1, 1000).await.expect("list");
        assert_eq!(all.len(), 300);
        assert!(all.iter().zip(1..).all(|(r, n)| r.record == view(n)), "in the order queued");
        // Durable records are committed before `durable` answers.
        let durable = recorder.durable(view(301)).await.expect("durable");
        assert_eq!(log.list(durable.seq, 1).await.expect("list")[0], durable);
    }

    /// With the disk stuck, the queue holds at most its capacity: the next caller waits (it is
    /// not answered, and nothing is dropped); once the disk moves, everything is committed.
    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_and_drops_nothing() {
        let log = gated(0);
        let limits = RecorderLimits { queue_max: 8, linger: Duration::ZERO, ..Default::default() };
        let recorder = AuditRecorder::with_limits(log.clone(), limits);
        // The flusher takes the first record and blocks on the disk with it.
        recorder.queued(view(1)).await.expect("queued");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        for n in 2..=9 {
            recorder.queued(view(n)).now_or_never().expect("room in the queue").expect("queued");
        }
        assert_eq!(recorder.queue_len(), 8, "the queue is full");
        assert!(recorder.queued(view(10)).now_or_never().is_none(), "a caller waits when the queue is full");
        assert_eq!(recorder.queue_len(), 8, "and the queue did not grow");
        let waiting = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.queued(view(10)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        log.gate.add_permits(100);
        waiting.await.expect("task").expect("queued once there was room");
        recorder.flush().await.expect("flush");
        let all = log.list(1, 100).await.expect("list");
        assert_eq!(all.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), (1..=10).map(view).collect::<Vec<_>>());
    }

    /// Records queued within the linger of the first share its commit; one queued after it has
    /// passed goes in a commit of its own, once its own linger has passed.
    #[tokio::test(start_paused = true)]
    async fn records_queued_within_the_linger_share_one_commit() {
        let log = gated(0);
        log.gate.add_permits(100);
        let recorder = AuditRecorder::start(log.clone());
        for n in 1..=5 {
            recorder.queued(view(n)).await.expect("queued");
            tokio::time::sleep(AUDIT_FLUSH_LINGER / 10).await;
        }
        tokio::time::sleep(AUDIT_FLUSH_LINGER).await;
        assert_eq!(log.list(1, 10).await.expect("list").len(), 5, "committed once the linger passed");
        assert_eq!(log.gate.available_permits(), 99, "in one commit");
        recorder.queued(view(6)).await.expect("queued");
        tokio::time::sleep(AUDIT_FLUSH_LINGER / 2).await;
        assert_eq!(log.list(1, 10).await.expect("list").len(), 5, "the next record waits for its linger");
        tokio::time::sleep(AUDIT_FLUSH_LINGER).await;
        assert_eq!(log.list(1, 10).await.expect("list").len(), 6);
        assert_eq!(log.gate.available_permits(), 98, "in a commit of its own");
    }

    /// A batch whose commit fails is kept and retried after the backoff, not dropped.
    #[tokio::test]
    async fn a_failed_batch_is_retried_not_dropped() {
        let log = gated(2);
        log.gate.add_permits(100);
        // No pause between retries here: what matters is that the batch is retried, not when.
        let limits = RecorderLimits { retry_backoff: Duration::ZERO, ..Default::default() };
        let recorder = AuditRecorder::with_limits(log.clone(), limits);
        for n in 1..=3 {
            recorder.queued(view(n)).await.expect("queued");
        }
        recorder.flush().await.expect("flush");
        assert_eq!(log.list(1, 10).await.expect("list").len(), 3, "committed after two failures");
        assert_eq!(*log.failing.lock(), 0);
    }

    /// When the last recorder goes, the flusher commits what was queued before stopping.
    #[tokio::test]
    async fn dropping_the_recorder_commits_what_was_queued() {
        let log = gated(0);
        log.gate.add_permits(100);
        let recorder = AuditRecorder::start(log.clone());
        for n in 1..=5 {
            recorder.queued(view(n)).await.expect("queued");
        }
        drop(recorder);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(log.list(1, 10).await.expect("list").len(), 5);
    }
}
