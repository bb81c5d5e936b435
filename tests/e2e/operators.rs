//! Separation of duties and four eyes against the real server: operators own no account, credit
//! none of their own, and a deposit above the threshold waits for a second operator, then posts
//! exactly once. Every operator action, done or refused, is in the audit log, which holds no
//! secret.

use crate::common::{Options, PASSWORD, TestApp};
use bank_api::{IDEMPOTENCY_KEY_HEADER, PROBLEM_JSON, paths, problem_types};
use bank_core::account::NewAccount;
use bank_core::approvals::DepositPolicy;
use bank_core::audit::{AuditOutcome, AuditRecord};
use bank_core::money::Currency;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = app.http.request(method, app.url(path)).header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(key) = key {
        request = request.header(IDEMPOTENCY_KEY_HEADER, key);
    }
    if let Some(body) = body {
        request = request.header(CONTENT_TYPE, "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if status >= 400 {
        assert_eq!(headers.get(CONTENT_TYPE).map(|v| v.to_str().expect("ascii")), Some(PROBLEM_JSON));
    }
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
}

async fn deposit(
    app: &TestApp,
    token: &str,
    key: &str,
    account: Uuid,
    amount: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let body = json!({"account_id": account, "amount": amount, "reference": "cash"});
    send(app, reqwest::Method::POST, paths::ADMIN_DEPOSITS, token, Some(key), Some(body)).await
}

async fn posted(app: &TestApp, account: Uuid) -> Decimal {
    let id = bank_core::ids::AccountId::from_uuid(account).expect("id");
    app.backend.ledger.balance(id).await.expect("balance").posted
}

async fn audit_log(app: &TestApp) -> Vec<AuditRecord> {
    app.backend.audit.list(1, 1000).await.expect("audit")
}

fn has(records: &[AuditRecord], action: &str, outcome: AuditOutcome) -> bool {
    records.iter().any(|r| r.record.action == action && r.record.outcome == outcome)
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_own_no_account_and_credit_none_of_their_own() {
    let app = TestApp::spawn().await;
    let (_, operator) = app.operator_named("ops").await;
    let (status, problem, _) = send(
        &app,
        reqwest::Method::POST,
        paths::ACCOUNTS,
        &operator,
        None,
        Some(json!({"currency": "USD", "name": "mine"})),
    )
    .await;
    assert_eq!((status, problem["type"].as_str()), (403, Some(problem_types::SEPARATION_OF_DUTIES)), "{problem}");

    // An account the operator owns anyway (made before the rule, or by other means).
    let claims = app.issuer.verifier().verify(&operator).await.expect("verify");
    let own = app
        .backend
        .ledger
        .open_account(NewAccount::customer(claims.user, "own", Currency::Usd))
        .await
        .expect("open directly");
    let (status, problem, _) = deposit(&app, &operator, "self-credit", *own.id.as_uuid(), "10.00").await;
    assert_eq!((status, problem["type"].as_str()), (403, Some(problem_types::SEPARATION_OF_DUTIES)), "{problem}");
    assert_eq!(posted(&app, *own.id.as_uuid()).await, Decimal::ZERO, "nothing credited");

    let records = audit_log(&app).await;
    assert!(has(&records, "account.open.refused.operator", AuditOutcome::Refused), "{records:?}");
    assert!(has(&records, "deposit.refused.own_account", AuditOutcome::Refused), "{records:?}");
    let subject = claims.user.to_string();
    assert!(
        records
            .iter()
            .all(|r| r.record.subject == subject && r.record.request_id.is_some() && r.record.client_ip.is_some())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_deposit_waits_for_a_second_operator_then_posts_once() {
    let mut options = Options::default();
    options.http.deposit_policy = DepositPolicy { approval_above: Decimal::from(1000) };
    let app = TestApp::spawn_with(options).await;
    let (_, first) = app.operator_named("first-ops").await;
    let (_, second) = app.operator_named("second-ops").await;
    let (_, third) = app.operator_named("third-ops").await;
    let customer = app.client().with_access_token(&app.access_token("carol").await);
    let account = customer.open_account("USD", "main").await.expect("open").id;

    // At the threshold: posted at once.
    let (status, body, _) = deposit(&app, &first, "small", account, "1000.00").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(posted(&app, account).await, Decimal::from(1000));

    // Above it: a pending request, nothing posted.
    let (status, pending, headers) = deposit(&app, &first, "large", account, "5000.00").await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "pending_approval");
    assert_eq!(pending["amount"], "5000.00");
    let id = pending["id"].as_str().expect("id").to_owned();
    assert_eq!(headers[LOCATION], format!("{}/{id}", paths::ADMIN_DEPOSITS));
    assert_eq!(posted(&app, account).await, Decimal::from(1000), "a pending deposit moves nothing");

    // Replayed under the same key: the same request; another body under the key: 422.
    let (status, replay, headers) = deposit(&app, &first, "large", account, "5000.00").await;
    assert_eq!((status, replay["id"].as_str()), (202, Some(id.as_str())));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, _, _) = deposit(&app, &first, "large", account, "5000.01").await;
    assert_eq!(status, 422);
    let (status, _, _) = deposit(&app, &first, "small", account, "5000.00").await;
    assert_eq!(status, 422, "a key that posted a small deposit cannot become a request");

    let (status, list, _) =
        send(&app, reqwest::Method::GET, &format!("{}?status=pending", paths::ADMIN_DEPOSITS), &second, None, None)
            .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());

    // The requester may not approve.
    let approve = paths::admin_deposit_approve(id.parse().expect("uuid"));
    let (status, problem, _) = send(&app, reqwest::Method::POST, &approve, &first, None, None).await;
    assert_eq!((status, problem["type"].as_str()), (403, Some(problem_types::SEPARATION_OF_DUTIES)), "{problem}");
    assert_eq!(posted(&app, account).await, Decimal::from(1000));

    // Two other operators approve at once: one posts, the other replays; the money moves once.
    let (a, b) = tokio::join!(
        send(&app, reqwest::Method::POST, &approve, &second, None, None),
        send(&app, reqwest::Method::POST, &approve, &third, None, None),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{a:?} {b:?}");
    assert_eq!(a.1["amount"], "5000.00");
    assert_eq!(posted(&app, account).await, Decimal::from(6000));
    let (status, _, _) = send(&app, reqwest::Method::POST, &approve, &second, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(posted(&app, account).await, Decimal::from(6000), "approving again posts nothing");

    let (status, read, _) =
        send(&app, reqwest::Method::GET, &paths::admin_deposit(id.parse().expect("uuid")), &first, None, None).await;
    assert_eq!((status, read["status"].as_str()), (200, Some("approved")));
    let (_, list, _) = send(&app, reqwest::Method::GET, paths::ADMIN_DEPOSITS, &second, None, None).await;
    assert_eq!(list["items"], json!([]));

    // Customers reach none of it.
    let customer_token = app.access_token("dave").await;
    let (status, _, _) = send(&app, reqwest::Method::POST, &approve, &customer_token, None, None).await;
    assert_eq!(status, 403);
    let (status, _, _) = send(&app, reqwest::Method::GET, paths::ADMIN_AUDIT, &customer_token, None, None).await;
    assert_eq!(status, 403);

    // The audit log, through the API: every action, no secret.
    let (status, page, _) =
        send(&app, reqwest::Method::GET, &format!("{}?limit=100", paths::ADMIN_AUDIT), &second, None, None).await;
    assert_eq!(status, 200, "{page}");
    let actions: Vec<(&str, &str)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| (r["action"].as_str().expect("action"), r["outcome"].as_str().expect("outcome")))
        .collect();
    for expected in [
        ("deposit.posted", "done"),
        ("deposit.requested", "done"),
        ("deposit.approve.refused.own_request", "refused"),
        ("deposit.approved", "done"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} missing from {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| a.0 == "deposit.approved").count(), 1, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| a.0 == "deposit.requested").count(), 1, "a replay is not a new request");
    let text = page.to_string();
    for secret in [PASSWORD, first.as_str(), second.as_str()] {
        assert!(!text.contains(secret), "the audit log holds a secret");
    }
    let seqs: Vec<u64> =
        page["items"].as_array().expect("items").iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=u64::try_from(seqs.len()).expect("fits")).collect::<Vec<_>>(), "gap-free");
}

