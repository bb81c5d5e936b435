//! [`MemoryQueue`]: the transfer queue in one mutex, with the SQS FIFO semantics of
//! [`crate::queue`] and the contract of [`TransferQueue`].
//!
//! # Layout
//! Messages wait in one `VecDeque` per group, in enqueue order. A receive delivers a prefix of a
//! group (up to [`GROUP_RECEIVE_MAX`] of its oldest messages) and only when none of the group is in
//! flight, so the messages in flight are always a prefix of the group, and each message has its
//! own visibility (`until`). The group's *lease* is the latest of them: the group is blocked until
//! then, or until every message of the prefix is acknowledged. Every group is indexed by its head
//! (its oldest message) in exactly one of two indexes:
//! - `ready`: visible heads keyed by enqueue sequence, so `receive` serves the groups whose heads
//!   are oldest first (a busy group cannot starve a quiet one, and a redelivered message goes
//!   before newer work);
//! - `hidden` + `deadlines`: groups with messages in flight (or delayed by `retry_later`), keyed
//!   by their head's sequence (for the oldest-age figure) and by the end of their lease.
//!
//! One lock covers it all, as in [`crate::memory::MemoryLedger`]: every call is trivially atomic,
//! and the critical sections are a few map and tree operations per message.
//!
//! A group with no message left is dropped, so memory follows the messages held. Each call costs
//! O(log g) in the number of groups per message it touches; expiries, dead letters and dedup
//! pruning are paid once per message, so they are amortized O(log g) too.
//!
//! # Semantics, with every time read from the injected [`Clock`]
//! - A group's messages in flight become visible again once `now >=` its lease (the latest of
//!   their `until`s: delivery + visibility, or `retry_later` time + delay), keeping their places.
//!   A message acknowledged out of order leaves the others in flight; `retry_later` moves one
//!   message's `until` (the group stays blocked while any other is in flight, as on SQS).
//! - A receipt is current from its delivery until the message is acknowledged, dead-lettered or
//!   delivered again; so a worker that overran its visibility can still acknowledge as long as
//!   nobody received the message since (as SQS allows). Receipts carry the group and a delivery
//!   number unique within the queue; a receipt that does not parse is `InvalidInput`.
//! - Dead-lettering happens when a message with `max_receives` deliveries would be delivered
//!   again, as SQS's redrive policy does; the group then moves on to its next message in the same
//!   call.
//!   The dead-letter list holds at most `capacity` messages: past that the oldest is dropped,
//!   with a warning, rather than letting a poison stream grow memory without bound.
//! - Deduplication is queue-wide on `dedup_id`, for `dedup_window_seconds` after the first
//!   accepted enqueue (duplicates do not extend it, acknowledging does not end it). A refused
//!   enqueue (`QueueFull`, invalid input) is not remembered, so the caller's retry goes through.
//!   Expired entries are pruned on every enqueue, which bounds the dedup memory to the ids
//!   accepted within one window.
//! - A message `retry_later` hid counts as in flight (as SQS counts it "not visible").
//!
//! This module holds no business rule: it never looks inside a message beyond its group and
//! deduplication id.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::AccountId;
use crate::ports::TransferQueue;
use crate::queue::{Delivery, GROUP_RECEIVE_MAX, QueueConfig, QueueMessage, QueueStats, RECEIVE_BATCH_MAX, Receipt};

/// Longest visibility timeout or `retry_later` delay accepted (SQS's limit: twelve hours).
pub const VISIBILITY_MAX_SECONDS: i64 = 12 * 60 * 60;
/// Longest deduplication id accepted, in bytes (SQS's limit).
pub const DEDUP_ID_BYTES_MAX: usize = 128;

/// A transfer queue held in memory.
#[derive(Debug)]
pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    config: QueueConfig,
    inner: Mutex<Inner>,
}

/// One message held by the queue.
#[derive(Debug)]
struct Stored {
    message: QueueMessage,
    /// Enqueue order across the whole queue (unique).
    seq: u64,
    enqueued_at: DateTime<Utc>,
    receive_count: u32,
    /// Number of the latest delivery, named by its receipt; 0 before the first.
    delivery: u64,
    /// While in flight: when it becomes visible again.
    until: Option<DateTime<Utc>>,
}

/// Where a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// In `ready`: nothing of it in flight; the next `receive` may deliver it.
    Visible,
    /// In `hidden` and `deadlines`: messages in flight (or delayed by `retry_later`) until the
    /// latest of their `until`s.
    Hidden { until: DateTime<Utc> },
}

