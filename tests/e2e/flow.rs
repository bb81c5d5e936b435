//! End to end: the real server on `127.0.0.1:0` (router, built-in issuer, `bank-local` on a temp
//! dir, background loops settling transfers), driven through `bank_client::BankClient`, and through
//! raw `reqwest` requests where a well-behaved client cannot go (crafted tokens, bad bodies).
//!
//! Every test starts its own server (see `common`), so tests never share state or rate limits.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{Options, TestApp, eventually};
use bank_api::{
    Account, DepositRequest, Direction, HistoryEntry, IDEMPOTENCY_KEY_HEADER, PAGE_LIMIT_MAX, PROBLEM_JSON, Transfer,
    TransferRequest, TransferStatus, paths, problem_types,
};
use bank_client::{BankClient, ClientError, RetryPolicy};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::TryStreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

fn now_secs() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    i64::try_from(secs).expect("seconds fit i64")
}

/// Credits `account` with `amount` USD as the operator.
pub(crate) async fn deposit(operator: &BankClient, account: Uuid, amount: &str) {
    let key = Uuid::now_v7().to_string();
    let request = DepositRequest { account_id: account, amount: dec(amount), reference: "opening deposit".into() };
    let deposited = operator.admin_deposit(&key, &request).await.expect("deposit");
    assert!(!deposited.replayed);
    assert_eq!(deposited.value.amount, dec(amount));
}

/// Polls the transfer until it is final (bounded by `common::POLL_TIMEOUT`).
pub(crate) async fn final_transfer(client: &BankClient, id: Uuid) -> Transfer {
    eventually("the transfer to become final", || async {
        let transfer = client.get_transfer(id).await.expect("get transfer");
        transfer.status.is_final().then_some(transfer)
    })
    .await
}

async fn history(client: &BankClient, account: Uuid) -> Vec<HistoryEntry> {
    // A page size of 1 makes the stream follow `next_cursor` for every entry.
    client.transactions(account, 1).try_collect().await.expect("history")
}

fn assert_balances(account: &Account, posted: &str, pending: &str, available: &str) {
    assert_eq!(
        (account.posted, account.pending, account.available),
        (dec(posted), dec(pending), dec(available)),
        "balances of {} (posted, pending, available)",
        account.name
    );
}

/// The parts of a problem that must not tell an existing resource from a missing one.
fn problem_shape(error: &ClientError) -> (Option<u16>, String, String, Option<String>) {
    let problem = error.problem().unwrap_or_else(|| panic!("not a problem: {error}"));
    (error.status(), problem.problem_type.clone(), problem.title.clone(), problem.detail.clone())
}

/// Asserts `response` is a problem+json with `status` and `problem_type`, and answers its body.
async fn expect_problem(response: reqwest::Response, status: u16, problem_type: &str) -> Value {
    let got = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(got.as_u16(), status, "{body}");
    assert!(content_type.starts_with(PROBLEM_JSON), "content type {content_type:?} of {body}");
    assert_eq!(body["type"], json!(problem_type), "{body}");
    assert_eq!(body["status"], json!(status), "{body}");
    body
}

// --- 1. the happy path ---

#[tokio::test(flavor = "multi_thread")]
async fn register_login_deposit_transfer_settles_with_balances_and_history() {
    happy_path(&TestApp::spawn().await).await;
}

