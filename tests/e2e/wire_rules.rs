//! The wire rules of issue 19 against the real server on `127.0.0.1:0`: the one amount grammar
//! on every route that takes an amount, problem+json for what the HTTP layer refuses (and the
//! documented exceptions hyper answers itself), `Content-Type: application/json` on every body.
//!
//! Every refused request must also move nothing: balances, transfers and history are compared
//! before and after.

use std::str::FromStr;
use std::time::Duration;

use crate::common::TestApp;
use bank_api::{Account, DepositRequest, IDEMPOTENCY_KEY_HEADER, PROBLEM_JSON, Transfer, paths, problem_types};
use bank_client::BankClient;
use futures::TryStreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Every amount text issue 19 found accepted or rounded, and the rest of what the grammar
/// refuses. None of them is a USD amount.
const REFUSED_AMOUNTS: &[&str] = &[
    "1e3",
    "1E3",
    "1_0",
    "1e-2",
    "0.1e1",
    "+1.00",
    ".5",
    "1.",
    "00001.00",
    "01",
    "1.000",
    "1e0",
    "0.00999999999999999999999999999999",
    "12.340000000000000000000000000009",
    "1.0000000000000000000000000000001",
    " 1.00",
    "1.00 ",
    "1,00",
    "",
    "-",
    "0x10",
    "NaN",
    "1.001",
    "12345678901234.00",
    "-0",
    "-0.00",
];

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

async fn expect_problem(response: reqwest::Response, status: u16, problem_type: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{response:?}");
    let content_type = response.headers().get(CONTENT_TYPE).map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON));
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["type"], problem_type, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    body
}

/// What a refused request must leave unchanged.
#[derive(Debug, PartialEq)]
struct Snapshot {
    balances: Vec<(Decimal, Decimal, Decimal)>,
    transfers: Vec<Uuid>,
    history: Vec<Uuid>,
}

async fn snapshot(client: &BankClient, accounts: &[Uuid]) -> Snapshot {
    let mut snapshot = Snapshot { balances: Vec::new(), transfers: Vec::new(), history: Vec::new() };
    for &account in accounts {
        let a: Account = client.account(account).await.expect("account");
        snapshot.balances.push((a.posted, a.pending, a.available));
        let transfers: Vec<Transfer> = client.transfers(account).try_collect().await.expect("transfers");
        snapshot.transfers.extend(transfers.iter().map(|t| t.id));
        let history: Vec<bank_api::HistoryEntry> =
            client.transactions(account, 100).try_collect().await.expect("history");
        snapshot.history.extend(history.iter().map(|e| e.entry_id));
    }
    snapshot
}