#[derive(Debug)]
struct Group {
    /// Never empty: a group without messages is removed.
    messages: VecDeque<Stored>,
    head: Head,
    /// The first `in_flight` messages are in flight (0 when `Visible`).
    in_flight: usize,
}

#[derive(Debug, Default)]
struct Inner {
    groups: FxHashMap<AccountId, Group>,
    /// (head seq, group) of every group whose head is visible.
    ready: BTreeSet<(u64, AccountId)>,
    /// (head seq, group) of every group whose head is hidden.
    hidden: BTreeSet<(u64, AccountId)>,
    /// (visible again at, head seq, group) of every group whose head is hidden.
    deadlines: BTreeSet<(DateTime<Utc>, u64, AccountId)>,
    /// Messages in `groups` (visible + in flight).
    held: usize,
    /// Messages in flight.
    in_flight: usize,
    next_seq: u64,
    last_delivery: u64,
    /// dedup id → end of its window.
    dedup: FxHashMap<Arc<str>, DateTime<Utc>>,
    /// The same entries in the order they were added, for pruning.
    dedup_order: VecDeque<(DateTime<Utc>, Arc<str>)>,
    dead: VecDeque<Stored>,
}

impl MemoryQueue {
    /// An empty queue with `config`'s limits, reading time from `clock`.
    ///
    /// `max_receives: 0` dead-letters every message on its first receive; `capacity: 0` refuses
    /// every enqueue.
    pub fn new(clock: Arc<dyn Clock>, config: QueueConfig) -> Self {
        MemoryQueue { clock, config, inner: Mutex::new(Inner::default()) }
    }

    /// End of a deduplication window opened at `now` (saturating: a huge window never ends).
    fn dedup_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let window = TimeDelta::try_seconds(self.config.dedup_window_seconds.max(0)).unwrap_or(TimeDelta::MAX);
        now.checked_add_signed(window).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// `now + span` for a visibility timeout or delay, refusing negative or over-long spans.
fn hidden_until(now: DateTime<Utc>, span: TimeDelta, what: &str) -> Result<DateTime<Utc>> {
    if span < TimeDelta::zero() || span > TimeDelta::seconds(VISIBILITY_MAX_SECONDS) {
        return Err(Error::invalid(format!("{what} must be between 0 and {VISIBILITY_MAX_SECONDS} seconds")));
    }
    now.checked_add_signed(span).ok_or_else(|| Error::invalid(format!("{what} is out of range")))
}

fn receipt(group: AccountId, delivery: u64) -> Receipt {
    Receipt(format!("{group}/{delivery}"))
}

/// The group and delivery number a receipt names.
fn parse_receipt(receipt: &Receipt) -> Result<(AccountId, u64)> {
    let malformed = || Error::invalid("malformed queue receipt");
    let (group, delivery) = receipt.0.split_once('/').ok_or_else(malformed)?;
    let group = group.parse::<AccountId>().map_err(|_| malformed())?;
    let delivery = delivery.parse::<u64>().map_err(|_| malformed())?;
    Ok((group, delivery))
}

impl Inner {
    /// Makes every hidden head whose time has come visible again.
    fn release_expired(&mut self, now: DateTime<Utc>) {
        while let Some(&(until, seq, group_id)) = self.deadlines.first()
            && until <= now
        {
            self.deadlines.pop_first();
            let was_hidden = self.hidden.remove(&(seq, group_id));
            debug_assert!(was_hidden, "a deadline names a hidden head");
            if let Some(group) = self.groups.get_mut(&group_id) {
                for message in group.messages.iter_mut().take(group.in_flight) {
                    message.until = None;
                }
                self.in_flight -= group.in_flight;
                group.in_flight = 0;
                group.head = Head::Visible;
            }
            self.ready.insert((seq, group_id));
        }
    }

    /// Forgets dedup ids whose window ended.
    fn prune_dedup(&mut self, now: DateTime<Utc>) {
        while let Some((until, _)) = self.dedup_order.front()
            && *until <= now
        {
            let Some((until, id)) = self.dedup_order.pop_front() else { break };
            // The map may hold a newer window for the same id only if the clock ran backwards;
            // never drop that one.
            if self.dedup.get(&id) == Some(&until) {
                self.dedup.remove(&id);
            }
        }
    }