/// Register, log in, open accounts, deposit, transfer, settle, and read balances, history and
/// transfer lists back (also run on PostgreSQL, see `postgres`).
pub(crate) async fn happy_path(app: &TestApp) {
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    let operator = app.operator().await;

    let alice_main = alice.open_account("USD", "alice main").await.expect("open");
    let alice_savings = alice.open_account("USD", "alice savings").await.expect("open");
    let bob_main = bob.open_account("USD", "bob main").await.expect("open");
    assert_balances(&alice_main, "0", "0", "0");
    let listed: HashSet<Uuid> = alice.accounts().await.expect("accounts").iter().map(|a| a.id).collect();
    assert_eq!(listed, HashSet::from([alice_main.id, alice_savings.id]));
    let listed: Vec<Uuid> = bob.accounts().await.expect("accounts").iter().map(|a| a.id).collect();
    assert_eq!(listed, vec![bob_main.id]);

    deposit(&operator, alice_main.id, "100.00").await;
    let request = TransferRequest::internal(alice_main.id, bob_main.id, dec("30.00"), "USD", "dinner");
    let submitted = alice.transfer(&request).await.expect("transfer");
    assert!(!submitted.replayed);
    assert_eq!(
        (submitted.value.from_account_id, submitted.value.to_account_id, submitted.value.amount),
        (alice_main.id, Some(bob_main.id), dec("30.00"))
    );

    let settled = final_transfer(&alice, submitted.value.id).await;
    assert_eq!(settled.status, TransferStatus::Settled, "{settled:?}");
    assert_eq!(settled.failure_reason, None);
    // The payee sees the same transfer.
    assert_eq!(bob.get_transfer(settled.id).await.expect("bob reads it").status, TransferStatus::Settled);

    assert_balances(&alice.account(alice_main.id).await.expect("account"), "70.00", "0", "70.00");
    assert_balances(&alice.account(alice_savings.id).await.expect("account"), "0", "0", "0");
    assert_balances(&bob.account(bob_main.id).await.expect("account"), "30.00", "0", "30.00");

    // History, newest first (as the server documents), followed page by page.
    let alice_history = history(&alice, alice_main.id).await;
    let lines: Vec<_> = alice_history.iter().map(|e| (e.sequence, e.direction, e.amount, e.balance_after)).collect();
    assert_eq!(
        lines,
        vec![(2, Direction::Debit, dec("30.00"), dec("70.00")), (1, Direction::Credit, dec("100.00"), dec("100.00"))]
    );
    assert_eq!(alice_history[0].transfer_id, Some(settled.id));
    let bob_history = history(&bob, bob_main.id).await;
    let lines: Vec<_> = bob_history.iter().map(|e| (e.sequence, e.direction, e.amount, e.balance_after)).collect();
    assert_eq!(lines, vec![(1, Direction::Credit, dec("30.00"), dec("30.00"))]);
    assert_eq!(bob_history[0].transfer_id, Some(settled.id));
    assert!(history(&alice, alice_savings.id).await.is_empty());

    // Both sides list the transfer.
    let alice_transfers: Vec<Transfer> = alice.transfers(alice_main.id).try_collect().await.expect("list");
    assert_eq!(alice_transfers.iter().map(|t| t.id).collect::<Vec<_>>(), vec![settled.id]);
    let bob_transfers: Vec<Transfer> = bob.transfers(bob_main.id).try_collect().await.expect("list");
    assert_eq!(bob_transfers.iter().map(|t| t.id).collect::<Vec<_>>(), vec![settled.id]);
}

