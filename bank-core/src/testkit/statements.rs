//! The statements suite: [`crate::statements::StatementJob`] over a ledger and a blob store from
//! a [`StatementsHarness`] (audit log and event bus in memory), so every backend's ledger and
//! object store are checked making real statements: reconciliation over a month of hundreds of
//! entries on several pages, determinism, re-runs that change nothing, retention, bad periods,
//! the monthly schedule on a manual clock, and who may list and download.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use crate::account::{AccountKind, AccountStatus, NewAccount};
use crate::accounts::Viewer;
use crate::audit::{Actor, AuditLog};
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::events::EventKind;
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::ledger::{EntryKey, NewEntry};
use crate::memory::audit::MemoryAuditLog;
use crate::memory::blob::sha256_hex;
use crate::memory::bus::MemoryEventBus;
use crate::money::{Currency, Money};
use crate::ports::{BlobStore, LedgerStore};
use crate::statements::{
    Generated, Initiator, Period, STATEMENT_SETTLE_SECONDS, StatementId, StatementJob, StatementScheduler,
    StatementsConfig, pdf,
};

/// How to build fresh stores for one case.
#[async_trait]
pub trait StatementsHarness: Send + Sync {
    /// A new empty ledger and blob store reading time from `clock`.
    async fn stores(&self, clock: Arc<dyn Clock>) -> (Arc<dyn LedgerStore>, Arc<dyn BlobStore>);
}

/// Expands to one `#[tokio::test]` per statements case.
#[macro_export]
macro_rules! statements_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(statements, $harness;
            a_month_of_hundreds_of_entries_reconciles_on_several_pages,
            the_same_ledger_renders_the_same_bytes,
            a_rerun_creates_nothing_and_changes_nothing,
            stored_statements_cannot_be_overwritten_or_deleted_before_retention,
            bad_periods_and_accounts_are_refused_and_nothing_is_stored,
            the_scheduler_runs_each_previous_month_once,
            statements_are_listed_and_linked_for_their_owner_only,
        );
    };
}

/// The harness on the in-memory ledger and blob store.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStatementsHarness;

#[async_trait]
impl StatementsHarness for MemoryStatementsHarness {
    async fn stores(&self, clock: Arc<dyn Clock>) -> (Arc<dyn LedgerStore>, Arc<dyn BlobStore>) {
        let blobs = crate::memory::blob::MemoryBlobStore::new(
            Arc::clone(&clock),
            b"statements secret, 32 bytes!!!!!".to_vec(),
            "https://files.example".to_owned(),
        );
        (Arc::new(crate::memory::MemoryLedger::new(clock)), Arc::new(blobs))
    }
}

/// Entries posted to the account in February 2026 by [`World::seed_february`].
pub const FEBRUARY_ENTRIES: usize = 300;

/// A bank on a manual clock starting 2026-01-01: a USD settlement account and Alice's account.
#[derive(Debug)]
pub struct World {
    /// The clock every store reads.
    pub clock: ManualClock,
    /// The ledger.
    pub ledger: Arc<dyn LedgerStore>,
    /// The object store.
    pub blobs: Arc<dyn BlobStore>,
    /// The audit log.
    pub audit: Arc<MemoryAuditLog>,
    /// The event bus.
    pub events: Arc<MemoryEventBus>,
    /// The job.
    pub job: StatementJob,
    /// The bank's USD settlement account.
    pub settlement: AccountId,
    /// Alice's USD account.
    pub alice: AccountId,
    /// Alice.
    pub alice_owner: CustomerId,
}

