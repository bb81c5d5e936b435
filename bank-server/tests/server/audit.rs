//! The audit log through the real router: what each action records (and never: secrets), the
//! durable / queued split, the checkpoint, proof, verify and key routes, and a tampered file
//! failing verification over HTTP.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bank_api::paths;
use bank_core::audit::checkpoint::AuditVerifier;
use bank_core::audit::{AuditRecord, tree};
use bank_core::clock::{Clock, SystemClock};
use bank_core::payments::OutboxRelay;
use bank_core::users::Role;
use bank_server::auth::totp;
use bank_server::config::Config;
use bank_server::http::{AppState, HttpConfig, router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

struct App {
    dir: TempDir,
    app: bank_server::app::App,
    state: AppState,
    router: Router,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    text: String,
    body: Value,
}

impl App {
    async fn new() -> App {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = dir.path().display().to_string();
        let config = Config::from_lookup(|name| (name == "BANK_DATA_DIR").then(|| data_dir.clone())).expect("config");
        let app = bank_server::app::App::build(&config).await.expect("app").with_http(HttpConfig::default());
        let state = app.state(false);
        App { router: router(state.clone()), state, app, dir }
    }

    async fn send(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .header(bank_api::IDEMPOTENCY_KEY_HEADER, "key-1")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, content_type, text, body }
    }

    async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, uri, token, Some(body)).await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, uri, token, None).await
    }

    fn code(secret: &str) -> String {
        let now = u64::try_from(SystemClock.now().timestamp()).expect("after 1970");
        totp::code_at(secret, now).expect("code")
    }

    /// Registers a customer (or creates an operator) and logs in: (token, refresh token, secret).
    async fn login(&self, email: &str, role: Role) -> (String, String, String) {
        let secret = match role {
            Role::Customer => {
                let reply = self.post(paths::AUTH_REGISTER, None, json!({"email": email, "password": PASSWORD})).await;
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
                reply.body["totp_secret"].as_str().expect("secret").to_owned()
            }
            Role::Operator => {
                let issuer = self.app.auth.issuer.clone().expect("issuer");
                issuer.create_user(email, PASSWORD, role).await.expect("operator").totp_secret
            }
        };
        let login = json!({"email": email, "password": PASSWORD, "totp_code": App::code(&secret)});
        let reply = self.post(paths::AUTH_LOGIN, None, login).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let token = reply.body["access_token"].as_str().expect("token").to_owned();
        let refresh = reply.body["refresh_token"].as_str().expect("refresh").to_owned();
        (token, refresh, secret)
    }

    /// Every record, after the queued ones are committed.
    async fn records(&self) -> Vec<AuditRecord> {
        self.state.audit().flush().await.expect("flush");
        self.app.backend.audit.list(1, 1000).await.expect("list")
    }

    async fn durable_records(&self) -> Vec<AuditRecord> {
        self.app.backend.audit.list(1, 1000).await.expect("list")
    }
}

fn actions(records: &[AuditRecord]) -> Vec<String> {
    records.iter().map(|r| r.record.action.clone()).collect()
}

fn has(records: &[AuditRecord], action: &str, subject: &str) -> bool {
    records.iter().any(|r| r.record.action == action && r.record.subject == subject)
}

/// Registration, each kind of login refusal, login, refresh (and its reuse), logout and refused
/// tokens are recorded with their reason; no record holds the email, password, code or a token.
#[tokio::test]
async fn every_sign_in_step_is_recorded_with_its_reason_and_no_secret() {
    let app = App::new().await;
    let (token, refresh, secret) = app.login("alice@example.com", Role::Customer).await;
    let user = app.durable_records().await[0].record.subject.clone();
    let wrong_password = json!({"email": "alice@example.com", "password": "wrong password!!", "totp_code": "000000"});
    assert_eq!(app.post(paths::AUTH_LOGIN, None, wrong_password).await.status, StatusCode::UNAUTHORIZED);
    let wrong_code = json!({"email": "alice@example.com", "password": PASSWORD, "totp_code": "000000"});
    let wrong_code = if App::code(&secret) == "000000" {
        json!({"email": "alice@example.com", "password": PASSWORD, "totp_code": "111111"})
    } else {
        wrong_code
    };
    assert_eq!(app.post(paths::AUTH_LOGIN, None, wrong_code).await.status, StatusCode::UNAUTHORIZED);
    let nobody = json!({"email": "nobody@example.com", "password": PASSWORD, "totp_code": "000000"});
    assert_eq!(app.post(paths::AUTH_LOGIN, None, nobody).await.status, StatusCode::UNAUTHORIZED);
    let refreshed = app.post(paths::AUTH_REFRESH, None, json!({"refresh_token": refresh})).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let reused = app.post(paths::AUTH_REFRESH, None, json!({"refresh_token": refresh})).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    let logout = app.post(paths::AUTH_LOGOUT, None, json!({"refresh_token": "unknown"})).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);

    // Durable: on disk as soon as each answer came back, without waiting for the flusher.
    let durable = app.durable_records().await;
    for (action, subject) in [
        ("auth.registered", user.as_str()),
        ("auth.login", user.as_str()),
        ("auth.login.refused.wrong_password", user.as_str()),
        ("auth.login.refused.wrong_totp", user.as_str()),
        ("auth.login.refused.unknown_user", "anonymous"),
        ("auth.refresh", user.as_str()),
        ("auth.refresh.refused.reused", user.as_str()),
        ("auth.logout", "anonymous"),
    ] {
        assert!(has(&durable, action, subject), "{action} by {subject} missing: {:?}", actions(&durable));
    }
    let login = durable.iter().find(|r| r.record.action == "auth.login").expect("login record");
    assert_eq!(login.record.target, format!("user:{user}"));
    assert!(login.record.request_id.is_some() && login.record.client_ip.is_some(), "{login:?}");

    // Queued: refused tokens.
    assert_eq!(app.get(paths::ACCOUNTS, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(paths::ACCOUNTS, Some("not.a.jwt")).await.status, StatusCode::UNAUTHORIZED);
    let records = app.records().await;
    assert!(has(&records, "auth.token.refused.missing", "anonymous"), "{:?}", actions(&records));
    assert!(has(&records, "auth.token.refused.invalid", "anonymous"), "{:?}", actions(&records));
    let refused = records.iter().find(|r| r.record.action == "auth.token.refused.missing").expect("record");
    assert_eq!(refused.record.target, "route:/v1/accounts");

    let all = serde_json::to_string(&records).expect("json");
    for secret_text in [PASSWORD, "alice@example.com", secret.as_str(), token.as_str(), refresh.as_str(), "not.a.jwt"] {
        assert!(!all.contains(secret_text), "an audit record holds {secret_text:?}");
    }
}