// --- 2. idempotency ---

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_replay_refuse_changes_and_serialize_concurrent_requests() {
    const CONCURRENT: usize = 100;
    let app = TestApp::spawn().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    let operator = app.operator().await;
    let from = alice.open_account("USD", "main").await.expect("open").id;
    let to = bob.open_account("USD", "main").await.expect("open").id;
    deposit(&operator, from, "100.00").await;

    // Same key, same body: the same transfer, replayed.
    let request = TransferRequest::internal(from, to, dec("10.00"), "USD", "first");
    let first = alice.transfer_with_key("e2e-key-1", &request).await.expect("first");
    let again = alice.transfer_with_key("e2e-key-1", &request).await.expect("replay");
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.value.id, first.value.id);

    // Same key, another body: refused.
    let changed = TransferRequest { amount: dec("11.00"), ..request.clone() };
    let error = alice.transfer_with_key("e2e-key-1", &changed).await.expect_err("key reused");
    assert_eq!(error.status(), Some(422), "{error}");
    assert_eq!(error.problem_type(), Some(problem_types::IDEMPOTENCY_KEY_REUSED));

    // Many at once under one key: one transfer. A request that meets another in flight gets 409
    // and the client retries it with the same key, so every call ends with the same transfer.
    // `TestApp::client` retries a 409 in flight up to `common::CLIENT_ATTEMPTS_MAX` times.
    let concurrent = TransferRequest::internal(from, to, dec("5.00"), "USD", "concurrent");
    let key = Uuid::now_v7().to_string();
    let mut tasks = Vec::with_capacity(CONCURRENT);
    for _ in 0..CONCURRENT {
        let (client, key, request) = (alice.clone(), key.clone(), concurrent.clone());
        tasks.push(tokio::spawn(async move { client.transfer_with_key(&key, &request).await }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for task in tasks {
        let submitted = task.await.expect("task").expect("every concurrent call succeeds");
        ids.insert(submitted.value.id);
        fresh += usize::from(!submitted.replayed);
    }
    assert_eq!(ids.len(), 1, "one transfer for one key: {ids:?}");
    assert_eq!(fresh, 1, "exactly one answer is not a replay");
    let id = ids.into_iter().next().expect("one id");
    assert_ne!(id, first.value.id);

    assert_eq!(final_transfer(&alice, first.value.id).await.status, TransferStatus::Settled);
    assert_eq!(final_transfer(&alice, id).await.status, TransferStatus::Settled);
    let entries = history(&alice, from).await;
    let debits_of = |transfer: Uuid| {
        entries.iter().filter(|e| e.transfer_id == Some(transfer) && e.direction == Direction::Debit).count()
    };
    assert_eq!(debits_of(id), 1, "{entries:#?}");
    assert_eq!(debits_of(first.value.id), 1, "{entries:#?}");
    assert_balances(&alice.account(from).await.expect("account"), "85.00", "0", "85.00");
    assert_balances(&bob.account(to).await.expect("account"), "15.00", "0", "15.00");
}

// --- 3. ownership ---

#[tokio::test(flavor = "multi_thread")]
async fn another_customers_resources_are_indistinguishable_from_missing_ones() {
    let app = TestApp::spawn().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    let operator = app.operator().await;
    let main = alice.open_account("USD", "main").await.expect("open");
    let savings = alice.open_account("USD", "savings").await.expect("open");
    let bob_main = bob.open_account("USD", "main").await.expect("open");
    deposit(&operator, main.id, "50.00").await;
    let request = TransferRequest::internal(main.id, savings.id, dec("5.00"), "USD", "to savings");
    let transfer = alice.transfer(&request).await.expect("transfer").value;
    final_transfer(&alice, transfer.id).await;
    let random = Uuid::now_v7();

    let theirs = bob.account(main.id).await.expect_err("alice's account");
    let missing = bob.account(random).await.expect_err("no account");
    assert!(theirs.is_not_found(), "{theirs}");
    assert_eq!(theirs.problem_type(), Some(problem_types::NOT_FOUND));
    assert_eq!(problem_shape(&theirs), problem_shape(&missing));

    let theirs = bob.get_transfer(transfer.id).await.expect_err("alice's transfer");
    let missing = bob.get_transfer(random).await.expect_err("no transfer");
    assert!(theirs.is_not_found(), "{theirs}");
    assert_eq!(problem_shape(&theirs), problem_shape(&missing));

    let theirs = bob.transactions_page(main.id, 10, None).await.expect_err("alice's history");
    let missing = bob.transactions_page(random, 10, None).await.expect_err("no history");
    assert!(theirs.is_not_found(), "{theirs}");
    assert_eq!(problem_shape(&theirs), problem_shape(&missing));

    let theirs = bob.transfers_page(main.id, 10, None).await.expect_err("alice's transfers");
    let missing = bob.transfers_page(random, 10, None).await.expect_err("no transfers");
    assert!(theirs.is_not_found(), "{theirs}");
    assert_eq!(problem_shape(&theirs), problem_shape(&missing));

    // Nor can bob spend from alice's account.
    let steal = TransferRequest::internal(main.id, bob_main.id, dec("1.00"), "USD", "mine now");
    let error = bob.transfer(&steal).await.expect_err("not bob's account");
    assert!(error.is_not_found(), "{error}");
    assert_balances(&alice.account(main.id).await.expect("account"), "45.00", "0", "45.00");

    // A customer is not an operator.
    let request = DepositRequest { account_id: bob_main.id, amount: dec("1000.00"), reference: "free money".into() };
    let error = bob.admin_deposit("bob-deposit", &request).await.expect_err("customers cannot deposit");
    assert_eq!(error.status(), Some(403), "{error}");
    assert_eq!(error.problem_type(), Some(problem_types::FORBIDDEN));
    assert_balances(&bob.account(bob_main.id).await.expect("account"), "0", "0", "0");
}

// --- 4. JWT attacks ---

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(&serde_json::to_vec(value).expect("json"))
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

/// A token whose payload is `edit`ed while the header and the signature are kept.
fn tampered(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact token");
    let mut claims = decode_part(parts[1]);
    edit(&mut claims);
    format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2])
}

