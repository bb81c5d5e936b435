//! Statements through the real router on a manual clock (`App::build_with_clock`): an operator's
//! run, the owner's list and link, the signed file route (expiry, tampering, another statement's
//! link), another owner's 404, bad periods and ids as problems with nothing stored, a re-run that
//! changes nothing, the audit trail; and the `statements` background loop, on the manual clock
//! and tokio's paused time, making each previous month exactly once.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bank_api::{paths, problem_types};
use bank_core::account::NewAccount;
use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::memory::blob::sha256_hex;
use bank_core::money::{Currency, Money};
use bank_core::users::Role;
use bank_server::app::App;
use bank_server::auth::issuer::TokenIssuer;
use bank_server::auth::totp;
use bank_server::config::Config;
use bank_server::http::{HttpConfig, router};
use bank_server::run::{LoopSet, STATEMENTS_PERIOD};
use bank_server::state::Backend;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";
const PUBLIC_URL: &str = "http://bank.test";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

struct Server {
    _dir: TempDir,
    app: App,
    router: Router,
    issuer: Arc<TokenIssuer>,
    clock: ManualClock,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn problem_type(&self) -> String {
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "a problem answer"
        );
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

impl Server {
    async fn start(clock: &ManualClock) -> Server {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = dir.path().display().to_string();
        let config = Config::from_lookup(|name| match name {
            "BANK_DATA_DIR" => Some(data_dir.clone()),
            "BANK_PUBLIC_URL" => Some(PUBLIC_URL.to_owned()),
            "BANK_BANK_NAME" => Some("Router Test Bank".to_owned()),
            _ => None,
        })
        .expect("config");
        let app = App::build_with_clock(&config, Arc::new(clock.clone())).await.expect("app");
        let app = app.with_http(HttpConfig { statements: config.statements.clone(), ..HttpConfig::default() });
        let issuer = app.auth.issuer.clone().expect("built-in issuer");
        let router = router(app.state(false));
        Server { _dir: dir, app, router, issuer, clock: clock.clone() }
    }

    fn backend(&self) -> &Backend {
        &self.app.backend
    }

    async fn send(&self, method: Method, uri: &str, token: Option<&str>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response =
            self.router.clone().oneshot(builder.body(Body::empty()).expect("request")).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("body").to_vec();
        Reply { status, headers, bytes }
    }

    /// A new user: its id and TOTP secret (sign in with [`Server::token`]).
    async fn user(&self, email: &str, role: Role) -> (CustomerId, String) {
        let registered = self.issuer.create_user(email, PASSWORD, role).await.expect("user");
        (registered.user_id, registered.totp_secret)
    }

    /// An access token of `email`, signed in at the manual clock's time.
    async fn token(&self, email: &str, secret: &str) -> String {
        let now = u64::try_from(self.clock.now().timestamp()).expect("after 1970");
        let code = totp::code_at(secret, now).expect("code");
        let ip = "127.0.0.1".parse().expect("ip");
        self.issuer.login(email, PASSWORD, &code, ip).await.expect("login").access_token
    }

    async fn post(&self, from: AccountId, to: AccountId, amount: &str, reference: &str) {
        let money = Money::parse(amount, "USD").expect("money");
        let entry = NewEntry::transfer(EntryKey::new(TransferId::new(), 0), from, to, money, reference).expect("entry");
        self.backend().ledger.post(entry).await.expect("post");
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        let records = self.backend().audit.list(1, 1000).await.expect("audit");
        records.into_iter().map(|r| (r.record.action, r.record.target)).collect()
    }

