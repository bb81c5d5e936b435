//! The client against a mock server (axum on 127.0.0.1:0): tokens, refresh, retries with one
//! idempotency key, problem decoding, pagination and `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bank_api::{
    Account, AccountStatus, Deposit, DepositRequest, Direction, Health, HistoryEntry, PROBLEM_JSON, Page, Problem,
    RefreshRequest, Tokens, Transfer, TransferRequest, TransferStatus, problem_types,
};
use bank_client::{BankClient, ClientError, RetryPolicy};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use uuid::Uuid;

type Log = Arc<parking_lot::Mutex<Vec<String>>>;

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts_max: 4,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        retry_after_max: Duration::from_secs(5),
    }
}

async fn spawn(router: Router) -> BankClient {
    spawn_with(router, fast_retries()).await
}

async fn spawn_with(router: Router, retry: RetryPolicy) -> BankClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    BankClient::builder(format!("http://{address}")).retry_policy(retry).build().expect("client")
}

fn tokens(access: &str, refresh: &str, expires_in: u64) -> Tokens {
    Tokens {
        access_token: access.to_owned(),
        refresh_token: refresh.to_owned(),
        expires_in,
        token_type: "Bearer".to_owned(),
    }
}

fn account(id: Uuid) -> Account {
    Account {
        id,
        name: "Main".to_owned(),
        currency: "USD".to_owned(),
        status: AccountStatus::Open,
        posted: Decimal::new(10_000, 2),
        pending: Decimal::ZERO,
        available: Decimal::new(10_000, 2),
        created_at: chrono::Utc::now(),
    }
}

fn transfer(request: &TransferRequest) -> Transfer {
    Transfer {
        id: Uuid::now_v7(),
        status: TransferStatus::Accepted,
        from_account_id: request.from_account_id,
        to_account_id: request.to_account_id,
        to_external: request.to_external.clone(),
        amount: request.amount,
        currency: request.currency.clone(),
        reference: request.reference.clone(),
        failure_reason: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

fn problem(status: StatusCode, problem_type: &str) -> Response {
    let body = Problem::new(problem_type, status.canonical_reason().unwrap_or("error"), status.as_u16());
    (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], serde_json::to_string(&body).expect("problem json"))
        .into_response()
}

fn bearer(headers: &HeaderMap) -> String {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Login returns `at-1`/`rt-1` valid for `expires_in` s; refresh returns `at-2`/`rt-2`; `/v1/accounts`
/// logs the `Authorization` header it gets and answers 401 unless it is in `accepted`.
fn auth_router(expires_in: u64, accepted: &'static [&'static str], refreshes: Arc<AtomicUsize>, log: Log) -> Router {
    Router::new()
        .route("/v1/auth/login", post(move || async move { Json(tokens("at-1", "rt-1", expires_in)) }))
        .route(
            "/v1/auth/refresh",
            post(move |Json(request): Json<RefreshRequest>| async move {
                assert_eq!(request.refresh_token, "rt-1", "the stored refresh token is sent");
                refreshes.fetch_add(1, Ordering::SeqCst);
                Json(tokens("at-2", "rt-2", 900))
            }),
        )
        .route(
            "/v1/accounts",
            get(move |headers: HeaderMap| async move {
                let auth = bearer(&headers);
                log.lock().push(auth.clone());
                if accepted.contains(&auth.as_str()) {
                    Json(Page::new(vec![account(Uuid::nil())], None)).into_response()
                } else {
                    problem(StatusCode::UNAUTHORIZED, problem_types::UNAUTHORIZED)
                }
            }),
        )
}

#[tokio::test]
async fn login_stores_tokens_and_sends_bearer() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let client = spawn(auth_router(900, &["Bearer at-1"], refreshes.clone(), log.clone())).await;

    let before = client.accounts().await.expect_err("no token yet");
    assert!(matches!(before, ClientError::NotLoggedIn), "{before:?}");
    assert!(log.lock().is_empty(), "nothing is sent without a token");

    client.login("alice@example.com", "pw", "123456").await.expect("login");
    assert!(client.is_signed_in());
    let accounts = client.clone().accounts().await.expect("accounts");
    assert_eq!(accounts.len(), 1);
    assert_eq!(*log.lock(), vec!["Bearer at-1".to_owned()]);
    assert_eq!(refreshes.load(Ordering::SeqCst), 0);
    assert!(!format!("{client:?}").contains("at-1"), "tokens stay out of Debug output");

    let external = client.with_access_token("cognito-token");
    assert!(external.accounts().await.expect_err("refused token").status() == Some(401));
    assert_eq!(log.lock().last().map(String::as_str), Some("Bearer cognito-token"));
    assert_eq!(refreshes.load(Ordering::SeqCst), 0, "an external token is never refreshed");
}

