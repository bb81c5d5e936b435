//! Operators' deposits whose store calls fail midway: each action keeps exactly one audit record
//! however its calls are retried, and an approval nobody retries is completed by the sweep (what
//! the deposit simulation checks at random, pinned here).

use std::sync::Arc;

use bank_core::account::{Account, AccountStatus, NewAccount};
use bank_core::approvals::{DepositPolicy, DepositRequestStatus, DepositRequestStore};
use bank_core::audit::{Actor, AuditLog, AuditRecord};
use bank_core::clock::{Clock, ManualClock};
use bank_core::deposits::{DepositOutcome, DepositsService, DepositsSweep, PENDING_RECORD_GRACE_SECONDS};
use bank_core::ids::CustomerId;
use bank_core::memory::MemoryLedger;
use bank_core::memory::approvals::MemoryDepositRequests;
use bank_core::memory::audit::MemoryAuditLog;
use bank_core::money::{Currency, Money};
use bank_core::payments::SystemAccounts;
use bank_core::ports::LedgerStore;
use bank_core::testkit::lossy::{Cut, CutOne, Lossy};

struct Desk {
    service: DepositsService,
    ledger: Arc<dyn LedgerStore>,
    audit: Arc<MemoryAuditLog>,
    requests: Arc<MemoryDepositRequests>,
    clock: Arc<ManualClock>,
    customer: Account,
}

/// Deposits above 100 wait for a second operator; the audit log's calls go through `audit_cut`,
/// the deposit requests' through `requests_cut`.
async fn desk(audit_cut: Arc<CutOne>, requests_cut: Arc<CutOne>) -> Desk {
    let manual = Arc::new(ManualClock::at_epoch());
    let clock: Arc<dyn Clock> = manual.clone();
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(clock.clone()));
    let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd]).await.expect("system");
    let audit = Arc::new(MemoryAuditLog::new());
    let requests = Arc::new(MemoryDepositRequests::new());
    let service = DepositsService::new(
        ledger.clone(),
        Arc::new(Lossy::new(requests.clone() as Arc<dyn DepositRequestStore>, requests_cut)),
        Arc::new(Lossy::new(audit.clone() as Arc<dyn AuditLog>, audit_cut)),
        system,
        DepositPolicy { approval_above: rust_decimal::Decimal::from(100) },
        clock,
    );
    let customer =
        ledger.open_account(NewAccount::customer(CustomerId::new(), "c", Currency::Usd)).await.expect("open");
    Desk { service, ledger, audit, requests, clock: manual, customer }
}

fn actor(user: CustomerId) -> Actor {
    Actor { user, request_id: None, client_ip: None }
}

fn usd(text: &str) -> Money {
    Money::parse(text, "USD").expect("money")
}

async fn records(audit: &MemoryAuditLog, action: &str) -> Vec<AuditRecord> {
    audit.list(1, 1000).await.expect("audit").into_iter().filter(|r| r.record.action == action).collect()
}

#[tokio::test]
async fn a_deposit_whose_record_was_lost_is_recorded_by_its_retry() {
    let d = desk(Arc::new(CutOne::new(0, Cut::Before)), Arc::new(CutOne::default())).await;
    let ann = actor(CustomerId::new());
    let first = d.service.deposit(&ann, "k", &d.customer, usd("10.00"), "r".into()).await;
    assert!(first.is_err_and(|e| e.is_retryable()), "the record's write failed: the caller retries");
    assert_eq!(d.ledger.balance(d.customer.id).await.expect("balance").posted, usd("10.00").value());
    let retried = d.service.deposit(&ann, "k", &d.customer, usd("10.00"), "r".into()).await.expect("retry");
    assert!(matches!(retried, DepositOutcome::Posted { replayed: true, .. }));
    assert_eq!(records(&d.audit, "deposit.posted").await.len(), 1, "the retry recorded the deposit");
    d.service.deposit(&ann, "k", &d.customer, usd("10.00"), "r".into()).await.expect("replay");
    assert_eq!(records(&d.audit, "deposit.posted").await.len(), 1, "once");
}

