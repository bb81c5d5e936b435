//! The seed's flow end to end on the AWS backend (`BANK_BACKEND=aws`: PostgreSQL, DynamoDB, SQS
//! FIFO, SNS, S3 Object Lock, Redis — the emulator and test services of `scripts/services.sh`),
//! through the real server on a manual clock: register → TOTP login → operator deposit →
//! transfer → settled → a webhook notification → the month's statement and its pre-signed link
//! (the PDF downloaded from S3, its SHA-256 checked) → the audit log verified. Without the
//! services the test prints why and skips (and fails when `BANK_REQUIRE_SERVICES=1`).

use std::collections::HashMap;
use std::sync::Arc;

use bank_api::{DepositRequest, TransferRequest, TransferStatus};
use bank_aws::backend::testing::TestAws;
use bank_client::{BankClient, RetryPolicy};
use bank_core::clock::{Clock, ManualClock};
use bank_server::app::App;
use bank_server::auth::totp;
use bank_server::config::Config;
use bank_server::run::LoopSet;
use chrono::{Datelike, TimeDelta};
use parking_lot::Mutex;
use rust_decimal_macros::dec;
use sha2::Digest;

use bank_aws::postgres::testing::TcpProxy;

use crate::common::{PASSWORD, eventually};
use crate::flow::final_transfer;

const WEBHOOK_SECRET: &str = "a webhook secret of at least thirty-two bytes";

/// A webhook receiver on loopback: the `Idempotency-Key` of every delivery.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let sink = Arc::clone(&sink);
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
                sink.lock().push(key.to_owned());
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the webhook") });
    (url, received)
}

fn code(secret: &str, clock: &ManualClock) -> String {
    let now = u64::try_from(clock.now().timestamp()).expect("after 1970");
    totp::code_at(secret, now).expect("totp")
}

/// A server on the AWS backend (every loop running), on a manual clock.
struct AwsApp {
    base_url: String,
    clock: ManualClock,
    issuer: Arc<bank_server::auth::issuer::TokenIssuer>,
    loops: Option<bank_server::run::Loops>,
    server: tokio::task::JoinHandle<()>,
}

