//! The HTTP layer through `tower::ServiceExt::oneshot` on the real router, over a `bank-local`
//! backend on a temporary directory and the built-in token issuer: problem shapes, auth,
//! ownership, idempotency, deposits, OpenAPI and metrics.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bank_api::{paths, problem_types};
use bank_core::clock::{Clock, SystemClock};
use bank_core::users::Role;
use bank_local::space::DiskSpace;
use bank_server::auth::issuer::TokenIssuer;
use bank_server::auth::totp;
use bank_server::config::Config;
use bank_server::http::{HttpConfig, openapi, router};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

struct App {
    _dir: TempDir,
    router: Router,
    issuer: Arc<TokenIssuer>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl App {
    async fn new() -> App {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = dir.path().display().to_string();
        let config = Config::from_lookup(|name| (name == "BANK_DATA_DIR").then(|| data_dir.clone())).expect("config");
        let app = bank_server::app::App::build(&config).await.expect("app").with_http(HttpConfig::default());
        let issuer = app.auth.issuer.clone().expect("built-in issuer");
        let state = app.state(false);
        App { _dir: dir, router: router(state), issuer }
    }

    /// The app, and a second router on the same stores whose data directory's disk reads as under
    /// its free-space floor.
    async fn with_a_full_disk_router() -> (App, Router) {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = dir.path().display().to_string();
        let config = Config::from_lookup(|name| (name == "BANK_DATA_DIR").then(|| data_dir.clone())).expect("config");
        let mut app = bank_server::app::App::build(&config).await.expect("app").with_http(HttpConfig::default());
        let issuer = app.auth.issuer.clone().expect("built-in issuer");
        let normal = router(app.state(false));
        app.backend.data_disk = Some(DiskSpace::new(dir.path(), u64::MAX));
        let full = router(app.state(false));
        (App { _dir: dir, router: normal, issuer }, full)
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        send_via(&self.router, method, uri, token, key, body).await
    }
}

async fn send_via(
    router: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<String>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = key {
        builder = builder.header(bank_api::IDEMPOTENCY_KEY_HEADER, key);
    }
    let request = match body {
        Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body)),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply { status, headers, body }
}

impl App {
    async fn post(&self, uri: &str, token: Option<&str>, key: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, uri, token, key, Some(body.to_string())).await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, uri, token, None, None).await
    }

    /// Registers `email` through the API (or as an operator directly) and logs in; the token.
    async fn login(&self, email: &str, role: Role) -> String {
        let secret = match role {
            Role::Customer => {
                let reply =
                    self.post(paths::AUTH_REGISTER, None, None, json!({"email": email, "password": PASSWORD})).await;
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
                reply.body["totp_secret"].as_str().expect("secret").to_owned()
            }
            Role::Operator => self.issuer.create_user(email, PASSWORD, role).await.expect("operator").totp_secret,
        };
        let now = u64::try_from(SystemClock.now().timestamp()).expect("after 1970");
        let code = totp::code_at(&secret, now).expect("code");
        let reply = self
            .post(paths::AUTH_LOGIN, None, None, json!({"email": email, "password": PASSWORD, "totp_code": code}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["token_type"], "Bearer");
        reply.body["access_token"].as_str().expect("token").to_owned()
    }

    async fn open_account(&self, token: &str, currency: &str) -> String {
        let reply = self.post(paths::ACCOUNTS, Some(token), None, json!({"currency": currency, "name": "Main"})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }
}

/// Asserts an RFC 9457 problem of `problem_type` with `status`, carrying the response's request id.
fn assert_problem(reply: &Reply, status: StatusCode, problem_type: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.headers[header::CONTENT_TYPE], bank_api::PROBLEM_JSON);
    assert_eq!(reply.body["type"], problem_type, "{}", reply.body);
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(reply.body["title"].is_string() && reply.body["detail"].is_string(), "{}", reply.body);
    let request_id = reply.headers[bank_api::REQUEST_ID_HEADER].to_str().expect("ascii");
    assert_eq!(reply.body["request_id"], request_id);
}

