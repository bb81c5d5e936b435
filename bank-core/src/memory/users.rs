//! [`MemoryUserStore`]: users and refresh tokens in one mutex.
//!
//! One lock over all maps makes every call atomic: of concurrent claims of one TOTP step exactly
//! one succeeds, and of concurrent rotations of one refresh token exactly one rotates. Expired
//! refresh tokens stay until [`UserStore::purge_expired_refresh`] runs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::CustomerId;
use crate::users::{Email, RefreshToken, RefreshTokenHash, Rotation, User, UserStore};

/// Users and refresh tokens held in memory.
#[derive(Debug)]
pub struct MemoryUserStore {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: FxHashMap<CustomerId, User>,
    by_email: FxHashMap<Email, CustomerId>,
    refresh: FxHashMap<RefreshTokenHash, RefreshToken>,
}

impl Inner {
    fn revoke_family(&mut self, family: Uuid) -> u64 {
        let mut revoked = 0;
        for token in self.refresh.values_mut().filter(|t| t.family == family && !t.revoked) {
            token.revoked = true;
            revoked += 1;
        }
        revoked
    }
}

impl MemoryUserStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryUserStore { clock, inner: Mutex::new(Inner::default()) }
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn create(&self, user: User) -> Result<User> {
        let mut inner = self.inner.lock();
        if inner.by_email.contains_key(&user.email) {
            return Err(Error::KeyReused("the email address".into()));
        }
        if inner.users.contains_key(&user.id) {
            return Err(Error::KeyReused("the user id".into()));
        }
        inner.by_email.insert(user.email.clone(), user.id);
        inner.users.insert(user.id, user.clone());
        Ok(user)
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>> {
        let inner = self.inner.lock();
        Ok(inner.by_email.get(email).and_then(|id| inner.users.get(id)).cloned())
    }

    async fn by_id(&self, id: CustomerId) -> Result<Option<User>> {
        Ok(self.inner.lock().users.get(&id).cloned())
    }

    async fn use_totp_step(&self, user: CustomerId, step: u64) -> Result<bool> {
        let mut inner = self.inner.lock();
        let Some(user) = inner.users.get_mut(&user) else { return Ok(false) };
        if user.last_totp_step.is_some_and(|last| step <= last) {
            return Ok(false);
        }
        user.last_totp_step = Some(step);
        Ok(true)
    }

    async fn insert_refresh(&self, token: RefreshToken) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.refresh.contains_key(&token.id_hash) {
            return Err(Error::KeyReused("the refresh token".into()));
        }
        inner.refresh.insert(token.id_hash, token);
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        old: &RefreshTokenHash,
        new: &RefreshTokenHash,
        new_expires_at: DateTime<Utc>,
    ) -> Result<Rotation> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let Some(current) = inner.refresh.get(old).filter(|t| !t.revoked).cloned() else {
            return Ok(Rotation::Invalid);
        };
        if current.used {
            inner.revoke_family(current.family);
            return Ok(Rotation::Reused { user: current.user, family: current.family });
        }
        if current.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if inner.refresh.contains_key(new) {
            return Err(Error::KeyReused("the refresh token".into()));
        }
        if let Some(token) = inner.refresh.get_mut(old) {
            token.used = true;
        }
        inner.refresh.insert(*new, RefreshToken::new(*new, current.family, current.user, new_expires_at));
        Ok(Rotation::Rotated { user: current.user, family: current.family })
    }

    async fn refresh_token(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshToken>> {
        Ok(self.inner.lock().refresh.get(hash).cloned())
    }

    async fn revoke_family(&self, family: Uuid) -> Result<u64> {
        Ok(self.inner.lock().revoke_family(family))
    }

    async fn purge_expired_refresh(&self) -> Result<u64> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let before = inner.refresh.len();
        inner.refresh.retain(|_, token| token.expires_at > now);
        Ok((before - inner.refresh.len()) as u64)
    }
}