#[tokio::test]
async fn a_request_whose_store_call_failed_is_recorded_once_by_its_retry() {
    // The deposit reads the requests (call 0), then stores its request (call 1): cut before.
    let d = desk(Arc::new(CutOne::default()), Arc::new(CutOne::new(1, Cut::Before))).await;
    let ann = actor(CustomerId::new());
    let first = d.service.deposit(&ann, "big", &d.customer, usd("500.00"), "r".into()).await;
    assert!(first.is_err_and(|e| e.is_retryable()));
    assert!(records(&d.audit, "deposit.requested").await.is_empty(), "nothing stored, nothing recorded");
    let retried = d.service.deposit(&ann, "big", &d.customer, usd("500.00"), "r".into()).await.expect("retry");
    assert!(matches!(retried, DepositOutcome::Pending { replayed: false, .. }));
    assert_eq!(records(&d.audit, "deposit.requested").await.len(), 1);
}

#[tokio::test]
async fn an_approval_whose_record_was_lost_is_recorded_for_its_approver_by_another_operators_retry() {
    let audit_cut = Arc::new(CutOne::default());
    let d = desk(audit_cut.clone(), Arc::new(CutOne::default())).await;
    let (ann, bea, cid) = (actor(CustomerId::new()), actor(CustomerId::new()), actor(CustomerId::new()));
    let DepositOutcome::Pending { request, .. } =
        d.service.deposit(&ann, "big", &d.customer, usd("500.00"), "r".into()).await.expect("pending")
    else {
        panic!("above the threshold");
    };
    *audit_cut.0.lock() = Some((0, Cut::Before));
    let approval = d.service.approve(&bea, request.id).await;
    assert!(approval.is_err_and(|e| e.is_retryable()), "approved and posted, its record's write failed");
    assert_eq!(d.ledger.balance(d.customer.id).await.expect("balance").posted, usd("500.00").value());
    let later = d.service.approve(&cid, request.id).await.expect("another operator's approval");
    assert!(!later.first, "bea's approval counted");
    let approved = records(&d.audit, "deposit.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].record.subject, bea.user.to_string(), "recorded as bea's");
}

#[tokio::test]
async fn an_approval_interrupted_after_approving_and_never_retried_is_completed_by_the_sweep() {
    let requests_cut = Arc::new(CutOne::default());
    let d = desk(Arc::new(CutOne::default()), requests_cut.clone()).await;
    let (ann, bea) = (actor(CustomerId::new()), actor(CustomerId::new()));
    let DepositOutcome::Pending { request, .. } =
        d.service.deposit(&ann, "big", &d.customer, usd("500.00"), "r".into()).await.expect("pending")
    else {
        panic!("above the threshold");
    };
    // The approval reads the request (call 0), then marks it approved (call 1): done, answer lost.
    *requests_cut.0.lock() = Some((1, Cut::After));
    assert!(d.service.approve(&bea, request.id).await.is_err_and(|e| e.is_retryable()));
    assert!(d.ledger.balance(d.customer.id).await.expect("balance").posted.is_zero(), "not posted");
    let sweep = DepositsSweep::new(d.service.clone());
    assert_eq!(sweep.run_once().await.expect("sweep"), 1, "the sweep posted it");
    assert_eq!(d.ledger.balance(d.customer.id).await.expect("balance").posted, usd("500.00").value());
    let approved = records(&d.audit, "deposit.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].record.subject, bea.user.to_string(), "recorded as bea's");
    assert_eq!(sweep.run_once().await.expect("sweep again"), 0);
    assert_eq!(records(&d.audit, "deposit.approved").await.len(), 1, "once");
    assert_eq!(d.ledger.balance(d.customer.id).await.expect("balance").posted, usd("500.00").value(), "once");
}

#[tokio::test]
async fn a_deposit_interrupted_after_storing_its_request_and_never_retried_is_completed_by_the_sweep() {
    // A deposit below the threshold stores its request, approved by the policy (call 0): done,
    // answer lost; its operator never retries.
    let d = desk(Arc::new(CutOne::default()), Arc::new(CutOne::new(0, Cut::After))).await;
    let ann = actor(CustomerId::new());
    let first = d.service.deposit(&ann, "k", &d.customer, usd("10.00"), "r".into()).await;
    assert!(first.is_err_and(|e| e.is_retryable()));
    assert!(d.ledger.balance(d.customer.id).await.expect("balance").posted.is_zero(), "not posted");
    let sweep = DepositsSweep::new(d.service.clone());
    assert_eq!(sweep.run_once().await.expect("sweep"), 1, "the sweep posted it");
    assert_eq!(d.ledger.balance(d.customer.id).await.expect("balance").posted, usd("10.00").value());
    let posted = records(&d.audit, "deposit.posted").await;
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].record.subject, ann.user.to_string(), "recorded as ann's");
    // Her retry, late, is a replay.
    let retried = d.service.deposit(&ann, "k", &d.customer, usd("10.00"), "r".into()).await.expect("retry");
    assert!(matches!(retried, DepositOutcome::Posted { replayed: true, .. }));
    assert_eq!(records(&d.audit, "deposit.posted").await.len(), 1, "once");
}