#[tokio::test]
async fn bodies_that_are_not_the_route_json_are_problems() {
    let app = App::new().await;
    let syntax = app.send(Method::POST, paths::AUTH_REGISTER, None, None, Some("{\"email\":".into())).await;
    assert_problem(&syntax, StatusCode::BAD_REQUEST, problem_types::MALFORMED_BODY);

    let unknown = app
        .post(paths::AUTH_REGISTER, None, None, json!({"email": "a@example.com", "password": PASSWORD, "x": 1}))
        .await;
    assert_problem(&unknown, StatusCode::BAD_REQUEST, problem_types::MALFORMED_BODY);
    assert!(unknown.body["detail"].as_str().expect("detail").contains("unknown field"));
    assert!(!unknown.body.to_string().contains(PASSWORD), "a password never comes back");

    let wrong_type =
        app.post(paths::AUTH_REGISTER, None, None, json!({"email": "a@example.com", "password": 987654})).await;
    assert_problem(&wrong_type, StatusCode::BAD_REQUEST, problem_types::MALFORMED_BODY);
    assert!(!wrong_type.body.to_string().contains("987654"), "a value is never echoed: {}", wrong_type.body);

    let huge = json!({"email": "a@example.com", "password": "p".repeat(17 * 1024)});
    let too_large = app.post(paths::AUTH_REGISTER, None, None, huge).await;
    assert_problem(&too_large, StatusCode::PAYLOAD_TOO_LARGE, problem_types::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_request_ids() {
    let app = App::new().await;
    let missing = app.get("/v1/nothing-here", None).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, problem_types::NOT_FOUND);

    let wrong_method = app.send(Method::DELETE, paths::TRANSFERS, None, None, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers[header::CONTENT_TYPE], bank_api::PROBLEM_JSON);
    assert_eq!(wrong_method.body["status"], 405);

    let request = Request::get(paths::HEALTH_LIVE).header("x-request-id", "client-id-1").body(Body::empty());
    let response = app.router.clone().oneshot(request.expect("request")).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "client-id-1");

    let generated = app.get(paths::HEALTH_LIVE, None).await;
    let id = generated.headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(uuid::Uuid::parse_str(id).expect("uuid").get_version_num(), 7);

    let ready = app.get(paths::HEALTH_READY, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["status"], "ok");
}

/// The NAT case through the router with the default limits: failed logins of other accounts from
/// one address (all clients of this router share one) do not stop a colleague's correct login.
#[tokio::test]
async fn failed_logins_of_others_do_not_lock_out_a_shared_ip() {
    let app = App::new().await;
    for i in 0..40 {
        let body = json!({"email": format!("victim{}@example.com", i % 4), "password": "wrong password!!", "totp_code": "123456"});
        let reply = app.post(paths::AUTH_LOGIN, None, None, body).await;
        assert!(matches!(reply.status.as_u16(), 401 | 429), "{}", reply.body);
    }
    // `login` registers through the API and asserts a 200 login.
    app.login("colleague@example.com", Role::Customer).await;
}