impl AwsApp {
    /// Starts on `aws`'s resources, with `overrides` of its variables.
    async fn start(aws: &TestAws, overrides: &[(&'static str, String)]) -> AwsApp {
        let clock = ManualClock::new(chrono::Utc::now());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let audit_key =
            bank_core::audit::checkpoint::AuditKey::from_seed("bank.example/audit", rand_seed()).expect("audit key");
        let mut vars: HashMap<&str, String> = aws.env().into_iter().collect();
        vars.extend([
            ("BANK_PUBLIC_URL", base_url.clone()),
            ("BANK_JWT_SIGNING_KEY", bank_server::auth::keys::SigningKeys::generate_pkcs8_base64().expect("jwt key")),
            ("BANK_AUDIT_SIGNING_KEY", audit_key.private_key()),
            ("BANK_RATE_PER_IP", "100000".to_owned()),
            ("BANK_RATE_PER_SUBJECT", "100000".to_owned()),
            ("BANK_LOGIN_RATE_PER_IP", "100000".to_owned()),
        ]);
        vars.extend(overrides.iter().cloned());
        let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("configuration");
        let app = App::build_with_clock(&config, Arc::new(clock.clone())).await.expect("the app on AWS");
        assert!(app.local.is_none(), "nothing in a data directory");
        let issuer = app.auth.issuer.clone().expect("built-in issuer");
        let loops = app.start_loops(LoopSet::ALL).expect("loops");
        let service = app.service(true);
        let server = tokio::spawn(async move { axum::serve(listener, service).await.expect("serve") });
        AwsApp { base_url, clock, issuer, loops: Some(loops), server }
    }

    fn client(&self) -> BankClient {
        BankClient::builder(&self.base_url)
            .retry_policy(RetryPolicy { attempts_max: 10, ..RetryPolicy::default() })
            .build()
            .expect("client")
    }

    /// A new customer, signed in; answers the client and the TOTP secret.
    async fn customer(&self, name: &str) -> (BankClient, String) {
        let client = self.client();
        let email = format!("{name}@aws.example");
        let registered = client.register(&email, PASSWORD).await.expect("register");
        client.login(&email, PASSWORD, &code(&registered.totp_secret, &self.clock)).await.expect("login");
        (client, registered.totp_secret)
    }

    /// An access token of `name` (signed in with the next step's TOTP code: each code logs in
    /// once).
    async fn token(&self, name: &str, totp_secret: &str) -> String {
        let next = u64::try_from(self.clock.now().timestamp()).expect("after 1970") + 30;
        let code = totp::code_at(totp_secret, next).expect("totp");
        let ip = "127.0.0.1".parse().expect("ip");
        self.issuer.login(&format!("{name}@aws.example"), PASSWORD, &code, ip).await.expect("login").access_token
    }

    /// A new operator, signed in; answers the client and the TOTP secret.
    async fn operator(&self, name: &str) -> (BankClient, String) {
        let email = format!("{name}@aws.example");
        let made = self.issuer.create_user(&email, PASSWORD, bank_core::users::Role::Operator).await.expect("operator");
        let client = self.client();
        client.login(&email, PASSWORD, &code(&made.totp_secret, &self.clock)).await.expect("operator login");
        (client, made.totp_secret)
    }
}

impl Drop for AwsApp {
    fn drop(&mut self) {
        if let Some(loops) = self.loops.take() {
            loops.cancellation().cancel();
        }
        self.server.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_flow_runs_on_the_aws_backend() {
    let Some(aws) = TestAws::new("e2e-aws").await else { return };
    let (hook_url, notified) = webhook_receiver().await;
    let server =
        AwsApp::start(&aws, &[("BANK_WEBHOOK_URL", hook_url), ("BANK_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned())])
            .await;
    let clock = &server.clock;
    let ready = server.client().health_ready().await.expect("ready");
    for service in ["postgresql", "dynamodb", "sqs", "sns", "s3", "redis"] {
        assert_eq!(ready.checks.get(service).map(String::as_str), Some("ok"), "readiness checks {service}: {ready:?}");
    }

    // Register and sign in with TOTP; the operator is made by the issuer, as `users create` does.
    let (alice, alice_totp) = server.customer("alice").await;
    let (bob, _) = server.customer("bob").await;
    let (operator, operator_totp) = server.operator("ops").await;

    let alice_main = alice.open_account("USD", "main").await.expect("open");
    let bob_main = bob.open_account("USD", "main").await.expect("open");
    let deposit = DepositRequest { account_id: alice_main.id, amount: dec!(100.00), reference: "opening".into() };
    operator.admin_deposit("e2e-aws-deposit-1", &deposit).await.expect("deposit");
    let request = TransferRequest::internal(alice_main.id, bob_main.id, dec!(30.00), "USD", "dinner");
    let key = uuid::Uuid::now_v7().to_string();
    let submitted = alice.transfer_with_key(&key, &request).await.expect("transfer");
    let again = alice.transfer_with_key(&key, &request).await.expect("the same key again");
    assert!(again.replayed && again.value.id == submitted.value.id, "one transfer per key (DynamoDB)");
    let settled = final_transfer(&alice, submitted.value.id).await;
    assert_eq!(settled.status, TransferStatus::Settled, "{settled:?}");
    let alice_now = alice.account(alice_main.id).await.expect("account");
    assert_eq!((alice_now.posted, alice_now.available), (dec!(70.00), dec!(70.00)), "read after the settlement");
    assert_eq!(bob.account(bob_main.id).await.expect("account").posted, dec!(30.00));

    // The notification of the settled transfer reached the webhook, once per event and recipient.
    eventually("a webhook notification", || async { (notified.lock().len() >= 2).then_some(()) }).await;
    let keys = notified.lock().clone();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "delivered once each: {keys:?}");

    // Next month: this month's statement, made by the operator, listed for its owner, downloaded
    // through its pre-signed S3 link; the bytes match the SHA-256 the server gave.
    let period = clock.now();
    clock.advance(TimeDelta::days(40));
    let period = format!("{:04}-{:02}", period.year(), period.month());
    operator.login("ops@aws.example", PASSWORD, &code(&operator_totp, clock)).await.expect("operator login");
    let run = operator.run_statements(&period, Some(alice_main.id)).await.expect("statements");
    assert_eq!(run.created, 1, "{run:?}");
    alice.login("alice@aws.example", PASSWORD, &code(&alice_totp, clock)).await.expect("login");
    let statements = alice.statements(alice_main.id).await.expect("list");
    assert_eq!(statements.len(), 1, "{statements:?}");
    let link = alice.statement_link(&statements[0].id).await.expect("link");
    assert!(link.url.contains("X-Amz-Signature"), "a pre-signed S3 URL: {}", link.url);
    let pdf = reqwest::get(&link.url).await.expect("download").bytes().await.expect("bytes");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    assert_eq!(hex::encode(sha2::Sha256::digest(&pdf)), link.sha256);

    // Every step above is in the audit log, and the log verifies (chain, checkpoints, segments).
    let verified = operator.audit_verify().await.expect("verify");
    assert!(verified.ok && verified.records_checked > 5, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_aws_services_writes_answer_503_and_nothing_is_half_done_and_views_outlive_redis() {
    let Some(aws) = TestAws::new("e2e-aws-down").await else { return };
    let (aws_proxy, endpoint) = TcpProxy::in_front_of(&aws.endpoint).await.expect("proxy to the emulator");
    let (redis_proxy, redis_url) = TcpProxy::in_front_of(&aws.redis_url).await.expect("proxy to Redis");
    let server = AwsApp::start(&aws, &[("AWS_ENDPOINT_URL", endpoint), ("BANK_REDIS_URL", redis_url)]).await;
    let (alice, alice_totp) = server.customer("alice").await;
    let (bob, _) = server.customer("bob").await;
    let (operator, _) = server.operator("ops").await;
    let alice_token = server.token("alice", &alice_totp).await;
    let alice_main = alice.open_account("USD", "main").await.expect("open");
    let bob_main = bob.open_account("USD", "main").await.expect("open");
    let deposit = DepositRequest { account_id: alice_main.id, amount: dec!(100.00), reference: "opening".into() };
    operator.admin_deposit("e2e-aws-down-deposit", &deposit).await.expect("deposit");

    // Redis gone: views still answer, from the database, and the server stays ready (degraded).
    redis_proxy.cut();
    let viewed = alice.account(alice_main.id).await.expect("a view without Redis");
    assert_eq!(viewed.posted, dec!(100.00));
    let ready = server.client().health_ready().await.expect("still ready without Redis");
    assert!(ready.checks["redis"].starts_with("degraded"), "{ready:?}");
    redis_proxy.restore();

    // The AWS services gone: a transfer answers 503 with Retry-After (raw, so no client retry hides
    // it), and nothing of it exists.
    aws_proxy.cut();
    let request = TransferRequest::internal(alice_main.id, bob_main.id, dec!(30.00), "USD", "while down");
    let key = uuid::Uuid::now_v7().to_string();
    let raw = reqwest::Client::new()
        .post(format!("{}{}", server.base_url, bank_api::paths::TRANSFERS))
        .bearer_auth(&alice_token)
        .header(bank_api::IDEMPOTENCY_KEY_HEADER, &key)
        .json(&request)
        .send()
        .await
        .expect("an answer");
    assert_eq!(raw.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE, "{:?}", raw.text().await);
    assert!(raw.headers().contains_key(reqwest::header::RETRY_AFTER));
    let page = alice.transfers_page(alice_main.id, 10, None).await.expect("transfers while AWS is down");
    assert!(page.items.is_empty(), "nothing half-done: {page:?}");

    // Back: the same key goes through once, and settles.
    aws_proxy.restore();
    let submitted = alice.transfer_with_key(&key, &request).await.expect("the retry");
    assert!(!submitted.replayed, "the refused attempt left nothing to replay");
    let settled = final_transfer(&alice, submitted.value.id).await;
    assert_eq!(settled.status, TransferStatus::Settled, "{settled:?}");
    let alice_now = alice.account(alice_main.id).await.expect("account");
    assert_eq!(alice_now.posted, dec!(70.00), "debited once");
    drop(server);
}

fn rand_seed() -> [u8; 32] {
    let mut seed = [0_u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut seed);
    seed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_across_two_api_processes() {
    let Some(aws) = TestAws::new("e2e-aws-limits").await else { return };
    // Three login or register requests a minute from one IP, counted in Redis by both servers.
    let limits = [("BANK_LOGIN_RATE_PER_IP", "3".to_owned())];
    let a = AwsApp::start(&aws, &limits).await;
    let b = AwsApp::start(&aws, &limits).await;
    let http = reqwest::Client::new();
    let mut limited = 0;
    let mut through = 0;
    for n in 0..8 {
        let server = if n % 2 == 0 { &a } else { &b };
        let answer = http
            .post(format!("{}{}", server.base_url, bank_api::paths::AUTH_REGISTER))
            .json(&serde_json::json!({"email": format!("limit{n}@aws.example"), "password": "short"}))
            .send()
            .await
            .expect("an answer");
        if answer.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.headers().contains_key(reqwest::header::RETRY_AFTER));
            limited += 1;
        } else {
            through += 1;
        }
    }
    // Each process counting alone would let 3 + 3 through.
    assert_eq!((through, limited), (3, 5), "one budget for both processes");
}
