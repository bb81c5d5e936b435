//! The server on PostgreSQL (`BANK_DATABASE_URL`: ledger, transfers with their outbox, users):
//! the happy path end to end; PostgreSQL going away (503 problems with `Retry-After`, readiness
//! 503, nothing half-written) and coming back (the server recovers by itself); the server's
//! connections terminated again and again while transfers run (each transfer ends once, money is
//! conserved). Each test gets a fresh schema; without PostgreSQL they print why and skip (and
//! fail when `BANK_REQUIRE_SERVICES=1`).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bank_api::{IDEMPOTENCY_KEY_HEADER, PROBLEM_JSON, TransferRequest, TransferStatus, problem_types};
use bank_aws::postgres::testing::{TcpProxy, test_database_url, test_server_url};
use futures::TryStreamExt;
use futures::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use rust_decimal::Decimal;
use sqlx::Connection;
use uuid::Uuid;

use crate::common::{Options, TestApp, eventually, eventually_within};
use crate::flow::{deposit, final_transfer, happy_path};

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

/// A server on a fresh schema, its connections named `application_name`; `None`: skip.
async fn app_on_postgres(application_name: &str) -> Option<TestApp> {
    let url = test_server_url(application_name).await?;
    Some(TestApp::spawn_with(Options { database_url: Some(url), ..Options::default() }).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_happy_path_runs_on_postgresql() {
    let Some(app) = app_on_postgres("e2e-happy").await else { return };
    happy_path(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_replica_as_reader_the_server_serves_views_and_exports_its_lag() {
    let Some((primary, standby)) = bank_aws::postgres::testing::test_pair() else { return };
    let url =
        bank_aws::postgres::testing::test_server_url_at(&primary, "e2e-reader").await.expect("schema on the primary");
    // The same schema on the replica: the URL's options carry the search path.
    let reader_url = url.replacen(&primary, &standby, 1);
    let options = Options { database_url: Some(url), database_reader_url: Some(reader_url), ..Options::default() };
    let app = TestApp::spawn_with(options).await;
    happy_path(&app).await;
    let ready = app.http.get(app.url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = app.client().metrics().await.expect("metrics");
    let lag = metrics
        .lines()
        .find_map(|line| line.strip_prefix("database_replica_lag_seconds "))
        .unwrap_or_else(|| panic!("no replica lag gauge in {metrics}"));
    let lag: f64 = lag.trim().parse().expect("a number");
    assert!((0.0..60.0).contains(&lag), "replica lag {lag}");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_gone_answers_503_with_retry_after_and_the_server_recovers_by_itself() {
    let Some(url) = test_server_url("e2e-outage").await else { return };
    let (proxy, proxied) = TcpProxy::in_front_of(&url).await.expect("proxy");
    let app = TestApp::spawn_with(Options { database_url: Some(proxied), ..Options::default() }).await;
    let operator = app.operator().await;
    let token = app.access_token("carol").await;
    let carol = app.client().with_access_token(&token);
    let main = carol.open_account("USD", "main").await.expect("open");
    let savings = carol.open_account("USD", "savings").await.expect("open");
    deposit(&operator, main.id, "50.00").await;

    proxy.cut();
    let ready = app.http.get(app.url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let accounts = app.http.get(app.url("/v1/accounts")).header(AUTHORIZATION, format!("Bearer {token}")).send().await;
    assert_unavailable(accounts.expect("accounts")).await;
    // A transfer tried during the outage: refused whole, nothing half-written.
    let key = Uuid::now_v7().to_string();
    let request = TransferRequest::internal(main.id, savings.id, dec("20.00"), "USD", "during the outage");
    let submitted = app
        .http
        .post(app.url("/v1/transfers"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(IDEMPOTENCY_KEY_HEADER, &key)
        .json(&request)
        .send()
        .await
        .expect("transfer");
    assert_unavailable(submitted).await;

    proxy.restore();
    eventually("readiness after PostgreSQL is back", || async {
        let ready = app.http.get(app.url("/health/ready")).send().await.ok()?;
        (ready.status() == StatusCode::OK).then_some(())
    })
    .await;
    // Nothing of the refused transfer was kept: no transfer, no hold, no money moved. (Its key
    // stays in flight until its lease runs out, as after any transient failure: the service
    // cannot know whether a lost commit landed; a retry then resumes or the sweep frees it.)
    let listed: Vec<_> = carol.transfers(main.id).try_collect().await.expect("list");
    assert!(listed.is_empty(), "a refused transfer was stored: {listed:?}");
    let after = carol.account(main.id).await.expect("main");
    assert_eq!((after.posted, after.pending), (dec("50.00"), Decimal::ZERO), "money moved or held");
    // And the bank works again: a new transfer settles.
    let submitted = carol.transfer(&request).await.expect("transfer after the outage");
    let settled = final_transfer(&carol, submitted.value.id).await;
    assert_eq!(settled.status, TransferStatus::Settled);
    assert_eq!(carol.account(main.id).await.expect("main").posted, dec("30.00"));
    assert_eq!(carol.account(savings.id).await.expect("savings").posted, dec("20.00"));
}

async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(RETRY_AFTER).is_some(), "Retry-After on {:?}", response.headers());
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with(PROBLEM_JSON), "{content_type}");
    let body: serde_json::Value = response.json().await.expect("problem body");
    assert_eq!(body["type"], serde_json::json!(problem_types::UNAVAILABLE), "{body}");
}

/// Customers, transfers between them, and how often the server's connections are terminated.
const CUSTOMERS: usize = 4;
const TRANSFERS: usize = 120;
const KILL_EVERY: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread")]
async fn terminated_connections_never_lose_or_double_a_transfer() {
    let application_name = format!("e2e-kill-{}", Uuid::now_v7().simple());
    let Some(app) = app_on_postgres(&application_name).await else { return };
    let customers = funded_customers(&app).await;

    // Terminate every connection of the server's pools, again and again, while transfers run.
    let stop = Arc::new(AtomicBool::new(false));
    let killer = tokio::spawn({
        let stop = Arc::clone(&stop);
        let application_name = application_name.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(&test_database_url()).await.expect("connect");
            let mut killed = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                )
                .bind(&application_name)
                .fetch_one(&mut conn)
                .await
                .expect("terminate");
                killed += u64::try_from(n).unwrap_or(0);
                tokio::time::sleep(KILL_EVERY).await;
            }
            killed
        }
    });
    let answers = join_all((0..TRANSFERS).map(|i| {
        let (from_client, from) = (&customers[i % CUSTOMERS].0, customers[i % CUSTOMERS].1);
        let to = customers[(i + 1 + i / CUSTOMERS) % CUSTOMERS].1;
        let to = if to == from { customers[(i + 1) % CUSTOMERS].1 } else { to };
        let request = TransferRequest::internal(from, to, dec("1.25"), "USD", format!("t{i}"));
        async move { from_client.transfer(&request).await }
    }))
    .await;
    stop.store(true, Ordering::SeqCst);
    let killed = killer.await.expect("killer");
    assert!(killed > 0, "the test terminated no connection");

    // Every transfer that exists (answered or not) ends exactly once; balances follow them.
    assert_all_final_and_conserved(&app, &customers, &answers).await;
}

/// A throwaway primary and streaming standby of this test's own (`scripts/pg-pair.sh`), stopped
/// and removed on drop.
struct Pair {
    script: String,
    dir: tempfile::TempDir,
    primary: String,
    standby: String,
}

impl Pair {
    /// Starts one; `None` (skip, or panic when services are required) without the script.
    fn start() -> Option<Pair> {
        let Ok(script) = std::env::var("BANK_PG_PAIR_SCRIPT") else {
            return bank_aws::postgres::testing::skip("BANK_PG_PAIR_SCRIPT is unset (scripts/services.sh sets it)");
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<String> = (0..2).map(|_| free_port().to_string()).collect();
        let output = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path().join("pair"))
            .args(&ports)
            .output()
            .expect("run pg-pair.sh");
        assert!(output.status.success(), "pg-pair.sh start: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let url = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_owned()
        };
        Some(Pair { primary: url("PRIMARY_URL="), standby: url("STANDBY_URL="), script, dir })
    }

    fn run(&self, command: &str) {
        let output = std::process::Command::new("bash")
            .arg(&self.script)
            .arg(command)
            .arg(self.dir.path().join("pair"))
            .output()
            .expect("run");
        assert!(output.status.success(), "pg-pair.sh {command}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("bash").arg(&self.script).arg("stop").arg(self.dir.path().join("pair")).output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_while_transfers_run_loses_and_doubles_nothing() {
    let Some(pair) = Pair::start() else { return };
    let url = bank_aws::postgres::testing::test_server_url_at(&pair.primary, "e2e-failover")
        .await
        .expect("schema on the primary");
    // The writer's address is a proxy, as Aurora's cluster endpoint: after the failover it leads to
    // the promoted standby.
    let (proxy, proxied) = TcpProxy::in_front_of(&url).await.expect("proxy");
    let (standby_proxy, _) = TcpProxy::in_front_of(&pair.standby).await.expect("standby address");
    let app = TestApp::spawn_with(Options { database_url: Some(proxied), ..Options::default() }).await;
    let customers = funded_customers(&app).await;

    let transfers = join_all((0..TRANSFERS).map(|i| {
        let (from_client, from) = (&customers[i % CUSTOMERS].0, customers[i % CUSTOMERS].1);
        let to = customers[(i + 1) % CUSTOMERS].1;
        let request = TransferRequest::internal(from, to, dec("2.50"), "USD", format!("t{i}"));
        async move {
            // Spread over the failover.
            tokio::time::sleep(Duration::from_millis(u64::try_from(i).unwrap_or(0) * 10)).await;
            from_client.transfer(&request).await
        }
    }));
    let failover = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        pair.run("stop-primary");
        pair.run("promote");
        proxy.switch(standby_proxy.target());
    };
    let (answers, ()) = tokio::join!(transfers, failover);
    assert_all_final_and_conserved(&app, &customers, &answers).await;
}

/// [`CUSTOMERS`] signed-in customers, each with one USD account an operator funded with 1,000.
async fn funded_customers(app: &TestApp) -> Vec<(bank_client::BankClient, Uuid)> {
    let operator = app.operator().await;
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let client = app.customer(&format!("customer{i}")).await;
        let account = client.open_account("USD", "main").await.expect("open");
        deposit(&operator, account.id, "1000.00").await;
        customers.push((client, account.id));
    }
    customers
}

/// Longest wait for what a terminated connection can leave behind to resolve by itself: a step
/// whose message comes back only when its visibility (60 s) runs out, after an outbox claim
/// whose answer was lost waited out its lease (30 s); or an idempotency lease (30 s) and the
/// recovery sweep. Measured 2026-12-05: 20 runs in a row took 11–34 s each (the longest wait an
/// idempotency lease's). The one run that timed out (2026-12-05, a busy machine) had a message
/// dead-lettered: the worker gave a transiently failed delivery back after a fixed second, and
/// ten deliveries inside the kill storm sent it to the dead-letter queue, whence only the
/// scheduler's stuck sweep (5 minutes) brings a transfer back. The wait now doubles with each
/// such delivery (`bank_core::payments::transient_retry_delay`).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Every accepted transfer exists and is final, each settled one moved money once, no hold is
/// left and the ledger balances.
async fn assert_all_final_and_conserved(
    app: &TestApp,
    customers: &[(bank_client::BankClient, Uuid)],
    answers: &[Result<bank_client::Submitted<bank_api::Transfer>, bank_client::ClientError>],
) {
    let mut transfers = HashMap::new();
    for (client, account) in customers {
        let listed: Vec<_> =
            eventually("the transfer list", || async { client.transfers(*account).try_collect::<Vec<_>>().await.ok() })
                .await;
        for t in listed {
            // A step that failed is redelivered once its message's visibility runs out.
            let last = eventually_within(RECOVERY_TIMEOUT, "the transfer to become final", || async {
                let transfer = client.get_transfer(t.id).await.ok()?;
                transfer.status.is_final().then_some(transfer)
            })
            .await;
            transfers.insert(t.id, last);
        }
    }
    for answer in answers.iter().flatten() {
        assert!(transfers.contains_key(&answer.value.id), "accepted transfer {} lost", answer.value.id);
    }
    let mut expected: HashMap<Uuid, Decimal> = customers.iter().map(|(_, a)| (*a, dec("1000.00"))).collect();
    for t in transfers.values().filter(|t| t.status == TransferStatus::Settled) {
        *expected.get_mut(&t.from_account_id).expect("from") -= t.amount;
        *expected.get_mut(&t.to_account_id.expect("internal")).expect("to") += t.amount;
    }
    for (client, account) in customers {
        // A request that failed after its hold, with its answer unknown, keeps its key in flight
        // until the lease runs out; then the recovery sweep releases the hold.
        let got = eventually_within(RECOVERY_TIMEOUT, "the holds of failed requests to be released", || async {
            let got = client.account(*account).await.ok()?;
            got.pending.is_zero().then_some(got)
        })
        .await;
        assert_eq!(got.posted, expected[account], "posted balance of {account}: money lost or doubled");
        let history: Vec<_> = client.transactions(*account, 100).try_collect().await.expect("history");
        let settled_here = transfers
            .values()
            .filter(|t| {
                t.status == TransferStatus::Settled
                    && (t.from_account_id == *account || t.to_account_id == Some(*account))
            })
            .count();
        assert_eq!(history.len(), settled_here + 1, "entries of {account}: one per settled transfer + the deposit");
    }
    let trial = app.backend.ledger.trial_balance().await.expect("trial balance");
    assert!(trial.iter().all(|(_, sum)| sum.is_zero()), "trial balance {trial:?}");
}
