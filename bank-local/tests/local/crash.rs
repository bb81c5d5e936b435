//! kill -9: a child process runs transfers against a data directory and is killed with SIGKILL
//! at random moments, again and again; after each kill a new child goes on where the last one
//! stopped (re-sending its last requests under the same idempotency keys, as a client retrying
//! after a lost answer would). A last child drains the pipeline. Then the parent checks, on the
//! database the children left:
//!
//! - the sum of all balances is zero per currency;
//! - every transfer a child was told was accepted exists and is settled or failed, a settled one
//!   with exactly one posting and a failed one with none, and no hold is left active;
//! - every idempotency key names one transfer;
//! - every account's entries carry the sequence numbers 1..=n with no gap, and its row says n.
//!
//! The child is this same test binary, started on the ignored test [`crash_child`] with the data
//! directory in `BANK_CRASH_DIR` (so it runs under `cargo test` and `cargo nextest` alike).
//! `CRASH_KILLS` sets the number of kills (default [`DEFAULT_KILLS`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_core::account::NewAccount;
use bank_core::clock::{Clock, SystemClock};
use bank_core::idempotency::IdempotencyKey;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::money::{Currency, Money};
use bank_core::payments::{Caller, OutboxRelay, PaymentsConfig, PaymentsScheduler, PaymentsService, PaymentsWorker};
use bank_core::ports::LedgerStore;
use bank_core::rail::breaker::{BreakerConfig, CircuitBreaker};
use bank_core::rail::simulator::{SimulatedRail, SimulatorConfig};
use bank_core::transfer::{Destination, TransferRequest};
use bank_local::backend::{LocalBackend, LocalConfig};
use bank_local::db::{LEDGER_FILE_NAME, LocalDb};
use chrono::TimeDelta;
use rust_decimal::Decimal;
use tempfile::TempDir;
use uuid::Uuid;

/// SIGKILLs in the default run.
const DEFAULT_KILLS: u32 = 24;
/// Customer accounts the children move money between.
const ACCOUNTS: u64 = 12;
/// Clients accepting transfers at the same time in a child.
const CLIENTS: u64 = 8;
/// Requests a new child sends again (same keys, same bodies) before new ones.
const RESEND: u64 = 8;
/// Accepted transfer ids, one per line, appended by the children.
const ACCEPTED_LOG: &str = "accepted.log";

fn account_id(i: u64) -> AccountId {
    AccountId::from_uuid(Uuid::from_u128(0xACC0_0000 + u128::from(i))).expect("account id")
}

fn owner_id(i: u64) -> CustomerId {
    CustomerId::from_uuid(Uuid::from_u128(0xC057_0000 + u128::from(i))).expect("owner id")
}

/// The `n`-th request of the whole run: always the same source, destination and amount.
fn request(n: u64) -> (Caller, IdempotencyKey, TransferRequest) {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
    let from = mix % ACCOUNTS;
    let to = (from + 1 + (mix >> 8) % (ACCOUNTS - 1)) % ACCOUNTS;
    let cents = 1 + i64::try_from((mix >> 16) % 1_000).expect("cents");
    let request = TransferRequest {
        id: None,
        from_account_id: account_id(from),
        destination: Destination::Internal { account_id: account_id(to) },
        money: Money::new(Decimal::new(cents, 2), Currency::Usd).expect("money"),
        reference: format!("crash {n}"),
    };
    let key = IdempotencyKey::new(format!("crash-{n}")).expect("key");
    (Caller { customer: owner_id(from) }, key, request)
}

fn payments_config() -> PaymentsConfig {
    // Short enough that transfers whose message died with a child are re-driven quickly.
    PaymentsConfig {
        stuck_after: TimeDelta::seconds(1),
        visibility: TimeDelta::seconds(1),
        idempotency_lease: TimeDelta::seconds(1),
        ..PaymentsConfig::default()
    }
}