#[tokio::test]
async fn expiring_token_is_refreshed_before_the_call() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    // Expires in 10 s, inside the 30 s margin: the client must refresh before sending it.
    let client = spawn(auth_router(10, &["Bearer at-2"], refreshes.clone(), log.clone())).await;
    client.login("alice@example.com", "pw", "123456").await.expect("login");

    client.accounts().await.expect("accounts");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(*log.lock(), vec!["Bearer at-2".to_owned()], "the stale token was never sent");

    client.accounts().await.expect("accounts again");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1, "the fresh token is reused");
}

#[tokio::test]
async fn access_token_is_the_one_calls_send_refreshed_when_expiring() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let client = spawn(auth_router(10, &["Bearer at-2"], refreshes.clone(), log.clone())).await;
    assert!(matches!(client.access_token().await, Err(ClientError::NotLoggedIn)));
    client.login("alice@example.com", "pw", "123456").await.expect("login");

    // at-1 expires in 10 s, inside the margin: asking for the token refreshes it first.
    assert_eq!(client.access_token().await.expect("token"), "at-2");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(client.access_token().await.expect("token again"), "at-2");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1, "a fresh token is handed out as it is");
    assert_eq!(client.with_access_token("external").access_token().await.expect("external"), "external");
}

#[tokio::test]
async fn unauthorized_triggers_one_refresh_and_one_retry() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let client = spawn(auth_router(900, &["Bearer at-2"], refreshes.clone(), log.clone())).await;
    client.login("alice@example.com", "pw", "123456").await.expect("login");

    client.accounts().await.expect("accounts after refresh");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(*log.lock(), vec!["Bearer at-1".to_owned(), "Bearer at-2".to_owned()]);
}

#[tokio::test]
async fn unauthorized_after_refresh_is_returned_not_looped() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let client = spawn(auth_router(900, &[], refreshes.clone(), log.clone())).await;
    client.login("alice@example.com", "pw", "123456").await.expect("login");

    let error = client.accounts().await.expect_err("always refused");
    assert_eq!(error.status(), Some(401));
    assert_eq!(error.problem_type(), Some(problem_types::UNAUTHORIZED));
    assert_eq!(refreshes.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(log.lock().len(), 2, "one retry");
}

#[tokio::test]
async fn transfer_reuses_one_idempotency_key_across_retries() {
    let keys = Log::default();
    let hits = Arc::new(AtomicUsize::new(0));
    let opens = Arc::new(AtomicUsize::new(0));
    let router = {
        let (keys, hits, opens) = (keys.clone(), hits.clone(), opens.clone());
        Router::new()
            .route(
                "/v1/transfers",
                post(move |headers: HeaderMap, Json(request): Json<TransferRequest>| async move {
                    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("");
                    keys.lock().push(key.to_owned());
                    match hits.fetch_add(1, Ordering::SeqCst) % 3 {
                        0 => problem(StatusCode::SERVICE_UNAVAILABLE, problem_types::UNAVAILABLE),
                        1 => problem(StatusCode::CONFLICT, problem_types::IDEMPOTENCY_IN_FLIGHT),
                        _ => (StatusCode::ACCEPTED, [("Idempotent-Replayed", "true")], Json(transfer(&request)))
                            .into_response(),
                    }
                }),
            )
            .route(
                "/v1/accounts",
                post(move || async move {
                    opens.fetch_add(1, Ordering::SeqCst);
                    problem(StatusCode::SERVICE_UNAVAILABLE, problem_types::UNAVAILABLE)
                }),
            )
    };
    let client = spawn(router).await.with_access_token("t");
    let request = TransferRequest::internal(Uuid::now_v7(), Uuid::now_v7(), Decimal::new(1234, 2), "USD", "rent");

    let submitted = client.transfer(&request).await.expect("transfer");
    assert!(submitted.replayed, "replayed comes from the Idempotent-Replayed header");
    assert_eq!(submitted.value.amount, Decimal::new(1234, 2));
    let first = keys.lock().clone();
    assert_eq!(first.len(), 3, "503, 409 in flight, then success");
    assert!(!first[0].is_empty());
    assert!(first.iter().all(|k| *k == first[0]), "one key for every retry: {first:?}");

    client.transfer(&request).await.expect("second transfer");
    assert_ne!(keys.lock()[3], first[0], "a new call gets a new key");

    let error = client.open_account("USD", "Main").await.expect_err("503");
    assert_eq!(error.status(), Some(503));
    assert_eq!(opens.load(Ordering::SeqCst), 1, "a POST without a key is never retried");
}

