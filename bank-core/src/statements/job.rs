//! [`StatementJob`]: makes, stores, lists and hands out statements, over ports only
//! ([`LedgerStore`], [`BlobStore`], [`AuditLog`], [`EventPublisher`], [`Clock`]), so it runs the
//! same on every backend; and [`StatementScheduler`], which runs the previous month once the
//! clock has passed its end.
//!
//! # Making one statement ([`StatementJob::generate`])
//! 1. The period must have ended at least [`STATEMENT_SETTLE_SECONDS`] ago (postings stamped
//!    just before midnight may still be committing), the account must be a customer's, and it
//!    must have been opened before the period ended; otherwise `InvalidInput`, nothing stored.
//! 2. If the object `statements/<account>/<YYYY-MM>.pdf` exists, that is the answer: nothing is
//!    read, written, audited or published (a re-run changes nothing).
//! 3. Opening and closing balances come from [`LedgerStore::balance_at`] at the period's start
//!    and end, the entries from [`LedgerStore::history`]; [`Statement::reconcile`] refuses one
//!    that does not add up (`StatementUnreconciled`, logged, nothing stored).
//! 4. The PDF is rendered (deterministically) and then, in this order: the `statement.generated`
//!    audit record (its target names the statement and the PDF's SHA-256), the `StatementReady`
//!    event (its id derived from the statement's, so a repeat is deduplicated), and the write-once
//!    `put` with retention, which is the commit point. A crash before the `put` leaves no
//!    statement; the next run makes the same bytes again and repeats the record and the event
//!    (audit is at least once, the notification exactly once). A crash after it leaves a
//!    complete statement.
//!
//! Statement metadata is the object's own ([`BlobMeta`]: SHA-256, size, creation, retention);
//! listing an account's statements lists its key prefix. No other store is needed.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::instrument;

use super::pdf;
use super::period::Period;
use super::statement::{Statement, StatementId};
use crate::account::{Account, AccountKind, AccountStatus};
use crate::accounts::Viewer;
use crate::audit::{Actor, AuditLog, AuditOutcome, NewAuditRecord};
use crate::blob::BlobMeta;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::AccountId;
use crate::ledger::{HistoryItem, HistoryQuery, PAGE_LIMIT_MAX};
use crate::memory::blob::{BLOB_LIST_LIMIT_MAX, sha256_hex};
use crate::ports::{BlobStore, EventPublisher, LedgerStore};

/// How long after a period's end its statements may be made: postings stamped before midnight
/// may still be committing, and a statement, once stored, cannot change.
pub const STATEMENT_SETTLE_SECONDS: i64 = 5 * 60;
/// Longest validity of a download link.
pub const STATEMENT_LINK_SECONDS_MAX: i64 = 5 * 60;
/// Default retention of a statement: 7 years.
pub const STATEMENT_RETENTION_DAYS_DEFAULT: u32 = 7 * 365 + 2;
/// Shortest retention accepted (a statement must outlive the month it describes).
pub const STATEMENT_RETENTION_DAYS_MIN: u32 = 31;
/// Longest retention accepted (100 years).
pub const STATEMENT_RETENTION_DAYS_MAX: u32 = 36_525;
/// Accounts read per page when a job visits every account.
pub const ACCOUNTS_PER_RUN_PAGE: usize = 500;
/// Longest bank name printed on statements.
pub const BANK_NAME_CHARS_MAX: usize = 80;
/// Failures one run report keeps (the rest are counted and logged).
pub const RUN_FAILURES_KEPT_MAX: usize = 100;
/// The content type statements are stored with.
pub const STATEMENT_CONTENT_TYPE: &str = "application/pdf";

/// How statements are made and served; checked when built, so a job never holds a bad one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementsConfig {
    bank_name: String,
    retention_days: u32,
    link_ttl: TimeDelta,
}

impl Default for StatementsConfig {
    /// "Example Bank", 7 years, five-minute links.
    fn default() -> Self {
        StatementsConfig {
            bank_name: "Example Bank".to_owned(),
            retention_days: STATEMENT_RETENTION_DAYS_DEFAULT,
            link_ttl: TimeDelta::seconds(STATEMENT_LINK_SECONDS_MAX),
        }
    }
}

