//! Notifications: telling customers what became of their transfers, once.
//!
//! Transfer events leave the outbox through an [`EventPublisher`](crate::ports::EventPublisher)
//! **at least once**: a relay crash, a bus redelivery or an uncommitted poll can hand the same
//! event over again. This module turns that into **at most one** message per (event, channel,
//! recipient):
//!
//! 1. A [`NotificationsService`] reads events from an [`EventSubscription`] (a named cursor on an
//!    event bus), in order, committing each after it was handled.
//! 2. For each event it [`render`]s one message per recipient (the sender always; the receiver of a
//!    settled internal transfer too) and offers it to one [`Notifier`] per [`Channel`].
//! 3. Each delivery is first **claimed** in a [`NotificationLog`]; only the claimer sends. A
//!    definite, retryable send failure gives the claim back ([`NotificationLog::release`]) and
//!    makes the event be polled again; a permanent one is recorded and never retried.
//!
//! A claim that is neither marked nor released (the process died mid-send) is never retried:
//! nobody knows whether the provider got the message, and a missed notification is cheaper than a
//! doubled one. Such claims stay visible as [`DeliveryState::Claimed`] for an operator.
//!
//! The traits below ([`EventSubscription`], [`EventSubscriber`], [`Notifier`],
//! [`NotificationLog`]) are ports; their in-memory implementations are
//! [`crate::memory::bus::MemoryEventBus`], [`MemoryNotificationLog`] and [`LogNotifier`]. This
//! module must not know any provider (SMTP, SMS gateway, SNS): those are adapters.

mod log_notifier;
mod memory_log;
pub mod render;
mod service;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::events::Event;
use crate::ids::{CustomerId, EventId};

pub use log_notifier::{LOG_NOTIFIER_KEPT_DEFAULT, LogNotifier};
pub use memory_log::{MemoryNotificationLog, NOTIFICATION_LOG_CAPACITY_DEFAULT};
pub use service::NotificationsService;

/// Most events one [`EventSubscription::poll`] returns, whatever `max` asks for.
pub const EVENT_POLL_MAX: usize = 1024;

/// A named, durable cursor on an event bus: the events published after it, in publish order.
///
/// # Contract
/// - `poll` returns up to `max` (at most [`EVENT_POLL_MAX`]) events after the committed cursor,
///   oldest first, **without** moving it: polling again before a commit returns them again
///   (at-least-once delivery). An event published after the subscription was created is
///   delivered to it; duplicates published by a retrying relay may be delivered too, so consumers
///   deduplicate on [`Event::id`].
/// - `commit(through)` moves the cursor past the first not-yet-committed occurrence of the event
///   `through`, so everything up to it is never polled again. Committing an id that is not pending
///   (already committed, perhaps by another consumer of the same subscription) changes nothing.
/// - Two subscriptions with different names have independent cursors; handles to the same name
///   share one.
#[async_trait]
pub trait EventSubscription: Send + Sync + fmt::Debug + 'static {
    /// Up to `max` events after the committed cursor, oldest first; the cursor does not move.
    async fn poll(&self, max: usize) -> Result<Vec<Event>>;

    /// Moves the cursor past `through` (and everything polled before it).
    async fn commit(&self, through: EventId) -> Result<()>;
}

/// Where [`EventSubscription`]s come from: the subscribing side of an event bus (the in-process
/// bus, or an SQS queue subscribed to an SNS topic).
#[async_trait]
pub trait EventSubscriber: Send + Sync + fmt::Debug + 'static {
    /// The subscription called `name`, created on first use. The same name always names the same
    /// cursor.
    async fn subscribe(&self, name: &str) -> Result<Arc<dyn EventSubscription>>;
}

/// How a notification reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An e-mail.
    Email,
    /// A text message.
    Sms,
    /// A signed HTTP call to an endpoint the customer registered.
    Webhook,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Webhook];

    /// Lower-case name, as on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to one recipient over one channel, about one event.
///
/// The text is rendered by [`render`]: short, deterministic, and free of secrets (no token, no
/// full account number, no internal failure detail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The event it is about.
    pub event_id: EventId,
    /// How it is sent.
    pub channel: Channel,
    /// Who receives it (the notifier looks up the address; it is not carried here).
    pub recipient: CustomerId,
    /// A one-line summary (the e-mail subject; SMS ignores it).
    pub subject: String,
    /// The message.
    pub body: String,
}

impl Notification {
    /// The delivery this notification is, for the [`NotificationLog`].
    pub const fn key(&self) -> DeliveryKey {
        DeliveryKey { event_id: self.event_id, channel: self.channel, recipient: self.recipient }
    }
}

/// Why a [`Notifier`] could not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The provider definitely did not take the message, and may later (timeout before sending,
    /// throttling, provider down). The delivery is retried when the event is polled again.
    #[error("notification not sent, retry later: {0}")]
    Retryable(String),
    /// The provider refused the message for good (no address, unsubscribed, invalid number). The
    /// failure is recorded and never retried.
    #[error("notification refused: {0}")]
    Permanent(String),
}

