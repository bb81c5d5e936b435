//! `PgDepositRequests` against the `DepositRequestStore` conformance suite, plus what several API
//! processes sharing one database add: two operators approving one request at once, through two
//! processes' deposit services (each with its own ledger, request store and audit log on its own
//! pool), post one deposit; and the database refuses any change of a request but its first
//! approval.

use std::sync::Arc;

use async_trait::async_trait;
use bank_aws::postgres::PgDb;
use bank_aws::postgres::approvals::PgDepositRequests;
use bank_aws::postgres::audit::PgAuditLog;
use bank_aws::postgres::ledger::PgLedger;
use bank_aws::postgres::testing::test_db;
use bank_core::account::NewAccount;
use bank_core::approvals::{DepositPolicy, DepositRequestStatus, DepositRequestStore};
use bank_core::audit::{Actor, AuditLog};
use bank_core::clock::{Clock, ManualClock};
use bank_core::deposits::{DepositOutcome, DepositsService};
use bank_core::ids::CustomerId;
use bank_core::money::{Currency, Money};
use bank_core::payments::SystemAccounts;
use bank_core::ports::LedgerStore;
use bank_core::testkit::approvals::{DepositRequestsHarness, request};
use chrono::TimeDelta;

use crate::harness::reconnect;
use crate::raw::message;

/// Builds each case's store on the case's own fresh schema.
struct Harness(PgDb);

#[async_trait]
impl DepositRequestsHarness for Harness {
    async fn store(&self) -> Arc<dyn DepositRequestStore> {
        Arc::new(PgDepositRequests::new(&self.0))
    }
}

bank_core::deposit_requests_conformance_tests!(match test_db().await {
    Some(db) => Harness(db),
    None => return,
});

/// One API process: its stores on its own pool, and the deposit service over them.
struct Process {
    ledger: Arc<PgLedger>,
    audit: Arc<PgAuditLog>,
    requests: Arc<PgDepositRequests>,
    deposits: DepositsService,
}

impl Process {
    async fn on(db: &PgDb, clock: Arc<dyn Clock>) -> Process {
        let ledger = Arc::new(PgLedger::new(db, Arc::clone(&clock)));
        let audit = Arc::new(PgAuditLog::new(db));
        let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd]).await.expect("system accounts");
        let requests = Arc::new(PgDepositRequests::new(db));
        let deposits = DepositsService::new(
            Arc::clone(&ledger) as Arc<dyn LedgerStore>,
            Arc::clone(&requests) as Arc<dyn DepositRequestStore>,
            Arc::clone(&audit) as Arc<dyn AuditLog>,
            system,
            DepositPolicy::default(),
            clock,
        );
        Process { ledger, audit, requests, deposits }
    }
}

fn operator() -> Actor {
    Actor { user: CustomerId::new(), request_id: None, client_ip: None }
}

/// Two operators, in two processes, approve one large deposit at the same moment (ten rounds):
/// exactly one approval counts, the account is credited once, the request names the winner, and
/// the audit log holds one `deposit.approved`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_operators_approving_one_request_at_once_post_one_deposit() {
    let Some(db) = test_db().await else { return };
    let other = reconnect(&db).await;
    let clock = ManualClock::at_epoch();
    clock.advance(TimeDelta::days(20_000));
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let one = Process::on(&db, Arc::clone(&clock)).await;
    let two = Process::on(&other, Arc::clone(&clock)).await;
    let customer = one
        .ledger
        .open_account(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd))
        .await
        .expect("open account");
    let money = Money::parse("25000.00", "USD").expect("money");
    for round in 1..=10_u32 {
        let requester = operator();
        let outcome = one
            .deposits
            .deposit(&requester, &format!("cash-{round}"), &customer, money, "large cash deposit".into())
            .await
            .expect("request");
        let DepositOutcome::Pending { request, replayed: false } = outcome else {
            panic!("above the threshold a deposit waits: {outcome:?}")
        };
        let (first, second) = (operator(), operator());
        let (a, b) = tokio::join!(one.deposits.approve(&first, request.id), two.deposits.approve(&second, request.id));
        let (a, b) = (a.expect("approve in process one"), b.expect("approve in process two"));
        assert_eq!(u32::from(a.first) + u32::from(b.first), 1, "round {round}: exactly one approval counts");
        assert_eq!(a.entry, b.entry, "both answer the one posted entry");
        let winner = if a.first { first.user } else { second.user };
        let stored = two.requests.get(request.id).await.expect("get").expect("stored");
        assert!(matches!(stored.status, DepositRequestStatus::Approved { by, .. } if by == winner));
        let balance = one.ledger.balance(customer.id).await.expect("balance");
        let expected = Money::parse("25000.00", "USD").expect("money").value() * rust_decimal::Decimal::from(round);
        assert_eq!(balance.posted, expected, "round {round}: credited once per request");
    }
    let approvals = one.audit.list(1, 1000).await.expect("audit");
    assert_eq!(approvals.iter().filter(|r| r.record.action == "deposit.approved").count(), 10);
}

/// The database refuses a second approval, any other change and any delete of a request made by
/// hand; the store's first approval passes the same guard.
#[tokio::test]
async fn the_database_refuses_changing_a_request_but_its_first_approval() {
    let Some(db) = test_db().await else { return };
    let store = PgDepositRequests::new(&db);
    let pending = store.create(request("20000.00", 1)).await.expect("create");
    let id = *pending.id.as_uuid();
    for (sql, expected) in [
        ("UPDATE deposit_requests SET amount = 1 WHERE id = $1", "changes only by its first approval"),
        ("DELETE FROM deposit_requests WHERE id = $1", "never deleted"),
    ] {
        let err = sqlx::query(sql).bind(id).execute(db.writer()).await.expect_err(sql);
        assert!(message(&err).contains(expected), "{sql}: {err}");
    }
    let err = sqlx::query("TRUNCATE deposit_requests").execute(db.writer()).await.expect_err("truncate");
    assert!(message(&err).contains("never deleted"), "{err}");
    let approver = CustomerId::new();
    let at = chrono::DateTime::UNIX_EPOCH + TimeDelta::seconds(5);
    store.approve(pending.id, approver, at).await.expect("the first approval passes the guard");
    let err = sqlx::query("UPDATE deposit_requests SET approved_by = $2 WHERE id = $1")
        .bind(id)
        .bind(uuid::Uuid::now_v7())
        .execute(db.writer())
        .await
        .expect_err("second approval by hand");
    assert!(message(&err).contains("changes only by its first approval"), "{err}");
    let stored = store.get(pending.id).await.expect("get").expect("stored");
    assert_eq!(stored.status, DepositRequestStatus::Approved { by: approver, at });
    assert_eq!(stored.money, pending.money);
}
