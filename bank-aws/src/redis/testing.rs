//! Test support: the Redis `scripts/services.sh` provides (`BANK_TEST_REDIS_URL`), a client with
//! a key prefix no other test case uses, and a private `redis-server` a test can kill.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RedisClient, RedisConfig};
use crate::postgres::testing::services_required;

/// Skips (prints `reason`, returns `None`) or, when services are required, panics.
fn skip<T>(reason: &str) -> Option<T> {
    assert!(!services_required(), "BANK_REQUIRE_SERVICES=1 and {reason}");
    eprintln!("skipped: {reason}");
    None
}

/// A client on `BANK_TEST_REDIS_URL` with a unique key prefix, once Redis answered a `PING`;
/// `None` (after printing why) when it is unset or does not answer, or a panic when
/// `BANK_REQUIRE_SERVICES=1`.
pub async fn test_client() -> Option<RedisClient> {
    let Ok(url) = std::env::var("BANK_TEST_REDIS_URL") else {
        return skip("no Redis: BANK_TEST_REDIS_URL is unset (run scripts/services.sh start)");
    };
    let client = client_at(&url, &unique_prefix());
    match client.ping().await {
        Ok(()) => Some(client),
        Err(err) => skip(&format!("Redis at BANK_TEST_REDIS_URL does not answer: {err}")),
    }
}

/// A client on `url` with `prefix` (a test's second "process" uses the same prefix).
pub fn client_at(url: &str, prefix: &str) -> RedisClient {
    let mut config = RedisConfig::new(url);
    config.key_prefix = prefix.to_owned();
    RedisClient::connect(&config).expect("a valid test Redis configuration")
}

/// A key prefix no other test case uses.
pub fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::now_v7().simple())
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").port()
}

/// A `redis-server` of a test's own (no persistence, loopback, a free port), killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts one on a free port and waits until it answers; `None` (after printing why) when
    /// `redis-server` is not installed, or a panic when `BANK_REQUIRE_SERVICES=1`.
    pub async fn start() -> Option<PrivateRedis> {
        Self::start_on(free_port()).await
    }

    /// Starts one on `port` (a restart after [`PrivateRedis::kill`]).
    pub async fn start_on(port: u16) -> Option<PrivateRedis> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) => return skip(&format!("cannot start redis-server ({err}); install redis-server")),
        };
        let server = PrivateRedis { child: Some(child), port };
        let probe = client_at(&server.url(), "probe:");
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe.ping().await.is_err() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not answer within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
