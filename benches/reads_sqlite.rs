//! Reads of the embedded backend that decode many rows per call (SQLite, `bank-local`):
//! - `history_first_page`: the first page (50 items, the API's default) of an account's ledger
//!   history — what `GET /v1/accounts/{id}/transactions` reads;
//! - `audit_list_1000`: 1,000 audit records in order — what the audit sealer reads for every
//!   thousand records it seals, and what `GET /v1/audit` pages through.
//!
//! Each is measured as one call on a read connection of a file-backed database, in a
//! current-thread runtime (the call is synchronous inside, as the server runs it). Throughput is
//! rows decoded per second.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bank_core::account::{AccountKind, NewAccount};
use bank_core::audit::{AuditLog, AuditOutcome, NewAuditRecord};
use bank_core::clock::{Clock, SystemClock};
use bank_core::ids::{CustomerId, TransferId};
use bank_core::ledger::{EntryKey, HistoryQuery, NewEntry, PAGE_LIMIT_DEFAULT};
use bank_core::money::{Currency, Money};
use bank_core::ports::LedgerStore;
use bank_local::audit::SqliteAuditLog;
use bank_local::db::LocalDb;
use bank_local::ledger::SqliteLedger;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Entries posted to the account whose history is read (several pages' worth).
const HISTORY_ENTRIES: usize = 200;
/// Audit records appended, and read per call.
const AUDIT_RECORDS: u64 = 5_000;
const AUDIT_PAGE: usize = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("build a tokio runtime")
}

fn history_first_page(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (ledger, account) = rt.block_on(async {
        let db = LocalDb::open_file(dir.path(), "ledger.sqlite").await.expect("open");
        let ledger = SqliteLedger::new(&db, clock);
        let bank = CustomerId::new();
        let settlement = ledger
            .open_account(NewAccount::internal(bank, "settlement", Currency::Usd, AccountKind::Settlement))
            .await
            .expect("settlement account");
        let account = ledger
            .open_account(NewAccount::customer(CustomerId::new(), "reader", Currency::Usd))
            .await
            .expect("customer account");
        let cents = Money::parse("12.34", "USD").expect("amount");
        for i in 0..HISTORY_ENTRIES {
            let key = EntryKey::new(TransferId::new(), 0);
            let entry =
                NewEntry::transfer(key, settlement.id, account.id, cents, format!("deposit {i}")).expect("entry");
            ledger.post(entry).await.expect("post");
        }
        (ledger, account.id)
    });
    let mut group = c.benchmark_group("reads_sqlite");
    group.throughput(Throughput::Elements(u64::from(PAGE_LIMIT_DEFAULT)));
    group.bench_function("history_first_page", |b| {
        b.iter(|| {
            let page = rt.block_on(ledger.history(account, HistoryQuery::first_page())).expect("history");
            assert_eq!(page.items.len(), PAGE_LIMIT_DEFAULT as usize);
            black_box(page)
        });
    });
    group.finish();
}

fn audit_list(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let log = rt.block_on(async {
        let db = LocalDb::open_file(dir.path(), "audit.sqlite").await.expect("open");
        let log = SqliteAuditLog::new(&db, Arc::clone(&clock));
        let records: Vec<NewAuditRecord> = (0..AUDIT_RECORDS)
            .map(|i| NewAuditRecord {
                at: clock.now(),
                subject: format!("user:{}", CustomerId::new()),
                action: "account.viewed".into(),
                target: format!("account:{i}"),
                outcome: AuditOutcome::Done,
                request_id: Some(format!("req-{i}")),
                client_ip: Some("127.0.0.1".into()),
            })
            .collect();
        log.append_batch(records).await.expect("append");
        log
    });
    let mut group = c.benchmark_group("reads_sqlite");
    group.throughput(Throughput::Elements(AUDIT_PAGE as u64));
    group.bench_function("audit_list_1000", |b| {
        b.iter(|| {
            let records = rt.block_on(log.list(1, AUDIT_PAGE)).expect("list");
            assert_eq!(records.len(), AUDIT_PAGE);
            black_box(records)
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = history_first_page, audit_list
}
criterion_main!(benches);
