//! Scale-out on the AWS backend (`BANK_BACKEND=aws`): two `api` processes, two `worker`s and one
//! `notifications` process of the compiled binary share PostgreSQL, DynamoDB, SQS, SNS, S3 and
//! Redis (the emulator and the test services of `scripts/services.sh`). Transfers go through both
//! APIs; one worker is killed (`SIGKILL`) while it works. Then: every accepted transfer ended
//! settled or failed exactly once, each source account's transfers settled in the order they were
//! accepted, balances sum to zero per currency with no hold left, and the webhook received one
//! notification per event and recipient. Without the services the test prints why and skips
//! (and fails when `BANK_REQUIRE_SERVICES=1`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_api::{DepositRequest, TransferRequest, TransferStatus};
use bank_aws::backend::testing::TestAws;
use bank_client::{BankClient, RetryPolicy};
use bank_server::config::VARIABLES;
use futures::TryStreamExt;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::binary::text;

const PASSWORD: &str = "correct horse battery staple";
const CUSTOMERS: usize = 6;
const TRANSFERS_PER_CUSTOMER: usize = 20;
const OPENING: &str = "100.00";
const WEBHOOK_SECRET: &str = "a webhook secret of at least thirty-two bytes";
/// The longest the whole pipeline may take to settle everything after the last transfer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