impl World {
    /// A fresh bank from `harness`.
    pub async fn new(harness: &dyn StatementsHarness) -> World {
        let clock = ManualClock::at_epoch();
        let (ledger, blobs) = harness.stores(Arc::new(clock.clone())).await;
        let audit = Arc::new(MemoryAuditLog::new());
        let events = Arc::new(MemoryEventBus::new(10_000));
        let config = StatementsConfig::default().with_bank_name("Conformance Bank").expect("valid name");
        let job = StatementJob::new(
            Arc::clone(&ledger),
            Arc::clone(&blobs),
            audit.clone(),
            events.clone(),
            Arc::new(clock.clone()),
            config,
        );
        let bank = CustomerId::new();
        let settlement = ledger
            .open_account(NewAccount::internal(bank, "USD settlement", Currency::Usd, AccountKind::Settlement))
            .await
            .expect("open settlement")
            .id;
        let alice_owner = CustomerId::new();
        let alice = ledger
            .open_account(NewAccount::customer(alice_owner, "Alice Example", Currency::Usd))
            .await
            .expect("open alice")
            .id;
        World { clock, ledger, blobs, audit, events, job, settlement, alice, alice_owner }
    }

    /// Posts `money` from `from` to `to`.
    pub async fn post(&self, from: AccountId, to: AccountId, money: Money, reference: &str) {
        let entry = NewEntry::transfer(EntryKey::new(TransferId::new(), 0), from, to, money, reference).expect("entry");
        self.ledger.post(entry).await.expect("post");
    }

    /// January: a deposit of 1,000.00 (the February opening balance). February: 300 entries
    /// spread over the month, credits and debits. March: one more entry. Leaves the clock at
    /// 2026-03-02. Returns (opening, credits, debits) of February as summed here.
    pub async fn seed_february(&self) -> (Decimal, Decimal, Decimal) {
        self.clock.set(at("2026-01-10T09:00:00Z"));
        self.post(self.settlement, self.alice, usd("1000.00"), "Salary January").await;
        self.clock.set(at("2026-02-01T00:00:00Z"));
        let (mut credits, mut debits) = (Decimal::ZERO, Decimal::ZERO);
        for i in 0..FEBRUARY_ENTRIES {
            // Every 2 h 14 min: 300 entries fill the 28 days.
            self.clock.advance(TimeDelta::minutes(134));
            let cents = i64::try_from(100 + (i * 37) % 900).expect("small");
            let money = Money::new(Decimal::new(cents, 2), Currency::Usd).expect("amount");
            if i % 4 == 0 {
                self.post(self.settlement, self.alice, money, &format!("Refund {i}")).await;
                credits += money.value();
            } else {
                self.post(self.alice, self.settlement, money, &format!("Card payment {i}")).await;
                debits += money.value();
            }
        }
        assert!(self.clock.now() < at("2026-03-01T00:00:00Z"), "February entries stay in February");
        self.clock.set(at("2026-03-01T12:00:00Z"));
        self.post(self.alice, self.settlement, usd("1.00"), "March coffee").await;
        self.clock.set(at("2026-03-02T00:00:00Z"));
        (Decimal::new(100_000, 2), credits, debits)
    }

    /// Every statement object stored.
    pub async fn stored(&self) -> Vec<String> {
        self.blobs.list("statements/", 1000).await.expect("list").into_iter().map(|m| m.key).collect()
    }

    /// How many audit records there are.
    pub async fn audit_len(&self) -> usize {
        self.audit.list(1, 1000).await.expect("audit").len()
    }
}

/// An instant from RFC 3339 text.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

fn usd(text: &str) -> Money {
    super::fixtures::usd(text)
}

fn february() -> Period {
    "2026-02".parse().expect("period")
}