/// The typed client: a large deposit is `PendingApproval` with its request, another operator
/// approves it through `approve_deposit`, and the audit log reads through `audit`.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_drives_four_eyes() {
    let mut options = Options::default();
    options.http.deposit_policy = DepositPolicy { approval_above: Decimal::from(100) };
    let app = TestApp::spawn_with(options).await;
    let (first, _) = app.operator_named("client-first").await;
    let (second, _) = app.operator_named("client-second").await;
    let customer = app.client().with_access_token(&app.access_token("erin").await);
    let account = customer.open_account("USD", "main").await.expect("open").id;
    let request =
        bank_api::DepositRequest { account_id: account, amount: Decimal::from(250), reference: "cash".into() };
    let error = first.admin_deposit("big", &request).await.expect_err("pending");
    let bank_client::ClientError::PendingApproval(pending) = error else { panic!("expected pending, got {error:?}") };
    assert_eq!(pending.status, bank_api::PendingDepositStatus::PendingApproval);
    assert_eq!(first.pending_deposits(10).await.expect("list").items.len(), 1);
    assert_eq!(first.deposit_request(pending.id).await.expect("read").id, pending.id);
    let refused = first.approve_deposit(pending.id).await.expect_err("own request");
    assert_eq!(refused.problem_type(), Some(problem_types::SEPARATION_OF_DUTIES));
    let posted = second.approve_deposit(pending.id).await.expect("approve");
    assert!(!posted.replayed);
    assert_eq!(posted.value.amount, Decimal::new(25000, 2));
    assert!(second.approve_deposit(pending.id).await.expect("again").replayed);
    assert_eq!(customer.account(account).await.expect("account").posted, Decimal::new(25000, 2));
    let audit = second.audit(1, 100).await.expect("audit");
    assert!(audit.items.iter().any(|entry| entry.action == "deposit.approved"));
}
