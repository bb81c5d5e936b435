//! A tour of `bank-core`'s ledger on the in-memory store: open accounts, deposit, transfer, hold
//! and post part of the hold, watch an overdraft be refused, reverse an entry, then read balances,
//! history and the trial balance.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;

use bank_core::Error;
use bank_core::account::{AccountKind, Balance, NewAccount};
use bank_core::clock::{Clock, SystemClock};
use bank_core::ids::{CustomerId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, HistoryQuery, NewEntry, NewHold, PostHold, Reversal, Side};
use bank_core::memory::MemoryLedger;
use bank_core::money::{Amount, Currency, Money};
use bank_core::ports::LedgerStore;
use chrono::TimeDelta;
use rust_decimal::Decimal;

type BoxError = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let ledger = MemoryLedger::new(Arc::new(SystemClock));
    let usd = |amount: &str| Money::parse(amount, "USD");

    // The bank's settlement account is the other side of every deposit: it goes negative as
    // customers' balances go up, so the whole ledger always sums to zero.
    let bank = CustomerId::new();
    let settlement =
        ledger.open_account(NewAccount::internal(bank, "Settlement", Currency::Usd, AccountKind::Settlement)).await?;
    let alice = ledger.open_account(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd)).await?;
    let bob = ledger.open_account(NewAccount::customer(CustomerId::new(), "Bob", Currency::Usd)).await?;
    println!("opened   Settlement, Alice and Bob (USD)");

    // Every posting has a unique key: (transfer id, leg). Posting the same key again replays the
    // first result and moves no money.
    let deposit = EntryKey::new(TransferId::new(), 0);
    let first = ledger.post(NewEntry::transfer(deposit, settlement.id, alice.id, usd("500.00")?, "deposit")?).await?;
    let again = ledger.post(NewEntry::transfer(deposit, settlement.id, alice.id, usd("500.00")?, "deposit")?).await?;
    println!("deposit  500.00 USD to Alice, sent twice under one key: same entry = {}", first == again);

    let rent = EntryKey::new(TransferId::new(), 0);
    ledger.post(NewEntry::transfer(rent, alice.id, bob.id, usd("120.00")?, "rent")?).await?;
    println!("transfer 120.00 USD Alice -> Bob");

    // A hold reserves funds (lowers `available`, not `posted`); posting it debits part of it and
    // releases the rest.
    let hold_id = HoldId::new();
    ledger
        .hold(NewHold {
            id: hold_id,
            account_id: alice.id,
            money: usd("50.00")?,
            expires_at: SystemClock.now() + TimeDelta::hours(1),
            reference: "card authorisation".into(),
        })
        .await?;
    println!("hold     50.00 USD on Alice  -> {}", line(&ledger.balance(alice.id).await?));
    ledger
        .post_hold(PostHold {
            hold_id,
            key: EntryKey::new(TransferId::new(), 0),
            amount: Some(Amount::parse("30.00", Currency::Usd)?),
            credit_account: bob.id,
            reference: "card capture".into(),
        })
        .await?;
    println!("capture  30.00 of the 50.00 hold to Bob, 20.00 released");

    // No overdraft: the refusal is a typed error that says what the caller can do.
    let too_much =
        NewEntry::transfer(EntryKey::new(TransferId::new(), 0), alice.id, bob.id, usd("1000.00")?, "too much")?;
    match ledger.post(too_much).await {
        Err(err @ Error::InsufficientFunds { .. }) => {
            println!("refused  1000.00 USD Alice -> Bob: {err} [{} / {:?}]", err.code(), err.action());
        }
        other => return Err(format!("expected insufficient funds, got {other:?}").into()),
    }

    // Posted entries are never edited: a correction is a new entry that swaps debits and credits.
    let reversal =
        Reversal { original: rent, key: EntryKey::new(rent.transfer_id, 1), reference: "rent refund".into() };
    ledger.reverse(reversal).await?;
    println!("reverse  the 120.00 rent transfer (a new entry, leg 1 of the same transfer)");

    println!("\n{:<12} {:>10} {:>10} {:>10}", "balances", "posted", "pending", "available");
    for (name, id) in [("Settlement", settlement.id), ("Alice", alice.id), ("Bob", bob.id)] {
        let b = ledger.balance(id).await?;
        let available = b.available.map_or_else(|| "unlimited".to_owned(), |a| amount(a, b.currency));
        println!(
            "{name:<12} {:>10} {:>10} {available:>10}",
            amount(b.posted, b.currency),
            amount(b.pending, b.currency)
        );
    }

    println!("\nhistory of Alice (newest first)");
    for item in ledger.history(alice.id, HistoryQuery::first_page()).await?.items {
        let signed = match item.direction {
            Side::Credit => item.money.value(),
            Side::Debit => -item.money.value(),
        };
        println!(
            "  #{} {:>8} {:>9}  balance {:>7}  {}",
            item.sequence,
            format!("{:?}", item.direction).to_lowercase(),
            amount(signed, item.money.currency),
            amount(item.balance_after, item.money.currency),
            item.reference,
        );
    }

    for (currency, total) in ledger.trial_balance().await? {
        println!("\ntrial balance {currency}: {} (double entry: always zero)", amount(total, currency));
    }
    Ok(())
}

/// A value with as many decimals as its currency has (`500` → `"500.00"` in USD).
fn amount(value: Decimal, currency: Currency) -> String {
    format!("{:.*}", currency.exponent() as usize, value)
}

/// `posted …, pending …, available …` of one account.
fn line(b: &Balance) -> String {
    let available = b.available.map_or_else(|| "unlimited".to_owned(), |a| amount(a, b.currency));
    format!("posted {}, pending {}, available {available}", amount(b.posted, b.currency), amount(b.pending, b.currency))
}