fn sign(algorithm: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

async fn get_accounts(app: &TestApp, token: &str) -> reqwest::Response {
    app.http.get(app.url(paths::ACCOUNTS)).header(AUTHORIZATION, format!("Bearer {token}")).send().await.expect("send")
}

async fn assert_refused(app: &TestApp, case: &str, token: &str) {
    let response = get_accounts(app, token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert!(response.headers().contains_key(WWW_AUTHENTICATE), "{case}: WWW-Authenticate missing");
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with(PROBLEM_JSON), "{case}: content type {content_type:?}");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["type"], json!(problem_types::UNAUTHORIZED), "{case}: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_altered_expired_and_foreign_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn_with(Options {
        jwt_issuer: Some("https://other-issuer.example".into()),
        jwt_audience: Some("other-audience".into()),
        ..Options::default()
    })
    .await;
    let token = app.access_token("mallory").await;
    let foreign = other.access_token("eve").await;

    let jwks: Value = app.http.get(app.url(paths::JWKS)).send().await.expect("jwks").json().await.expect("json");
    let jwk = &jwks["keys"][0];
    let kid = jwk["kid"].as_str().expect("kid").to_owned();
    let x = jwk["x"].as_str().expect("x").to_owned();
    let claims = decode_part(token.split('.').nth(1).expect("payload"));
    let header = decode_part(token.split('.').next().expect("header"));
    assert_eq!(header["kid"], json!(kid), "the token names the published key");
    let own_key = app.issuer.keys().encoding_key();
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        edit(&mut claims);
        claims
    };
    let now = now_secs();

    // Controls: the real token, and one re-signed here with the server's key and the same
    // claims, are accepted; so every refusal below is due to the one thing changed.
    assert_eq!(get_accounts(&app, &token).await.status(), StatusCode::OK);
    let resigned = sign(Algorithm::EdDSA, &kid, &claims, own_key);
    assert_eq!(get_accounts(&app, &resigned).await.status(), StatusCode::OK, "re-signed control");
    assert_eq!(get_accounts(&other, &foreign).await.status(), StatusCode::OK, "the other server's own token");

    let none_header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let cases: Vec<(&str, String)> = vec![
        ("no token at all", String::new()),
        ("garbage", "not.a.jwt".to_owned()),
        ("alg none", format!("{}.{}.", b64_json(&none_header), b64_json(&claims))),
        (
            "HS256 keyed with the public key bytes",
            sign(Algorithm::HS256, &kid, &claims, &EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(&x).expect("x"))),
        ),
        (
            "HS256 keyed with the public key text",
            sign(Algorithm::HS256, &kid, &claims, &EncodingKey::from_secret(x.as_bytes())),
        ),
        ("payload altered: exp in the past", tampered(&token, |c| c["exp"] = json!(now - 3600))),
        ("payload altered: operator role added", tampered(&token, |c| c["roles"] = json!(["customer", "operator"]))),
        ("payload altered: amr without otp", tampered(&token, |c| c["amr"] = json!(["pwd"]))),
        (
            "another Ed25519 key under the server's kid",
            sign(Algorithm::EdDSA, &kid, &claims, other.issuer.keys().encoding_key()),
        ),
        ("unknown kid", sign(Algorithm::EdDSA, "no-such-kid", &claims, own_key)),
        (
            "expired (signed)",
            sign(
                Algorithm::EdDSA,
                &kid,
                &edited(&|c| {
                    c["iat"] = json!(now - 7200);
                    c["nbf"] = json!(now - 7200);
                    c["exp"] = json!(now - 3600);
                }),
                own_key,
            ),
        ),
        ("not yet valid (signed)", sign(Algorithm::EdDSA, &kid, &edited(&|c| c["nbf"] = json!(now + 3600)), own_key)),
        (
            "wrong iss (signed)",
            sign(Algorithm::EdDSA, &kid, &edited(&|c| c["iss"] = json!("https://evil.example")), own_key),
        ),
        ("wrong aud (signed)", sign(Algorithm::EdDSA, &kid, &edited(&|c| c["aud"] = json!("other-audience")), own_key)),
        ("missing MFA (signed)", sign(Algorithm::EdDSA, &kid, &edited(&|c| c["amr"] = json!(["pwd"])), own_key)),
        (
            "no amr (signed)",
            sign(
                Algorithm::EdDSA,
                &kid,
                &edited(&|c| {
                    c.as_object_mut().expect("claims object").remove("amr");
                }),
                own_key,
            ),
        ),
        ("another server's valid token (other key, iss and aud)", foreign.clone()),
    ];
    for (case, forged) in &cases {
        assert_refused(&app, case, forged).await;
    }
    // No Authorization header at all.
    let response = app.http.get(app.url(paths::ACCOUNTS)).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(WWW_AUTHENTICATE));
}

