//! [`MemoryViewCache`]: the in-process [`ViewCache`] — one lock over a bounded map of account
//! slots (generation and view), views expiring after their TTL by the monotonic clock.
//!
//! For one process (tests, the local backend's single server, benchmarks). Several processes
//! need a shared cache (Redis, in `bank-aws`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::cache::{CachedView, FillTicket, Lookup, ViewCache, check_fill, new_generation};
use crate::error::Result;
use crate::ids::AccountId;

/// Accounts a [`MemoryViewCache`] holds a slot for by default (about 400 bytes each).
pub const MEMORY_VIEW_ACCOUNTS_MAX: usize = 100_000;

#[derive(Debug)]
struct Slot {
    generation: String,
    view: Option<(CachedView, Instant)>,
}

/// The in-process view cache. See the module doc.
#[derive(Debug)]
pub struct MemoryViewCache {
    slots: Mutex<FxHashMap<AccountId, Slot>>,
    capacity: usize,
}

impl Default for MemoryViewCache {
    fn default() -> Self {
        MemoryViewCache::new(MEMORY_VIEW_ACCOUNTS_MAX)
    }
}

impl MemoryViewCache {
    /// A cache holding at most `capacity` accounts (at least 1).
    pub fn new(capacity: usize) -> Self {
        MemoryViewCache { slots: Mutex::new(FxHashMap::default()), capacity: capacity.max(1) }
    }

    /// Accounts with a slot now.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether no account has a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ViewCache for MemoryViewCache {
    async fn lookup(&self, id: AccountId) -> Result<Lookup> {
        let now = Instant::now();
        let mut slots = self.slots.lock();
        if !slots.contains_key(&id) && slots.len() >= self.capacity {
            // Full: drop the slots without a live view. A ticket of a dropped slot can never
            // fill (its generation is gone for good), so this only costs misses.
            slots.retain(|_, slot| slot.view.as_ref().is_some_and(|(_, until)| now < *until));
            if slots.len() >= self.capacity {
                // Still full of live views: answer a ticket that matches nothing; the caller
                // reads the store and caches nothing.
                return Ok(Lookup { view: None, ticket: FillTicket { account: id, generation: new_generation() } });
            }
        }
        let slot = slots.entry(id).or_insert_with(|| Slot { generation: new_generation(), view: None });
        let view = match &slot.view {
            Some((view, until)) if now < *until => Some(view.clone()),
            _ => None,
        };
        Ok(Lookup { view, ticket: FillTicket { account: id, generation: slot.generation.clone() } })
    }

    async fn fill(&self, ticket: &FillTicket, view: &CachedView, ttl: Duration) -> Result<bool> {
        check_fill(ticket, view, ttl)?;
        let mut slots = self.slots.lock();
        match slots.get_mut(&ticket.account) {
            Some(slot) if slot.generation == ticket.generation => {
                slot.view = Some((view.clone(), Instant::now() + ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn invalidate(&self, ids: &[AccountId]) -> Result<()> {
        let mut slots = self.slots.lock();
        for id in ids {
            // Removing the slot voids its generation: the next lookup makes a new one.
            slots.remove(id);
        }
        Ok(())
    }
}
