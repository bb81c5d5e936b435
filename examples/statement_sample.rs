//! Renders a sample monthly statement to a PDF: a seeded in-memory ledger (a salary, rent, card
//! payments and transfers over February 2026, about 150 entries: several pages), reconciled and
//! rendered by `bank-core`'s statement job exactly as the server does it.
//!
//! ```sh
//! cargo run --example statement_sample -- /tmp/statement.pdf
//! pdftoppm -png -r 80 -f 1 -l 1 -singlefile /tmp/statement.pdf docs/statement-sample   # the README picture
//! ```
//!
//! Every id is derived from a fixed name and the clock is manual, so the output is the same file,
//! byte for byte, on every run.

use std::sync::Arc;

use bank_core::account::{AccountKind, NewAccount};
use bank_core::clock::ManualClock;
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::memory::MemoryLedger;
use bank_core::memory::audit::MemoryAuditLog;
use bank_core::memory::blob::MemoryBlobStore;
use bank_core::memory::bus::MemoryEventBus;
use bank_core::money::{Currency, Money};
use bank_core::ports::LedgerStore;
use bank_core::statements::{Period, StatementJob, StatementsConfig, pdf};
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: statement_sample OUTPUT.pdf")?;
    let start = DateTime::parse_from_rfc3339("2026-01-31T09:00:00Z")?.with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::new(clock.clone())));
    let bank = ledger
        .open_account(NewAccount {
            id: AccountId::derived(b"sample settlement"),
            ..NewAccount::internal(
                CustomerId::derived(b"sample bank"),
                "Settlement",
                Currency::Usd,
                AccountKind::Settlement,
            )
        })
        .await?;
    let alice = ledger
        .open_account(NewAccount {
            id: AccountId::derived(b"sample alice"),
            ..NewAccount::customer(CustomerId::derived(b"sample alice"), "Alice Example", Currency::Usd)
        })
        .await?;
    let mut n = 0_u32;
    let mut post =
        async |from: AccountId, to: AccountId, cents: i64, reference: String| -> Result<(), bank_core::Error> {
            n += 1;
            let key = EntryKey::new(TransferId::derived(format!("sample {n}").as_bytes()), 0);
            let money = Money::new(Decimal::new(cents, 2), Currency::Usd)?;
            ledger.post(NewEntry::transfer(key, from, to, money, reference)?).await.map(|_| ())
        };
    post(bank.id, alice.id, 245_000, "Opening deposit".into()).await?;
    clock.set(DateTime::parse_from_rfc3339("2026-02-01T07:00:00Z")?.with_timezone(&Utc));
    post(bank.id, alice.id, 420_000, "Salary February - ACME Corp".into()).await?;
    post(alice.id, bank.id, 135_000, "Rent February, flat 4B".into()).await?;
    let shops = ["Grocer", "Coffee bar", "Bookshop", "Pharmacy", "Train ticket", "Cinema", "Bakery", "Hardware store"];
    for i in 0..150_i64 {
        clock.advance(TimeDelta::minutes(262));
        if i % 25 == 24 {
            post(bank.id, alice.id, 4_000 + i * 3, format!("Refund order #{}", 1000 + i)).await?;
        } else {
            let shop = shops[usize::try_from(i).unwrap_or(0) % shops.len()];
            post(alice.id, bank.id, 315 + (i * 137) % 6_000, format!("Card payment {shop}")).await?;
        }
    }
    clock.set(DateTime::parse_from_rfc3339("2026-03-01T06:00:00Z")?.with_timezone(&Utc));
    let job = StatementJob::new(
        Arc::clone(&ledger),
        Arc::new(MemoryBlobStore::new(Arc::new(clock.clone()), vec![7; 32], "http://127.0.0.1:8080/files".into())),
        Arc::new(MemoryAuditLog::new()),
        Arc::new(MemoryEventBus::new(16)),
        Arc::new(clock.clone()),
        StatementsConfig::default().with_bank_name("Example Bank")?,
    );
    let period: Period = "2026-02".parse()?;
    let statement = job.build(ledger.account(alice.id).await?, period).await?;
    let bytes = pdf::render(&statement);
    std::fs::write(&path, &bytes)?;
    println!(
        "{path}: statement {} with {} entries, closing balance {} {} ({} bytes)",
        statement.id,
        statement.lines.len(),
        bank_core::statements::format_amount(statement.closing, Currency::Usd.exponent()),
        Currency::Usd,
        bytes.len()
    );
    Ok(())
}