/// Sends notifications over one channel.
///
/// # Contract
/// - `send` returns `Ok` once the provider accepted the message, [`NotifyError::Retryable`] only
///   when it **certainly** did not (a retry must not double it), and [`NotifyError::Permanent`]
///   when it never will. When unsure (a timeout after the request left), return `Ok` or
///   `Permanent`: the service prefers a missed message to a doubled one.
/// - Error texts are logged: they must not contain addresses, tokens or message bodies.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug + 'static {
    /// The channel it sends over.
    fn channel(&self) -> Channel;

    /// Sends one notification.
    async fn send(&self, notification: &Notification) -> std::result::Result<(), NotifyError>;
}

/// One delivery: an event, told to one recipient, over one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeliveryKey {
    /// The event.
    pub event_id: EventId,
    /// The channel.
    pub channel: Channel,
    /// The recipient.
    pub recipient: CustomerId,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum DeliveryOutcome {
    /// The provider accepted it.
    Sent,
    /// The provider refused it for good.
    Failed {
        /// Why (safe to show an operator).
        reason: String,
    },
}

/// What a [`NotificationLog`] knows about a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DeliveryState {
    /// Claimed and being sent, or its sender died mid-send (then it stays so).
    Claimed,
    /// Sent.
    Sent,
    /// Refused for good.
    Failed {
        /// Why.
        reason: String,
    },
}

impl DeliveryState {
    /// The state's name and failure reason, as stores keep them in two columns.
    pub fn columns(&self) -> (&'static str, Option<&str>) {
        match self {
            DeliveryState::Claimed => ("claimed", None),
            DeliveryState::Sent => ("sent", None),
            DeliveryState::Failed { reason } => ("failed", Some(reason.as_str())),
        }
    }

    /// The state [`DeliveryState::columns`] gave `(state, reason)`; `None` for a pair it never
    /// gives (a corrupt row).
    pub fn from_columns(state: &str, reason: Option<String>) -> Option<DeliveryState> {
        match (state, reason) {
            ("claimed", None) => Some(DeliveryState::Claimed),
            ("sent", None) => Some(DeliveryState::Sent),
            ("failed", Some(reason)) => Some(DeliveryState::Failed { reason }),
            _ => None,
        }
    }
}

impl From<DeliveryOutcome> for DeliveryState {
    fn from(outcome: DeliveryOutcome) -> Self {
        match outcome {
            DeliveryOutcome::Sent => DeliveryState::Sent,
            DeliveryOutcome::Failed { reason } => DeliveryState::Failed { reason },
        }
    }
}

/// The record of deliveries that makes each [`DeliveryKey`] delivered **at most once**, however
/// often its event is redelivered.
///
/// # Contract
/// - `claim` is atomic: of any number of concurrent claims of one key, exactly one returns
///   `true`; every later claim returns `false` unless the claim was released.
/// - `mark` records the outcome of a claimed delivery; the key stays claimed for good.
/// - `release` gives back a claim whose send definitely failed and may be retried; releasing a
///   key that is not claimed changes nothing, and a key with a recorded outcome cannot be released
///   (`InvalidInput`): that would let a sent message go out twice.
/// - Keys are independent: claiming one event for one channel and recipient says nothing about
///   another channel, recipient or event.
/// - Records are kept at least as long as their events can be redelivered; an implementation
///   states its retention.
#[async_trait]
pub trait NotificationLog: Send + Sync + fmt::Debug + 'static {
    /// Claims a delivery; `false` if it was already claimed (sent, failed or in progress).
    async fn claim(&self, key: DeliveryKey) -> Result<bool>;

    /// Records how a claimed delivery ended.
    async fn mark(&self, key: DeliveryKey, outcome: DeliveryOutcome) -> Result<()>;

    /// Claims `keys` in order, answering as `claim` one after another would (a key given twice
    /// is claimed by its first occurrence only). A store that can does it in one write (one
    /// commit for a whole batch of events); the default claims one by one. On `Err`, claims
    /// already made stay claimed unless the store undoes them with the error (the SQLite log
    /// claims all or none).
    async fn claim_all(&self, keys: &[DeliveryKey]) -> Result<Vec<bool>> {
        let mut claimed = Vec::with_capacity(keys.len());
        for key in keys {
            claimed.push(self.claim(*key).await?);
        }
        Ok(claimed)
    }

    /// Records outcomes in order, as `mark` one after another would; in one write where the
    /// store can.
    async fn mark_all(&self, outcomes: Vec<(DeliveryKey, DeliveryOutcome)>) -> Result<()> {
        for (key, outcome) in outcomes {
            self.mark(key, outcome).await?;
        }
        Ok(())
    }

    /// Gives back a claim after a definite, retryable send failure.
    async fn release(&self, key: DeliveryKey) -> Result<()>;

    /// What is recorded about a delivery (`None`: never claimed, or released).
    async fn state(&self, key: DeliveryKey) -> Result<Option<DeliveryState>>;
}
