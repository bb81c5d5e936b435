//! Domain events and the outbox that carries them.
//!
//! Every transfer state change writes its event (and, on acceptance, its queue message) into the
//! outbox **in the same atomic write as the change**; a relay then delivers them at least once.
//! Each event has a unique [`EventId`] consumers deduplicate on. An audit record of the change
//! may ride along ([`AuditMessage`]), appended once per key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, CustomerId, EventId, TransferId};
use crate::money::Money;
use crate::queue::QueueMessage;
use crate::statements::StatementId;
use crate::transfer::{FailureReason, Transfer, TransferStatus};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A transfer was accepted and its funds held.
    TransferAccepted,
    /// A transfer waits for the payment rail.
    TransferPending,
    /// A transfer's money moved.
    TransferSettled,
    /// A transfer failed; its hold was released.
    TransferFailed,
    /// A monthly statement was stored and can be downloaded (see [`Event::statement`]).
    StatementReady,
}

impl EventKind {
    /// The event a transfer entering `status` emits, if any (`processing` emits none).
    pub const fn for_status(status: TransferStatus) -> Option<EventKind> {
        match status {
            TransferStatus::Accepted => Some(EventKind::TransferAccepted),
            TransferStatus::Pending => Some(EventKind::TransferPending),
            TransferStatus::Settled => Some(EventKind::TransferSettled),
            TransferStatus::Failed => Some(EventKind::TransferFailed),
            TransferStatus::Processing => None,
        }
    }

    /// Dotted name (`transfer.settled`), used as the SNS/webhook event type.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::TransferAccepted => "transfer.accepted",
            EventKind::TransferPending => "transfer.pending",
            EventKind::TransferSettled => "transfer.settled",
            EventKind::TransferFailed => "transfer.failed",
            EventKind::StatementReady => "statement.ready",
        }
    }
}

/// A domain event: about a transfer, or ([`EventKind::StatementReady`]) about a statement.
///
/// The shape is the transfer events' (stores and consumers already keep it); a statement event
/// fills it as its doc says field by field and carries the statement in [`Event::statement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; consumers deduplicate on it.
    pub id: EventId,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The transfer. A statement event has none: this is an id derived from the statement's id
    /// (no transfer has it), so the field stays a stable key of the event's subject.
    pub transfer_id: TransferId,
    /// Who sent it (a statement event: the account's owner).
    pub owner: CustomerId,
    /// The account debited (a statement event: the statement's account; it is the outbox group).
    pub from_account_id: AccountId,
    /// The internal account credited, if internal.
    pub to_account_id: Option<AccountId>,
    /// The owner of that account, to notify the receiver.
    pub to_owner: Option<CustomerId>,
    /// How much: every transfer event has it; a statement event has none.
    #[serde(default)]
    pub money: Option<Money>,
    /// The transfer's reference (a statement event: `Statement <YYYY-MM>`).
    pub reference: String,
    /// Why it failed, for `TransferFailed`.
    pub failure_reason: Option<FailureReason>,
    /// The statement, for `StatementReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<StatementNotice>,
}

/// What a [`EventKind::StatementReady`] event says about its statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementNotice {
    /// The statement (`<account id>_<YYYY-MM>`).
    pub statement_id: StatementId,
    /// Hex SHA-256 of its PDF.
    pub sha256: String,
}

impl Event {
    /// The event of `transfer` entering its current status, if that status has one.
    pub fn of(transfer: &Transfer, to_owner: Option<CustomerId>, now: DateTime<Utc>) -> Option<Event> {
        Some(Event {
            id: EventId::new(),
            kind: EventKind::for_status(transfer.status)?,
            occurred_at: now,
            transfer_id: transfer.id,
            owner: transfer.owner,
            from_account_id: transfer.from_account_id,
            to_account_id: transfer.to_account_id(),
            to_owner,
            money: Some(transfer.money),
            reference: transfer.reference.clone(),
            failure_reason: transfer.failure_reason.clone(),
            statement: None,
        })
    }

    /// The event announcing the statement `statement_id` of `owner`'s account, stored with
    /// `sha256`. Its id is derived from the statement's id, so announcing it again (a re-run after
    /// a crash) is the same event, which consumers deduplicate.
    pub fn statement_ready(statement_id: StatementId, owner: CustomerId, sha256: String, now: DateTime<Utc>) -> Event {
        let name = format!("statement-ready:{statement_id}");
        Event {
            id: EventId::derived(name.as_bytes()),
            kind: EventKind::StatementReady,
            occurred_at: now,
            transfer_id: TransferId::derived(name.as_bytes()),
            owner,
            from_account_id: statement_id.account_id,
            to_account_id: None,
            to_owner: None,
            money: None,
            reference: format!("Statement {}", statement_id.period),
            failure_reason: None,
            statement: Some(StatementNotice { statement_id, sha256 }),
        }
    }
}

/// What the outbox carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum OutboxMessage {
    /// Put a message on the transfer queue.
    Enqueue(QueueMessage),
    /// Publish an event.
    Publish(Event),
    /// Append an audit record, once per key (see [`AuditMessage`]).
    Audit(AuditMessage),
}

/// An audit record written in the same atomic write as the change it records, and appended to
/// the audit log by the relay with [`crate::audit::AuditLog::append_once`] under `key`: the
/// change and its record exist together or not at all, and a redelivery appends nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMessage {
    /// The outbox group: the source account of the transfer the record is about.
    pub group: AccountId,
    /// The `append_once` key (e.g. `transfer.created:<id>`).
    pub key: String,
    /// The record.
    pub record: crate::audit::NewAuditRecord,
}

impl OutboxMessage {
    /// The record's group: the source account of the transfer it is about (a queue message's
    /// FIFO group, an event's debited account). Records of one group are relayed in outbox order
    /// by one relay at a time (see [`crate::ports::TransferStore::outbox_claim`]); every record of
    /// one transfer is in one group, so is everything a transfer's queue message causes.
    pub fn group(&self) -> AccountId {
        match self {
            OutboxMessage::Enqueue(message) => message.group,
            OutboxMessage::Publish(event) => event.from_account_id,
            OutboxMessage::Audit(audit) => audit.group,
        }
    }
}

/// An outbox row, in write order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Position in the outbox (increasing).
    pub seq: u64,
    /// The message.
    pub message: OutboxMessage,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}
