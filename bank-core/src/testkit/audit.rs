//! The [`AuditLog`] conformance suite: gap-free `seq` in append order (also under concurrent
//! appends), records read back exactly, and paging by `from_seq` and `limit`.
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl bank_core::testkit::audit::AuditHarness for Harness {
//!     async fn log(&self) -> Arc<dyn AuditLog> { /* fresh, empty log */ }
//! }
//! bank_core::audit_conformance_tests!(Harness);
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::audit::{AUDIT_PAGE_MAX, AuditLog, AuditOutcome, NewAuditRecord};

/// How to build a fresh, empty log for one test case.
#[async_trait]
pub trait AuditHarness: Send + Sync {
    /// A new empty log.
    async fn log(&self) -> Arc<dyn AuditLog>;
}

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! audit_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(audit, $harness;
            appends_get_gap_free_seq_and_read_back_exactly,
            list_pages_from_a_seq,
            concurrent_appends_each_get_their_own_seq,
        );
    };
}

/// The harness for [`crate::memory::audit::MemoryAuditLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryAuditHarness;

#[async_trait]
impl AuditHarness for MemoryAuditHarness {
    async fn log(&self) -> Arc<dyn AuditLog> {
        Arc::new(crate::memory::audit::MemoryAuditLog::new())
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(seconds)
}

/// A record numbered `n`.
pub fn record(n: i64) -> NewAuditRecord {
    let outcome = if n % 2 == 0 { AuditOutcome::Done } else { AuditOutcome::Refused };
    NewAuditRecord::new(at(n), format!("operator-{n}"), "deposit.requested", format!("account:{n}"), outcome)
        .with_request(Some(format!("req-{n}")), (n % 3 != 0).then(|| "192.0.2.7".to_owned()))
}

/// Seqs are 1, 2, 3 in append order; every field reads back as appended.
pub async fn appends_get_gap_free_seq_and_read_back_exactly(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    assert!(log.list(1, 10).await.expect("list").is_empty());
    for n in 1..=3 {
        let appended = log.append(record(n)).await.expect("append");
        assert_eq!(appended.seq, u64::try_from(n).expect("positive"));
        assert_eq!(appended.record, record(n));
    }
    let all = log.list(1, 10).await.expect("list");
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    for (n, read) in (1..=3).zip(&all) {
        assert_eq!(read.record, record(n), "read back exactly");
    }
    let long = NewAuditRecord::new(at(9), "s".repeat(1000), "a", "t".repeat(1000), AuditOutcome::Done);
    let appended = log.append(long).await.expect("append a long record");
    assert_eq!(appended.record.subject.chars().count(), crate::audit::AUDIT_FIELD_CHARS_MAX);
    assert_eq!(log.list(4, 1).await.expect("list")[0], appended);
}

/// `list(from_seq, limit)`: records from `from_seq` on, at most `limit` (and the page bound).
pub async fn list_pages_from_a_seq(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    for n in 1..=7 {
        log.append(record(n)).await.expect("append");
    }
    let page = log.list(3, 2).await.expect("list");
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    let rest = log.list(5, 100).await.expect("list");
    assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
    assert!(log.list(8, 10).await.expect("list").is_empty());
    assert_eq!(log.list(0, 10).await.expect("from 0 is from the start").len(), 7);
    assert_eq!(log.list(1, usize::MAX).await.expect("list").len().min(AUDIT_PAGE_MAX), 7);
}

/// 64 concurrent appends: 64 distinct seqs, 1 to 64.
pub async fn concurrent_appends_each_get_their_own_seq(harness: &dyn AuditHarness) {
    let log = harness.log().await;
    let tasks: Vec<_> = (1..=64)
        .map(|n| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(record(n)).await.expect("append").seq })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for task in tasks {
        seqs.insert(task.await.expect("task"));
    }
    assert_eq!(seqs, (1..=64).collect::<BTreeSet<u64>>());
    assert_eq!(log.list(1, 100).await.expect("list").len(), 64);
}
