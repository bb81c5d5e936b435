//! [`MemoryNotificationLog`]: the delivery record in one mutex.
//!
//! Records are kept in claim order, at most `capacity` of them: claiming a new key when full forgets
//! the oldest record. That bounds memory at the cost of the at-most-once promise for an event
//! redelivered after `capacity` newer deliveries, far beyond any redelivery the in-process bus
//! makes (it redelivers only what was not yet committed).

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use async_trait::async_trait;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::{DeliveryKey, DeliveryOutcome, DeliveryState, NotificationLog};
use crate::error::{Error, Result};

/// Records a [`MemoryNotificationLog::default`] keeps.
pub const NOTIFICATION_LOG_CAPACITY_DEFAULT: usize = 100_000;

/// A [`NotificationLog`] held in memory.
#[derive(Debug)]
pub struct MemoryNotificationLog {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each key's state, with its position in `order`.
    records: FxHashMap<DeliveryKey, (u64, DeliveryState)>,
    /// Keys by claim order, oldest first (what to forget when full).
    order: BTreeMap<u64, DeliveryKey>,
    next: u64,
}

impl MemoryNotificationLog {
    /// An empty log keeping at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        MemoryNotificationLog { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// How many deliveries are recorded.
    pub fn len(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryNotificationLog {
    fn default() -> Self {
        MemoryNotificationLog::new(NOTIFICATION_LOG_CAPACITY_DEFAULT)
    }
}

impl Inner {
    /// Records `key` as new, forgetting the oldest records past `capacity`.
    fn insert(&mut self, key: DeliveryKey, state: DeliveryState, capacity: usize) {
        while self.records.len() >= capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.records.remove(&oldest);
        }
        let position = self.next;
        self.next += 1;
        self.order.insert(position, key);
        self.records.insert(key, (position, state));
    }
}

#[async_trait]
impl NotificationLog for MemoryNotificationLog {
    async fn claim(&self, key: DeliveryKey) -> Result<bool> {
        let mut inner = self.inner.lock();
        if inner.records.contains_key(&key) {
            return Ok(false);
        }
        inner.insert(key, DeliveryState::Claimed, self.capacity);
        Ok(true)
    }

    async fn mark(&self, key: DeliveryKey, outcome: DeliveryOutcome) -> Result<()> {
        let mut inner = self.inner.lock();
        match inner.records.get_mut(&key) {
            Some((_, state)) => *state = outcome.into(),
            // Forgotten since the claim (the log overflowed mid-send): record it anew, so the
            // delivery stays claimed.
            None => inner.insert(key, outcome.into(), self.capacity),
        }
        Ok(())
    }

    async fn release(&self, key: DeliveryKey) -> Result<()> {
        let mut inner = self.inner.lock();
        let Entry::Occupied(record) = inner.records.entry(key) else { return Ok(()) };
        if record.get().1 != DeliveryState::Claimed {
            return Err(Error::invalid("a delivery with a recorded outcome cannot be released"));
        }
        let (position, _) = record.remove();
        inner.order.remove(&position);
        Ok(())
    }

    async fn state(&self, key: DeliveryKey) -> Result<Option<DeliveryState>> {
        Ok(self.inner.lock().records.get(&key).map(|(_, state)| state.clone()))
    }
}