/// Account and history views, another customer's account (refused as not-found), transfers
/// created, and operators' audit reads are recorded.
#[tokio::test]
async fn views_transfers_and_operator_reads_are_recorded() {
    let app = App::new().await;
    let (alice, _, _) = app.login("alice@example.com", Role::Customer).await;
    let (bob, _, _) = app.login("bob@example.com", Role::Customer).await;
    let (operator, _, _) = app.login("ops@example.com", Role::Operator).await;
    let from = app.post(paths::ACCOUNTS, Some(&alice), json!({"currency": "USD", "name": "Main"})).await;
    let from = from.body["id"].as_str().expect("id").to_owned();
    let to = app.post(paths::ACCOUNTS, Some(&bob), json!({"currency": "USD", "name": "Main"})).await;
    let to = to.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.get(paths::ACCOUNTS, Some(&alice)).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("{}/{from}", paths::ACCOUNTS), Some(&alice)).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("{}/{from}/transactions", paths::ACCOUNTS), Some(&alice)).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("{}/{to}", paths::ACCOUNTS), Some(&alice)).await.status, StatusCode::NOT_FOUND);
    let deposit = json!({"account_id": from, "amount": "100.00", "reference": "cash"});
    assert_eq!(app.post(paths::ADMIN_DEPOSITS, Some(&operator), deposit).await.status, StatusCode::CREATED);
    let transfer = json!({"from_account_id": from, "to_account_id": to, "amount": "10.00", "currency": "USD", "reference": "rent"});
    let created = app.post(paths::TRANSFERS, Some(&alice), transfer.clone()).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    // A replay's record is durable before its 202.
    assert_eq!(app.post(paths::TRANSFERS, Some(&alice), transfer).await.status, StatusCode::ACCEPTED);
    let replayed = app.durable_records().await;
    assert!(replayed.iter().any(|r| r.record.action == "transfer.create.replayed"), "{:?}", actions(&replayed));
    let transfer_id = created.body["id"].as_str().expect("id").to_owned();
    // Committed with the transfer before the 202, in the outbox; the relay appends it.
    let durable = app.durable_records().await;
    assert!(!durable.iter().any(|r| r.record.action == "transfer.created"), "not in the log before the relay runs");
    let backend = &app.app.backend;
    let relay = OutboxRelay::new(backend.payments.clone(), backend.publisher.clone()).with_audit(backend.audit.clone());
    assert_eq!(relay.run_once(100).await.expect("relay"), 1, "the record waited in the outbox");
    let durable = app.durable_records().await;
    let created = durable.iter().find(|r| r.record.action == "transfer.created").expect("transfer.created");
    assert_eq!(created.record.target, format!("transfer:{transfer_id}"));
    assert!(created.record.request_id.is_some() && created.record.client_ip.is_some(), "{created:?}");
    assert!(durable.iter().any(|r| r.record.action == "deposit.posted"), "{:?}", actions(&durable));
    assert_eq!(app.get(&format!("{}?limit=5", paths::ADMIN_AUDIT), Some(&operator)).await.status, StatusCode::OK);

    let records = app.records().await;
    for action in [
        "account.opened",
        "account.list",
        "account.view",
        "account.history",
        "account.view.refused.not-found",
        "audit.listed",
    ] {
        assert!(records.iter().any(|r| r.record.action == action), "{action} missing: {:?}", actions(&records));
    }
    let foreign = records.iter().find(|r| r.record.action == "account.view.refused.not-found").expect("record");
    assert_eq!(foreign.record.target, format!("account:{to}"));
}