/// `POST path` with a JSON body, a bearer token and a fresh Idempotency-Key.
async fn post_json(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_KEY_HEADER, Uuid::now_v7().to_string())
        .body(body.to_string())
        .send()
        .await
        .expect("send")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refused_amount_is_a_400_naming_the_field_and_moves_nothing() {
    let app = TestApp::spawn().await;
    let (operator, operator_token) = app.operator_with_token().await;
    let token = app.access_token("alice").await;
    let alice = app.client().with_access_token(&token);
    let from = alice.open_account("USD", "main").await.expect("open").id;
    let to = alice.open_account("USD", "savings").await.expect("open").id;
    let request = DepositRequest { account_id: from, amount: dec("100.00"), reference: "cash".into() };
    operator.admin_deposit("opening", &request).await.expect("deposit");
    let before = snapshot(&alice, &[from, to]).await;

    for &amount in REFUSED_AMOUNTS {
        let transfer = json!({"from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD", "reference": "r"});
        let response = post_json(&app, paths::TRANSFERS, &token, &transfer).await;
        let problem = expect_problem(response, 400, problem_types::INVALID_REQUEST).await;
        assert!(problem["detail"].as_str().expect("detail").contains("`amount`"), "{amount:?}: {problem}");

        let deposit = json!({"account_id": to, "amount": amount, "reference": "r"});
        let response = post_json(&app, paths::ADMIN_DEPOSITS, &operator_token, &deposit).await;
        let problem = expect_problem(response, 400, problem_types::INVALID_REQUEST).await;
        assert!(problem["detail"].as_str().expect("detail").contains("`amount`"), "{amount:?}: {problem}");
    }
    // A KWD account takes three decimals, a JPY account none.
    let jpy = alice.open_account("JPY", "yen").await.expect("open").id;
    let deposit = json!({"account_id": jpy, "amount": "100.0", "reference": "r"});
    expect_problem(
        post_json(&app, paths::ADMIN_DEPOSITS, &operator_token, &deposit).await,
        400,
        problem_types::INVALID_REQUEST,
    )
    .await;
    assert_eq!(snapshot(&alice, &[from, to]).await, before, "a refused amount moved money");
    assert_eq!(alice.account(jpy).await.expect("jpy").posted, Decimal::ZERO);

    // Valid texts keep their meaning and answer with the currency's decimals.
    let deposit = json!({"account_id": to, "amount": "12.5", "reference": "r"});
    let response = post_json(&app, paths::ADMIN_DEPOSITS, &operator_token, &deposit).await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("deposit");
    assert_eq!(body["amount"], "12.50");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_need_a_json_content_type() {
    let app = TestApp::spawn().await;
    let token = app.access_token("alice").await;
    let body = json!({"currency": "USD", "name": "Main"}).to_string();
    let send = |content_type: Option<&'static str>| {
        let mut request =
            app.http.post(app.url(paths::ACCOUNTS)).header(AUTHORIZATION, format!("Bearer {token}")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.send()
    };
    for refused in
        [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonx"), Some("+json")]
    {
        let response = send(refused).await.expect("send");
        expect_problem(response, 415, problem_types::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let alice = app.client().with_access_token(&token);
    assert!(alice.accounts().await.expect("accounts").is_empty(), "a refused body opened an account");
    for accepted in
        ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]
    {
        let response = send(Some(accepted)).await.expect("send");
        assert_eq!(response.status().as_u16(), 201, "{accepted}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_layer_rejections_are_problems() {
    let app = TestApp::spawn().await;
    let token = app.access_token("alice").await;
    let alice = app.client().with_access_token(&token);
    let account = alice.open_account("USD", "main").await.expect("open").id;

    // A cursor of 100 KB is refused by hyper itself (see below); one of 9 KiB reaches the server
    // and answers a problem.
    let long = format!("{}?cursor={}", paths::account_transactions(account), "a".repeat(9 * 1024));
    let response = app.http.get(app.url(&long)).header(AUTHORIZATION, format!("Bearer {token}")).send().await;
    expect_problem(response.expect("send"), 414, problem_types::URI_TOO_LONG).await;

    let wrong_method = app.http.delete(app.url(paths::TRANSFERS)).send().await.expect("send");
    let problem = expect_problem(wrong_method, 405, problem_types::METHOD_NOT_ALLOWED).await;
    assert!(problem["detail"].is_string());
    let unknown_method =
        app.http.request(reqwest::Method::from_bytes(b"BREW").expect("method"), app.url(paths::TRANSFERS));
    expect_problem(unknown_method.send().await.expect("send"), 405, problem_types::METHOD_NOT_ALLOWED).await;
    let nowhere = app.http.get(app.url("/v1/nowhere")).send().await.expect("send");
    expect_problem(nowhere, 404, problem_types::NOT_FOUND).await;

    // A header value with obs-text (bytes 0x80-0xFF) reaches the server: a problem.
    let raw = raw_request(
        &app,
        b"GET /v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("content-type: application/problem+json"), "{raw}");
}

/// What hyper answers before any of the server's code runs: a bare status with no body, then it
/// closes the connection. The crate README lists these; this test fails if hyper ever starts
/// handing them to the router (then they must become problems) or changes its answer.
#[tokio::test(flavor = "multi_thread")]
async fn hyper_level_rejections_are_the_documented_bare_answers() {
    let app = TestApp::spawn().await;
    let long_uri = format!("GET /v1/accounts?cursor={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100 * 1024));
    let many_headers: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let too_many = format!("GET /health/live HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "DEL byte in a header value",
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Bad: a\x7fb\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        ("request line over 64 KiB", long_uri.into_bytes(), "HTTP/1.1 414"),
        ("a method with a separator", b"GE(T /health/live HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        ("more than 100 headers", too_many.into_bytes(), "HTTP/1.1 431"),
    ];
    for (case, request, status_line) in cases {
        let answer = raw_request(&app, &request).await;
        assert!(answer.starts_with(status_line), "{case}: {answer}");
        assert!(!answer.to_ascii_lowercase().contains("application/problem+json"), "{case}: now a problem: {answer}");
        assert!(answer.to_ascii_lowercase().contains("content-length: 0"), "{case}: {answer}");
    }
}

/// Sends raw bytes and reads the answer until the server closes the connection (bounded).
async fn raw_request(app: &TestApp, request: &[u8]) -> String {
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    // The server may answer and close before reading everything; a write error is then expected.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    if read.is_err() || answer.is_empty() {
        // Keep-alive connections stay open: take what arrived.
        let mut buffer = vec![0; 8192];
        let n = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer))
            .await
            .map_or(0, |r| r.unwrap_or(0));
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}