/// Registration takes the address as the OpenAPI pattern states it: surrounding whitespace is
/// refused, not trimmed silently.
#[tokio::test]
async fn registration_refuses_a_padded_email() {
    let app = App::new().await;
    for email in [" padded@example.com", "padded@example.com\n", "\u{c}x@example.com"] {
        let reply = app.post(paths::AUTH_REGISTER, None, None, json!({"email": email, "password": PASSWORD})).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, problem_types::INVALID_REQUEST);
    }
    let reply =
        app.post(paths::AUTH_REGISTER, None, None, json!({"email": "padded@example.com", "password": PASSWORD})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    // A colon is valid in an address (it once answered 500 building the otpauth URI).
    let reply =
        app.post(paths::AUTH_REGISTER, None, None, json!({"email": "a:b@example.com", "password": PASSWORD})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

/// The 100-accounts cap answers 409 (a conflict with the owner's state, as the document says).
#[tokio::test]
async fn the_hundred_and_first_account_is_a_conflict() {
    let app = App::new().await;
    let token = app.login("many@example.com", Role::Customer).await;
    for _ in 0..100 {
        app.open_account(&token, "USD").await;
    }
    let reply = app.post(paths::ACCOUNTS, Some(&token), None, json!({"currency": "USD", "name": "one more"})).await;
    assert_problem(&reply, StatusCode::CONFLICT, problem_types::CONFLICT);
}

#[tokio::test]
async fn protected_routes_need_a_valid_bearer_token() {
    let app = App::new().await;
    for reply in [
        app.get(paths::ACCOUNTS, None).await,
        app.get(paths::ACCOUNTS, Some("not-a-jwt")).await,
        app.post(paths::ACCOUNTS, None, None, json!({"currency": "USD", "name": "Main"})).await,
    ] {
        assert_problem(&reply, StatusCode::UNAUTHORIZED, problem_types::UNAUTHORIZED);
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
}

#[tokio::test]
async fn customers_see_only_their_own_accounts_and_no_admin_route() {
    let app = App::new().await;
    let alice = app.login("alice@example.com", Role::Customer).await;
    let bob = app.login("bob@example.com", Role::Customer).await;
    let account = app.open_account(&alice, "USD").await;

    let own = app.get(&format!("{}/{account}", paths::ACCOUNTS), Some(&alice)).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["posted"], "0.00");
    assert_eq!(own.body["available"], "0.00");

    let foreign = app.get(&format!("{}/{account}", paths::ACCOUNTS), Some(&bob)).await;
    assert_problem(&foreign, StatusCode::NOT_FOUND, problem_types::NOT_FOUND);
    let missing = app.get(&format!("{}/{}", paths::ACCOUNTS, uuid::Uuid::now_v7()), Some(&bob)).await;
    let malformed = app.get(&format!("{}/not-a-uuid", paths::ACCOUNTS), Some(&bob)).await;
    for other in [&missing, &malformed] {
        assert_eq!(other.status, foreign.status);
        assert_eq!(other.body["detail"], foreign.body["detail"], "foreign and missing read the same");
    }
    let history = app.get(&format!("{}/{account}/transactions", paths::ACCOUNTS), Some(&bob)).await;
    assert_problem(&history, StatusCode::NOT_FOUND, problem_types::NOT_FOUND);
    let transfers = app.get(&format!("{}?account_id={account}", paths::TRANSFERS), Some(&bob)).await;
    assert_problem(&transfers, StatusCode::NOT_FOUND, problem_types::NOT_FOUND);

    let bobs_list = app.get(paths::ACCOUNTS, Some(&bob)).await;
    assert_eq!(bobs_list.body, json!({"items": [], "next_cursor": null}));

    let deposit = json!({"account_id": account, "amount": "10.00", "reference": "cash"});
    let forbidden = app.post(paths::ADMIN_DEPOSITS, Some(&alice), Some("dep-1"), deposit).await;
    assert_problem(&forbidden, StatusCode::FORBIDDEN, problem_types::FORBIDDEN);
}

#[tokio::test]
async fn idempotency_keys_are_required_and_checked() {
    let app = App::new().await;
    let alice = app.login("alice@example.com", Role::Customer).await;
    let from = app.open_account(&alice, "USD").await;
    let to = app.open_account(&alice, "USD").await;
    let body =
        json!({"from_account_id": from, "to_account_id": to, "amount": "1.00", "currency": "USD", "reference": "r"});
    let missing = app.post(paths::TRANSFERS, Some(&alice), None, body.clone()).await;
    assert_problem(&missing, StatusCode::BAD_REQUEST, problem_types::IDEMPOTENCY_KEY_MISSING);
    let too_long = "k".repeat(256);
    let bad = app.post(paths::TRANSFERS, Some(&alice), Some(&too_long), body).await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, problem_types::IDEMPOTENCY_KEY_MISSING);
}

#[tokio::test]
async fn deposit_then_transfer_with_replay_and_reuse() {
    let app = App::new().await;
    let operator = app.login("ops@example.com", Role::Operator).await;
    let alice = app.login("alice@example.com", Role::Customer).await;
    let from = app.open_account(&alice, "USD").await;
    let to = app.open_account(&alice, "USD").await;

    let deposit = json!({"account_id": from, "amount": "100", "reference": "cash in"});
    let first = app.post(paths::ADMIN_DEPOSITS, Some(&operator), Some("dep-1"), deposit.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["amount"], "100.00");
    assert_eq!(first.body["currency"], "USD");
    assert!(first.headers.get(bank_api::IDEMPOTENT_REPLAYED_HEADER).is_none());
    let again = app.post(paths::ADMIN_DEPOSITS, Some(&operator), Some("dep-1"), deposit).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers[bank_api::IDEMPOTENT_REPLAYED_HEADER], "true");
    let other = json!({"account_id": from, "amount": "5", "reference": "cash in"});
    let reused = app.post(paths::ADMIN_DEPOSITS, Some(&operator), Some("dep-1"), other).await;
    assert_problem(&reused, StatusCode::UNPROCESSABLE_ENTITY, problem_types::IDEMPOTENCY_KEY_REUSED);

    let account = app.get(&format!("{}/{from}", paths::ACCOUNTS), Some(&alice)).await;
    assert_eq!(account.body["posted"], "100.00", "the replay moved no money: {}", account.body);

    let transfer = json!({"from_account_id": from, "to_account_id": to, "amount": "12.34", "currency": "USD", "reference": "rent"});
    let accepted = app.post(paths::TRANSFERS, Some(&alice), Some("t-1"), transfer.clone()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "accepted");
    assert_eq!(accepted.body["amount"], "12.34");
    let replay = app.post(paths::TRANSFERS, Some(&alice), Some("t-1"), transfer).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    assert_eq!(replay.body, accepted.body);
    assert_eq!(replay.headers[bank_api::IDEMPOTENT_REPLAYED_HEADER], "true");
    let changed =
        json!({"from_account_id": from, "to_account_id": to, "amount": "1.00", "currency": "USD", "reference": "rent"});
    let reused = app.post(paths::TRANSFERS, Some(&alice), Some("t-1"), changed).await;
    assert_problem(&reused, StatusCode::UNPROCESSABLE_ENTITY, problem_types::IDEMPOTENCY_KEY_REUSED);

    let id = accepted.body["id"].as_str().expect("id");
    let read = app.get(&format!("{}/{id}", paths::TRANSFERS), Some(&alice)).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["id"], id);
    let listed = app.get(&format!("{}?account_id={from}&limit=10", paths::TRANSFERS), Some(&alice)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["items"][0]["id"], id);

    let held = app.get(&format!("{}/{from}", paths::ACCOUNTS), Some(&alice)).await;
    assert_eq!(held.body["pending"], "12.34");
    assert_eq!(held.body["available"], "87.66");
    let history = app.get(&format!("{}/{from}/transactions?limit=1", paths::ACCOUNTS), Some(&alice)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["items"][0]["direction"], "credit");
    assert_eq!(history.body["items"][0]["balance_after"], "100.00");

    for (amount, why) in [("1.001", "too many decimals"), ("-1", "negative"), ("0", "zero")] {
        let body = json!({"from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD", "reference": "r"});
        let refused = app.post(paths::TRANSFERS, Some(&alice), Some(&format!("bad-{amount}")), body).await;
        assert_problem(&refused, StatusCode::BAD_REQUEST, problem_types::INVALID_REQUEST);
        assert!(refused.body["detail"].is_string(), "{why}");
    }
    let broke =
        json!({"from_account_id": from, "to_account_id": to, "amount": "1000", "currency": "USD", "reference": "r"});
    let refused = app.post(paths::TRANSFERS, Some(&alice), Some("t-broke"), broke).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, problem_types::INSUFFICIENT_FUNDS);
}