/// The child: opens the data dir, makes sure the accounts exist and are funded (idempotently),
/// runs the worker, relay and scheduler, and accepts transfers from where the log says the
/// previous child was (minus [`RESEND`]) until killed — or, with `BANK_CRASH_DRAIN`, accepts
/// nothing and exits once every transfer is final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of kill_9_at_random_moments_loses_and_doubles_nothing"]
async fn crash_child() {
    let Ok(dir) = std::env::var("BANK_CRASH_DIR") else { return };
    let drain = std::env::var("BANK_CRASH_DRAIN").is_ok();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = LocalConfig { currencies: vec![Currency::Usd], ..LocalConfig::new(&dir) };
    let backend = LocalBackend::open(&config, clock.clone()).await.expect("open backend");
    let ledger = backend.ledger.clone();
    let deposits = backend.system.deposits(Currency::Usd).expect("deposits");
    for i in 0..ACCOUNTS {
        let new = NewAccount { id: account_id(i), ..NewAccount::customer(owner_id(i), format!("a{i}"), Currency::Usd) };
        ledger.open_account(new).await.expect("open account");
        let key = EntryKey::new(TransferId::from_uuid(Uuid::from_u128(0xF00D_0000 + u128::from(i))).expect("id"), 0);
        let funding = Money::new(Decimal::from(1_000_000), Currency::Usd).expect("money");
        ledger
            .post(NewEntry::transfer(key, deposits, account_id(i), funding, "fund").expect("entry"))
            .await
            .expect("fund");
    }
    let ports = backend.payments.clone();
    let service = PaymentsService::new(ports.clone(), payments_config());
    let rail = Arc::new(SimulatedRail::new(SimulatorConfig::default(), clock.clone()));
    let breaker = Arc::new(CircuitBreaker::new("crash", BreakerConfig::default(), clock.clone()));
    let worker = PaymentsWorker::new(ports.clone(), payments_config(), backend.system.clone(), rail, breaker);
    let relay = OutboxRelay::new(ports.clone(), backend.events.clone());
    let scheduler = PaymentsScheduler::new(ports.clone(), payments_config());
    tokio::spawn(async move {
        loop {
            if worker.run_once().await.map(|r| r.received).unwrap_or(0) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            if relay.run_once(1024).await.unwrap_or(0) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let _ = scheduler.run_once().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let log_path = Path::new(&dir).join(ACCEPTED_LOG);
    if drain {
        // Keys a killed child held in flight have leases of one second; once they ran out, the
        // scheduler finishes or undoes each (a hold placed without its transfer is voided).
        let started = Instant::now();
        loop {
            let counts = ports.transfers.count_by_status().await.expect("counts");
            let open: u64 = counts.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum();
            let abandoned = ports.idempotency.abandoned(1).await.expect("abandoned keys");
            if open == 0 && abandoned.is_empty() && started.elapsed() > Duration::from_millis(1_500) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let start = accepted_lines(&log_path).saturating_sub(RESEND);
    let log = Arc::new(parking_lot::Mutex::new(
        std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log"),
    ));
    for c in 0..CLIENTS {
        let (service, log) = (service.clone(), log.clone());
        tokio::spawn(async move {
            let mut n = start + c;
            loop {
                let (caller, key, request) = request(n);
                match service.accept(&caller, key, request).await {
                    Ok(accepted) => {
                        // One write(2) per line: `writeln!` on a bare file writes piece by piece,
                        // so a kill could leave a cut line that the next child's line joins.
                        let line = format!("{} {}\n", n, accepted.transfer.id);
                        log.lock().write_all(line.as_bytes()).expect("log");
                    }
                    // In flight under a lease of the killed child: a later child finishes it.
                    Err(e) if e.is_retryable() || matches!(e, bank_core::Error::IdempotencyInFlight) => {}
                    Err(e) => panic!("request {n} refused: {e}"),
                }
                n += CLIENTS;
            }
        });
    }
    // Until killed.
    std::future::pending::<()>().await;
}

/// Complete lines in the accepted log (a kill can cut the last one).
fn accepted_lines(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n').filter(|l| l.ends_with('\n')).count() as u64
}

fn spawn_child(dir: &Path, drain: bool) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = Command::new(exe);
    command
        .args(["crash::crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("BANK_CRASH_DIR", dir)
        .stdout(Stdio::null())
        .stderr(if drain { Stdio::inherit() } else { Stdio::null() });
    if drain {
        command.env("BANK_CRASH_DRAIN", "1");
    }
    command.spawn().expect("spawn child")
}

#[test]
fn kill_9_at_random_moments_loses_and_doubles_nothing() {
    let kills: u32 = std::env::var("CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_KILLS);
    let dir = TempDir::new().expect("temp dir");
    let mut rng = 0x9E37_79B9_u64;
    for round in 0..kills {
        let mut child = spawn_child(dir.path(), false);
        // 150 to 900 ms: before, during and after start-up, and deep into the run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 750));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child {round} stopped by itself: {status}");
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let mut drain = spawn_child(dir.path(), true);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = drain.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the pipeline did not drain in time");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the draining child failed: {status}");
    check(dir.path(), kills);
}

/// The invariants of the module docs, on what the children left.
fn check(dir: &Path, kills: u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // The backend's layout: the ledger in its own file.
    let db = rt.block_on(LocalDb::open(dir)).expect("open");
    let ledger_db = rt.block_on(LocalDb::open_file(dir, LEDGER_FILE_NAME)).expect("open the ledger");
    let sql = |e: rusqlite::Error| bank_core::Error::storage(e, false);
    // Transfers and their postings.
    let transfers: Vec<(Uuid, String)> =
        select(&db, "SELECT id, status FROM transfers", |r| Ok((r.get(0)?, r.get(1)?)));
    let postings: HashMap<Uuid, i64> =
        select(&ledger_db, "SELECT transfer_id, count(*) FROM entries GROUP BY transfer_id", |r| {
            Ok((r.get(0)?, r.get(1)?))
        });
    assert!(transfers.len() > 100, "too few transfers to mean anything: {}", transfers.len());
    let mut by_id = BTreeMap::new();
    for (id, status) in &transfers {
        let postings = postings.get(id).copied().unwrap_or(0);
        match status.as_str() {
            "settled" => assert_eq!(postings, 1, "settled transfer {id} posted {postings} times"),
            "failed" => assert_eq!(postings, 0, "failed transfer {id} posted"),
            other => panic!("transfer {id} left {other}"),
        }
        by_id.insert(*id, status.clone());
    }
    // Every answered accept is there; every request number maps to one transfer.
    let log = std::fs::read_to_string(dir.join(ACCEPTED_LOG)).expect("log");
    let mut per_request: BTreeMap<u64, HashSet<Uuid>> = BTreeMap::new();
    for line in log.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let mut parts = line.split_whitespace();
        let n: u64 = parts.next().and_then(|p| p.parse().ok()).expect("request number");
        let id: Uuid = parts.next().and_then(|p| p.parse().ok()).expect("transfer id");
        assert!(by_id.contains_key(&id), "accepted transfer {id} (request {n}) is not in the database");
        per_request.entry(n).or_default().insert(id);
    }
    for (n, ids) in &per_request {
        assert_eq!(ids.len(), 1, "request {n} (one idempotency key) made several transfers: {ids:?}");
    }
    let keys: i64 = db
        .read(|c| {
            c.query_row("SELECT count(DISTINCT resource) - count(*) FROM idempotency_keys", [], |r| r.get(0))
                .map_err(sql)
        })
        .expect("keys");
    assert_eq!(keys, 0, "two idempotency keys name one transfer");
    let active_holds: i64 = ledger_db
        .read(|c| c.query_row("SELECT count(*) FROM holds WHERE status = 'active'", [], |r| r.get(0)).map_err(sql))
        .expect("holds");
    assert_eq!(active_holds, 0, "holds left active");
    // Zero sum, and gap-free sequences that match each account row.
    let ledger_sum: Vec<(String, String)> =
        select(&ledger_db, "SELECT currency, posted FROM accounts", |r| Ok((r.get(0)?, r.get(1)?)));
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    for (currency, posted) in ledger_sum {
        *sums.entry(currency).or_default() += Decimal::from_str_exact(&posted).expect("decimal");
    }
    for (currency, sum) in &sums {
        assert_eq!(*sum, Decimal::ZERO, "balances of {currency} sum to {sum}");
    }
    let sequences: Vec<(Uuid, i64, i64)> = select(
        &ledger_db,
        "SELECT l.account_id, l.sequence, a.sequence FROM entry_lines l JOIN accounts a ON a.id = l.account_id \
         ORDER BY l.account_id, l.sequence",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    let mut expected: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (account, sequence, last) in sequences {
        let next = expected.entry(account).or_insert(1);
        assert_eq!(sequence, *next, "account {account}: sequence {sequence} where {next} was due");
        assert!(sequence <= last, "account {account}: line {sequence} beyond the row's {last}");
        *next += 1;
    }
    let settled = by_id.values().filter(|s| *s == "settled").count();
    eprintln!(
        "crash test: {kills} kills, {} transfers ({settled} settled), {} answered accepts",
        transfers.len(),
        per_request.len()
    );
    let trial = rt.block_on(trial_balance(&ledger_db));
    assert!(trial.iter().all(|(_, sum)| sum.is_zero()), "trial balance {trial:?}");
}

/// Every row of `query` on `db`, mapped by `row`, collected into `C`.
fn select<T, C: FromIterator<T>>(
    db: &LocalDb,
    query: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> C {
    let storage = |e: rusqlite::Error| bank_core::Error::storage(e, false);
    db.read(|c| {
        let mut statement = c.prepare(query).map_err(storage)?;
        let rows = statement.query_map([], row).map_err(storage)?;
        rows.collect::<rusqlite::Result<C>>().map_err(storage)
    })
    .unwrap_or_else(|e| panic!("{query}: {e}"))
}

async fn trial_balance(db: &LocalDb) -> Vec<(Currency, Decimal)> {
    let ledger = bank_local::ledger::SqliteLedger::new(db, Arc::new(SystemClock));
    ledger.trial_balance().await.expect("trial balance")
}
