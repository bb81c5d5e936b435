//! [`MemoryIdempotencyStore`]: idempotency records in one mutex.
//!
//! Implements the contract of [`IdempotencyStore`] with the semantics of [`crate::idempotency`]:
//! one lock over one map makes every call atomic, so of many concurrent `begin`s on a scope exactly
//! one starts.
//!
//! Time boundaries, read from the [`Clock`]: a lease is live while `now < lease_until`, and a
//! record is kept while `now < expires_at` (`created_at` + [`IDEMPOTENCY_RETENTION_HOURS`]). A
//! record past retention is treated as absent by every call, whatever its state.
//!
//! # Memory
//! Records are not dropped by a timer. `begin` replaces a past-retention record it meets, but keys
//! that are never used again stay until [`IdempotencyStore::purge_expired`] runs: the owner of the
//! store must call it periodically (the transfer pipeline's scheduler does), which bounds the map
//! to the keys of one retention window.
//!
//! This module owns no business rule beyond the contract; it must not interpret responses or
//! resources.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::idempotency::{
    Begin, IDEMPOTENCY_RETENTION_HOURS, IdempotencyRecord, IdempotencyScope, LeaseToken, RecordState,
};
use crate::ports::IdempotencyStore;
use crate::transfer::Fingerprint;

/// Idempotency records held in memory.
#[derive(Debug)]
pub struct MemoryIdempotencyStore {
    clock: Arc<dyn Clock>,
    slots: Mutex<FxHashMap<IdempotencyScope, Slot>>,
}

#[derive(Debug)]
struct Slot {
    record: IdempotencyRecord,
    /// The token whose `complete` stored the response, so that the same call again is a no-op
    /// rather than `LeaseLost` ([`RecordState::Completed`] does not carry it).
    completed_by: Option<LeaseToken>,
}

impl Slot {
    fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.record.expires_at <= now
    }
}

impl MemoryIdempotencyStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryIdempotencyStore { clock, slots: Mutex::new(FxHashMap::default()) }
    }
}

/// `now + lease`, refusing a lease that protects nothing (zero or negative) or overflows.
fn lease_until(now: DateTime<Utc>, lease: TimeDelta) -> Result<DateTime<Utc>> {
    if lease <= TimeDelta::zero() {
        return Err(Error::invalid("an idempotency lease must be positive"));
    }
    now.checked_add_signed(lease).ok_or_else(|| Error::invalid("the idempotency lease is too long"))
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: Fingerprint,
        resource: &str,
        lease: TimeDelta,
    ) -> Result<Begin> {
        let now = self.clock.now();
        let lease_until = lease_until(now, lease)?;
        let expires_at = now
            .checked_add_signed(TimeDelta::hours(IDEMPOTENCY_RETENTION_HOURS))
            .ok_or_else(|| Error::storage("the clock is out of range for retaining a key", false))?;
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get_mut(scope)
            && !slot.is_expired(now)
        {
            let record = &mut slot.record;
            if record.fingerprint != fingerprint {
                return Err(Error::IdempotencyMismatch);
            }
            return match &record.state {
                RecordState::Completed { response } => {
                    Ok(Begin::Replay { resource: record.resource.clone(), response: response.clone() })
                }
                RecordState::InFlight { lease_until: current, .. } if now < *current => Err(Error::IdempotencyInFlight),
                RecordState::InFlight { .. } => {
                    // The first attempt died: take over its resource and first-seen time.
                    let token = LeaseToken::new();
                    record.state = RecordState::InFlight { token, lease_until };
                    Ok(Begin::Started {
                        resource: record.resource.clone(),
                        token,
                        first_seen_at: record.created_at,
                        takeover: true,
                    })
                }
            };
        }
        // Unknown, or past retention (lazily replaced here).
        let token = LeaseToken::new();
        let record = IdempotencyRecord {
            scope: scope.clone(),
            fingerprint,
            resource: resource.to_owned(),
            state: RecordState::InFlight { token, lease_until },
            created_at: now,
            expires_at,
        };
        slots.insert(scope.clone(), Slot { record, completed_by: None });
        Ok(Begin::Started { resource: resource.to_owned(), token, first_seen_at: now, takeover: false })
    }

    async fn complete(&self, scope: &IdempotencyScope, token: LeaseToken, response: Vec<u8>) -> Result<()> {
        let now = self.clock.now();
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(scope).filter(|slot| !slot.is_expired(now)) else {
            return Err(Error::LeaseLost);
        };
        match &slot.record.state {
            // The token is current until another attempt takes over, even past its lease.
            RecordState::InFlight { token: current, .. } if *current == token => {
                slot.record.state = RecordState::Completed { response };
                slot.completed_by = Some(token);
                Ok(())
            }
            // The same completion again: the first response stays, as clients may have seen it.
            RecordState::Completed { .. } if slot.completed_by == Some(token) => Ok(()),
            RecordState::InFlight { .. } | RecordState::Completed { .. } => Err(Error::LeaseLost),
        }
    }

    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> Result<()> {
        let now = self.clock.now();
        let mut slots = self.slots.lock();
        match slots.get(scope) {
            Some(slot)
                if !slot.is_expired(now)
                    && matches!(slot.record.state, RecordState::InFlight { token: current, .. } if current == token) =>
            {
                slots.remove(scope);
                Ok(())
            }
            // Absent, expired, taken over, or completed (its effect happened: never forget it).
            _ => Err(Error::LeaseLost),
        }
    }

    async fn abandoned(&self, limit: usize) -> Result<Vec<IdempotencyRecord>> {
        let now = self.clock.now();
        let slots = self.slots.lock();
        let mut found: Vec<&IdempotencyRecord> = slots
            .values()
            .filter(|slot| !slot.is_expired(now))
            .map(|slot| &slot.record)
            .filter(|record| matches!(record.state, RecordState::InFlight { lease_until, .. } if lease_until <= now))
            .collect();
        // Oldest first; the scope breaks ties so the order is deterministic.
        let order = |a: &&IdempotencyRecord, b: &&IdempotencyRecord| {
            a.created_at.cmp(&b.created_at).then_with(|| a.scope.cmp(&b.scope))
        };
        if limit > 0 && found.len() > limit {
            // Only the `limit` oldest need sorting.
            found.select_nth_unstable_by(limit - 1, order);
        }
        found.truncate(limit);
        found.sort_unstable_by(order);
        Ok(found.into_iter().cloned().collect())
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = self.clock.now();
        let mut slots = self.slots.lock();
        let before = slots.len();
        slots.retain(|_, slot| !slot.is_expired(now));
        Ok((before - slots.len()) as u64)
    }
}