#[tokio::test]
async fn a_request_for_a_closed_account_is_refused_before_it_is_marked_approved() {
    let d = desk(Arc::new(CutOne::default()), Arc::new(CutOne::default())).await;
    let (ann, bea) = (actor(CustomerId::new()), actor(CustomerId::new()));
    let DepositOutcome::Pending { request, .. } =
        d.service.deposit(&ann, "big", &d.customer, usd("500.00"), "r".into()).await.expect("pending")
    else {
        panic!("above the threshold");
    };
    d.ledger.set_status(d.customer.id, AccountStatus::Closed).await.expect("close the empty account");
    assert!(matches!(d.service.approve(&bea, request.id).await, Err(bank_core::Error::AccountNotOpen { .. })));
    let stored = d.requests.get(request.id).await.expect("get").expect("stored");
    assert_eq!(stored.status, DepositRequestStatus::Pending, "still pending, not approved and never posted");
    assert!(records(&d.audit, "deposit.approved").await.is_empty());
}

#[tokio::test]
async fn the_sweep_finishes_a_deposit_once_and_skips_it_after() {
    let audit_cut = Arc::new(CutOne::default());
    let d = desk(audit_cut.clone(), Arc::new(CutOne::default())).await;
    let ann = actor(CustomerId::new());
    d.service.deposit(&ann, "k", &d.customer, usd("10.00"), "r".into()).await.expect("deposit");
    let sweep = DepositsSweep::new(d.service.clone());
    assert_eq!(sweep.run_once().await.expect("sweep"), 0, "posted by its own call");
    // A second run within the overlap: were it to check the deposit again, its audit call would
    // be cut and the run fail.
    *audit_cut.0.lock() = Some((0, Cut::Before));
    assert_eq!(sweep.run_once().await.expect("the deposit is skipped"), 0);
    assert!(audit_cut.0.lock().is_some(), "no audit call");
}

#[tokio::test]
async fn a_pending_request_whose_call_died_before_its_record_is_recorded_once_by_the_sweep() {
    // The request is stored pending, then its record's write fails (audit call 0); nobody retries.
    let audit_cut = Arc::new(CutOne::new(0, Cut::Before));
    let d = desk(audit_cut.clone(), Arc::new(CutOne::default())).await;
    let (ann, bea) = (actor(CustomerId::new()), actor(CustomerId::new()));
    let first = d.service.deposit(&ann, "big", &d.customer, usd("500.00"), "r".into()).await;
    assert!(first.is_err_and(|e| e.is_retryable()));
    let stored = d.requests.pending(10).await.expect("pending");
    let [request] = stored.as_slice() else { panic!("one request stored") };
    assert!(records(&d.audit, "deposit.requested").await.is_empty());

    let sweep = DepositsSweep::new(d.service.clone());
    sweep.run_once().await.expect("sweep");
    assert!(records(&d.audit, "deposit.requested").await.is_empty(), "its own call may still write it");
    d.clock.advance(chrono::TimeDelta::seconds(PENDING_RECORD_GRACE_SECONDS));
    sweep.run_once().await.expect("sweep");
    let requested = records(&d.audit, "deposit.requested").await;
    assert_eq!(requested.len(), 1, "written by the sweep");
    assert_eq!(requested[0].record.subject, ann.user.to_string(), "as the requester's");
    assert_eq!(requested[0].record.target, format!("deposit-request:{}", request.id));
    assert_eq!(requested[0].record.at, request.requested_at);

    // Checked once: were the next run to look again, its audit call would be cut and it would fail.
    *audit_cut.0.lock() = Some((0, Cut::Before));
    sweep.run_once().await.expect("the request is skipped");
    assert!(audit_cut.0.lock().is_some(), "no audit call");
    *audit_cut.0.lock() = None;
    d.service.approve(&bea, request.id).await.expect("approve");
    assert_eq!(records(&d.audit, "deposit.requested").await.len(), 1, "once, after the approval too");
    assert_eq!(records(&d.audit, "deposit.approved").await.len(), 1);
}