    /// The group of the message `receipt` currently names, and its position in the group.
    /// Delivered messages are among the first [`GROUP_RECEIVE_MAX`] of their group (a group only
    /// loses messages ahead of them), so only those are searched.
    fn current(&self, receipt: &Receipt) -> Result<(AccountId, usize)> {
        let (group_id, delivery) = parse_receipt(receipt)?;
        // Delivery numbers start at 1: a 0 would name an undelivered message.
        if delivery == 0 {
            return Err(Error::StaleReceipt);
        }
        let group = self.groups.get(&group_id).ok_or(Error::StaleReceipt)?;
        let position = group.messages.iter().take(GROUP_RECEIVE_MAX).position(|m| m.delivery == delivery);
        Ok((group_id, position.ok_or(Error::StaleReceipt)?))
    }

    /// Takes the group out of its index, lets `change` alter it, then indexes it again by its new
    /// head and state (or drops it once empty).
    fn regroup(&mut self, group_id: AccountId, change: impl FnOnce(&mut Group)) {
        let Some(group) = self.groups.get_mut(&group_id) else { return };
        let Some(head_seq) = group.messages.front().map(|m| m.seq) else { return };
        let (head, len, in_flight) = (group.head, group.messages.len(), group.in_flight);
        change(group);
        self.held = self.held + group.messages.len() - len;
        self.in_flight = self.in_flight + group.in_flight - in_flight;
        self.unindex(group_id, head_seq, head);
        let Entry::Occupied(mut slot) = self.groups.entry(group_id) else { return };
        let group = slot.get_mut();
        let Some(seq) = group.messages.front().map(|m| m.seq) else {
            slot.remove();
            return;
        };
        let lease = group.messages.iter().take(group.in_flight).filter_map(|m| m.until).max();
        match lease {
            Some(until) if group.in_flight > 0 => {
                group.head = Head::Hidden { until };
                self.hidden.insert((seq, group_id));
                self.deadlines.insert((until, seq, group_id));
            }
            _ => {
                debug_assert_eq!(group.in_flight, 0, "messages in flight have a visibility");
                group.head = Head::Visible;
                self.ready.insert((seq, group_id));
            }
        }
    }

    /// Takes `head` (seq `seq`) of `group_id` out of whichever index holds it.
    fn unindex(&mut self, group_id: AccountId, seq: u64, head: Head) {
        let removed = match head {
            Head::Visible => self.ready.remove(&(seq, group_id)),
            Head::Hidden { until } => {
                let by_seq = self.hidden.remove(&(seq, group_id));
                let by_deadline = self.deadlines.remove(&(until, seq, group_id));
                by_seq && by_deadline
            }
        };
        debug_assert!(removed, "every head is indexed");
    }

    /// Removes the (already unindexed) head of `group_id`; its next message becomes the visible
    /// head, or the group goes away.
    fn pop_head(&mut self, group_id: AccountId) -> Option<Stored> {
        let Entry::Occupied(mut slot) = self.groups.entry(group_id) else { return None };
        let group = slot.get_mut();
        let popped = group.messages.pop_front();
        match group.messages.front() {
            Some(next) => {
                group.head = Head::Visible;
                self.ready.insert((next.seq, group_id));
            }
            None => {
                slot.remove();
            }
        }
        if popped.is_some() {
            self.held -= 1;
        }
        popped
    }

    fn enqueue(
        &mut self,
        message: QueueMessage,
        now: DateTime<Utc>,
        dedup_until: DateTime<Utc>,
        capacity: usize,
    ) -> Result<bool> {
        self.prune_dedup(now);
        if self.dedup.contains_key(message.dedup_id.as_str()) {
            return Ok(false);
        }
        if self.held >= capacity {
            return Err(Error::QueueFull);
        }
        let id: Arc<str> = Arc::from(message.dedup_id.as_str());
        self.dedup.insert(Arc::clone(&id), dedup_until);
        self.dedup_order.push_back((dedup_until, id));
        let seq = self.next_seq;
        self.next_seq += 1;
        let group_id = message.group;
        let stored = Stored { message, seq, enqueued_at: now, receive_count: 0, delivery: 0, until: None };
        match self.groups.entry(group_id) {
            Entry::Occupied(mut slot) => slot.get_mut().messages.push_back(stored),
            Entry::Vacant(slot) => {
                slot.insert(Group { messages: VecDeque::from([stored]), head: Head::Visible, in_flight: 0 });
                self.ready.insert((seq, group_id));
            }
        }
        self.held += 1;
        Ok(true)
    }

