//! Faults under load, through the HTTP API of a real `bank-server` process on loopback.
//!
//! - `kill9_under_transfer_load_loses_and_duplicates_nothing`: `serve` is killed with SIGKILL
//!   while transfers are sent; it is restarted on the same data directory, every request left
//!   without a definitive answer is sent again under its own Idempotency-Key, and then: every
//!   accepted transfer ends settled or failed, each key names one transfer, the server's data holds
//!   exactly the accepted transfers, every currency's balances sum to zero, the customers' money
//!   is conserved, no hold is left, and SQLite's integrity check passes.
//!
//! Short by default (seconds, for `scripts/test.sh`); `BANK_FAULT_SECONDS=60` makes the long
//! version. The server binary is `BANK_SERVER_BIN`, else the `bank-server` built next to this
//! test (built with cargo when missing).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bank_api::TransferStatus;
use bank_client::{ClientError, RetryPolicy};
use bank_load::run::{self, Plan, TransferAnswer};
use bank_load::server::{Server, ServerOptions};
use bank_load::setup::{self, ClientOptions};
use rust_decimal::Decimal;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const USERS: usize = 8;
const DEPOSIT: &str = "1000.00";

fn fault_seconds() -> u64 {
    std::env::var("BANK_FAULT_SECONDS").ok().and_then(|s| s.parse().ok()).filter(|&s| s >= 2).unwrap_or(4)
}

/// The `bank-server` binary of this build.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BANK_SERVER_BIN") {
        return PathBuf::from(path);
    }
    // This test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>");
    let binary = profile_dir.join("bank-server");
    if !binary.exists() {
        let target = profile_dir.parent().expect("<target>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cargo = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "-q", "-p", "bank-server"]).env("CARGO_TARGET_DIR", target);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build -p bank-server");
        assert!(status.success(), "cargo build -p bank-server failed");
    }
    binary
}

/// A free loopback port below Linux's ephemeral range (32768 and up): while the server is down,
/// the clients' own connection attempts must not be given its port as their local one.
fn free_port() -> SocketAddr {
    let seed = u16::try_from(std::process::id() % 10_000).unwrap_or(0);
    (0..10_000)
        .map(|i| 20_000 + (seed + i) % 10_000)
        .find_map(|port| TcpListener::bind(("127.0.0.1", port)).ok().and_then(|l| l.local_addr().ok()))
        .expect("a free port in 20000..30000")
}

/// What the server's data says after it stopped.
#[derive(Debug)]
struct Books {
    integrity: String,
    /// Transfer id → status.
    transfers: BTreeMap<Uuid, String>,
    /// Currency → sum of every account's posted balance.
    sums: BTreeMap<String, Decimal>,
    /// Accounts with a posted balance other than zero.
    accounts_with_balance: usize,
    /// Held amounts not zero, or holds still active.
    held_accounts: i64,
    active_holds: i64,
}

