//! [`RedisViewCache`]: the [`ViewCache`] port on Redis — a view key and a generation key per
//! account, read and filled by Lua scripts so that the generation check and the write are one
//! atomic step (see [`bank_core::cache`] for why).
//!
//! Keys: `<prefix>view:{<id>}` (the view as JSON, with the fill's TTL) and `<prefix>gen:{<id>}`
//! (the generation, a random token, with [`GENERATION_TTL`]). An invalidation replaces the
//! generation and deletes the view in one `MULTI`.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;
use bank_core::cache::{CachedView, FillTicket, Lookup, ViewCache, check_fill, new_generation};
use bank_core::ids::AccountId;
use bank_core::{Error, Result};

use super::RedisClient;

/// How long an account's generation lives after it was set. Only a fill whose ticket is older
/// than this is affected (refused: the generation it names is gone); it bounds the keys of
/// accounts nobody reads any more.
pub const GENERATION_TTL: Duration = Duration::from_secs(600);

/// `KEYS`: view, generation. `ARGV`: a fresh generation, its TTL in ms. Answers the view (or
/// nil) and the generation, creating it when absent.
static LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local view = redis.call('GET', KEYS[1])
local gen = redis.call('GET', KEYS[2])
if not gen then
  gen = ARGV[1]
  redis.call('SET', KEYS[2], gen, 'PX', ARGV[2])
end
return {view, gen}
",
    )
});

/// `KEYS`: view, generation. `ARGV`: the ticket's generation, the view, its TTL in ms. Stores
/// the view only if the generation is the ticket's; answers 1 if it did.
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// The shared account-view cache. See the module doc.
#[derive(Debug, Clone)]
pub struct RedisViewCache {
    client: RedisClient,
}

impl RedisViewCache {
    /// A cache on `client` (its prefix and timeout).
    pub fn new(client: RedisClient) -> Self {
        RedisViewCache { client }
    }

    /// The view key of `id`.
    pub fn view_key(&self, id: AccountId) -> String {
        format!("{}view:{{{id}}}", self.client.prefix())
    }

    /// The generation key of `id`.
    pub fn generation_key(&self, id: AccountId) -> String {
        format!("{}gen:{{{id}}}", self.client.prefix())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl ViewCache for RedisViewCache {
    async fn lookup(&self, id: AccountId) -> Result<Lookup> {
        let mut conn = self.client.conn();
        let mut invocation = LOOKUP.key(self.view_key(id));
        invocation.key(self.generation_key(id)).arg(new_generation()).arg(millis(GENERATION_TTL));
        let (stored, generation): (Option<Vec<u8>>, String) =
            self.client.bounded("view lookup", invocation.invoke_async(&mut conn)).await?;
        let view = match stored.map(|bytes| serde_json::from_slice::<CachedView>(&bytes)) {
            None => None,
            Some(Ok(view)) => Some(view),
            Some(Err(err)) => {
                // An entry this build cannot read (another version wrote it): a miss, which the
                // caller's fill overwrites.
                tracing::warn!(account_id = %id, error = %err, "unreadable cached view ignored");
                None
            }
        };
        Ok(Lookup { view, ticket: FillTicket { account: id, generation } })
    }

    async fn fill(&self, ticket: &FillTicket, view: &CachedView, ttl: Duration) -> Result<bool> {
        check_fill(ticket, view, ttl)?;
        let bytes = serde_json::to_vec(view)
            .map_err(|err| Error::Storage { message: format!("encoding a view: {err}"), retryable: false })?;
        let mut conn = self.client.conn();
        let mut invocation = FILL.key(self.view_key(ticket.account));
        invocation.key(self.generation_key(ticket.account)).arg(&ticket.generation).arg(bytes).arg(millis(ttl));
        let stored: i64 = self.client.bounded("view fill", invocation.invoke_async(&mut conn)).await?;
        Ok(stored == 1)
    }

    async fn invalidate(&self, ids: &[AccountId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for id in ids {
            pipe.cmd("SET")
                .arg(self.generation_key(*id))
                .arg(new_generation())
                .arg("PX")
                .arg(millis(GENERATION_TTL))
                .ignore();
            pipe.cmd("DEL").arg(self.view_key(*id)).ignore();
        }
        let mut conn = self.client.conn();
        self.client.bounded("view invalidation", pipe.query_async::<()>(&mut conn)).await
    }
}