    fn receive(&mut self, max: usize, until: DateTime<Utc>, max_receives: u32, dead_max: usize) -> Vec<Delivery> {
        let mut deliveries = Vec::with_capacity(max.min(self.ready.len()));
        while deliveries.len() < max {
            let Some((seq, group_id)) = self.ready.pop_first() else { break };
            let Some(group) = self.groups.get_mut(&group_id) else {
                debug_assert!(false, "a ready entry names a live group");
                continue;
            };
            debug_assert_eq!(group.in_flight, 0, "a ready group has nothing in flight");
            if group.messages.front().is_some_and(|head| head.receive_count >= max_receives) {
                // The next message waits its turn in `ready` by its own age.
                if let Some(dead) = self.pop_head(group_id) {
                    self.push_dead(dead, dead_max);
                }
                continue;
            }
            let mut dead = Vec::new();
            let (mut taken, mut at) = (0, 0);
            while taken < GROUP_RECEIVE_MAX && deliveries.len() < max && at < group.messages.len() {
                if group.messages[at].receive_count >= max_receives {
                    dead.extend(group.messages.remove(at));
                    continue;
                }
                let message = &mut group.messages[at];
                message.receive_count += 1;
                self.last_delivery += 1;
                message.delivery = self.last_delivery;
                message.until = Some(until);
                deliveries.push(Delivery {
                    message: message.message.clone(),
                    receipt: receipt(group_id, message.delivery),
                    receive_count: message.receive_count,
                    enqueued_at: message.enqueued_at,
                });
                taken += 1;
                at += 1;
            }
            debug_assert!(taken > 0, "a ready group's live head is delivered");
            group.in_flight = taken;
            group.head = Head::Hidden { until };
            self.held -= dead.len();
            self.in_flight += taken;
            self.hidden.insert((seq, group_id));
            self.deadlines.insert((until, seq, group_id));
            for message in dead {
                self.push_dead(message, dead_max);
            }
        }
        deliveries
    }

    fn push_dead(&mut self, dead: Stored, dead_max: usize) {
        tracing::warn!(
            transfer_id = %dead.message.transfer_id,
            receive_count = dead.receive_count,
            "queue message moved to the dead-letter list"
        );
        if self.dead.len() >= dead_max.max(1)
            && let Some(dropped) = self.dead.pop_front()
        {
            tracing::warn!(transfer_id = %dropped.message.transfer_id, "dead-letter list full; dropped its oldest");
        }
        self.dead.push_back(dead);
    }

    fn oldest_enqueued_at(&self) -> Option<DateTime<Utc>> {
        let oldest = match (self.ready.first(), self.hidden.first()) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        Some(self.groups.get(&oldest.1)?.messages.front()?.enqueued_at)
    }
}

#[async_trait]
impl TransferQueue for MemoryQueue {
    async fn enqueue(&self, message: QueueMessage) -> Result<bool> {
        if message.dedup_id.is_empty() || message.dedup_id.len() > DEDUP_ID_BYTES_MAX {
            return Err(Error::invalid(format!("a dedup id must have 1 to {DEDUP_ID_BYTES_MAX} bytes")));
        }
        let mut inner = self.inner.lock();
        // Read under the lock so that the times the queue sees never run backwards.
        let now = self.clock.now();
        inner.enqueue(message, now, self.dedup_until(now), self.config.capacity)
    }

    async fn receive(&self, max: usize, visibility: TimeDelta) -> Result<Vec<Delivery>> {
        let mut inner = self.inner.lock();
        let now = self.clock.now();
        let until = hidden_until(now, visibility, "a visibility timeout")?;
        inner.release_expired(now);
        Ok(inner.receive(max.min(RECEIVE_BATCH_MAX), until, self.config.max_receives, self.config.capacity))
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let mut inner = self.inner.lock();
        let (group_id, position) = inner.current(receipt)?;
        inner.regroup(group_id, |group| {
            group.messages.remove(position);
            if position < group.in_flight {
                group.in_flight -= 1;
            }
        });
        Ok(())
    }