fn read_books(data_dir: &Path) -> Books {
    let open = |name: &str| {
        rusqlite::Connection::open_with_flags(data_dir.join(name), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {name}: {e}"))
    };
    // Transfers, keys and queues in bank.sqlite; accounts, entries and holds in ledger.sqlite.
    let conn = open("bank.sqlite");
    let ledger = open("ledger.sqlite");
    let check = |c: &rusqlite::Connection| -> String {
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check")
    };
    let integrity = format!("{} {}", check(&conn), check(&ledger));
    let mut transfers = BTreeMap::new();
    let mut statement = conn.prepare("SELECT id, status FROM transfers").expect("prepare");
    for row in statement.query_map([], |r| Ok((r.get::<_, Uuid>(0)?, r.get::<_, String>(1)?))).expect("query") {
        let (id, status) = row.expect("row");
        transfers.insert(id, status);
    }
    let mut sums = BTreeMap::<String, Decimal>::new();
    let mut accounts_with_balance = 0;
    let mut statement = ledger.prepare("SELECT currency, posted FROM accounts").expect("prepare");
    for row in statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).expect("query") {
        let (currency, posted) = row.expect("row");
        let posted = Decimal::from_str(&posted).expect("a decimal balance");
        *sums.entry(currency).or_default() += posted;
        if !posted.is_zero() {
            accounts_with_balance += 1;
        }
    }
    let held_accounts: i64 = ledger
        .query_row("SELECT count(*) FROM accounts WHERE CAST(held AS REAL) != 0", [], |r| r.get(0))
        .expect("held");
    let active_holds: i64 =
        ledger.query_row("SELECT count(*) FROM holds WHERE status = 'active'", [], |r| r.get(0)).expect("holds");
    Books { integrity, transfers, sums, accounts_with_balance, held_accounts, active_holds }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_transfer_load_loses_and_duplicates_nothing() {
    let seconds = fault_seconds();
    let work = tempfile::tempdir().expect("tempdir");
    let options = ServerOptions {
        binary: server_binary(),
        data_dir: work.path().join("data"),
        listen: Some(free_port()),
        log: work.path().join("server.log"),
        env: Vec::new(),
    };
    let server = Server::start(&options).await.expect("start the server");
    let client_options = ClientOptions { timeout: Duration::from_secs(5), retry: RetryPolicy::none() };
    let deposit = Decimal::from_str(DEPOSIT).expect("decimal");
    let fixture = setup::prepare(&server.base_url, &server.operator, USERS, "USD", deposit, client_options)
        .await
        .expect("prepare the users");

    let plan = Plan {
        account_rate: 20,
        history_rate: 0,
        transfer_rate: 100,
        duration: Duration::from_secs(seconds),
        amount: Decimal::new(1, 2),
        follow_settlement: false,
        settle_timeout: Duration::from_secs(30),
        in_flight_max: 10_000,
        progress: false,
        journal: true,
    };
    let cancel = CancellationToken::new();
    let load = {
        let (fixture, plan, cancel) = (fixture.clone(), plan.clone(), cancel.clone());
        tokio::spawn(async move { run::run(&fixture, &plan, &cancel).await })
    };
    // Kill it halfway, leave it down for a moment (requests meanwhile get no answer), restart.
    tokio::time::sleep(Duration::from_millis(seconds * 1000 / 2)).await;
    server.kill9().await.expect("kill -9 the server");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = Server::start(&options).await.expect("restart the server on the same data");
    fixture.operator.health_live().await.expect("the restarted server answers");
    let outcome = load.await.expect("the load task");

    let before = outcome.journal.iter().filter(|r| r.answer.is_unresolved()).count();
    assert!(outcome.journal.len() > 100, "too few transfers sent: {}", outcome.journal.len());
    println!(
        "{} transfers sent, {} without a definitive answer (kill -9 at {} ms)",
        outcome.journal.len(),
        before,
        seconds * 500
    );

    // Re-send every unanswered request under its key until it is answered for good.
    let mut accepted = BTreeMap::<String, Uuid>::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for record in &outcome.journal {
        let mut answer = record.answer.clone();
        while answer.is_unresolved() {
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&options.log).unwrap_or_default();
                panic!("key {} still unanswered: {answer:?}\nserver log:\n{log}", record.key);
            }
            let client = &fixture.users[record.user].client;
            answer = match client.transfer_with_key(&record.key, &record.request).await {
                Ok(s) => TransferAnswer::Accepted { id: s.value.id, replayed: s.replayed },
                Err(e @ ClientError::Problem { .. }) => TransferAnswer::Refused { status: e.status().unwrap_or(0) },
                Err(e) => TransferAnswer::NoAnswer { reason: run::error_chain(&e) },
            };
            if answer.is_unresolved() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        match answer {
            TransferAnswer::Accepted { id, .. } => {
                // A key answers one transfer, whatever was seen before.
                if let Some(previous) = accepted.insert(record.key.clone(), id) {
                    assert_eq!(previous, id, "key {} named two transfers", record.key);
                }
            }
            other => panic!("a valid transfer was refused for good: {other:?}"),
        }
    }
    let ids: BTreeSet<Uuid> = accepted.values().copied().collect();
    assert_eq!(ids.len(), accepted.len(), "two keys answered the same transfer");

    // Every accepted transfer ends settled or failed.
    let operator = &fixture.operator;
    let mut finals = BTreeMap::new();
    for (key, id) in &accepted {
        let owner = outcome.journal.iter().find(|r| &r.key == key).map(|r| r.user).expect("its record");
        let client = &fixture.users[owner].client;
        let status = loop {
            assert!(Instant::now() < deadline + Duration::from_secs(60), "transfer {id} is not final");
            match client.get_transfer(*id).await {
                Ok(t) if t.status.is_final() => break t.status,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        finals.insert(*id, status);
    }
    let _ = operator;
    // Through the API: the load's users only paid each other, so their total is what was
    // deposited, and nothing is pending (no hold left).
    let mut total = Decimal::ZERO;
    for user in &fixture.users {
        let account = user.client.account(user.account).await.expect("the account");
        assert!(account.pending.is_zero(), "a hold is left on {}: {}", account.id, account.pending);
        assert_eq!(account.available, account.posted, "account {}", account.id);
        total += account.posted;
    }
    assert_eq!(total, Decimal::from(USERS) * deposit, "the load's users' money is conserved");
    server.stop().await.expect("stop the server");

    let books = read_books(&options.data_dir);
    assert_eq!(books.integrity, "ok ok", "PRAGMA integrity_check of bank.sqlite and ledger.sqlite");
    let stored: BTreeSet<Uuid> = books.transfers.keys().copied().collect();
    assert_eq!(stored, ids, "the server holds exactly the accepted transfers (no key with two, none lost)");
    for (id, status) in &finals {
        let expected = if *status == TransferStatus::Settled { "settled" } else { "failed" };
        assert_eq!(books.transfers.get(id).map(String::as_str), Some(expected), "transfer {id}");
    }
    for (currency, sum) in &books.sums {
        assert!(sum.is_zero(), "{currency} balances sum to {sum}");
    }
    assert!(books.accounts_with_balance > USERS, "the books hold the load's balances");
    assert_eq!((books.held_accounts, books.active_holds), (0, 0), "holds left");
    let settled = finals.values().filter(|s| **s == TransferStatus::Settled).count();
    println!("{} accepted: {settled} settled, {} failed; books balanced", finals.len(), finals.len() - settled);
}
