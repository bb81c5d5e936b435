//! Monthly account statements: what they say, how they are made, stored and handed out.
//!
//! - [`period`]: [`Period`], a calendar month in UTC (`YYYY-MM`), parsed strictly.
//! - [`statement`]: [`Statement`], built only by reconciling the ledger (opening + credits −
//!   debits = closing = the ledger's balance at the period's end), and [`StatementId`]
//!   (`<account>_<YYYY-MM>`), which names its object `statements/<account>/<YYYY-MM>.pdf`.
//! - [`pdf`]: the deterministic PDF (same ledger, same bytes).
//! - [`job`]: [`StatementJob`] (make one or every account's, list, download links, audit, the
//!   `StatementReady` event) and [`StatementScheduler`] (the previous month, once, on the clock).
//!
//! Who sees what: an account's statements are listed and downloaded by its owner and by
//! operators (who may read every account, as elsewhere); to anyone else they do not exist.
//! Everything goes through ports, so the job runs on the ledger wherever it lives (SQLite,
//! PostgreSQL) and on any [`crate::ports::BlobStore`] (files, S3 Object Lock). This module holds
//! no HTTP or storage code.

pub mod job;
pub mod pdf;
pub mod period;
pub mod statement;

pub use job::{
    DownloadLink, Generated, Initiator, RunReport, STATEMENT_LINK_SECONDS_MAX, STATEMENT_RETENTION_DAYS_DEFAULT,
    STATEMENT_SETTLE_SECONDS, StatementJob, StatementMeta, StatementScheduler, StatementsConfig,
};
pub use period::Period;
pub use statement::{Statement, StatementId, StatementLine, format_amount};