// --- 5. rate limits ---

#[tokio::test(flavor = "multi_thread")]
async fn hammering_a_route_is_answered_429_with_retry_after() {
    const BURST: u32 = 10;
    let mut options = Options::default();
    options.http.rate_per_ip = bank_server::http::RateLimit::per_minute(BURST, BURST);
    let app = TestApp::spawn_with(options).await;
    // Signed in through the issuer directly, so no request is spent on it.
    let token = app.access_token("hammer").await;

    let mut limited = None;
    for sent in 1..=BURST * 5 {
        let response = get_accounts(&app, &token).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((sent, response));
            break;
        }
        assert_eq!(response.status(), StatusCode::OK, "request {sent}");
    }
    let (sent, response) = limited.expect("a 429 within five bursts");
    assert!(sent > BURST / 2, "limited after only {sent} requests");
    let retry_after: u64 = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    expect_problem(response, 429, problem_types::RATE_LIMITED).await;

    // The typed client (retries off) sees the same problem; health checks are not limited.
    let client = BankClient::builder(&app.base_url).retry_policy(RetryPolicy::none()).build().expect("client");
    let error = client.with_access_token(&token).accounts().await.expect_err("still limited");
    assert_eq!(error.status(), Some(429), "{error}");
    assert_eq!(error.problem_type(), Some(problem_types::RATE_LIMITED));
    assert!(error.is_retryable());
    client.health_live().await.expect("health is not rate limited");
}

// --- 6. bad inputs ---

/// What the bad requests must leave unchanged.
#[derive(Debug, PartialEq)]
struct Snapshot {
    from: (Decimal, Decimal, Decimal),
    to: (Decimal, Decimal, Decimal),
    transfers: Vec<Uuid>,
    history: Vec<Uuid>,
}