#[tokio::test]
async fn other_conflicts_are_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let router = {
        let hits = hits.clone();
        Router::new().route(
            "/v1/admin/deposits",
            post(move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                problem(StatusCode::UNPROCESSABLE_ENTITY, problem_types::IDEMPOTENCY_KEY_REUSED)
            }),
        )
    };
    let client = spawn(router).await.with_access_token("t");
    let request = DepositRequest { account_id: Uuid::now_v7(), amount: Decimal::ONE, reference: "cash".to_owned() };
    let error = client.admin_deposit("key-1", &request).await.expect_err("reused key");
    assert_eq!(error.problem_type(), Some(problem_types::IDEMPOTENCY_KEY_REUSED));
    assert!(!error.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn admin_deposit_sends_its_key_and_reports_a_fresh_answer() {
    let router = Router::new().route(
        "/v1/admin/deposits",
        post(|headers: HeaderMap, Json(request): Json<DepositRequest>| async move {
            assert_eq!(headers.get("idempotency-key").and_then(|v| v.to_str().ok()), Some("dep-1"));
            Json(Deposit {
                entry_id: Uuid::now_v7(),
                account_id: request.account_id,
                amount: request.amount,
                currency: "USD".to_owned(),
                reference: request.reference,
                posted_at: chrono::Utc::now(),
            })
        }),
    );
    let client = spawn(router).await.with_access_token("t");
    let request =
        DepositRequest { account_id: Uuid::now_v7(), amount: Decimal::new(5000, 2), reference: "cash".to_owned() };
    let submitted = client.admin_deposit("dep-1", &request).await.expect("deposit");
    assert!(!submitted.replayed);
    assert_eq!(submitted.value.amount, Decimal::new(5000, 2));
}

/// The client reads amounts with the one grammar too: an answer with `"1e3"` (or a rounded-looking
/// 32-decimal text, or a negative zero) is a decode error, never 1000.00; and every body it sends
/// is JSON-typed.
#[tokio::test]
async fn amounts_outside_the_grammar_are_refused_and_bodies_are_json() {
    for amount in ["1e3", "0.00999999999999999999999999999999", "+1.00", "00001.00", "-0.00"] {
        let router = Router::new().route(
            "/v1/admin/deposits",
            post(move |headers: HeaderMap| async move {
                assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
                let body = format!(
                    r#"{{"entry_id":"{}","account_id":"{}","amount":"{amount}","currency":"USD","reference":"r","posted_at":"2026-01-02T03:04:05Z"}}"#,
                    Uuid::nil(),
                    Uuid::nil()
                );
                ([("content-type", "application/json")], body)
            }),
        );
        let client = spawn(router).await.with_access_token("t");
        let request =
            DepositRequest { account_id: Uuid::nil(), amount: Decimal::new(100, 2), reference: "r".to_owned() };
        let error = client.admin_deposit("dep-1", &request).await.expect_err(amount);
        assert!(matches!(error, ClientError::Decode(_)), "{amount}: {error:?}");
    }
}

#[tokio::test]
async fn problem_json_is_decoded_into_client_error() {
    let hits = Arc::new(AtomicUsize::new(0));
    let router = {
        let hits = hits.clone();
        Router::new()
            .route("/v1/transfers/{id}", get(|| async { problem(StatusCode::NOT_FOUND, problem_types::NOT_FOUND) }))
            .route(
                "/v1/accounts/{id}",
                get(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::BAD_GATEWAY, "<html>upstream down</html>")
                }),
            )
    };
    let client = spawn(router).await.with_access_token("t");

    let error = client.get_transfer(Uuid::now_v7()).await.expect_err("404");
    assert!(error.is_not_found());
    assert_eq!(error.problem_type(), Some(problem_types::NOT_FOUND));
    match &error {
        ClientError::Problem { status, problem } => {
            assert_eq!(*status, 404);
            assert_eq!(problem.status, 404);
        }
        other => panic!("expected a problem, got {other:?}"),
    }

    let error = client.account(Uuid::now_v7()).await.expect_err("502");
    let problem = error.problem().expect("synthesized problem");
    assert_eq!((problem.status, problem.problem_type.as_str()), (502, problem_types::ABOUT_BLANK));
    assert_eq!(problem.detail.as_deref(), Some("<html>upstream down</html>"));
    assert_eq!(hits.load(Ordering::SeqCst), 4, "a GET is retried on 5xx up to the attempt limit");
}

