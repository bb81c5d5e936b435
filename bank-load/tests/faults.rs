//! Faults (and a soak) under load, through the HTTP API of a real `bank-server` process on loopback.
//!
//! - `kill9_under_transfer_load_loses_and_duplicates_nothing`: `serve` is killed with SIGKILL
//!   while transfers are sent; it is restarted on the same data directory, every request left
//!   without a definitive answer is sent again under its own Idempotency-Key, and then: every
//!   accepted transfer ends settled or failed, each key names one transfer, the server's data holds
//!   exactly the accepted transfers, every currency's balances sum to zero, the customers' money
//!   is conserved, no hold is left, and SQLite's integrity check passes.
//!
//! - `a_full_disk_under_load_refuses_writes_keeps_reads_and_recovers_by_itself`: the data
//!   directory on a small tmpfs (mounted by the test: root only; skipped with the reason
//!   otherwise, failed when `BANK_REQUIRE_SERVICES=1`) filled by a ballast file while transfers
//!   run — under the server's free-space floor, then to the last byte — and freed; the same checks
//!   after it.
//!
//! Short by default (seconds, for `scripts/test.sh`); `BANK_FAULT_SECONDS=60` makes the long
//! version. The server binary is `BANK_SERVER_BIN`, else the `bank-server` built next to this
//! test (built with cargo when missing).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bank_api::{TransferRequest, TransferStatus};
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
/// Tests of one process (`cargo test` runs them on threads of one) start at different ports: a
/// port checked free is only taken once that test's server listens.
fn free_port() -> SocketAddr {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = u16::try_from(std::process::id() % 10_000).unwrap_or(0).wrapping_add(call.wrapping_mul(97)) % 10_000;
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

/// Options of a server in `work` (its log there) with its data in `data_dir` and `env` added.
fn server_options(work: &Path, data_dir: PathBuf, env: Vec<(String, String)>) -> ServerOptions {
    ServerOptions { binary: server_binary(), data_dir, listen: Some(free_port()), log: work.join("server.log"), env }
}

/// Starts the server of `options` and prepares [`USERS`] funded users on it.
async fn start_with_users(options: &ServerOptions) -> (Server, setup::Fixture) {
    let server = Server::start(options).await.expect("start the server");
    let client_options = ClientOptions { timeout: Duration::from_secs(5), retry: RetryPolicy::none() };
    let deposit = Decimal::from_str(DEPOSIT).expect("decimal");
    let fixture = setup::prepare(&server.base_url, &server.operator, USERS, "USD", deposit, client_options)
        .await
        .expect("prepare the users");
    (server, fixture)
}

/// Account views and transfers per second for `seconds`, journaled, settlement not followed.
fn plan(account_rate: u32, transfer_rate: u32, seconds: u64) -> Plan {
    Plan {
        account_rate,
        history_rate: 0,
        transfer_rate,
        duration: Duration::from_secs(seconds),
        amount: Decimal::new(1, 2),
        follow_settlement: false,
        settle_timeout: Duration::from_secs(30),
        in_flight_max: 10_000,
        connections: 64,
        progress: false,
        journal: true,
        period: Duration::from_secs(60),
        watch_pid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_transfer_load_loses_and_duplicates_nothing() {
    let seconds = fault_seconds();
    let work = tempfile::tempdir().expect("tempdir");
    let options = server_options(work.path(), work.path().join("data"), Vec::new());
    let (server, fixture) = start_with_users(&options).await;
    let plan = plan(20, 100, seconds);
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

    resend_settle_and_check(&fixture, &outcome.journal, server, &options).await;
}

/// After a faulty run: sends every request of `journal` left without a definitive answer again
/// under its own key until answered; then checks that every accepted transfer ends settled or
/// failed, each key names one transfer, the load's users' money is conserved with no hold left;
/// stops `server` and checks its files: exactly the accepted transfers, every currency summing to
/// zero, no hold, `PRAGMA integrity_check` ok.
async fn resend_settle_and_check(
    fixture: &setup::Fixture,
    journal: &[run::TransferRecord],
    server: Server,
    options: &ServerOptions,
) {
    let deposit = Decimal::from_str(DEPOSIT).expect("decimal");
    // Re-send every unanswered request under its key until it is answered for good.
    let mut accepted = BTreeMap::<String, Uuid>::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for record in journal {
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
    let mut finals = BTreeMap::new();
    for (key, id) in &accepted {
        let owner = journal.iter().find(|r| &r.key == key).map(|r| r.user).expect("its record");
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
    // Through the API: the load's users only paid each other, so their total is what was
    // deposited, and nothing is pending (no hold left).
    let mut total = Decimal::ZERO;
    for user in &fixture.users {
        let account = user.client.account(user.account).await.expect("the account");
        assert!(account.pending.is_zero(), "a hold is left on {}: {}", account.id, account.pending);
        assert_eq!(account.available, account.posted, "account {}", account.id);
        total += account.posted;
    }
    assert_eq!(total, Decimal::from(fixture.users.len()) * deposit, "the load's users' money is conserved");
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
    assert!(books.accounts_with_balance > fixture.users.len(), "the books hold the load's balances");
    assert_eq!((books.held_accounts, books.active_holds), (0, 0), "holds left");
    let settled = finals.values().filter(|s| **s == TransferStatus::Settled).count();
    println!("{} accepted: {settled} settled, {} failed; books balanced", finals.len(), finals.len() - settled);
}

/// A tmpfs of `mib` MiB mounted on a fresh directory for one test; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `Err(reason)` when this process may not mount (not root, no `mount`).
    fn mount(mib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!("mount -t tmpfs refused: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.path()).expect("statvfs");
        stat.f_bavail * stat.f_frsize
    }

    /// Writes zeros into `file` until only `leave` bytes are free (0: until the disk is full).
    fn fill(&self, file: &Path, leave: u64) {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(file).expect("ballast");
        let chunk = vec![0u8; 1 << 20];
        loop {
            let room = self.free().saturating_sub(leave);
            if room == 0 {
                break;
            }
            let n = usize::try_from(room.min(chunk.len() as u64)).unwrap_or(chunk.len());
            match out.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("writing the ballast: {e}"),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Waits until `client`'s transfer `id` is final (bounded).
async fn final_status(client: &bank_client::BankClient, id: Uuid, within: Duration) -> TransferStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(t) = client.get_transfer(id).await
            && t.status.is_final()
        {
            return t.status;
        }
        assert!(Instant::now() < deadline, "transfer {id} not final within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The data directory on a small tmpfs filled while transfers run: first down to under the
/// server's free-space floor (writes 503 with a retry, reads and settlement go on), then to the
/// last byte (the server stays up, reads still answer), then freed — and the server takes writes
/// again by itself, without a restart. Afterwards every request is resolved under its key and
/// the books are checked as after a kill -9 (nothing lost, doubled or corrupt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_load_refuses_writes_keeps_reads_and_recovers_by_itself() {
    const FLOOR_MIB: u64 = 48;
    let tmpfs = match Tmpfs::mount(192) {
        Ok(tmpfs) => tmpfs,
        Err(reason) if std::env::var("BANK_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("BANK_REQUIRE_SERVICES=1 but no tmpfs for the full-disk test: {reason}")
        }
        Err(reason) => {
            println!("skipped: the full-disk test needs to mount a tmpfs ({reason})");
            return;
        }
    };
    let work = tempfile::tempdir().expect("tempdir");
    let floor = vec![("BANK_DATA_DIR_MIN_FREE_MB".into(), FLOOR_MIB.to_string())];
    let options = server_options(work.path(), tmpfs.path().join("data"), floor);
    let (server, fixture) = start_with_users(&options).await;
    let seconds = fault_seconds().max(6);
    let plan = plan(50, 50, seconds);
    let cancel = CancellationToken::new();
    let load = {
        let (fixture, plan, cancel) = (fixture.clone(), plan.clone(), cancel.clone());
        tokio::spawn(async move { run::run(&fixture, &plan, &cancel).await })
    };
    let (alice, bob) = (&fixture.users[0], &fixture.users[1]);
    let probe = TransferRequest::internal(alice.account, bob.account, Decimal::new(1, 2), "USD", "probe");
    let mut probes = Vec::new();
    let mut send_probe = async |what: &str| {
        let key = Uuid::now_v7().to_string();
        let result = alice.client.transfer_with_key(&key, &probe).await;
        let answer = match &result {
            Ok(s) => TransferAnswer::Accepted { id: s.value.id, replayed: s.replayed },
            Err(e @ ClientError::Problem { .. }) => TransferAnswer::Refused { status: e.status().unwrap_or(0) },
            Err(e) => TransferAnswer::NoAnswer { reason: run::error_chain(&e) },
        };
        println!("{what}: {answer:?}");
        probes.push(run::TransferRecord { key, user: 0, request: probe.clone(), answer: answer.clone() });
        (answer, result)
    };
    tokio::time::sleep(Duration::from_secs(seconds / 6)).await;
    let (_, before) = send_probe("before the disk fills").await;
    let accepted_before = before.expect("a transfer is accepted while there is room").value.id;

    // 1. Under the floor, with room left: writes refused, retryable; reads and settlement go on.
    let ballast = tmpfs.path().join("ballast");
    tmpfs.fill(&ballast, (FLOOR_MIB / 2) << 20);
    println!("under the floor: {} MiB free", tmpfs.free() >> 20);
    let (answer, refused) = send_probe("under the floor").await;
    assert_eq!(answer, TransferAnswer::Refused { status: 503 }, "a write under the floor");
    let problem = refused.expect_err("refused").to_problem();
    assert!(problem.detail.as_deref().unwrap_or_default().contains("disk"), "{problem:?}");
    let account = alice.client.account(alice.account).await.expect("reads go on under the floor");
    assert_eq!(account.id, alice.account);
    let ready = fixture.operator.health_ready().await.expect("ready answers 200 under the floor");
    assert!(ready.checks.get("disk").is_some_and(|c| c.starts_with("degraded")), "{ready:?}");
    let status = final_status(&alice.client, accepted_before, Duration::from_secs(20)).await;
    println!("a transfer accepted before the floor ended {status:?} under it");

    // 2. To the last byte: the server stays up and reads keep answering for a while.
    tmpfs.fill(&ballast, 0);
    println!("full: {} bytes free", tmpfs.free());
    for _ in 0..5 {
        alice.client.account(alice.account).await.expect("reads answer on a full disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fixture.operator.health_live().await.expect("alive on a full disk");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 3. Space freed: writes are taken again by the same process.
    std::fs::remove_file(&ballast).expect("free the space");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (answer, _) = send_probe("after freeing").await;
        if matches!(answer, TransferAnswer::Accepted { .. }) {
            break;
        }
        assert!(Instant::now() < deadline, "writes not taken again 30 s after space was freed: {answer:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outcome = load.await.expect("the load task");
    let refused = outcome.journal.iter().filter(|r| r.answer == TransferAnswer::Refused { status: 503 }).count();
    println!(
        "{} transfers sent by the load, {refused} answered 503 while the disk was low or full",
        outcome.journal.len()
    );
    assert!(refused > 0, "the load met the full disk");
    let mut journal = outcome.journal;
    journal.extend(probes);
    resend_settle_and_check(&fixture, &journal, server, &options).await;
    drop(tmpfs);
}

/// A short soak (`BANK_SOAK_SECONDS`, 15 by default; the README's long one is 10 minutes at the
/// seed's peak): reads and transfers at a constant rate, the run cut into periods with the
/// server's resident memory and open files sampled at each end. Every request answers, every
/// transfer settles, and neither open files nor memory keep growing (bounds far above the noise
/// of a steady server and far below what a leak per request would reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_keeps_memory_and_open_files_flat() {
    let seconds =
        std::env::var("BANK_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).filter(|&s| s >= 6).unwrap_or(15);
    let work = tempfile::tempdir().expect("tempdir");
    let options = server_options(work.path(), work.path().join("data"), Vec::new());
    let (server, fixture) = start_with_users(&options).await;
    // Low enough for a debug build of the server on a busy CI machine: what counts is the shape
    // of the curves, not the rate.
    let plan = Plan {
        history_rate: 10,
        follow_settlement: true,
        journal: false,
        period: Duration::from_secs(seconds / 3),
        watch_pid: server.pid(),
        ..plan(40, 10, seconds)
    };
    let outcome = run::run(&fixture, &plan, &CancellationToken::new()).await;
    print!("{}", bank_load::report::table(&outcome));
    server.stop().await.expect("stop the server");
    assert_eq!((outcome.errors(), outcome.unsettled, outcome.failed_transfers), (0, 0, 0), "every request answered");
    let samples: Vec<_> = outcome.periods.iter().filter_map(|p| p.server).collect();
    assert!(samples.len() >= 3, "a sample per period: {:?}", outcome.periods);
    let first = samples[0];
    for sample in &samples[1..] {
        assert!(sample.open_files <= first.open_files + 64, "open files grow: {samples:?}");
        assert!(sample.rss_bytes <= first.rss_bytes * 2 + (64 << 20), "memory grows: {samples:?}");
    }
}