impl StatementsConfig {
    /// A configuration: the bank's name (1 to [`BANK_NAME_CHARS_MAX`] characters, no control
    /// character) printed on every page, the retention in days ([`STATEMENT_RETENTION_DAYS_MIN`]
    /// to [`STATEMENT_RETENTION_DAYS_MAX`]) and the validity of download links (1 s to
    /// [`STATEMENT_LINK_SECONDS_MAX`]). Anything else is `InvalidInput`.
    pub fn new(bank_name: impl Into<String>, retention_days: u32, link_ttl: TimeDelta) -> Result<Self> {
        let bank_name = bank_name.into();
        let name_chars = bank_name.chars().count();
        if name_chars == 0 || name_chars > BANK_NAME_CHARS_MAX || bank_name.chars().any(char::is_control) {
            return Err(Error::InvalidInput(format!(
                "the bank name is 1 to {BANK_NAME_CHARS_MAX} characters without control characters"
            )));
        }
        if !(STATEMENT_RETENTION_DAYS_MIN..=STATEMENT_RETENTION_DAYS_MAX).contains(&retention_days) {
            return Err(Error::InvalidInput(format!(
                "statement retention is {STATEMENT_RETENTION_DAYS_MIN} to {STATEMENT_RETENTION_DAYS_MAX} days"
            )));
        }
        if link_ttl < TimeDelta::seconds(1) || link_ttl > TimeDelta::seconds(STATEMENT_LINK_SECONDS_MAX) {
            return Err(Error::InvalidInput(format!(
                "a statement download link is valid for 1 to {STATEMENT_LINK_SECONDS_MAX} seconds"
            )));
        }
        Ok(StatementsConfig { bank_name, retention_days, link_ttl })
    }

    /// The same configuration printing `bank_name` (checked as in [`StatementsConfig::new`]).
    pub fn with_bank_name(self, bank_name: impl Into<String>) -> Result<Self> {
        StatementsConfig::new(bank_name, self.retention_days, self.link_ttl)
    }

    /// Printed at the top of every page.
    pub fn bank_name(&self) -> &str {
        &self.bank_name
    }

    /// How long a statement is kept, undeletable and unchangeable, in days.
    pub fn retention_days(&self) -> u32 {
        self.retention_days
    }

    /// How long a download link stays valid.
    pub fn link_ttl(&self) -> TimeDelta {
        self.link_ttl
    }
}

/// Who asked for statements to be made: what the audit record names as its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initiator {
    /// The monthly schedule of a running server.
    Scheduler,
    /// The `statements` command.
    Cli,
    /// An operator through the API.
    Operator(Actor),
}

impl Initiator {
    fn record(&self, at: DateTime<Utc>, action: &str, target: String) -> NewAuditRecord {
        match self {
            Initiator::Scheduler => NewAuditRecord::new(at, "scheduler", action, target, AuditOutcome::Done),
            Initiator::Cli => NewAuditRecord::new(at, "cli", action, target, AuditOutcome::Done),
            Initiator::Operator(actor) => actor.record(at, action, target, AuditOutcome::Done),
        }
    }
}

/// A stored statement, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementMeta {
    /// Its id (account and period).
    pub id: StatementId,
    /// Hex SHA-256 of the PDF.
    pub sha256: String,
    /// Size of the PDF in bytes.
    pub size: u64,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// Until when it cannot be deleted or overwritten.
    pub retain_until: DateTime<Utc>,
}

impl StatementMeta {
    fn of(id: StatementId, meta: BlobMeta) -> Self {
        StatementMeta {
            id,
            sha256: meta.sha256,
            size: meta.size,
            created_at: meta.created_at,
            retain_until: meta.retain_until,
        }
    }
}

/// What [`StatementJob::generate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// Made and stored now.
    Created(StatementMeta),
    /// It was already stored; nothing was done.
    Existing(StatementMeta),
}

impl Generated {
    /// The statement, either way.
    pub fn meta(&self) -> &StatementMeta {
        match self {
            Generated::Created(meta) | Generated::Existing(meta) => meta,
        }
    }
}

/// What a run over every account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The period.
    pub period: Period,
    /// Statements made and stored by this run.
    pub created: u64,
    /// Statements already stored (untouched).
    pub existing: u64,
    /// Accounts with no statement for the period: the bank's own, opened after it, or closed
    /// with nothing in or after it.
    pub skipped: u64,
    /// Statements that could not be made (their error, at most [`RUN_FAILURES_KEPT_MAX`] kept).
    pub failed: Vec<(StatementId, String)>,
    /// How many failed in all.
    pub failed_count: u64,
}

