//! The statements suite on the in-memory ledger and blob store, and what only memory shows: the
//! link's signature, its expiry and tampering, and the PDF's text through `pdftotext`.

use bank_core::testkit::statements::MemoryStatementsHarness;

bank_core::statements_tests!(MemoryStatementsHarness);

use std::process::Command;
use std::sync::Arc;

use bank_core::Error;
use bank_core::accounts::Viewer;
use bank_core::audit::Actor;
use bank_core::clock::Clock;
use bank_core::memory::MemoryLedger;
use bank_core::memory::blob::MemoryBlobStore;
use bank_core::money::Currency;
use bank_core::ports::{BlobStore, LedgerStore};
use bank_core::statements::{Initiator, Period, format_amount, pdf};
use bank_core::testkit::statements::{FEBRUARY_ENTRIES, StatementsHarness, World};
use chrono::TimeDelta;

/// The text `pdftotext` extracts from `pdf`, or `None` (with the reason printed) when the tool
/// is not installed; with `BANK_REQUIRE_SERVICES=1` a missing tool fails the test instead.
fn pdftotext(pdf: &[u8]) -> Option<String> {
    let dir = tempfile_dir();
    let path = dir.join("statement.pdf");
    std::fs::write(&path, pdf).expect("write pdf");
    let output = Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output();
    let _ = std::fs::remove_dir_all(&dir);
    match output {
        Ok(output) if output.status.success() => Some(String::from_utf8(output.stdout).expect("utf-8 text")),
        Ok(output) => panic!("pdftotext failed: {}", String::from_utf8_lossy(&output.stderr)),
        Err(err) => {
            let reason = format!("pdftotext (poppler-utils) is not available: {err}");
            assert!(std::env::var("BANK_REQUIRE_SERVICES").as_deref() != Ok("1"), "{reason}");
            eprintln!("skipped: {reason}");
            None
        }
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bank-statements-{}", bank_core::ids::TransferId::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The text of February's PDF shows the bank, holder, period, every page number, the entries'
/// amounts and the closing balance (summed independently while the ledger was seeded).
#[tokio::test]
async fn pdf_text_shows_the_amounts_and_the_closing_balance() {
    let w = World::new(&MemoryStatementsHarness).await;
    let (opening, credits, debits) = w.seed_february().await;
    let account = w.ledger.account(w.alice).await.expect("account");
    let statement = w.job.build(account, "2026-02".parse().expect("period")).await.expect("build");
    let Some(text) = pdftotext(&pdf::render(&statement)) else { return };
    let money = |value| format_amount(value, Currency::Usd.exponent());
    let closing = opening + credits - debits;
    assert!(text.contains(&format!("Closing balance {} USD", money(closing))), "closing balance in:\n{text}");
    assert!(text.contains(&money(credits)) && text.contains(&money(debits)), "totals");
    assert!(text.contains("Conformance Bank") && text.contains("Alice Example") && text.contains("2026-02"));
    assert!(text.contains(&w.alice.to_string()));
    let pages = text.matches("Page ").count();
    assert!(pages >= 5, "{pages} pages");
    assert!(text.contains(&format!("Page {pages} of {pages}")));
    for line in statement.lines.iter().step_by(37) {
        assert!(text.contains(&line.reference), "entry {}", line.reference);
        assert!(text.contains(&money(line.balance)), "running balance {}", line.balance);
    }
    assert_eq!(statement.lines.len(), FEBRUARY_ENTRIES);
}

/// A link verifies with the store's key until it expires (five minutes); an altered key, expiry
/// or signature, or one made for another statement and edited to this one, does not.
#[tokio::test]
async fn download_links_expire_and_resist_tampering() {
    struct Harness(parking_lot::Mutex<Option<Arc<MemoryBlobStore>>>);
    #[async_trait::async_trait]
    impl StatementsHarness for Harness {
        async fn stores(&self, clock: Arc<dyn Clock>) -> (Arc<dyn LedgerStore>, Arc<dyn BlobStore>) {
            let blobs = Arc::new(MemoryBlobStore::new(
                Arc::clone(&clock),
                b"links secret, at least 16 bytes".to_vec(),
                "https://bank.example/files".into(),
            ));
            *self.0.lock() = Some(Arc::clone(&blobs));
            (Arc::new(MemoryLedger::new(clock)), blobs)
        }
    }
    let harness = Harness(parking_lot::Mutex::new(None));
    let w = World::new(&harness).await;
    let store = harness.0.lock().clone().expect("store");
    w.seed_february().await;
    let february: Period = "2026-02".parse().expect("period");
    let meta = w.job.generate(&Initiator::Cli, w.alice, february).await.expect("generate").meta().clone();
    w.clock.set(w.clock.now() + TimeDelta::days(40));
    let march = w.job.run_period(&Initiator::Cli, "2026-03".parse().expect("period")).await.expect("march");
    assert_eq!(march.created, 1);
    let owner = Viewer::customer(w.alice_owner);
    let actor = Actor { user: w.alice_owner, request_id: None, client_ip: None };
    let link = w.job.download_link(&owner, &actor, meta.id).await.expect("link");
    assert_eq!(store.verify_url(&link.url).expect("valid now"), meta.id.key());
    for altered in [
        link.url.replace("2026-02.pdf", "2026-03.pdf"),
        link.url.replace(&w.alice.to_string(), &bank_core::ids::AccountId::new().to_string()),
        link.url.replace("expires=", "expires=9"),
        format!("{}0", link.url),
        link.url.replace("signature=", "signature=00"),
        link.url.split('?').next().unwrap_or_default().to_owned(),
    ] {
        assert!(matches!(store.verify_url(&altered), Err(Error::InvalidInput(_))), "{altered}");
    }
    w.clock.advance(TimeDelta::seconds(299));
    assert!(store.verify_url(&link.url).is_ok(), "valid for five minutes");
    w.clock.advance(TimeDelta::seconds(1));
    assert!(matches!(store.verify_url(&link.url), Err(Error::InvalidInput(_))), "expired");
}