    async fn stored(&self) -> usize {
        self.backend().blobs.list("statements/", 1000).await.expect("list").len()
    }
}

fn local_path(url: &str) -> String {
    url.strip_prefix(PUBLIC_URL).unwrap_or_else(|| panic!("a link of this server: {url}")).to_owned()
}

#[tokio::test]
async fn statements_are_made_listed_linked_and_served_to_their_owner_only() {
    let clock = ManualClock::new(at("2026-01-05T09:00:00Z"));
    let server = Server::start(&clock).await;
    let (alice, alice_secret) = server.user("alice@example.com", Role::Customer).await;
    let (_, bob_secret) = server.user("bob@example.com", Role::Customer).await;
    let (_, ops_secret) = server.user("ops@example.com", Role::Operator).await;
    let account =
        server.backend().ledger.open_account(NewAccount::customer(alice, "Alice", Currency::Usd)).await.expect("open");
    let deposits = server.backend().system.deposits(Currency::Usd).expect("deposits account");
    server.post(deposits, account.id, "1500.00", "Salary").await;
    for i in 0..40 {
        server.clock.advance(TimeDelta::hours(12));
        server.post(account.id, deposits, &format!("{}.25", 10 + i), &format!("Card {i}")).await;
    }
    let closing = server.backend().ledger.balance(account.id).await.expect("balance").posted;
    // The statement of January is due once February has begun and the settling delay passed.
    server.clock.set(at("2026-02-01T00:05:00Z"));
    let operator = server.token("ops@example.com", &ops_secret).await;
    let alice_token = server.token("alice@example.com", &alice_secret).await;
    let bob_token = server.token("bob@example.com", &bob_secret).await;

    // Bad periods: 400 problems, nothing stored.
    let admin = |query: &str| format!("{}?{query}", paths::ADMIN_STATEMENTS);
    for query in [
        "period=2026-13",
        "period=2026-1",
        "period=1999-01",
        "period=2026-02",
        "period=2027-01",
        "",
        "period=2026-01&x=1",
    ] {
        let reply = server.send(Method::POST, &admin(query), Some(&operator)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {:?}", reply.json());
        assert_eq!(reply.problem_type(), problem_types::INVALID_REQUEST, "{query}");
    }
    assert_eq!(server.stored().await, 0, "refused runs store nothing");
    let reply = server.send(Method::POST, &admin("period=2026-01"), Some(&bob_token)).await;
    assert_eq!((reply.status, reply.problem_type()), (StatusCode::FORBIDDEN, problem_types::FORBIDDEN.to_owned()));
    let unknown = admin(&format!("period=2026-01&account_id={}", AccountId::new()));
    assert_eq!(server.send(Method::POST, &unknown, Some(&operator)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.stored().await, 0);

    // The operator's run makes Alice's statement; running again changes nothing.
    let run = server.send(Method::POST, &admin("period=2026-01"), Some(&operator)).await;
    assert_eq!(run.status, StatusCode::OK, "{:?}", run.json());
    assert_eq!((run.json()["created"].as_u64(), run.json()["existing"].as_u64()), (Some(1), Some(0)));
    let again = server.send(Method::POST, &admin("period=2026-01"), Some(&operator)).await;
    assert_eq!((again.json()["created"].as_u64(), again.json()["existing"].as_u64()), (Some(0), Some(1)));
    let one = admin(&format!("period=2026-01&account_id={}", account.id));
    let one = server.send(Method::POST, &one, Some(&operator)).await;
    assert_eq!((one.status, one.json()["existing"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(server.stored().await, 1);
    let generated: Vec<_> =
        server.audit_actions().await.into_iter().filter(|(action, _)| action == "statement.generated").collect();
    assert_eq!(generated.len(), 1, "one statement, audited once: {generated:?}");

    // The owner lists it and gets a link; the file behind the link is the PDF with that SHA-256.
    let list = server.send(Method::GET, &paths::account_statements(*account.id.as_uuid()), Some(&alice_token)).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.json()["items"].as_array().cloned().expect("items");
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["period"], "2026-01");
    let id = item["id"].as_str().expect("id").to_owned();
    let sha256 = item["sha256"].as_str().expect("sha256").to_owned();
    assert!(generated[0].1.contains(&sha256), "the audit record names the SHA-256");
    let link = server.send(Method::GET, &paths::statement_download(&id), Some(&alice_token)).await;
    assert_eq!(link.status, StatusCode::OK, "{:?}", link.json());
    assert_eq!(link.json()["sha256"].as_str(), Some(sha256.as_str()));
    let expires: DateTime<Utc> = serde_json::from_value(link.json()["expires_at"].clone()).expect("expiry");
    assert_eq!(expires, server.clock.now() + TimeDelta::minutes(5), "valid five minutes");
    let url = link.json()["url"].as_str().expect("url").to_owned();
    let path = local_path(&url);
    let file = server.send(Method::GET, &path, None).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("application/pdf"));
    assert!(file.bytes.starts_with(b"%PDF-"));
    assert_eq!(sha256_hex(&file.bytes), sha256, "the bytes are the listed statement's");
    let closing_text = bank_core::statements::format_amount(closing, 2);
    assert!(
        file.bytes.windows(closing_text.len()).any(|w| w == closing_text.as_bytes()),
        "the closing balance {closing_text} is written in the PDF"
    );
    let downloads = server.audit_actions().await.into_iter().filter(|(a, _)| a == "statement.downloaded").count();
    assert_eq!(downloads, 1);

    // Altered or malformed links, and one whose key is another statement's: 403, nothing read.
    let other_key = format!("statements/{}/2025-12.pdf", account.id);
    for altered in [
        path.replace("2026-01.pdf", "2025-12.pdf"),
        path.replace(&account.id.to_string(), &AccountId::new().to_string()),
        path.replace("expires=", "expires=1"),
        format!("{path}0"),
        path.split('?').next().unwrap_or_default().to_owned(),
        format!("{}/files/{other_key}?expires=99999999999&signature={}", "", "00".repeat(32)),
        format!("{path}&x=1"),
    ] {
        let reply = server.send(Method::GET, &altered, None).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{altered}");
        assert_eq!(reply.problem_type(), problem_types::FORBIDDEN);
    }
    // Expired: a second before the end it works, at the end it does not.
    server.clock.advance(TimeDelta::seconds(299));
    assert_eq!(server.send(Method::GET, &path, None).await.status, StatusCode::OK);
    server.clock.advance(TimeDelta::seconds(1));
    let expired = server.send(Method::GET, &path, None).await;
    assert_eq!((expired.status, expired.problem_type()), (StatusCode::FORBIDDEN, problem_types::FORBIDDEN.to_owned()));

    // Another owner: the list and the statement are 404, like missing ones; so are unknown and
    // malformed statement ids.
    let foreign = server.send(Method::GET, &paths::account_statements(*account.id.as_uuid()), Some(&bob_token)).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let missing_id = format!("{}_2025-12", account.id);
    let nobody_id = format!("{}_2026-01", AccountId::new());
    for (token, id) in [
        (&bob_token, id.as_str()),
        (&alice_token, missing_id.as_str()),
        (&alice_token, nobody_id.as_str()),
        (&alice_token, "not-a-statement"),
        (&alice_token, &format!("{}_2026-13", account.id)),
    ] {
        let reply = server.send(Method::GET, &paths::statement_download(id), Some(token)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(reply.problem_type(), problem_types::NOT_FOUND);
        assert_eq!(reply.json()["detail"], "statement not found", "{id}: the same answer");
    }
    // An operator may read (and link) every account's statements, as it may read every account.
    let by_operator = server.send(Method::GET, &paths::statement_download(&id), Some(&operator)).await;
    assert_eq!(by_operator.status, StatusCode::OK);
    assert_eq!(server.stored().await, 1, "nothing else was stored");
}

/// Lets the loop's work on other threads (SQLite writer, blocking pool) make progress in real
/// time, then lets the runtime poll the loop: paused tokio time only moves timers, and would
/// otherwise race ahead of the I/O the loop waits for.
async fn let_io_finish() {
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        tokio::task::yield_now().await;
    }
}

/// One period of the statements loop in paused time, and the work it started.
async fn tick() {
    tokio::time::sleep(STATEMENTS_PERIOD).await;
    let_io_finish().await;
}

/// The `statements` loop of `serve`, on the manual clock with tokio's time paused: started in
/// mid-January it finds nothing to state for December and January has not ended; on February
/// 1st it waits out the settling delay, then makes January's statement once, however many
/// ticks follow.
#[tokio::test(start_paused = true)]
async fn the_monthly_loop_runs_the_previous_month_once_on_the_clock() {
    let clock = ManualClock::new(at("2026-01-10T12:00:00Z"));
    let server = Server::start(&clock).await;
    let owner = CustomerId::new();
    let account =
        server.backend().ledger.open_account(NewAccount::customer(owner, "Carol", Currency::Usd)).await.expect("open");
    let deposits = server.backend().system.deposits(Currency::Usd).expect("deposits account");
    server.post(deposits, account.id, "250.00", "Opening").await;
    let loops = server.app.start_loops(LoopSet::STATEMENTS).expect("loops");
    assert_eq!(loops.names(), ["statements"]);
    let generated = || async {
        let records = server.backend().audit.list(1, 1000).await.expect("audit");
        records
            .iter()
            .filter(|r| r.record.action == "statement.generated")
            .map(|r| r.record.target.clone())
            .collect::<Vec<_>>()
    };
    for _ in 0..10 {
        tick().await;
    }
    assert!(generated().await.is_empty(), "December: no account; January: not ended");
    server.clock.set(at("2026-02-01T00:04:59Z"));
    for _ in 0..5 {
        tick().await;
    }
    assert!(generated().await.is_empty(), "January is still settling");
    server.clock.set(at("2026-02-01T00:05:00Z"));
    tick().await;
    let mut made = generated().await;
    for _ in 0..2_000 {
        if !made.is_empty() {
            break;
        }
        let_io_finish().await;
        made = generated().await;
    }
    assert_eq!(made.len(), 1, "January's statement was made: {made:?}");
    assert!(made[0].contains(&format!("statement:{}_2026-01", account.id)), "{made:?}");
    for _ in 0..30 {
        server.clock.advance(TimeDelta::hours(1));
        tick().await;
    }
    assert_eq!(generated().await.len(), 1, "January is made once");
    assert_eq!(server.stored().await, 1);
    loops.shutdown().await;
}
