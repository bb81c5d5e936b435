//! Redis (ElastiCache for Redis / Valkey, or any Redis 6.2+): [`RedisViewCache`], the shared
//! account-view cache, and [`RedisRateLimiter`], rate limits shared by every API process.
//! [`RedisClient`] owns the connection they share and the rules every call follows.
//!
//! # Connection
//! One [`::redis::aio::ConnectionManager`] per client: a single multiplexed connection (requests
//! of all tasks are pipelined on it, which is how Redis is fastest) that reconnects by itself
//! after a failure. redis-rs's own manager was chosen over `deadpool-redis` / `bb8-redis`: those
//! pool *connections*, which a multiplexed connection does not need, and add a crate and a
//! second reconnect policy; the manager is maintained with the client itself.
//!
//! # Failure
//! Every call is bounded by [`RedisConfig::command_timeout`] (connecting included), so a dead or
//! unreachable Redis costs each request at most that long; a failure is a retryable
//! [`bank_core::Error::Storage`] naming the call (never the URL, which may hold a password). The
//! callers decide what it means: [`bank_core::cache::CachedLedger`] reads the database instead,
//! [`bank_core::ratelimit::FailOpen`] lets the request through; both count and warn.
//!
//! # TLS
//! `rediss://` URLs connect over TLS (ElastiCache with in-transit encryption) with rustls on
//! ring, the provider the rest of this crate uses, and the Mozilla root certificates compiled in
//! (plus the system's). `redis://` is plain TCP (a loopback server, tests).
//!
//! # Keys
//! Every key starts with [`RedisConfig::key_prefix`] (`bank:` by default; tests use a unique one
//! per case) and every key has a TTL, so nothing grows without bound. Keys of one account share
//! a hash tag (`{<account id>}`), so the cache's two-key scripts would run unchanged on a
//! cluster; the client itself speaks to one primary (cluster mode disabled).

mod cache;
mod limits;
#[cfg(feature = "testkit")]
pub mod testing;

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use bank_core::Error;

pub use cache::{GENERATION_TTL, RedisViewCache};
pub use limits::{LIMITER_NAME_LEN_MAX, RedisRateLimiter};

/// How long a Redis call may take by default, connecting included: short, because a view falls
/// back to the database and a limit fails open after it.
pub const COMMAND_TIMEOUT_DEFAULT: Duration = Duration::from_millis(250);

/// The key prefix by default.
pub const KEY_PREFIX_DEFAULT: &str = "bank:";

/// Longest key prefix.
pub const KEY_PREFIX_LEN_MAX: usize = 64;

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS (`BANK_REDIS_URL`).
    pub url: String,
    /// Prepended to every key (share one Redis between deployments or test cases).
    pub key_prefix: String,
    /// Bound of every call, connecting included.
    pub command_timeout: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisConfig")
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Redis at `url` with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: KEY_PREFIX_DEFAULT.to_owned(),
            command_timeout: COMMAND_TIMEOUT_DEFAULT,
        }
    }
}

/// A connection to Redis shared by the cache and the limiters of one process. Cheap to clone.
#[derive(Clone)]
pub struct RedisClient {
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient").field("prefix", &self.prefix).field("timeout", &self.timeout).finish()
    }
}

impl RedisClient {
    /// A client for `config`. Connects lazily — a Redis that is down at start-up is not an
    /// error, the first calls fail (fast) and later ones reconnect — so this only checks the
    /// settings: a URL that does not parse (or asks for something this build cannot do) or a bad
    /// prefix is `InvalidInput` (without the URL). Call inside a tokio runtime.
    pub fn connect(config: &RedisConfig) -> Result<RedisClient, Error> {
        if config.key_prefix.len() > KEY_PREFIX_LEN_MAX || config.key_prefix.chars().any(char::is_whitespace) {
            return Err(Error::InvalidInput(format!(
                "the Redis key prefix has at most {KEY_PREFIX_LEN_MAX} bytes and no whitespace"
            )));
        }
        if config.command_timeout.is_zero() {
            return Err(Error::InvalidInput("the Redis command timeout must be positive".into()));
        }
        let client = ::redis::Client::open(config.url.as_str())
            .map_err(|err| Error::InvalidInput(format!("the Redis URL is not usable: {:?}", err.kind())))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|err| Error::InvalidInput(format!("the Redis client cannot start: {:?}", err.kind())))?;
        Ok(RedisClient { manager, prefix: config.key_prefix.clone(), timeout: config.command_timeout })
    }

    /// `PING`: whether Redis answers now (readiness checks).
    pub async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.manager.clone();
        let _pong: String =
            self.bounded("ping", async move { ::redis::cmd("PING").query_async(&mut conn).await }).await?;
        Ok(())
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle on the connection for one call.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Runs a call with the timeout, mapping failures to retryable storage errors.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(redis_err(what, &err)),
            Err(_) => Err(Error::Storage {
                message: format!("redis {what}: no answer within {} ms", self.timeout.as_millis()),
                retryable: true,
            }),
        }
    }
}

/// A Redis failure as a retryable storage error (the kind, not the details: they can quote the
/// command's arguments).
fn redis_err(what: &str, err: &::redis::RedisError) -> Error {
    let detail = if err.is_connection_refusal() {
        "connection refused".to_owned()
    } else if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_io_error() || err.is_connection_dropped() {
        "connection lost".to_owned()
    } else {
        format!("{:?}", err.kind())
    };
    Error::Storage { message: format!("redis {what}: {detail}"), retryable: true }
}
