//! The [`DepositRequestStore`] conformance suite: idempotent `create` (replay answers the stored
//! request, another request under the id is refused), `approve` once (the first approver stays),
//! the pending list and the approvals since an instant.
//!
//! ```ignore
//! bank_core::deposit_requests_conformance_tests!(Harness);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::approvals::{DepositRequest, DepositRequestStatus, DepositRequestStore};
use crate::error::Error;
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::testkit::fixtures::usd;

/// How to build a fresh, empty store for one test case.
#[async_trait]
pub trait DepositRequestsHarness: Send + Sync {
    /// A new empty store.
    async fn store(&self) -> Arc<dyn DepositRequestStore>;
}

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! deposit_requests_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(approvals, $harness;
            create_is_idempotent_and_refuses_another_request_under_the_id,
            approve_happens_once_and_keeps_the_first_approver,
            pending_lists_only_pending_requests_oldest_first,
            approved_since_lists_approvals_from_an_instant_in_approval_order,
            a_request_created_approved_stays_approved_and_is_not_pending,
        );
    };
}

/// The harness for [`crate::memory::approvals::MemoryDepositRequests`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryDepositRequestsHarness;

#[async_trait]
impl DepositRequestsHarness for MemoryDepositRequestsHarness {
    async fn store(&self) -> Arc<dyn DepositRequestStore> {
        Arc::new(crate::memory::approvals::MemoryDepositRequests::new())
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(seconds)
}

/// A pending request of `amount` USD made at `seconds`.
pub fn request(amount: &str, seconds: i64) -> DepositRequest {
    DepositRequest {
        id: TransferId::new(),
        account_id: AccountId::new(),
        money: usd(amount),
        reference: "large cash deposit".into(),
        requested_by: CustomerId::new(),
        requested_at: at(seconds),
        status: DepositRequestStatus::Pending,
    }
}

/// The same request answers the stored one; another one under the id is `KeyReused`.
pub async fn create_is_idempotent_and_refuses_another_request_under_the_id(harness: &dyn DepositRequestsHarness) {
    let store = harness.store().await;
    let first = request("20000.00", 1);
    assert_eq!(store.create(first.clone()).await.expect("create"), first);
    assert_eq!(store.create(first.clone()).await.expect("replay"), first);
    assert_eq!(store.get(first.id).await.expect("get"), Some(first.clone()));
    let other = DepositRequest { money: usd("20000.01"), ..first.clone() };
    assert!(matches!(store.create(other).await, Err(Error::KeyReused(_))));
    let other_reference = DepositRequest { reference: "other".into(), ..first.clone() };
    assert!(matches!(store.create(other_reference).await, Err(Error::KeyReused(_))));
    assert_eq!(store.get(TransferId::new()).await.expect("get"), None);
    // A request replayed after its approval answers it approved.
    let approver = CustomerId::new();
    store.approve(first.id, approver, at(5)).await.expect("approve");
    let replayed = store.create(first.clone()).await.expect("replay after approval");
    assert_eq!(replayed.status, DepositRequestStatus::Approved { by: approver, at: at(5) });
}

/// Approving twice keeps the first approval; an unknown id is not found.
pub async fn approve_happens_once_and_keeps_the_first_approver(harness: &dyn DepositRequestsHarness) {
    let store = harness.store().await;
    let pending = store.create(request("50000.00", 1)).await.expect("create");
    let (first, second) = (CustomerId::new(), CustomerId::new());
    let approved = store.approve(pending.id, first, at(2)).await.expect("approve");
    assert_eq!(approved.status, DepositRequestStatus::Approved { by: first, at: at(2) });
    let again = store.approve(pending.id, second, at(3)).await.expect("approve again");
    assert_eq!(again.status, DepositRequestStatus::Approved { by: first, at: at(2) });
    assert_eq!(store.get(pending.id).await.expect("get").expect("stored").status, approved.status);
    assert!(matches!(store.approve(TransferId::new(), first, at(4)).await, Err(Error::TransferNotFound(_))));
}

/// `pending(limit)`: only pending requests, oldest first.
pub async fn pending_lists_only_pending_requests_oldest_first(harness: &dyn DepositRequestsHarness) {
    let store = harness.store().await;
    let late = store.create(request("10000.01", 30)).await.expect("create");
    let early = store.create(request("10000.02", 10)).await.expect("create");
    let approved = store.create(request("10000.03", 20)).await.expect("create");
    store.approve(approved.id, CustomerId::new(), at(40)).await.expect("approve");
    let pending = store.pending(10).await.expect("pending");
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), vec![early.id, late.id]);
    assert_eq!(store.pending(1).await.expect("pending").len(), 1);
}

/// `approved_since(since, limit)`: only requests approved at or after `since`, in approval order.
pub async fn approved_since_lists_approvals_from_an_instant_in_approval_order(harness: &dyn DepositRequestsHarness) {
    let store = harness.store().await;
    let early = store.create(request("10000.01", 1)).await.expect("create");
    let late = store.create(request("10000.02", 2)).await.expect("create");
    let before = store.create(request("10000.03", 3)).await.expect("create");
    store.create(request("10000.04", 4)).await.expect("create a pending one");
    // Approved in another order than requested.
    let approver = CustomerId::new();
    store.approve(late.id, CustomerId::new(), at(20)).await.expect("approve");
    store.approve(early.id, approver, at(30)).await.expect("approve");
    store.approve(before.id, CustomerId::new(), at(10)).await.expect("approve");
    let ids = |page: &[DepositRequest]| page.iter().map(|r| r.id).collect::<Vec<_>>();
    let since_20 = store.approved_since(at(20), 10).await.expect("approved");
    assert_eq!(ids(&since_20), vec![late.id, early.id]);
    assert_eq!(since_20[1].status, DepositRequestStatus::Approved { by: approver, at: at(30) });
    assert_eq!(ids(&store.approved_since(at(0), 10).await.expect("approved")), vec![before.id, late.id, early.id]);
    assert_eq!(ids(&store.approved_since(at(0), 1).await.expect("approved")), vec![before.id]);
    assert!(store.approved_since(at(31), 10).await.expect("approved").is_empty());
}

/// A request created approved (a deposit the policy lets through) is stored so: not pending,
/// listed among the approvals, approving it again keeps its approver; a replay answers it.
pub async fn a_request_created_approved_stays_approved_and_is_not_pending(harness: &dyn DepositRequestsHarness) {
    let store = harness.store().await;
    let pending = request("10.00", 1);
    let approved = DepositRequest {
        status: DepositRequestStatus::Approved { by: pending.requested_by, at: at(1) },
        ..pending.clone()
    };
    assert_eq!(store.create(approved.clone()).await.expect("create"), approved);
    assert_eq!(store.get(approved.id).await.expect("get"), Some(approved.clone()));
    assert!(store.pending(10).await.expect("pending").is_empty());
    assert_eq!(store.approved_since(at(0), 10).await.expect("approved"), vec![approved.clone()]);
    assert_eq!(store.create(approved.clone()).await.expect("replay"), approved);
    assert_eq!(store.create(pending).await.expect("the same request, pending"), approved, "a replay");
    let again = store.approve(approved.id, CustomerId::new(), at(2)).await.expect("approve");
    assert_eq!(again, approved, "the first approver stays");
}
