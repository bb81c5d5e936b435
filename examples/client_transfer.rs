//! Signs in to a running bank server with `bank-client`, lists the caller's accounts, moves 1.00
//! between the first two (or to another customer's account given by id) and waits until the
//! transfer is settled or failed.
//!
//! Start the demo server first; it prints the demo users, their TOTP secrets and account ids:
//!
//! ```text
//! cargo run -p bank-server -- serve --demo
//! cargo run --example client_transfer -- http://127.0.0.1:8080 alice@demo.bank alice-demo-password <totp_secret> [<to_account_id>]
//! ```
//!
//! The demo customers have one account each, so pass bob's account id as the last argument.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bank_api::TransferRequest;
use bank_client::BankClient;
use rust_decimal::Decimal;
use uuid::Uuid;

const USAGE: &str = "usage: cargo run --example client_transfer -- <base_url> <email> <password> <totp_secret> \
                     [<to_account_id>]";
/// Longest the example waits for the transfer to become final.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two reads of the transfer.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base_url, email, password, totp_secret, to) = match args.as_slice() {
        [base_url, email, password, secret] => (base_url, email, password, secret, None),
        [base_url, email, password, secret, to] => (base_url, email, password, secret, Some(to.parse::<Uuid>()?)),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };

    let client = BankClient::new(base_url.as_str())?;
    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let code = bank_server::auth::totp::code_at(totp_secret, now_secs)?;
    client.login(email, password, &code).await?;
    println!("signed in as {email}");

    let accounts = client.accounts().await?;
    for account in &accounts {
        println!(
            "  {}  {:<20} posted {} {} (available {})",
            account.id, account.name, account.posted, account.currency, account.available
        );
    }
    let from = accounts.first().ok_or("this user has no account")?;
    let to = match to {
        Some(id) => id,
        None => accounts.get(1).ok_or("only one account: pass the destination account id as the fifth argument")?.id,
    };

    let amount = Decimal::new(100, 2); // 1.00
    let request = TransferRequest::internal(from.id, to, amount, from.currency.clone(), "client_transfer example");
    // `transfer` picks one Idempotency-Key and reuses it on every automatic retry.
    let submitted = client.transfer(&request).await?;
    let transfer = submitted.value;
    println!(
        "transfer {} of {} {} from {} to {to}: {:?}",
        transfer.id, transfer.amount, transfer.currency, transfer.from_account_id, transfer.status
    );

    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let mut status = transfer.status;
    while !status.is_final() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("transfer {} still {status:?} after {SETTLE_TIMEOUT:?}", transfer.id).into());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        let current = client.get_transfer(transfer.id).await?;
        if current.status != status {
            println!("  now {:?}", current.status);
        }
        if let Some(reason) = &current.failure_reason {
            println!("  failure reason: {reason}");
        }
        status = current.status;
    }

    let from_after = client.account(from.id).await?;
    println!("final status {status:?}; {} now holds {} {}", from_after.name, from_after.posted, from_after.currency);
    Ok(())
}