#[tokio::test]
async fn openapi_lists_every_route_and_metrics_show_requests() {
    let app = App::new().await;
    let document = serde_json::to_value(openapi()).expect("document");
    let served = app.get(paths::OPENAPI, None).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, document);
    let id = "{id}";
    let expected = [
        paths::HEALTH_LIVE.to_owned(),
        paths::HEALTH_READY.to_owned(),
        paths::METRICS.to_owned(),
        paths::OPENAPI.to_owned(),
        paths::JWKS.to_owned(),
        paths::AUTH_REGISTER.to_owned(),
        paths::AUTH_LOGIN.to_owned(),
        paths::AUTH_REFRESH.to_owned(),
        paths::AUTH_LOGOUT.to_owned(),
        paths::ACCOUNTS.to_owned(),
        format!("{}/{id}", paths::ACCOUNTS),
        format!("{}/{id}/transactions", paths::ACCOUNTS),
        paths::TRANSFERS.to_owned(),
        format!("{}/{id}", paths::TRANSFERS),
        paths::ADMIN_DEPOSITS.to_owned(),
        format!("{}/{id}", paths::ADMIN_DEPOSITS),
        format!("{}/{id}/approve", paths::ADMIN_DEPOSITS),
        paths::ADMIN_AUDIT.to_owned(),
        format!("{}/{id}/statements", paths::ACCOUNTS),
        format!("{}/{{statement_id}}/download", paths::STATEMENTS),
        paths::ADMIN_STATEMENTS.to_owned(),
        format!("{}/{{key}}", paths::FILES),
        paths::ADMIN_AUDIT_CHECKPOINT.to_owned(),
        paths::ADMIN_AUDIT_PROOF.to_owned(),
        paths::ADMIN_AUDIT_VERIFY.to_owned(),
        paths::AUDIT_KEY.to_owned(),
    ];
    let documented = document["paths"].as_object().expect("paths");
    for path in &expected {
        assert!(documented.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert_eq!(documented.len(), expected.len(), "{:?}", documented.keys().collect::<Vec<_>>());
    assert!(document["components"]["schemas"]["Problem"].is_object());

    let jwks = app.get(paths::JWKS, None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");

    let _ = app.get("/v1/nothing-here", None).await;
    let metrics = app.get(paths::METRICS, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().expect("text");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("route=\"/openapi.json\""), "{text}");
    assert!(text.contains("http_errors_total"), "{text}");
    assert!(text.contains("transfer_queue_visible"), "{text}");
    assert!(text.contains("transfers{status=\"settled\"}"), "{text}");
}

#[tokio::test]
async fn login_and_register_are_rate_limited_per_ip() {
    let app = App::new().await;
    let body = json!({"email": "nobody@example.com", "password": PASSWORD, "totp_code": "000000"});
    let mut limited = None;
    for _ in 0..12 {
        let reply = app.post(paths::AUTH_LOGIN, None, None, body.clone()).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
        assert_problem(&reply, StatusCode::UNAUTHORIZED, problem_types::UNAUTHORIZED);
    }
    let limited = limited.expect("rate limited within 12 attempts");
    assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS, problem_types::RATE_LIMITED);
    let retry_after: u64 = limited.headers[header::RETRY_AFTER].to_str().expect("ascii").parse().expect("secs");
    assert!(retry_after >= 1);
}

/// Two API "processes" built with shared limiters (one store, as Redis gives them) draw from one
/// per-IP budget; a limiter that fails lets requests through and shows on `/metrics`.
#[tokio::test]
async fn shared_rate_limits_hold_across_processes_and_fail_open() {
    use bank_core::ratelimit::{Decision, MemoryRateLimiter, Quota, RateLimiter};
    use bank_server::http::RateLimiters;

    let http = HttpConfig { rate_per_ip: bank_server::http::RateLimit::per_minute(3, 3), ..HttpConfig::default() };
    let shared = RateLimiters::build(&http, |_, quota| {
        Ok::<_, ()>(Arc::new(MemoryRateLimiter::new(quota, Arc::new(SystemClock))) as Arc<dyn RateLimiter>)
    })
    .expect("limiters");
    let mut processes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = dir.path().display().to_string();
        let config = Config::from_lookup(|name| (name == "BANK_DATA_DIR").then(|| data_dir.clone())).expect("config");
        let app = bank_server::app::App::build(&config)
            .await
            .expect("app")
            .with_http(http.clone())
            .with_rate_limiters(shared.clone());
        processes.push(router(app.state(false)));
        dirs.push(dir);
    }
    let get = |router: Router| async move {
        let request = Request::builder().uri(paths::OPENAPI).body(Body::empty()).expect("request");
        router.oneshot(request).await.expect("infallible")
    };
    for i in 0..3 {
        assert_eq!(get(processes[i % 2].clone()).await.status(), StatusCode::OK, "request {i}");
    }
    for router in &processes {
        let refused = get(router.clone()).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "the budget of 3 is shared");
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
    }

    #[derive(Debug)]
    struct Down;
    #[async_trait::async_trait]
    impl RateLimiter for Down {
        async fn check(&self, _key: &str) -> bank_core::Result<Decision> {
            Err(bank_core::Error::Storage { message: "redis: connection refused".into(), retryable: true })
        }
        fn quota(&self) -> Quota {
            Quota::new(1, std::time::Duration::from_secs(60), 1).expect("quota")
        }
    }
    let down = RateLimiters::build(&http, |_, _| Ok::<_, ()>(Arc::new(Down) as Arc<dyn RateLimiter>)).expect("down");
    let dir = TempDir::new().expect("temp dir");
    let data_dir = dir.path().display().to_string();
    let config = Config::from_lookup(|name| (name == "BANK_DATA_DIR").then(|| data_dir.clone())).expect("config");
    let app = bank_server::app::App::build(&config).await.expect("app").with_http(http).with_rate_limiters(down);
    let failing = router(app.state(false));
    for _ in 0..5 {
        assert_eq!(get(failing.clone()).await.status(), StatusCode::OK, "fails open, never 5xx");
    }
    let metrics = get_text(failing, paths::METRICS).await;
    assert!(metrics.contains("rate_limiter_failures_total 5"), "{metrics}");
}

