//! [`MemoryEventBus`]: an in-process event bus, as a bounded, append-only log with named cursors.
//!
//! # Layout
//! Published events are appended to one `VecDeque`; each event has an offset (its position since
//! the bus was created). A subscription is a name and a cursor: the offset of the first event it
//! has not committed. [`EventSubscription::poll`] reads from the cursor without moving it;
//! [`EventSubscription::commit`] moves it.
//!
//! # Bounds and trimming
//! The log holds at most `capacity` events. When a publish does not fit, the log first drops every
//! event **all** subscriptions have committed (everything before the slowest cursor); if it still
//! does not fit, the publish fails with a retryable [`Error::Storage`] and appends nothing: the
//! relay retries later, once the slowest subscriber caught up. Nothing is dropped that a
//! subscription has not committed, and with no subscription at all everything may be dropped.
//! Trimming is lazy (only when full), so [`MemoryEventBus::published`] shows every event until the
//! log first fills.
//!
//! # Semantics
//! - Publishing appends a whole batch or nothing, in order; concurrent publishes do not interleave.
//! - A subscription created late starts at the oldest event still held, so it sees every event
//!   published after it was created and perhaps some earlier ones (harmless: consumers
//!   deduplicate).
//! - Duplicates published by a retrying relay are delivered as they come; `commit(id)` moves past
//!   the first pending occurrence of `id`, never past an uncommitted event that precedes it.
//! - Subscriptions are created by assembly code with fixed names (one per consumer), so their
//!   number is bounded by the program; the bus does not limit it.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::EventId;
use crate::notifications::{EVENT_POLL_MAX, EventSubscriber, EventSubscription};
use crate::ports::EventPublisher;

/// Events a [`MemoryEventBus::default`] holds.
pub const EVENT_BUS_CAPACITY_DEFAULT: usize = 100_000;

/// An in-process event bus (see the module docs). Cloning shares the bus.
#[derive(Debug, Clone)]
pub struct MemoryEventBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: VecDeque<Event>,
    /// Offset of `events[0]`.
    first: usize,
    /// Each subscription's cursor: the offset of its first uncommitted event (`first..=end`).
    cursors: FxHashMap<String, usize>,
}

impl Inner {
    /// Offset the next event will get.
    fn end(&self) -> usize {
        self.first + self.events.len()
    }

    /// The slowest subscription, and its cursor.
    fn slowest(&self) -> Option<(&str, usize)> {
        self.cursors.iter().map(|(name, &cursor)| (name.as_str(), cursor)).min_by_key(|&(_, cursor)| cursor)
    }

    /// Drops every event before `offset`.
    fn trim_before(&mut self, offset: usize) {
        let count = offset.saturating_sub(self.first).min(self.events.len());
        self.events.drain(..count);
        self.first += count;
    }

    fn cursor(&self, name: &str) -> Result<usize> {
        let cursor = *self.cursors.get(name).ok_or_else(|| Error::invalid(format!("no subscription {name:?}")))?;
        debug_assert!((self.first..=self.end()).contains(&cursor), "a cursor never points at a trimmed event");
        Ok(cursor)
    }
}

impl MemoryEventBus {
    /// An empty bus holding at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        MemoryEventBus { shared: Arc::new(Shared { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }) }
    }

    /// The subscription called `name`, created at the oldest event held if new. Handles to the
    /// same name share one cursor.
    pub fn subscribe(&self, name: &str) -> Arc<dyn EventSubscription> {
        let mut inner = self.shared.inner.lock();
        let first = inner.first;
        inner.cursors.entry(name.to_owned()).or_insert(first);
        Arc::new(MemorySubscription { shared: Arc::clone(&self.shared), name: name.to_owned() })
    }

    /// The events held, oldest first, duplicates included: every event published, until the log
    /// first had to trim what all subscriptions had committed (see the module docs). For tests.
    pub fn published(&self) -> Vec<Event> {
        self.shared.inner.lock().events.iter().cloned().collect()
    }

    /// How many events the log may hold.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        MemoryEventBus::new(EVENT_BUS_CAPACITY_DEFAULT)
    }
}

#[async_trait]
impl EventPublisher for MemoryEventBus {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let capacity = self.shared.capacity;
        if events.len() > capacity {
            // It would never fit: retrying cannot help.
            return Err(Error::Storage {
                message: format!("a batch of {} events exceeds the event bus capacity of {capacity}", events.len()),
                retryable: false,
            });
        }
        let mut inner = self.shared.inner.lock();
        if inner.events.len() + events.len() > capacity {
            let keep_from = inner.slowest().map_or(inner.end(), |(_, cursor)| cursor);
            inner.trim_before(keep_from);
        }
        if inner.events.len() + events.len() > capacity {
            let slowest = inner.slowest().map_or("", |(name, _)| name);
            return Err(Error::Storage {
                message: format!("event bus full ({capacity} events): subscription {slowest:?} is behind"),
                retryable: true,
            });
        }
        inner.events.extend(events.iter().cloned());
        Ok(())
    }
}

#[async_trait]
impl EventSubscriber for MemoryEventBus {
    async fn subscribe(&self, name: &str) -> Result<Arc<dyn EventSubscription>> {
        Ok(MemoryEventBus::subscribe(self, name))
    }
}

/// A handle to one named cursor of a [`MemoryEventBus`].
#[derive(Debug)]
struct MemorySubscription {
    shared: Arc<Shared>,
    name: String,
}

#[async_trait]
impl EventSubscription for MemorySubscription {
    async fn poll(&self, max: usize) -> Result<Vec<Event>> {
        let inner = self.shared.inner.lock();
        let cursor = inner.cursor(&self.name)?;
        Ok(inner
            .events
            .iter()
            .skip(cursor.saturating_sub(inner.first))
            .take(max.min(EVENT_POLL_MAX))
            .cloned()
            .collect())
    }

    async fn commit(&self, through: EventId) -> Result<()> {
        let mut inner = self.shared.inner.lock();
        let cursor = inner.cursor(&self.name)?;
        let found = inner.events.iter().skip(cursor.saturating_sub(inner.first)).position(|event| event.id == through);
        if let (Some(index), Some(stored)) = (found, inner.cursors.get_mut(&self.name)) {
            *stored = cursor + index + 1;
        }
        Ok(())
    }
}