impl RunReport {
    /// Accounts that have (or should have) a statement for the period.
    pub fn eligible(&self) -> u64 {
        self.created + self.existing + self.failed_count
    }

    /// Refuses a run that found no account open during the period (an operator asking for
    /// `1999-01`): `InvalidInput`. Nothing was stored by such a run.
    pub fn require_some_account(self) -> Result<Self> {
        if self.eligible() == 0 {
            return Err(Error::InvalidInput(format!(
                "no customer account was open during {}: there is no statement to make",
                self.period
            )));
        }
        Ok(self)
    }
}

/// A download link for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLink {
    /// The URL (pre-signed: it grants read access to this one object until `expires_at`).
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Hex SHA-256 the PDF read through it has.
    pub sha256: String,
}

/// Makes, stores, lists and serves statements (see the module docs).
#[derive(Debug, Clone)]
pub struct StatementJob {
    ledger: Arc<dyn LedgerStore>,
    blobs: Arc<dyn BlobStore>,
    audit: Arc<dyn AuditLog>,
    events: Arc<dyn EventPublisher>,
    clock: Arc<dyn Clock>,
    config: StatementsConfig,
}

impl StatementJob {
    /// A job over these ports.
    pub fn new(
        ledger: Arc<dyn LedgerStore>,
        blobs: Arc<dyn BlobStore>,
        audit: Arc<dyn AuditLog>,
        events: Arc<dyn EventPublisher>,
        clock: Arc<dyn Clock>,
        config: StatementsConfig,
    ) -> Self {
        StatementJob { ledger, blobs, audit, events, clock, config }
    }

    /// The configuration.
    pub fn config(&self) -> &StatementsConfig {
        &self.config
    }

    /// Refuses a period that has not ended (plus the settling delay) by now.
    pub fn check_period_closed(&self, period: Period) -> Result<()> {
        let ready_at = period.end() + TimeDelta::seconds(STATEMENT_SETTLE_SECONDS);
        if self.clock.now() < ready_at {
            return Err(Error::InvalidInput(format!(
                "period {period} has not ended: its statements can be made from {}",
                ready_at.to_rfc3339()
            )));
        }
        Ok(())
    }

    /// Makes and stores the statement of `account_id` for `period`, or finds it stored (see the
    /// module docs).
    #[instrument(skip(self, initiator), fields(account_id = %account_id, period = %period))]
    pub async fn generate(&self, initiator: &Initiator, account_id: AccountId, period: Period) -> Result<Generated> {
        self.check_period_closed(period)?;
        let account = self.ledger.account(account_id).await?;
        check_eligible(&account, period)?;
        let id = StatementId::new(account.id, period);
        let key = id.key();
        match self.blobs.head(&key).await {
            Ok(meta) => return Ok(Generated::Existing(StatementMeta::of(id, meta))),
            Err(Error::BlobNotFound(_)) => {}
            Err(other) => return Err(other),
        }
        let statement = match self.build(account, period).await {
            Ok(statement) => statement,
            Err(err) => {
                tracing::error!(statement = %id, error = %err, "statement not made");
                return Err(err);
            }
        };
        let bytes = pdf::render(&statement);
        let sha256 = sha256_hex(&bytes);
        let now = self.clock.now();
        let target = format!("statement:{id} sha256:{sha256}");
        self.audit.append(initiator.record(now, "statement.generated", target)).await?;
        self.events.publish(&[Event::statement_ready(id, statement.account.owner, sha256, now)]).await?;
        let retain_until = now + TimeDelta::days(i64::from(self.config.retention_days));
        let meta = self.blobs.put(&key, bytes, STATEMENT_CONTENT_TYPE, retain_until).await?;
        tracing::info!(statement = %id, sha256 = %meta.sha256, size = meta.size, "statement stored");
        Ok(Generated::Created(StatementMeta::of(id, meta)))
    }

    /// The statement of `account` for `period` from the ledger, reconciled (nothing stored).
    pub async fn build(&self, account: Account, period: Period) -> Result<Statement> {
        let opening = self.ledger.balance_at(account.id, period.start()).await?;
        let closing = self.ledger.balance_at(account.id, period.end()).await?;
        let items = self.entries_in(account.id, period).await?;
        Statement::reconcile(&self.config.bank_name, account, period, opening, items, closing)
    }