/// February's statement agrees with the sums made while posting and with the ledger: opening,
/// totals, closing, every entry in sequence with a running balance, on more than one page.
pub async fn a_month_of_hundreds_of_entries_reconciles_on_several_pages(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    let (opening, credits, debits) = w.seed_february().await;
    let account = w.ledger.account(w.alice).await.expect("account");
    let statement = w.job.build(account, february()).await.expect("reconciles");
    assert_eq!(statement.lines.len(), FEBRUARY_ENTRIES);
    assert_eq!(statement.opening, opening);
    assert_eq!(statement.total_credits, credits);
    assert_eq!(statement.total_debits, debits);
    assert_eq!(statement.closing, opening + credits - debits);
    let ledger_end = w.ledger.balance_at(w.alice, february().end()).await.expect("balance_at");
    assert_eq!(statement.closing, ledger_end);
    let now = w.ledger.balance(w.alice).await.expect("balance").posted;
    assert_eq!(statement.closing - Decimal::ONE, now, "March's entry is not in February's statement");
    let mut running = opening;
    for pair in statement.lines.windows(2) {
        assert!(pair[0].sequence < pair[1].sequence, "lines in sequence order");
    }
    for line in &statement.lines {
        running += line.side.signed(line.amount);
        assert_eq!(line.balance, running, "running balance at {}", line.sequence);
        assert!(line.posted_at >= february().start() && line.posted_at < february().end());
    }
    let bytes = pdf::render(&statement);
    let pages = count(&bytes, b"/Type /Page\n") + count(&bytes, b"/Type /Page ") + count(&bytes, b"/Type /Page>");
    assert!(pages >= 5, "300 entries need several pages, got {pages}");
    let generated = w.job.generate(&Initiator::Cli, w.alice, february()).await.expect("generate");
    let Generated::Created(meta) = generated else { panic!("first run creates") };
    assert_eq!(meta.sha256, sha256_hex(&bytes), "the stored PDF is the rendered one");
    let (_, stored) = w.blobs.get(&meta.id.key()).await.expect("stored");
    assert_eq!(stored, bytes);
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Rendering the same ledger twice gives identical bytes, with no creation date in them.
pub async fn the_same_ledger_renders_the_same_bytes(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    w.seed_february().await;
    let account = w.ledger.account(w.alice).await.expect("account");
    let first = pdf::render(&w.job.build(account.clone(), february()).await.expect("build"));
    w.clock.advance(TimeDelta::days(3));
    let second = pdf::render(&w.job.build(account, february()).await.expect("build"));
    assert_eq!(first, second, "same ledger, same bytes");
    assert_eq!(count(&first, b"CreationDate"), 0);
    assert_eq!(count(&first, b"/ID ["), 1, "a file id derived from the statement");
}

/// A second run of a period finds the statement and does nothing: same metadata, no new audit
/// record, event or object; the first run announced it once with its SHA-256 and audited it.
pub async fn a_rerun_creates_nothing_and_changes_nothing(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    w.seed_february().await;
    let first = w.job.run_period(&Initiator::Scheduler, february()).await.expect("run");
    assert_eq!((first.created, first.existing, first.failed_count), (1, 0, 0));
    assert_eq!(first.skipped, 1, "the settlement account gets none");
    let id = StatementId::new(w.alice, february());
    let meta = w.blobs.head(&id.key()).await.expect("stored");
    let records = w.audit.list(1, 100).await.expect("audit");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.action, "statement.generated");
    assert_eq!(records[0].record.subject, "scheduler");
    assert_eq!(records[0].record.target, format!("statement:{id} sha256:{}", meta.sha256));
    let published = w.events.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].kind, EventKind::StatementReady);
    assert_eq!(published[0].owner, w.alice_owner);
    assert_eq!(
        published[0].statement.as_ref().map(|s| (s.statement_id, s.sha256.clone())),
        Some((id, meta.sha256.clone()))
    );

    w.clock.advance(TimeDelta::days(1));
    let again = w.job.run_period(&Initiator::Scheduler, february()).await.expect("re-run");
    assert_eq!((again.created, again.existing), (0, 1));
    let Generated::Existing(existing) = w.job.generate(&Initiator::Cli, w.alice, february()).await.expect("again")
    else {
        panic!("a stored statement is found, not made")
    };
    assert_eq!((existing.sha256.as_str(), existing.created_at), (meta.sha256.as_str(), meta.created_at));
    assert_eq!(w.blobs.head(&id.key()).await.expect("stored"), meta, "unchanged");
    assert_eq!(w.audit_len().await, 1, "no new audit record");
    assert_eq!(w.events.published().len(), 1, "no new event");
    assert_eq!(w.stored().await, vec![id.key()]);
}

