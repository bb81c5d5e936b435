//! [`RedisRateLimiter`]: the [`RateLimiter`] port on Redis, GCRA in one Lua script (read the
//! key's theoretical arrival time, decide, write it back with a TTL), so a limit holds across
//! every process that shares the Redis. Time is Redis's own (`TIME`), one clock for all
//! processes whatever their skew.
//!
//! Keys: `<prefix>rl:<limiter name>:<key>`, each expiring when its bucket is full again (at most
//! the quota's tolerance): an idle client leaves nothing behind.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;
use bank_core::ratelimit::{Decision, Quota, RateLimiter, check_key};
use bank_core::{Error, Result};

use super::RedisClient;

/// Longest limiter name.
pub const LIMITER_NAME_LEN_MAX: usize = 32;

/// `KEYS`: the key. `ARGV`: interval µs, tolerance µs. Answers 0 when allowed (and counted),
/// else the µs to wait.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
local excess = new_tat - now - tolerance
if excess > 0 then
  return excess
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
if ttl_ms < 1 then ttl_ms = 1 end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%d', ttl_ms))
return 0
",
    )
});

/// A shared keyed rate limit. See the module doc.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    client: RedisClient,
    name: String,
    quota: Quota,
}

impl RedisRateLimiter {
    /// The limiter `name` (part of its keys: `per_ip`, `login_per_ip`, …; 1 to
    /// [`LIMITER_NAME_LEN_MAX`] of `[a-z0-9_]`) with `quota`, on `client`.
    pub fn new(client: RedisClient, name: &str, quota: Quota) -> Result<RedisRateLimiter> {
        let valid = !name.is_empty()
            && name.len() <= LIMITER_NAME_LEN_MAX
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(Error::InvalidInput(format!("a limiter name has 1 to {LIMITER_NAME_LEN_MAX} of [a-z0-9_]")));
        }
        Ok(RedisRateLimiter { client, name: name.to_owned(), quota })
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}rl:{}:{key}", self.client.prefix(), self.name)
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str) -> Result<Decision> {
        check_key(key)?;
        let mut conn = self.client.conn();
        let mut invocation = GCRA.key(self.redis_key(key));
        invocation.arg(micros(self.quota.interval())).arg(micros(self.quota.tolerance()));
        let wait_us: i64 = self.client.bounded("rate limit", invocation.invoke_async(&mut conn)).await?;
        Ok(match u64::try_from(wait_us) {
            Ok(0) | Err(_) => Decision::Allowed,
            Ok(wait) => Decision::Limited { retry_after: Duration::from_micros(wait) },
        })
    }

    fn quota(&self) -> Quota {
        self.quota
    }
}
