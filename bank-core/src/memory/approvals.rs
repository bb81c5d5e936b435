//! [`MemoryDepositRequests`]: deposit requests in one map behind one mutex, so `create` and
//! `approve` are atomic.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::approvals::{DepositRequest, DepositRequestStatus, DepositRequestStore, PENDING_PAGE_MAX};
use crate::error::{Error, Result};
use crate::ids::{CustomerId, TransferId};

/// Deposit requests held in memory.
#[derive(Debug, Default)]
pub struct MemoryDepositRequests {
    requests: Mutex<FxHashMap<TransferId, DepositRequest>>,
}

impl MemoryDepositRequests {
    /// An empty store.
    pub fn new() -> Self {
        MemoryDepositRequests::default()
    }
}

#[async_trait]
impl DepositRequestStore for MemoryDepositRequests {
    async fn create(&self, request: DepositRequest) -> Result<DepositRequest> {
        let mut requests = self.requests.lock();
        match requests.get(&request.id) {
            Some(stored) if stored.is_same_request(&request) => Ok(stored.clone()),
            Some(_) => Err(Error::KeyReused(format!("deposit request {}", request.id.as_uuid()))),
            None => {
                requests.insert(request.id, request.clone());
                Ok(request)
            }
        }
    }

    async fn get(&self, id: TransferId) -> Result<Option<DepositRequest>> {
        Ok(self.requests.lock().get(&id).cloned())
    }

    async fn approve(&self, id: TransferId, by: CustomerId, at: DateTime<Utc>) -> Result<DepositRequest> {
        let mut requests = self.requests.lock();
        let request = requests.get_mut(&id).ok_or(Error::TransferNotFound(id))?;
        if request.status == DepositRequestStatus::Pending {
            request.status = DepositRequestStatus::Approved { by, at };
        }
        Ok(request.clone())
    }

    async fn pending(&self, limit: usize) -> Result<Vec<DepositRequest>> {
        let requests = self.requests.lock();
        let mut pending: Vec<DepositRequest> =
            requests.values().filter(|r| r.status == DepositRequestStatus::Pending).cloned().collect();
        pending.sort_by_key(|r| (r.requested_at, *r.id.as_uuid()));
        pending.truncate(limit.min(PENDING_PAGE_MAX));
        Ok(pending)
    }

    async fn approved_since(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<DepositRequest>> {
        let requests = self.requests.lock();
        let mut approved: Vec<(DateTime<Utc>, DepositRequest)> = requests
            .values()
            .filter_map(|r| match r.status {
                DepositRequestStatus::Approved { at, .. } if at >= since => Some((at, r.clone())),
                _ => None,
            })
            .collect();
        approved.sort_by_key(|(at, r)| (*at, *r.id.as_uuid()));
        Ok(approved.into_iter().take(limit.min(PENDING_PAGE_MAX)).map(|(_, r)| r).collect())
    }
}