async fn snapshot(client: &BankClient, from: Uuid, to: Uuid) -> Snapshot {
    let balances = |a: Account| (a.posted, a.pending, a.available);
    let transfers: Vec<Transfer> = client.transfers(from).try_collect().await.expect("transfers");
    Snapshot {
        from: balances(client.account(from).await.expect("account")),
        to: balances(client.account(to).await.expect("account")),
        transfers: transfers.iter().map(|t| t.id).collect(),
        history: history(client, from).await.iter().map(|e| e.entry_id).collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_4xx_problems_and_change_nothing() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let token = app.access_token("alice").await;
    let alice = app.client().with_access_token(&token);
    let from = alice.open_account("USD", "main").await.expect("open").id;
    let to = alice.open_account("USD", "savings").await.expect("open").id;
    deposit(&operator, from, "100.00").await;
    let before = snapshot(&alice, from, to).await;

    let post = |body: String, key: Option<String>| {
        let mut request = app
            .http
            .post(app.url(paths::TRANSFERS))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        request.send()
    };
    let body = |amount: Value, currency: &str| {
        json!({"from_account_id": from, "to_account_id": to, "amount": amount, "currency": currency, "reference": "x"})
            .to_string()
    };
    let key = || Some(Uuid::now_v7().to_string());

    let malformed = [
        ("malformed JSON", r#"{"from_account_id": "#.to_owned()),
        ("amount as a JSON number", body(json!(1.5), "USD")),
        ("account id not a uuid", body(json!("1.00"), "USD").replace(&from.to_string(), "not-a-uuid")),
        ("unknown field", {
            let mut value: Value = serde_json::from_str(&body(json!("1.00"), "USD")).expect("json");
            value["fee"] = json!("0.00");
            value.to_string()
        }),
    ];
    for (case, text) in malformed {
        let response = post(text, key()).await.expect("send");
        let problem = expect_problem(response, 400, problem_types::MALFORMED_BODY).await;
        assert!(problem.get("request_id").is_some(), "{case}: {problem}");
    }

    let invalid = [
        ("negative amount", body(json!("-1.00"), "USD")),
        ("zero amount", body(json!("0.00"), "USD")),
        ("too many decimals", body(json!("1.001"), "USD")),
        ("unknown currency", body(json!("1.00"), "XXX")),
        ("currency not ISO 4217 shaped", body(json!("1.00"), "usd1")),
    ];
    for (case, text) in invalid {
        let response = post(text, key()).await.expect("send");
        let problem = expect_problem(response, 400, problem_types::INVALID_REQUEST).await;
        assert!(problem["detail"].is_string(), "{case}: {problem}");
    }

    // Well-formed and valid, but more than there is.
    let response = post(body(json!("1000.00"), "USD"), key()).await.expect("send");
    expect_problem(response, 422, problem_types::INSUFFICIENT_FUNDS).await;

    // Over the body limit (16 KiB).
    let huge = json!({"from_account_id": from, "to_account_id": to, "amount": "1.00", "currency": "USD",
        "reference": "x".repeat(bank_server::http::REQUEST_BODY_BYTES_MAX)});
    let response = post(huge.to_string(), key()).await.expect("send");
    expect_problem(response, 413, problem_types::PAYLOAD_TOO_LARGE).await;

    // Idempotency-Key missing, or longer than 255 characters.
    let valid = body(json!("1.00"), "USD");
    let response = post(valid.clone(), None).await.expect("send");
    expect_problem(response, 400, problem_types::IDEMPOTENCY_KEY_MISSING).await;
    let response = post(valid.clone(), Some("k".repeat(256))).await.expect("send");
    expect_problem(response, 400, problem_types::IDEMPOTENCY_KEY_MISSING).await;

    // A malformed id in a path is the same 404 as a missing resource.
    let get = |path: String| app.http.get(app.url(&path)).header(AUTHORIZATION, format!("Bearer {token}")).send();
    for path in ["/v1/accounts/not-a-uuid", "/v1/accounts/not-a-uuid/transactions", "/v1/transfers/not-a-uuid"] {
        let response = get(path.to_owned()).await.expect("send");
        expect_problem(response, 404, problem_types::NOT_FOUND).await;
    }

    // limit=1000: the server documents 1 to 100 and refuses more; the typed client clamps.
    let response = get(format!("{}?limit=1000", paths::account_transactions(from))).await.expect("send");
    expect_problem(response, 400, problem_types::INVALID_REQUEST).await;
    let response = get(format!("{}?account_id={from}&limit=1000", paths::TRANSFERS)).await.expect("send");
    expect_problem(response, 400, problem_types::INVALID_REQUEST).await;
    let page = alice.transactions_page(from, 1000, None).await.expect("clamped by the client");
    assert!(page.items.len() <= usize::try_from(PAGE_LIMIT_MAX).expect("fits"));

    assert_eq!(snapshot(&alice, from, to).await, before, "a refused request changed something");
}
