//! The audit log: who did what to which resource, when, with what outcome, under which request.
//!
//! A minimal, append-only record of operator actions (deposits requested, approved or refused,
//! users created, …). It owns the record's shape and the [`AuditLog`] port; adapters keep the
//! records in order and never change or delete one (the SQLite adapter's table refuses `UPDATE`
//! and `DELETE` with triggers). A later, hash-chained log can replace the adapters behind the same
//! port.
//!
//! A record holds ids, names of actions and outcomes — never a password, a token, a TOTP code or
//! a secret: its fields are bounded, typed where they can be, and filled by the callers from ids.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::CustomerId;

/// Longest `subject`, `action`, `request_id` or `client_ip` kept (longer ones are cut).
pub const AUDIT_FIELD_CHARS_MAX: usize = 128;
/// Longest `target` kept.
pub const AUDIT_TARGET_CHARS_MAX: usize = 256;
/// Most records one [`AuditLog::list`] answers.
pub const AUDIT_PAGE_MAX: usize = 1000;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// The action took effect (or was requested and recorded).
    Done,
    /// The action was refused (a rule, such as separation of duties, forbade it).
    Refused,
}

impl AuditOutcome {
    /// `"done"` or `"refused"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Done => "done",
            AuditOutcome::Refused => "refused",
        }
    }

    /// Parses [`AuditOutcome::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "done" => Some(AuditOutcome::Done),
            "refused" => Some(AuditOutcome::Refused),
            _ => None,
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditRecord {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who acted: a user id, or `cli` for the command line.
    pub subject: String,
    /// What was done, dotted (`deposit.requested`, `deposit.approved`, `user.created`).
    pub action: String,
    /// On what: `account:<id>`, `deposit-request:<id>`, `user:<id>`.
    pub target: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The HTTP request id, when there was one.
    pub request_id: Option<String>,
    /// The client address, when known.
    pub client_ip: Option<String>,
}

/// Who acts, and where the request came from: what every audit record of one request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user (an operator, for the actions audited today).
    pub user: CustomerId,
    /// The request id, if any.
    pub request_id: Option<String>,
    /// The client's address, if any.
    pub client_ip: Option<String>,
}

impl Actor {
    /// The record of this actor's `action` on `target` at `at`.
    pub fn record(&self, at: DateTime<Utc>, action: &str, target: String, outcome: AuditOutcome) -> NewAuditRecord {
        NewAuditRecord::new(at, self.user.to_string(), action, target, outcome)
            .with_request(self.request_id.clone(), self.client_ip.clone())
    }
}

impl NewAuditRecord {
    /// A record with its text fields cut to their bounds.
    pub fn new(
        at: DateTime<Utc>,
        subject: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        outcome: AuditOutcome,
    ) -> Self {
        NewAuditRecord {
            at,
            subject: bounded(subject.into(), AUDIT_FIELD_CHARS_MAX),
            action: bounded(action.into(), AUDIT_FIELD_CHARS_MAX),
            target: bounded(target.into(), AUDIT_TARGET_CHARS_MAX),
            outcome,
            request_id: None,
            client_ip: None,
        }
    }

    /// With the request's id and client address.
    pub fn with_request(mut self, request_id: Option<String>, client_ip: Option<String>) -> Self {
        self.request_id = request_id.map(|id| bounded(id, AUDIT_FIELD_CHARS_MAX));
        self.client_ip = client_ip.map(|ip| bounded(ip, AUDIT_FIELD_CHARS_MAX));
        self
    }
}

fn bounded(text: String, chars_max: usize) -> String {
    if text.chars().count() <= chars_max { text } else { text.chars().take(chars_max).collect() }
}

/// An appended record: the fields and its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1, 2, 3, … in append order, with no gap.
    pub seq: u64,
    /// What was appended.
    #[serde(flatten)]
    pub record: NewAuditRecord,
}

/// Where audit records go.
///
/// # Contract
/// - `append` is atomic and durable once it answers; records get `seq` 1, 2, 3, … in the order
///   appends complete, with no gap, and concurrent appends each get their own `seq`.
/// - A record is never changed or removed.
/// - `list(from_seq, limit)` answers the records with `seq >= from_seq` in order, at most
///   `min(limit, AUDIT_PAGE_MAX)`.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `record`; answers it with its `seq`.
    async fn append(&self, record: NewAuditRecord) -> Result<AuditRecord>;

    /// Records from `from_seq` on, oldest first.
    async fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>>;
}
