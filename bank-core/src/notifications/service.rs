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
        match self.deliver(std::slice::from_ref(event)).await? {
            None => Ok(()),
            Some(retry) => Err(retry.into_error()),
        }
    }

    /// Polls up to `max` events (at most [`EVENT_POLL_MAX`]) and handles them in order like
    /// [`handle`](Self::handle), committing the cursor past every event whose deliveries are all
    /// done; returns how many it handled. The deliveries of all the polled events are claimed in
    /// one [`NotificationLog::claim_all`] and their outcomes recorded in one
    /// [`NotificationLog::mark_all`], so a batch of events costs the log two writes and the
    /// cursor one, not three per delivery (measured at the seed's peak: 8 of the 15 commits a
    /// transfer cost `bank.sqlite`). What that trades: a crash between the claims and the sends
    /// loses the batch's notifications (at most once), not just the one being sent.
    ///
    /// An event with a retryable failure is not committed, nor anything after it: its other
    /// deliveries still go out, the later events' claims are given back unsent (per-stream
    /// order), the next run polls it again, and a retryable error says so. A log failure stops at
    /// once, the cursor unmoved.
    pub async fn run_once(&self, subscription: &dyn EventSubscription, max: usize) -> Result<usize> {
        let events = subscription.poll(max.min(EVENT_POLL_MAX)).await?;
        let retry = self.deliver(&events).await?;
        let handled = retry.as_ref().map_or(events.len(), |retry| retry.first_event);
        // `commit` moves past the first uncommitted occurrence of an id: once here, unless the
        // last handled event was redelivered within the batch too.
        if let Some(last) = handled.checked_sub(1).and_then(|last| events.get(last)) {
            let mut from = 0;
            while from < handled {
                let at =
                    events[from..handled].iter().position(|event| event.id == last.id).map_or(handled, |at| from + at);
                subscription.commit(last.id).await?;
                from = at + 1;
            }
        }
        match retry {
            None => Ok(handled),
            Some(retry) => Err(retry.into_error()),
        }
    }

    /// Claims every delivery `events` call for at once, sends the claimed ones in order, and
    /// records their outcomes at once; the deliveries to try again, if any.
    async fn deliver(&self, events: &[Event]) -> Result<Option<Retry>> {
        let mut planned = Vec::new();
        for (index, event) in events.iter().enumerate() {
            for message in render::messages(event) {
                for notifier in &self.notifiers {
                    planned.push((index, notifier, notification(event, notifier.channel(), &message)));
                }
            }
        }
        if planned.is_empty() {
            return Ok(None);
        }
        let keys: Vec<_> = planned.iter().map(|(_, _, notification)| notification.key()).collect();
        let claimed = self.log.claim_all(&keys).await?;
        let mut outcomes = Vec::with_capacity(planned.len());
        let mut retry: Option<Retry> = None;
        for (((index, notifier, notification), key), claimed) in planned.iter().zip(keys).zip(claimed) {
            if !claimed {
                continue;
            }
            if retry.as_ref().is_some_and(|retry| retry.first_event < *index) {
                // An earlier event waits for a retry: later events wait for it (per-stream order),
                // their claims given back unsent.
                self.log.release(key).await?;
                continue;
            }
            match notifier.send(notification).await {
                Ok(()) => outcomes.push((key, DeliveryOutcome::Sent)),
                Err(NotifyError::Permanent(reason)) => {
                    tracing::warn!(channel = %key.channel, recipient = %key.recipient, %reason, "notification refused");
                    outcomes.push((key, DeliveryOutcome::Failed { reason }));
                }
                Err(NotifyError::Retryable(reason)) => {
                    tracing::info!(channel = %key.channel, recipient = %key.recipient, %reason, "notification will be retried");
                    // If this fails the claim stays, and this delivery is never attempted again:
                    // the at-most-once side of the trade.
                    self.log.release(key).await?;
                    let retry = retry.get_or_insert(Retry { first_event: *index, reasons: Vec::new() });
                    retry.reasons.push(format!("{}: {reason}", notifier.channel()));
                }
            }
        }
        self.log.mark_all(outcomes).await?;
        Ok(retry)
    }
}

/// Deliveries released after a retryable failure, and the first event they belong to.
struct Retry {
    first_event: usize,
    reasons: Vec<String>,
}

impl Retry {
    fn into_error(self) -> Error {
        Error::Storage { message: format!("notifications not sent yet ({})", self.reasons.join("; ")), retryable: true }
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