/// The key, checkpoint, proof and verify routes agree with each other and with an independent
/// check: the checkpoint verifies with the published key, the proof leads from the record's bytes
/// to the signed root, verify passes; customers get 403; a proof past the checkpoint is 404.
#[tokio::test]
async fn checkpoint_proof_and_verify_routes_check_out_with_the_published_key() {
    let app = App::new().await;
    let (operator, _, _) = app.login("ops@example.com", Role::Operator).await;
    let (alice, _, _) = app.login("alice@example.com", Role::Customer).await;
    assert_eq!(app.get(paths::ADMIN_AUDIT_CHECKPOINT, Some(&operator)).await.status, StatusCode::NOT_FOUND);
    let sealer = app.app.backend.audit_sealer();
    let checkpoint = sealer.checkpoint_now().await.expect("checkpoint").expect("records to checkpoint");
    assert_eq!(sealer.seal_pending().await.expect("seal"), 1);

    let key = app.get(paths::AUDIT_KEY, None).await;
    assert_eq!(key.status, StatusCode::OK);
    assert!(key.content_type.starts_with("text/plain"), "{}", key.content_type);
    assert!(key.text.starts_with("bank.example/audit+"), "{}", key.text);
    let verifier = AuditVerifier::new(&key.text).expect("a verifier key in the note format");

    let served = app.get(paths::ADMIN_AUDIT_CHECKPOINT, Some(&operator)).await;
    assert_eq!(served.status, StatusCode::OK);
    assert!(served.content_type.starts_with("text/plain"));
    assert_eq!(served.text, checkpoint.note);
    let head = verifier.open(&served.text).expect("signed by the published key");
    assert_eq!(head.size, checkpoint.size);

    for seq in [1, head.size] {
        let proof = app.get(&format!("{}?seq={seq}", paths::ADMIN_AUDIT_PROOF), Some(&operator)).await;
        assert_eq!(proof.status, StatusCode::OK, "{}", proof.text);
        let bytes = BASE64.decode(proof.body["record_bytes"].as_str().expect("bytes")).expect("base64");
        let path: Vec<[u8; 32]> = proof.body["audit_path"]
            .as_array()
            .expect("path")
            .iter()
            .map(|h| BASE64.decode(h.as_str().expect("hash")).expect("base64").try_into().expect("32 bytes"))
            .collect();
        assert_eq!(proof.body["tree_size"], head.size);
        let leaf = tree::leaf_hash(&bytes);
        assert!(tree::check_inclusion(&path, head.size, head.root, seq - 1, leaf), "record {seq}");
        // The record's hash is the SHA-256 of the bytes proven.
        use sha2::Digest as _;
        assert_eq!(proof.body["record"]["hash"], hex::encode(sha2::Sha256::digest(&bytes)));
    }
    let beyond = app.get(&format!("{}?seq={}", paths::ADMIN_AUDIT_PROOF, head.size + 1), Some(&operator)).await;
    assert_eq!(beyond.status, StatusCode::NOT_FOUND);

    let verified = app.get(paths::ADMIN_AUDIT_VERIFY, Some(&operator)).await;
    assert_eq!(verified.status, StatusCode::OK);
    assert_eq!(verified.body["ok"], true, "{}", verified.text);
    assert_eq!(verified.body["segments_checked"], 1);

    for route in [paths::ADMIN_AUDIT_CHECKPOINT, paths::ADMIN_AUDIT_VERIFY, "/v1/admin/audit/proof?seq=1"] {
        assert_eq!(app.get(route, Some(&alice)).await.status, StatusCode::FORBIDDEN, "{route}");
    }
}

/// A record edited in the audit file (triggers dropped) fails `GET /v1/admin/audit/verify`,
/// naming it.
#[tokio::test]
async fn a_tampered_file_fails_verification_over_http() {
    let app = App::new().await;
    let (operator, _, _) = app.login("ops@example.com", Role::Operator).await;
    let sealer = app.app.backend.audit_sealer();
    sealer.checkpoint_now().await.expect("checkpoint");
    sealer.seal_pending().await.expect("seal");
    let conn = rusqlite::Connection::open(app.dir.path().join("audit.sqlite")).expect("open");
    conn.execute_batch("DROP TRIGGER audit_records_no_update").expect("drop trigger");
    let edited = conn.execute("UPDATE audit_records SET outcome = 'refused' WHERE seq = 1", []).expect("edit");
    assert_eq!(edited, 1, "the operator's login is record 1");
    let verified = app.get(paths::ADMIN_AUDIT_VERIFY, Some(&operator)).await;
    assert_eq!(verified.status, StatusCode::OK);
    assert_eq!(verified.body["ok"], false, "{}", verified.text);
    assert_eq!(verified.body["first_bad_seq"], 1, "{}", verified.text);
}