/// The stored PDF cannot be replaced or deleted until its retention (7 years by default) ends.
pub async fn stored_statements_cannot_be_overwritten_or_deleted_before_retention(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    w.seed_february().await;
    let meta = w.job.generate(&Initiator::Cli, w.alice, february()).await.expect("generate").meta().clone();
    let key = meta.id.key();
    assert_eq!(meta.retain_until, meta.created_at + TimeDelta::days(7 * 365 + 2));
    let forged = b"%PDF-1.7 forged".to_vec();
    let overwrite = w.blobs.put(&key, forged.clone(), "application/pdf", meta.retain_until).await;
    assert!(matches!(overwrite, Err(Error::Retained { .. })), "{overwrite:?}");
    assert!(matches!(w.blobs.delete(&key).await, Err(Error::Retained { .. })));
    w.clock.set(meta.retain_until - TimeDelta::seconds(1));
    assert!(matches!(w.blobs.delete(&key).await, Err(Error::Retained { .. })), "not even a second early");
    assert_eq!(w.blobs.head(&key).await.expect("still there").sha256, meta.sha256);
    w.clock.set(meta.retain_until);
    w.blobs.delete(&key).await.expect("deletable once retention ended");
}

/// Malformed, unfinished, future and pre-account periods, the bank's own accounts and unknown
/// accounts are refused with `InvalidInput` / `AccountNotFound`; nothing is stored, audited or
/// announced.
pub async fn bad_periods_and_accounts_are_refused_and_nothing_is_stored(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    w.seed_february().await;
    for bad in ["2026-13", "2026-1", "1969-12", ""] {
        assert!(matches!(bad.parse::<Period>(), Err(Error::InvalidInput(_))), "{bad}");
    }
    let march: Period = "2026-03".parse().expect("period");
    let future: Period = "2027-01".parse().expect("period");
    let before_account: Period = "1999-01".parse().expect("period");
    for period in [march, future, before_account] {
        let refused = w.job.generate(&Initiator::Cli, w.alice, period).await;
        assert!(matches!(refused, Err(Error::InvalidInput(_))), "{period}: {refused:?}");
        let run = w.job.run_period(&Initiator::Cli, period).await.and_then(|r| r.require_some_account());
        assert!(matches!(run, Err(Error::InvalidInput(_))), "{period}: {run:?}");
    }
    // February ended at midnight; until the settling delay has passed it is not closed either.
    w.clock.set(at("2026-03-02T00:00:00Z"));
    let w2 = World::new(harness).await;
    w2.clock.set(february().end() + TimeDelta::seconds(STATEMENT_SETTLE_SECONDS - 1));
    assert!(matches!(w2.job.generate(&Initiator::Cli, w2.alice, february()).await, Err(Error::InvalidInput(_))));
    let internal = w.job.generate(&Initiator::Cli, w.settlement, february()).await;
    assert!(matches!(internal, Err(Error::InvalidInput(_))), "{internal:?}");
    let unknown = w.job.generate(&Initiator::Cli, AccountId::new(), february()).await;
    assert!(matches!(unknown, Err(Error::AccountNotFound(_))), "{unknown:?}");
    assert!(w.stored().await.is_empty() && w2.stored().await.is_empty(), "nothing stored");
    assert_eq!(w.audit_len().await, 0);
    assert!(w.events.published().is_empty());
}

