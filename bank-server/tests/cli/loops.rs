//! The background loops over a real local backend: a transfer accepted through the service is
//! settled by the running loops, which then stop cleanly.

use std::time::Duration;

use bank_core::account::NewAccount;
use bank_core::audit::AuditRecord;
use bank_core::idempotency::IdempotencyKey;
use bank_core::ids::{CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::money::{Currency, Money};
use bank_core::payments::{Caller, PaymentsService};
use bank_core::rail::breaker::BreakerState;
use bank_core::transfer::{Beneficiary, BeneficiaryAccount, Destination, TransferRequest, TransferStatus};
use bank_server::run::LoopSet;
use rust_decimal::Decimal;

use crate::config_in;

/// How long the loops get to settle a transfer (they poll every few milliseconds).
const SETTLE_WAIT: Duration = Duration::from_secs(15);
/// How long a clean shutdown may take.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_loops_settle_accepted_transfers_and_stop_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), &[("BANK_RAIL_LATENCY_MS", "5")]);
    let app = bank_server::app::App::build(&config).await.expect("app");
    let loops = app.start_loops(LoopSet::ALL).expect("loops");
    let backend = app.backend.clone();
    assert_eq!(
        loops.names(),
        [
            "worker",
            "relay",
            "scheduler",
            "deposits_sweep",
            "notifications",
            "refresh_purge",
            "statements",
            "audit_seal"
        ]
    );

    let alice = CustomerId::new();
    let from = backend.ledger.open_account(NewAccount::customer(alice, "Alice", Currency::Usd)).await.expect("open");
    let to =
        backend.ledger.open_account(NewAccount::customer(CustomerId::new(), "Bob", Currency::Usd)).await.expect("open");
    let deposits = backend.system.deposits(Currency::Usd).expect("deposits");
    let funding = Money::parse("100.00", "USD").expect("money");
    let entry =
        NewEntry::transfer(EntryKey::new(TransferId::new(), 0), deposits, from.id, funding, "fund").expect("entry");
    backend.ledger.post(entry).await.expect("fund");

    let service = PaymentsService::new(backend.payments.clone(), config.payments_config());
    let caller = Caller { customer: alice };
    let internal = TransferRequest {
        id: None,
        from_account_id: from.id,
        destination: Destination::Internal { account_id: to.id },
        money: Money::parse("30.00", "USD").expect("money"),
        reference: "rent".into(),
    };
    let external = TransferRequest {
        destination: Destination::External {
            beneficiary: Beneficiary {
                name: "Jane".into(),
                account: BeneficiaryAccount::Iban { iban: "DE89370400440532013000".into() },
            },
        },
        money: Money::parse("20.00", "USD").expect("money"),
        ..internal.clone()
    };
    let mut ids = Vec::new();
    for (n, request) in [internal, external].into_iter().enumerate() {
        let key = IdempotencyKey::new(format!("loops-test-{n}")).expect("key");
        ids.push(service.accept(&caller, key, request).await.expect("accepted").transfer.id);
    }

    let settled = tokio::time::timeout(SETTLE_WAIT, async {
        loop {
            let mut done = true;
            for id in &ids {
                let transfer = service.get(&caller, *id).await.expect("get");
                assert!(!matches!(transfer.status, TransferStatus::Failed), "{transfer:?}");
                done &= transfer.status == TransferStatus::Settled;
            }
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "the loops did not settle both transfers within {SETTLE_WAIT:?}");
    assert_eq!(app.rail.rail.accepted_count(), 1, "the external transfer went through the rail once");
    assert_eq!(app.rail.breaker.state(), BreakerState::Closed);

    let balance = backend.ledger.balance(from.id).await.expect("balance");
    assert_eq!(balance.posted, Decimal::new(5_000, 2));
    let balance = backend.ledger.balance(to.id).await.expect("balance");
    assert_eq!(balance.posted, Decimal::new(3_000, 2));

    // The worker recorded each outcome once, as `worker`, with the outcome itself; the relay
    // appends the records to the log (within its poll).
    let relayed = tokio::time::timeout(SETTLE_WAIT, async {
        loop {
            let records = backend.audit.list(1, 100).await.expect("audit");
            if ids.iter().all(|id| !settled_records(&records, id).is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(relayed.is_ok(), "the relay did not append both outcome records within {SETTLE_WAIT:?}");
    tokio::time::timeout(SHUTDOWN_WAIT, loops.shutdown()).await.expect("the loops stop promptly");
    let records = backend.audit.list(1, 100).await.expect("audit");
    for id in &ids {
        let settled = settled_records(&records, id);
        assert_eq!(settled.len(), 1, "{records:?}");
        assert!(settled.iter().all(|r| r.record.subject == bank_core::payments::WORKER_AUDIT_SUBJECT));
    }
    // The backend is still usable after the loops stopped (nothing was poisoned).
    backend.ready.check().await.into_iter().for_each(|(name, result)| result.unwrap_or_else(|e| panic!("{name}: {e}")));
}

/// The `transfer.settled` records of transfer `id`.
fn settled_records<'a>(records: &'a [AuditRecord], id: &TransferId) -> Vec<&'a AuditRecord> {
    let target = format!("transfer:{id}");
    records.iter().filter(|r| r.record.action == "transfer.settled" && r.record.target == target).collect()
}