async fn get_text(router: Router, uri: &str) -> String {
    let request = Request::builder().uri(uri).body(Body::empty()).expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Under the data disk's free-space floor: every write but sign-in answers 503 with `Retry-After`
/// and changes nothing (the same key is new afterwards), reads and sign-in go on, readiness stays
/// 200 showing `disk` degraded, and `/metrics` shows the floor crossed.
#[tokio::test]
async fn a_nearly_full_disk_refuses_writes_and_keeps_reads() {
    let (app, full) = App::with_a_full_disk_router().await;
    let operator = app.login("ops@example.com", Role::Operator).await;
    let alice = app.login("alice@example.com", Role::Customer).await;
    let from = app.open_account(&alice, "USD").await;
    let to = app.open_account(&alice, "USD").await;
    let deposit = json!({"account_id": from, "amount": "100", "reference": "cash in"});
    assert_eq!(
        app.post(paths::ADMIN_DEPOSITS, Some(&operator), Some("dep-1"), deposit).await.status,
        StatusCode::CREATED
    );

    let post = |uri: &'static str, token: Option<String>, key: Option<&'static str>, body: Value| {
        let full = full.clone();
        async move { send_via(&full, Method::POST, uri, token.as_deref(), key, Some(body.to_string())).await }
    };
    let transfer = json!({"from_account_id": from, "to_account_id": to, "amount": "12.34", "currency": "USD", "reference": "rent"});
    let refused = [
        post(paths::TRANSFERS, Some(alice.clone()), Some("t-1"), transfer.clone()).await,
        post(paths::ACCOUNTS, Some(alice.clone()), None, json!({"currency": "USD", "name": "Savings"})).await,
        post(paths::AUTH_REGISTER, None, None, json!({"email": "bob@example.com", "password": PASSWORD})).await,
        post(
            paths::ADMIN_DEPOSITS,
            Some(operator.clone()),
            Some("dep-2"),
            json!({"account_id": from, "amount": "1", "reference": "r"}),
        )
        .await,
    ];
    for reply in &refused {
        assert_problem(reply, StatusCode::SERVICE_UNAVAILABLE, problem_types::UNAVAILABLE);
        assert_eq!(reply.headers[header::RETRY_AFTER], "10", "{}", reply.body);
        assert!(reply.body["detail"].as_str().expect("detail").contains("disk"), "{}", reply.body);
    }

    // Sign-in goes on (a customer must stay able to read), and so do reads.
    let carol = app.issuer.create_user("carol@example.com", PASSWORD, Role::Customer).await.expect("carol");
    let now = u64::try_from(SystemClock.now().timestamp()).expect("after 1970");
    let code = totp::code_at(&carol.totp_secret, now).expect("code");
    let login = json!({"email": "carol@example.com", "password": PASSWORD, "totp_code": code});
    let signed_in = post(paths::AUTH_LOGIN, None, None, login).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let account_uri = format!("{}/{from}", paths::ACCOUNTS);
    let account = send_via(&full, Method::GET, &account_uri, Some(&alice), None, None).await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    assert_eq!((account.body["posted"].as_str(), account.body["pending"].as_str()), (Some("100.00"), Some("0.00")));
    let ready = send_via(&full, Method::GET, paths::HEALTH_READY, None, None, None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "a nearly full disk degrades, it does not take the bank out: {}",
        ready.body
    );
    assert!(ready.body["checks"]["disk"].as_str().expect("disk check").starts_with("degraded"), "{}", ready.body);
    let metrics = get_text(full.clone(), paths::METRICS).await;
    assert!(metrics.contains("data_dir_low 1"), "{metrics}");

    // With room again the same key is new: the refused request left nothing behind.
    let accepted = app.post(paths::TRANSFERS, Some(&alice), Some("t-1"), transfer).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert!(accepted.headers.get(bank_api::IDEMPOTENT_REPLAYED_HEADER).is_none(), "not a replay");
    let ready = app.get(paths::HEALTH_READY, None).await;
    assert_eq!(ready.body["checks"]["disk"], "ok", "{}", ready.body);
    let metrics = get_text(app.router.clone(), paths::METRICS).await;
    assert!(metrics.contains("data_dir_low 0") && metrics.contains("data_dir_free_bytes "), "{metrics}");
}
