//! [`LogNotifier`]: "sends" by writing a log line, for local use, demos and tests.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Channel, Notification, Notifier, NotifyError};

/// Notifications a [`LogNotifier::new`] keeps for inspection.
pub const LOG_NOTIFIER_KEPT_DEFAULT: usize = 100_000;

/// A [`Notifier`] that logs each notification (event id, channel and recipient id only: never the
/// text, which is the customer's business) and keeps the most recent ones for tests.
#[derive(Debug)]
pub struct LogNotifier {
    channel: Channel,
    kept_max: usize,
    sent: Mutex<VecDeque<Notification>>,
}

impl LogNotifier {
    /// A notifier for `channel` keeping the last [`LOG_NOTIFIER_KEPT_DEFAULT`] notifications.
    pub fn new(channel: Channel) -> Self {
        LogNotifier::with_kept_max(channel, LOG_NOTIFIER_KEPT_DEFAULT)
    }

    /// A notifier for `channel` keeping the last `kept_max` notifications (at least one).
    pub fn with_kept_max(channel: Channel, kept_max: usize) -> Self {
        LogNotifier { channel, kept_max: kept_max.max(1), sent: Mutex::new(VecDeque::new()) }
    }

    /// The notifications sent, oldest first (the most recent `kept_max` of them).
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().iter().cloned().collect()
    }
}

#[async_trait]
impl Notifier for LogNotifier {
    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        tracing::info!(
            event_id = %notification.event_id,
            channel = %notification.channel,
            recipient = %notification.recipient,
            "notification sent"
        );
        let mut sent = self.sent.lock();
        if sent.len() >= self.kept_max {
            sent.pop_front();
        }
        sent.push_back(notification.clone());
        Ok(())
    }
}