    async fn retry_later(&self, receipt: &Receipt, delay: TimeDelta) -> Result<()> {
        let mut inner = self.inner.lock();
        let now = self.clock.now();
        let until = hidden_until(now, delay, "a retry delay")?;
        let (group_id, position) = inner.current(receipt)?;
        // In flight, or just after the messages in flight (its visibility ran out and nobody
        // received it since): anything further would leave a gap in the prefix in flight.
        let in_flight = inner.groups.get(&group_id).map_or(0, |g| g.in_flight);
        if position > in_flight {
            return Err(Error::StaleReceipt);
        }
        inner.regroup(group_id, |group| {
            group.messages[position].until = Some(until);
            if position == group.in_flight {
                group.in_flight += 1;
            }
        });
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let mut inner = self.inner.lock();
        let now = self.clock.now();
        inner.release_expired(now);
        // A message of a blocked group whose own visibility has run out counts as visible (as
        // on SQS), though its group waits for the others in flight.
        let lapsed: usize = inner
            .hidden
            .iter()
            .filter_map(|(_, group_id)| inner.groups.get(group_id))
            .map(|g| g.messages.iter().take(g.in_flight).filter(|m| m.until.is_some_and(|u| u <= now)).count())
            .sum();
        let in_flight = inner.in_flight - lapsed;
        let age_ms = |at: DateTime<Utc>| u64::try_from((now - at).num_milliseconds()).unwrap_or(0);
        Ok(QueueStats {
            visible: (inner.held - in_flight) as u64,
            in_flight: in_flight as u64,
            dead_letters: inner.dead.len() as u64,
            oldest_age_ms: inner.oldest_enqueued_at().map(age_ms),
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<QueueMessage>> {
        let inner = self.inner.lock();
        Ok(inner.dead.iter().take(limit).map(|stored| stored.message.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    //! What the conformance suite cannot ask of every adapter: this store's receipt format and
    //! the bounds on its internal memory.

    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::TransferId;

    const VISIBILITY: TimeDelta = TimeDelta::seconds(30);

    fn queue(config: QueueConfig) -> (MemoryQueue, ManualClock) {
        let clock = ManualClock::at_epoch();
        (MemoryQueue::new(Arc::new(clock.clone()), config), clock)
    }

    async fn push(queue: &MemoryQueue, group: AccountId) -> QueueMessage {
        let message = QueueMessage::first(TransferId::new(), group);
        assert!(queue.enqueue(message.clone()).await.expect("enqueue"));
        message
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let (queue, _clock) = queue(QueueConfig::default());
        let group = AccountId::new();
        for dedup_id in [String::new(), "x".repeat(DEDUP_ID_BYTES_MAX + 1)] {
            let message = QueueMessage { transfer_id: TransferId::new(), group, dedup_id };
            assert!(matches!(queue.enqueue(message).await, Err(Error::InvalidInput(_))));
        }
        push(&queue, group).await;
        let too_long = TimeDelta::seconds(VISIBILITY_MAX_SECONDS + 1);
        for visibility in [TimeDelta::seconds(-1), too_long] {
            assert!(matches!(queue.receive(1, visibility).await, Err(Error::InvalidInput(_))));
        }
        let delivery = queue.receive(1, VISIBILITY).await.expect("receive").remove(0);
        for delay in [TimeDelta::seconds(-1), too_long] {
            assert!(matches!(queue.retry_later(&delivery.receipt, delay).await, Err(Error::InvalidInput(_))));
        }
        for text in ["", "nonsense", "not-a-uuid/1", &format!("{group}/x")] {
            assert!(matches!(queue.ack(&Receipt(text.into())).await, Err(Error::InvalidInput(_))));
        }
        // Well-formed but naming no current delivery.
        for text in [format!("{group}/0"), format!("{group}/99"), format!("{}/1", AccountId::new())] {
            assert!(matches!(queue.ack(&Receipt(text)).await, Err(Error::StaleReceipt)));
        }
        queue.ack(&delivery.receipt).await.expect("the real receipt still works");
    }

    #[tokio::test]
    async fn dedup_memory_is_pruned_after_the_window() {
        let (queue, clock) = queue(QueueConfig { dedup_window_seconds: 60, ..QueueConfig::default() });
        let group = AccountId::new();
        for _ in 0..100 {
            push(&queue, group).await;
        }
        assert_eq!(queue.inner.lock().dedup.len(), 100);
        clock.advance(TimeDelta::seconds(60));
        push(&queue, group).await;
        let inner = queue.inner.lock();
        assert_eq!((inner.dedup.len(), inner.dedup_order.len()), (1, 1));
    }

    #[tokio::test]
    async fn drained_groups_leave_no_state_behind() {
        let (queue, _clock) = queue(QueueConfig::default());
        for _ in 0..50 {
            let group = AccountId::new();
            push(&queue, group).await;
            push(&queue, group).await;
        }
        loop {
            let batch = queue.receive(RECEIVE_BATCH_MAX, VISIBILITY).await.expect("receive");
            if batch.is_empty() {
                break;
            }
            for delivery in &batch {
                queue.ack(&delivery.receipt).await.expect("ack");
            }
        }
        let inner = queue.inner.lock();
        assert!(inner.groups.is_empty() && inner.ready.is_empty() && inner.hidden.is_empty());
        assert!(inner.deadlines.is_empty());
        assert_eq!(inner.held, 0);
    }
}