/// On a manual clock: a scheduler started mid-February closes January once; nothing until
/// March 1st plus the settling delay; then February, once; closed accounts with nothing in the
/// period are skipped.
pub async fn the_scheduler_runs_each_previous_month_once(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    let quiet_owner = CustomerId::new();
    let quiet = w.ledger.open_account(NewAccount::customer(quiet_owner, "Closed early", Currency::Usd)).await;
    let quiet = quiet.expect("open").id;
    w.ledger.set_status(quiet, AccountStatus::Closed).await.expect("close");
    let scheduler = StatementScheduler::new(w.job.clone());
    w.clock.set(at("2026-01-20T10:00:00Z"));
    w.post(w.settlement, w.alice, usd("50.00"), "January deposit").await;
    let december = scheduler.run_once().await.expect("run").expect("December is due on the first call");
    assert_eq!((december.period.to_string().as_str(), december.eligible()), ("2025-12", 0), "no account existed yet");
    assert!(scheduler.run_once().await.expect("run").is_none(), "December runs once");
    w.clock.set(at("2026-02-15T10:00:00Z"));
    let january = scheduler.run_once().await.expect("run").expect("January is due");
    assert_eq!(january.period.to_string(), "2026-01");
    assert_eq!((january.created, january.existing), (1, 0));
    assert!(scheduler.run_once().await.expect("run").is_none(), "once");
    w.clock.set(at("2026-03-01T00:04:59Z"));
    assert!(scheduler.run_once().await.expect("run").is_none(), "February is still settling");
    w.clock.set(at("2026-03-01T00:05:00Z"));
    let february = scheduler.run_once().await.expect("run").expect("February is due");
    assert_eq!(february.period.to_string(), "2026-02");
    assert_eq!((february.created, february.skipped), (1, 2), "alice's; the bank's and the closed one skipped");
    for _ in 0..3 {
        w.clock.advance(TimeDelta::hours(6));
        assert!(scheduler.run_once().await.expect("run").is_none(), "February runs once");
    }
    let keys = w.stored().await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(w.events.published().iter().filter(|e| e.kind == EventKind::StatementReady).count(), 2);
}

/// The owner lists the account's statements and gets a link valid for the configured time (the
/// hand-out audited); an operator may too; anyone else, or a missing statement, is not found.
pub async fn statements_are_listed_and_linked_for_their_owner_only(harness: &dyn StatementsHarness) {
    let w = World::new(harness).await;
    w.seed_february().await;
    let meta = w.job.generate(&Initiator::Cli, w.alice, february()).await.expect("generate").meta().clone();
    let owner = Viewer::customer(w.alice_owner);
    let listed = w.job.list(&owner, w.alice).await.expect("list");
    assert_eq!(listed, vec![meta.clone()]);
    let stranger = Viewer::customer(CustomerId::new());
    assert!(matches!(w.job.list(&stranger, w.alice).await, Err(Error::AccountNotFound(_))));
    let operator = Viewer::operator(CustomerId::new());
    assert_eq!(w.job.list(&operator, w.alice).await.expect("operators read every account"), listed);

    let actor = Actor { user: w.alice_owner, request_id: Some("req-1".into()), client_ip: None };
    let before = w.audit_len().await;
    let link = w.job.download_link(&owner, &actor, meta.id).await.expect("link");
    assert_eq!(link.expires_at, w.clock.now() + TimeDelta::minutes(5));
    assert!(link.url.contains(&meta.id.key()), "{}", link.url);
    let records = w.audit.list(1, 1000).await.expect("audit");
    assert_eq!(records.len(), before + 1);
    let last = &records[records.len() - 1].record;
    assert_eq!((last.action.as_str(), last.subject.clone()), ("statement.downloaded", w.alice_owner.to_string()));
    assert!(last.target.contains(&meta.sha256));

    let stranger_actor = Actor { user: CustomerId::new(), request_id: None, client_ip: None };
    let foreign = w.job.download_link(&stranger, &stranger_actor, meta.id).await;
    assert!(matches!(foreign, Err(Error::BlobNotFound(_))), "{foreign:?}");
    let missing = StatementId::new(w.alice, "2026-01".parse().expect("period"));
    assert!(matches!(w.job.download_link(&owner, &actor, missing).await, Err(Error::BlobNotFound(_))));
    let nobody = StatementId::new(AccountId::new(), february());
    assert!(matches!(w.job.download_link(&owner, &actor, nobody).await, Err(Error::BlobNotFound(_))));
    assert_eq!(w.audit_len().await, before + 1, "refusals hand out nothing");
}