    /// The entries of `account` posted in `period`, newest first. History pages newest first, so
    /// this reads back from now until entries are older than the period's start by more than
    /// the settling delay (posting times within one account follow its sequence up to that
    /// much); should one ever be further out of order, reconciliation against `balance_at`
    /// notices and refuses.
    async fn entries_in(&self, account: AccountId, period: Period) -> Result<Vec<HistoryItem>> {
        let stop_before = period.start() - TimeDelta::seconds(STATEMENT_SETTLE_SECONDS);
        let mut query = HistoryQuery::new(PAGE_LIMIT_MAX, None)?;
        let mut items = Vec::new();
        loop {
            let page = self.ledger.history(account, query).await?;
            let mut done = false;
            for item in page.items {
                if item.posted_at < stop_before {
                    done = true;
                    break;
                }
                if item.posted_at >= period.start() && item.posted_at < period.end() {
                    items.push(item);
                    if items.len() > super::statement::STATEMENT_LINES_MAX {
                        // `reconcile` refuses it with a clear error; stop reading.
                        return Ok(items);
                    }
                }
            }
            match page.next_cursor {
                Some(cursor) if !done => query = HistoryQuery::new(PAGE_LIMIT_MAX, Some(cursor))?,
                _ => return Ok(items),
            }
        }
    }

    /// Makes every customer account's statement for `period` that is not stored yet. One
    /// account's failure does not stop the others: it is logged and reported.
    #[instrument(skip(self, initiator), fields(period = %period))]
    pub async fn run_period(&self, initiator: &Initiator, period: Period) -> Result<RunReport> {
        self.check_period_closed(period)?;
        let mut report = RunReport { period, created: 0, existing: 0, skipped: 0, failed: Vec::new(), failed_count: 0 };
        let mut after = None;
        loop {
            let accounts = self.ledger.accounts_after(after, ACCOUNTS_PER_RUN_PAGE).await?;
            let Some(last) = accounts.last() else { break };
            after = Some(last.id);
            for account in accounts {
                if check_eligible(&account, period).is_err() || self.closed_and_quiet(&account, period).await? {
                    report.skipped += 1;
                    continue;
                }
                let id = StatementId::new(account.id, period);
                match self.generate(initiator, account.id, period).await {
                    Ok(Generated::Created(_)) => report.created += 1,
                    Ok(Generated::Existing(_)) => report.existing += 1,
                    Err(err) if err.is_retryable() => return Err(err),
                    Err(err) => {
                        report.failed_count += 1;
                        if report.failed.len() < RUN_FAILURES_KEPT_MAX {
                            report.failed.push((id, err.to_string()));
                        }
                    }
                }
            }
        }
        tracing::info!(
            created = report.created,
            existing = report.existing,
            skipped = report.skipped,
            failed = report.failed_count,
            "statement run finished"
        );
        Ok(report)
    }

    /// A closed account whose last entry is older than the period has nothing to state (a closed
    /// account holds no money).
    async fn closed_and_quiet(&self, account: &Account, period: Period) -> Result<bool> {
        if account.status != AccountStatus::Closed {
            return Ok(false);
        }
        let newest = self.ledger.history(account.id, HistoryQuery::new(1, None)?).await?;
        Ok(newest.items.first().is_none_or(|item| item.posted_at < period.start()))
    }