#[tokio::test]
async fn transactions_stream_follows_cursors_across_three_pages() {
    let account_id = Uuid::now_v7();
    let seen = Log::default();
    let router =
        {
            let seen = seen.clone();
            Router::new().route(
            "/v1/accounts/{id}/transactions",
            get(move |Path(id): Path<Uuid>, Query(query): Query<std::collections::HashMap<String, String>>| async move {
                assert_eq!(id, account_id);
                let cursor = query.get("cursor").cloned();
                seen.lock().push(format!("limit={} cursor={}", query["limit"], cursor.as_deref().unwrap_or("-")));
                let (sequences, next) = match cursor.as_deref() {
                    None => (vec![1, 2], Some("c2")),
                    Some("c2") => (vec![3, 4], Some("c3")),
                    Some("c3") => (vec![5], None),
                    Some(other) => panic!("unexpected cursor {other}"),
                };
                let items = sequences.into_iter().map(entry).collect();
                Json(Page::new(items, next.map(str::to_owned)))
            }),
        )
        };
    let client = spawn(router).await.with_access_token("t");

    let entries: Vec<HistoryEntry> = client.transactions(account_id, 2).try_collect().await.expect("stream");
    assert_eq!(entries.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(*seen.lock(), vec!["limit=2 cursor=-", "limit=2 cursor=c2", "limit=2 cursor=c3"]);
}

fn entry(sequence: u64) -> HistoryEntry {
    HistoryEntry {
        entry_id: Uuid::now_v7(),
        sequence,
        transfer_id: None,
        direction: Direction::Credit,
        amount: Decimal::ONE,
        balance_after: Decimal::from(sequence),
        reference: format!("entry {sequence}"),
        posted_at: chrono::Utc::now(),
    }
}

fn rate_limited_once(hits: Arc<AtomicUsize>, retry_after: &'static str) -> Router {
    Router::new().route(
        "/v1/accounts",
        get(move || async move {
            if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut response = problem(StatusCode::TOO_MANY_REQUESTS, problem_types::RATE_LIMITED);
                response.headers_mut().insert(header::RETRY_AFTER, retry_after.parse().expect("header"));
                response
            } else {
                Json(Page::<Account>::new(Vec::new(), None)).into_response()
            }
        }),
    )
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let hits = Arc::new(AtomicUsize::new(0));
    let client = spawn(rate_limited_once(hits.clone(), "1")).await.with_access_token("t");

    let started = Instant::now();
    client.accounts().await.expect("accounts after waiting");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_longer_than_allowed_ends_the_call() {
    let hits = Arc::new(AtomicUsize::new(0));
    let client = spawn(rate_limited_once(hits.clone(), "120")).await.with_access_token("t");

    let started = Instant::now();
    let error = client.accounts().await.expect_err("429");
    assert_eq!(error.problem_type(), Some(problem_types::RATE_LIMITED));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn operations_routes() {
    let router = Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route(
            "/health/ready",
            get(|| async {
                let checks = [("ledger".to_owned(), "down".to_owned())].into_iter().collect();
                (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "unavailable".to_owned(), checks }))
            }),
        )
        .route("/metrics", get(|| async { "bank_requests_total 3\n" }))
        .route("/.well-known/jwks.json", get(|| async { Json(serde_json::json!({"keys": []})) }));
    let client = spawn_with(router, RetryPolicy::none()).await;

    client.health_live().await.expect("live");
    let ready = client.health_ready().await.expect("a not-ready report is still an answer");
    assert_eq!(ready.status, "unavailable");
    assert_eq!(ready.checks["ledger"], "down");
    assert_eq!(client.metrics().await.expect("metrics"), "bank_requests_total 3\n");
    assert_eq!(client.jwks().await.expect("jwks"), serde_json::json!({"keys": []}));
}

#[test]
fn invalid_base_urls_are_refused() {
    for url in ["not a url", "ftp://example.com", "http://example.com/?q=1", "mailto:a@example.com"] {
        assert!(matches!(BankClient::new(url), Err(ClientError::InvalidUrl(_))), "{url}");
    }
}