/// One `bank-server` process, killed when dropped.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, env: &[(&'static str, String)], command: &str) -> Process {
        let child = server(env).arg(command).stdout(Stdio::piped()).spawn().expect("spawn bank-server");
        Process { name, child }
    }

    /// An `api` process and its base URL (read from the line it prints once it listens).
    fn api(name: &'static str, env: &[(&'static str, String)]) -> (Process, String) {
        let mut process = Process::spawn(name, env, "api");
        let stdout = process.child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("bank-server listening on ") {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{name} did not start listening"));
        (process, url)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early: {status}", self.name);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary with a clean environment: only `env`.
fn server(env: &[(&'static str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bank-server"));
    for (name, _, _) in VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdin(Stdio::null());
    command
}

/// `aws`'s variables with a fresh pair of signing keys from `bank-server keys`.
fn aws_env(aws: &TestAws) -> Vec<(&'static str, String)> {
    let keys = text(&server(&[]).arg("keys").output().expect("keys").stdout);
    let mut env = aws.env();
    for line in keys.lines() {
        let (name, value) = line.split_once('=').expect("NAME=value");
        let name = VARIABLES.iter().map(|(n, _, _)| *n).find(|n| *n == name).expect("a known variable");
        env.push((name, value.to_owned()));
    }
    env
}

/// The webhook receiver: every delivery's `Idempotency-Key` (`<event_id>:<recipient>`) and body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, serde_json::Value)>>>) {
    let received: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                sink.lock().push((key, json));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the webhook") });
    (url, received)
}

fn client(base_url: &str) -> BankClient {
    BankClient::builder(base_url)
        .retry_policy(RetryPolicy { attempts_max: 10, ..RetryPolicy::default() })
        .build()
        .expect("client")
}

/// Signs `email` in once, on `base_url` (a TOTP code is good for one login), and answers a client
/// of each API holding that session's access token.
async fn sign_in(urls: [&str; 2], email: &str, totp_secret: &str) -> [BankClient; 2] {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let code = bank_server::auth::totp::code_at(totp_secret, now).expect("totp");
    let request = bank_api::LoginRequest { email: email.to_owned(), password: PASSWORD.to_owned(), totp_code: code };
    let answer = reqwest::Client::new()
        .post(format!("{}{}", urls[0], bank_api::paths::AUTH_LOGIN))
        .json(&request)
        .send()
        .await
        .expect("login");
    assert!(answer.status().is_success(), "login of {email}: {}", answer.status());
    let tokens: bank_api::Tokens = answer.json().await.expect("tokens");
    urls.map(|url| client(url).with_access_token(&tokens.access_token))
}

/// What the test sent: one transfer, as accepted.
#[derive(Debug, Clone)]
struct Sent {
    id: Uuid,
    from: Uuid,
    to: Uuid,
    amount: Decimal,
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apis_two_workers_and_notifications_share_the_aws_services() {
    let Some(aws) = TestAws::new("scaleout").await else { return };
    let (hook_url, received) = webhook_receiver().await;
    let mut env = aws_env(&aws);
    env.extend([
        ("BANK_LOG", "warn".to_owned()),
        ("BANK_LISTEN", "127.0.0.1:0".to_owned()),
        ("BANK_RATE_PER_IP", "100000".to_owned()),
        ("BANK_RATE_PER_SUBJECT", "100000".to_owned()),
        ("BANK_LOGIN_RATE_PER_IP", "100000".to_owned()),
        // One message a receive: with several of one group in flight when the worker is killed,
        // the emulator (moto 5.2) redelivers them out of order (it skips the first while the
        // others still count as in flight, then hands out the second), which real SQS FIFO never
        // does; the order assertion below would then fail for the emulator's sake.
        ("BANK_WORKER_BATCH", "1".to_owned()),
        // Each rail call takes a little while, so the kill below lands while a worker works.
        ("BANK_RAIL_LATENCY_MS", "20".to_owned()),
        ("BANK_WEBHOOK_URL", hook_url),
        ("BANK_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
    ]);

    // `migrate` checks every resource (the test created them) and the schema.
    let migrated = server(&env).arg("migrate").output().expect("migrate");
    assert!(migrated.status.success(), "migrate: {}", text(&migrated.stderr));
    // The operator, made by the CLI in the shared users table.
    let created = server(&env)
        .env("BANK_PASSWORD", PASSWORD)
        .args(["users", "create", "--email", "ops@scaleout.example", "--role", "operator"])
        .output()
        .expect("users create");
    assert!(created.status.success(), "users create: {}", text(&created.stderr));
    let operator_totp: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    let operator_totp = operator_totp["totp_secret"].as_str().expect("totp_secret").to_owned();

    let (mut api_a, url_a) = Process::api("api A", &env);
    let (mut api_b, url_b) = Process::api("api B", &env);
    let mut worker_1 = Process::spawn("worker 1", &env, "worker");
    let mut worker_2 = Process::spawn("worker 2", &env, "worker");
    let mut notifications = Process::spawn("notifications", &env, "notifications");
    let urls = [url_a.as_str(), url_b.as_str()];

    let [operator, operator_b] = sign_in(urls, "ops@scaleout.example", &operator_totp).await;

    // Customers, each registered on one API, its session used on both, with one funded USD
    // account.
    let mut customers = Vec::new();
    let mut other_sessions = Vec::new();
    for i in 0..CUSTOMERS {
        let email = format!("customer{i}@scaleout.example");
        let registered = client(urls[i % 2]).register(&email, PASSWORD).await.expect("register");
        let [customer, other] = sign_in(urls, &email, &registered.totp_secret).await;
        let account = customer.open_account("USD", "Main").await.expect("open account");
        let request = DepositRequest { account_id: account.id, amount: dec(OPENING), reference: "opening".into() };
        operator.admin_deposit(&Uuid::now_v7().to_string(), &request).await.expect("deposit");
        customers.push((customer, account.id));
        other_sessions.push(other);
    }
    let accounts: Vec<Uuid> = customers.iter().map(|(_, id)| *id).collect();

    // Every customer sends its transfers one after the other (so their order is the order of
    // acceptance), alternating APIs; customers run at once. Every tenth transfer is more than any
    // balance can be: refused at once (422), it leaves nothing behind.
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut senders = Vec::new();
    for (i, (customer, from)) in customers.iter().enumerate() {
        let from = *from;
        let to_pick = accounts.clone();
        let other = other_sessions[i].clone();
        let customer = customer.clone();
        let sent = Arc::clone(&sent);
        senders.push(tokio::spawn(async move {
            for n in 0..TRANSFERS_PER_CUSTOMER {
                let to = to_pick[(i + 1 + n % (CUSTOMERS - 1)) % CUSTOMERS];
                let cents = if n % 10 == 5 { 100_000_000 } else { 10 + n * 5 };
                let amount = Decimal::new(i64::try_from(cents).expect("small"), 2);
                let request = TransferRequest {
                    from_account_id: from,
                    to_account_id: Some(to),
                    to_external: None,
                    amount,
                    currency: "USD".into(),
                    reference: format!("scale-out {i}.{n}"),
                };
                let via = if n % 2 == 0 { &customer } else { &other };
                if n % 10 == 5 {
                    let refused = via.transfer(&request).await.expect_err("more than the balance");
                    assert_eq!(refused.status(), Some(422), "{refused}");
                    continue;
                }
                let accepted = via.transfer(&request).await.expect("transfer accepted");
                assert!(!accepted.replayed);
                sent.lock().push(Sent { id: accepted.value.id, from, to, amount });
            }
        }));
    }

    // Kill one worker once a third of the transfers are in, while the pipeline is busy.
    let total = CUSTOMERS * (TRANSFERS_PER_CUSTOMER - TRANSFERS_PER_CUSTOMER / 10);
    let started = Instant::now();
    while sent.lock().len() < total / 3 {
        assert!(started.elapsed() < SETTLE_TIMEOUT, "transfers are not being accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker_1.kill();
    for sender in senders {
        sender.await.expect("sender");
    }
    let sent = sent.lock().clone();
    assert_eq!(sent.len(), total);

    // Every transfer ends, through either API, the same way.
    let reader_a = operator.clone();
    let reader_b = operator_b;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut finals: HashMap<Uuid, TransferStatus> = HashMap::new();
    while finals.len() < sent.len() {
        assert!(Instant::now() < deadline, "{} of {} transfers final after {SETTLE_TIMEOUT:?}", finals.len(), total);
        for transfer in &sent {
            if finals.contains_key(&transfer.id) {
                continue;
            }
            let got = reader_a.get_transfer(transfer.id).await.expect("get transfer");
            if got.status.is_final() {
                let again = reader_b.get_transfer(transfer.id).await.expect("get transfer on B");
                assert_eq!(again.status, got.status, "both APIs read the same transfer");
                finals.insert(transfer.id, got.status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for process in [&mut api_a, &mut api_b, &mut worker_2, &mut notifications] {
        process.assert_running();
    }
    let settled: HashSet<Uuid> =
        finals.iter().filter(|(_, status)| **status == TransferStatus::Settled).map(|(id, _)| *id).collect();
    assert!(finals.values().all(|s| matches!(s, TransferStatus::Settled | TransferStatus::Failed)), "{finals:?}");
    assert!(!settled.is_empty());

    // Exactly once, in order: each account's history holds each settled transfer once — debits of
    // a payer in the order it sent them — and its balance is what the settled transfers make it.
    for (customer, account) in &customers {
        let history: Vec<bank_api::HistoryEntry> =
            customer.transactions(*account, 100).try_collect().await.expect("history");
        // History comes newest first.
        let debits: Vec<Uuid> = history
            .iter()
            .rev()
            .filter(|e| e.direction == bank_api::Direction::Debit)
            .filter_map(|e| e.transfer_id)
            .collect();
        let mut in_history: Vec<Uuid> = history.iter().filter_map(|e| e.transfer_id).collect();
        let entries = in_history.len();
        in_history.sort_unstable();
        in_history.dedup();
        assert_eq!(in_history.len(), entries, "a transfer posted twice to {account}");
        let expected_debits: Vec<Uuid> =
            sent.iter().filter(|t| t.from == *account && settled.contains(&t.id)).map(|t| t.id).collect();
        assert_eq!(debits, expected_debits, "the payer's transfers settled once each, in the order sent");
        let expected: Decimal = dec(OPENING)
            + sent.iter().filter(|t| t.to == *account && settled.contains(&t.id)).map(|t| t.amount).sum::<Decimal>()
            - sent.iter().filter(|t| t.from == *account && settled.contains(&t.id)).map(|t| t.amount).sum::<Decimal>();
        let balance = customer.account(*account).await.expect("account");
        assert_eq!((balance.posted, balance.pending), (expected, Decimal::ZERO), "{account}");
    }
    let pool = sqlx::PgPool::connect(&aws.database_url).await.expect("connect");
    let sums: Vec<(String, Decimal)> = sqlx::query_as("SELECT currency, sum(posted) FROM accounts GROUP BY currency")
        .fetch_all(&pool)
        .await
        .expect("sums");
    assert!(sums.iter().all(|(_, sum)| sum.is_zero()), "money is conserved: {sums:?}");
    let holds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM holds WHERE status = 'active'").fetch_one(&pool).await.expect("holds");
    assert_eq!(holds, 0, "no hold is left");
    pool.close().await;

    // Notifications: one per event and recipient, whichever process relayed or published it; every
    // final transfer's payer hears of it.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let deliveries = received.lock().clone();
        let keys: Vec<&String> = deliveries.iter().map(|(key, _)| key).collect();
        let distinct: HashSet<&String> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "a notification was delivered twice");
        let events: HashSet<&str> = distinct.iter().filter_map(|k| k.split(':').next()).collect();
        if events.len() >= total {
            break;
        }
        assert!(Instant::now() < deadline, "{} notified events for {total} final transfers", events.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One audit log for all five processes (each appending and sealing): the CLI verifies it while
    // they run — chain, signed checkpoints and the segments sealed to the audit bucket.
    let verified = server(&env).args(["audit", "verify"]).output().expect("audit verify");
    assert!(verified.status.success(), "audit verify: {}{}", text(&verified.stdout), text(&verified.stderr));
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("json");
    assert_eq!(report["ok"], serde_json::Value::Bool(true), "{report}");
    assert!(report["records_checked"].as_u64().unwrap_or(0) > u64::try_from(total).expect("small"), "{report}");
}

#[tokio::test]
async fn migrate_creates_the_aws_resources_when_asked_and_a_missing_one_stops_the_start_by_name() {
    let Some(aws) = TestAws::named("cli-aws-migrate").await else { return };
    let env = aws_env(&aws);
    let run = |extra: &[(&'static str, String)], args: &[&str]| {
        let mut all = env.clone();
        all.extend(extra.iter().cloned());
        server(&all).args(args).output().expect("run")
    };

    // Nothing exists yet: `migrate` says which resource is missing, by its variable.
    let missing = run(&[], &["migrate"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing.stderr));
    assert!(text(&missing.stderr).contains("BANK_IDEMPOTENCY_TABLE"), "{}", text(&missing.stderr));
    // Created (twice is fine), then checked.
    for _ in 0..2 {
        let created = run(&[], &["migrate", "--create-aws-resources"]);
        assert!(created.status.success(), "{}", text(&created.stderr));
        let said = text(&created.stdout);
        for resource in
            [&aws.resources.transfer_queue, &aws.resources.statements_bucket, &aws.resources.idempotency_table]
        {
            assert!(said.contains(resource.as_str()), "{said}");
        }
    }
    let checked = run(&[], &["migrate"]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    // A name that does not exist stops a process at start, naming its variable.
    for (variable, value) in [
        ("BANK_TRANSFER_QUEUE", "no-such-queue.fifo"),
        ("BANK_EVENTS_TOPIC", "no-such-topic.fifo"),
        ("BANK_SUBSCRIPTION_QUEUE_PREFIX", "no-such-prefix"),
        ("BANK_AUDIT_BUCKET", "no-such-bucket-for-audit"),
    ] {
        let refused = run(&[(variable, value.to_owned())], &["worker"]);
        assert_eq!(refused.status.code(), Some(1), "{variable}: {}", text(&refused.stderr));
        assert!(text(&refused.stderr).contains(variable), "{variable}: {}", text(&refused.stderr));
    }
    // A bad name is a configuration error (exit 2) before any call; the local backend refuses the
    // flag.
    let bad = run(&[("BANK_TRANSFER_QUEUE", "transfers".to_owned())], &["migrate"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let local =
        crate::binary::bank_server(dir.path()).args(["migrate", "--create-aws-resources"]).output().expect("run");
    assert_eq!(local.status.code(), Some(1));
    assert!(text(&local.stderr).contains("BANK_BACKEND=aws"), "{}", text(&local.stderr));
}