    /// The statements of account `account_id`, oldest period first, if `viewer` may read the
    /// account; otherwise `AccountNotFound`, as if it did not exist.
    pub async fn list(&self, viewer: &Viewer, account_id: AccountId) -> Result<Vec<StatementMeta>> {
        let account = self.readable(viewer, account_id).await?;
        let metas = self.blobs.list(&StatementId::account_prefix(account.id), BLOB_LIST_LIMIT_MAX).await?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| StatementId::from_key(&meta.key).map(|id| StatementMeta::of(id, meta)))
            .filter(|meta| meta.id.account_id == account.id)
            .collect())
    }

    /// A link reading statement `id`, valid for the configured time (at most five minutes), if
    /// `viewer` may read its account; the hand-out is audited (`statement.downloaded`, naming the
    /// viewer and the statement's SHA-256). A statement of an account the viewer may not read is
    /// `BlobNotFound`, exactly like a missing one.
    pub async fn download_link(&self, viewer: &Viewer, actor: &Actor, id: StatementId) -> Result<DownloadLink> {
        let missing = || Error::BlobNotFound(id.to_string());
        let account = match self.readable(viewer, id.account_id).await {
            Ok(account) => account,
            Err(Error::AccountNotFound(_)) => return Err(missing()),
            Err(other) => return Err(other),
        };
        let key = StatementId::new(account.id, id.period).key();
        let meta = match self.blobs.head(&key).await {
            Ok(meta) => meta,
            Err(Error::BlobNotFound(_)) => return Err(missing()),
            Err(other) => return Err(other),
        };
        let now = self.clock.now();
        let url = self.blobs.presign_get(&key, self.config.link_ttl).await?;
        let target = format!("statement:{id} sha256:{}", meta.sha256);
        self.audit.append(actor.record(now, "statement.downloaded", target, AuditOutcome::Done)).await?;
        Ok(DownloadLink { url, expires_at: now + self.config.link_ttl, sha256: meta.sha256 })
    }

    async fn readable(&self, viewer: &Viewer, id: AccountId) -> Result<Account> {
        match self.ledger.account(id).await {
            Ok(account) if viewer.may_read(&account) => Ok(account),
            Ok(_) | Err(Error::AccountNotFound(_)) => Err(Error::AccountNotFound(id)),
            Err(other) => Err(other),
        }
    }
}

/// Whether `account` gets a statement for `period`: a customer's account opened before the
/// period ended. A period entirely before the account existed is refused rather than answered
/// with an empty statement: it would be an undeletable object for years about nothing.
fn check_eligible(account: &Account, period: Period) -> Result<()> {
    if account.kind != AccountKind::Customer {
        return Err(Error::InvalidInput("statements are made for customer accounts only".into()));
    }
    if account.created_at >= period.end() {
        return Err(Error::InvalidInput(format!(
            "account {} was opened on {}, after period {period} ended: it has no statement for it",
            account.id,
            account.created_at.format("%Y-%m-%d")
        )));
    }
    Ok(())
}

/// Runs the previous month's statements once the clock has passed its end (plus the settling
/// delay): call [`StatementScheduler::run_once`] periodically. It remembers the last period it
/// finished, so each month runs once per process; after a restart it runs the previous month
/// again, which finds every statement stored and changes nothing. A run with failures is tried
/// again on the next call.
#[derive(Debug)]
pub struct StatementScheduler {
    job: StatementJob,
    done: parking_lot::Mutex<Option<Period>>,
}

impl StatementScheduler {
    /// A scheduler of `job`.
    pub fn new(job: StatementJob) -> Self {
        StatementScheduler { job, done: parking_lot::Mutex::new(None) }
    }

    /// Runs the previous month if it is due and not done yet; answers its report, or `None`
    /// when there was nothing to do.
    pub async fn run_once(&self) -> Result<Option<RunReport>> {
        let now = self.job.clock.now();
        let period = Period::previous(now)?;
        if *self.done.lock() == Some(period) || self.job.check_period_closed(period).is_err() {
            return Ok(None);
        }
        let report = self.job.run_period(&Initiator::Scheduler, period).await?;
        if report.failed_count == 0 {
            *self.done.lock() = Some(period);
        }
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_out_of_bounds_are_refused() {
        let five_minutes = TimeDelta::seconds(STATEMENT_LINK_SECONDS_MAX);
        assert!(StatementsConfig::new("Bank", STATEMENT_RETENTION_DAYS_DEFAULT, five_minutes).is_ok());
        for (name, days, ttl) in [
            ("", 2557, five_minutes),
            ("Bank\n", 2557, five_minutes),
            (&"B".repeat(BANK_NAME_CHARS_MAX + 1), 2557, five_minutes),
            ("Bank", STATEMENT_RETENTION_DAYS_MIN - 1, five_minutes),
            ("Bank", STATEMENT_RETENTION_DAYS_MAX + 1, five_minutes),
            ("Bank", 2557, five_minutes + TimeDelta::seconds(1)),
            ("Bank", 2557, TimeDelta::zero()),
        ] {
            assert!(
                matches!(StatementsConfig::new(name, days, ttl), Err(Error::InvalidInput(_))),
                "{name} {days} {ttl}"
            );
        }
        assert_eq!(StatementsConfig::default().link_ttl(), five_minutes);
        assert_eq!(StatementsConfig::default().retention_days(), 7 * 365 + 2);
    }
}
