//! [`NotificationsService`]: from events to at most one message per (event, channel, recipient).

use std::sync::Arc;

use tracing::instrument;

use super::render::{self, Message};
use super::{
    Channel, DeliveryOutcome, EVENT_POLL_MAX, EventSubscription, Notification, NotificationLog, Notifier, NotifyError,
};
use crate::error::{Error, Result};
use crate::events::Event;

/// Renders events and delivers them through one notifier per channel, claiming each delivery in a
/// [`NotificationLog`] first.
#[derive(Debug, Clone)]
pub struct NotificationsService {
    notifiers: Vec<Arc<dyn Notifier>>,
    log: Arc<dyn NotificationLog>,
}

/// What became of one delivery attempt.
enum Attempt {
    /// Claimed before (sent, refused, or in progress elsewhere): nothing done.
    AlreadyClaimed,
    /// Sent now.
    Sent,
    /// Refused for good, and recorded.
    Refused,
    /// Not sent, claim released: retry when the event comes again.
    Retry(String),
}

impl NotificationsService {
    /// A service sending through `notifiers`, at most one per channel: a delivery is keyed by its
    /// channel, so a second notifier of a channel could never send and is dropped (with a warning).
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>, log: Arc<dyn NotificationLog>) -> Self {
        let mut unique: Vec<Arc<dyn Notifier>> = Vec::with_capacity(notifiers.len());
        for notifier in notifiers {
            if unique.iter().any(|n| n.channel() == notifier.channel()) {
                tracing::warn!(channel = %notifier.channel(), "a second notifier for a channel is ignored");
            } else {
                unique.push(notifier);
            }
        }
        NotificationsService { notifiers: unique, log }
    }

    /// The channels it sends over.
    pub fn channels(&self) -> Vec<Channel> {
        self.notifiers.iter().map(|n| n.channel()).collect()
    }

    /// Sends the notifications `event` calls for, each at most once however often the event is
    /// handled.
    ///
    /// A permanent refusal is recorded and the other deliveries go on. A retryable failure releases
    /// that delivery's claim; the others still go out, and then a retryable error asks for the
    /// event again (only the released deliveries are attempted then). A log failure stops at once.
    #[instrument(skip_all, fields(event_id = %event.id, kind = event.kind.as_str()))]
    pub async fn handle(&self, event: &Event) -> Result<()> {
        let mut retry = Vec::new();
        for message in render::messages(event) {
            for notifier in &self.notifiers {
                let notification = notification(event, notifier.channel(), &message);
                if let Attempt::Retry(reason) = self.deliver(notifier.as_ref(), &notification).await? {
                    retry.push(format!("{}: {reason}", notifier.channel()));
                }
            }
        }
        if retry.is_empty() {
            Ok(())
        } else {
            Err(Error::Storage {
                message: format!("notifications not sent yet ({})", retry.join("; ")),
                retryable: true,
            })
        }
    }

    /// Polls up to `max` events (at most [`EVENT_POLL_MAX`]) and handles them in order, committing
    /// each once handled; returns how many it handled. The first event that fails stops the run
    /// uncommitted, so the next run polls it again (and everything after it).
    pub async fn run_once(&self, subscription: &dyn EventSubscription, max: usize) -> Result<usize> {
        let events = subscription.poll(max.min(EVENT_POLL_MAX)).await?;
        let mut handled = 0;
        for event in &events {
            self.handle(event).await?;
            subscription.commit(event.id).await?;
            handled += 1;
        }
        Ok(handled)
    }

    async fn deliver(&self, notifier: &dyn Notifier, notification: &Notification) -> Result<Attempt> {
        let key = notification.key();
        if !self.log.claim(key).await? {
            return Ok(Attempt::AlreadyClaimed);
        }
        match notifier.send(notification).await {
            Ok(()) => {
                self.log.mark(key, DeliveryOutcome::Sent).await?;
                Ok(Attempt::Sent)
            }
            Err(NotifyError::Permanent(reason)) => {
                tracing::warn!(channel = %key.channel, recipient = %key.recipient, %reason, "notification refused");
                self.log.mark(key, DeliveryOutcome::Failed { reason }).await?;
                Ok(Attempt::Refused)
            }
            Err(NotifyError::Retryable(reason)) => {
                tracing::info!(channel = %key.channel, recipient = %key.recipient, %reason, "notification will be retried");
                // If this fails the claim stays, and this delivery is never attempted again: the
                // at-most-once side of the trade.
                self.log.release(key).await?;
                Ok(Attempt::Retry(reason))
            }
        }
    }
}

fn notification(event: &Event, channel: Channel, message: &Message) -> Notification {
    Notification {
        event_id: event.id,
        channel,
        recipient: message.recipient,
        subject: message.subject.clone(),
        body: message.body.clone(),
    }
}
