//! Test support (feature `testkit`): a fresh, migrated schema per test case in the test database.
//!
//! The database is `BANK_TEST_DATABASE_URL` (set by `scripts/services.sh`, which creates a fresh
//! database per test run), else `postgres://postgres@127.0.0.1:5432/bank_test` (created when
//! missing). When PostgreSQL does not answer, [`test_db`] prints why and returns `None` (the
//! test skips), or panics when `BANK_REQUIRE_SERVICES=1` (CI).

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{PgConfig, PgDb};

/// The test database when `BANK_TEST_DATABASE_URL` is unset.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/bank_test";

/// The test database's URL.
pub fn test_database_url() -> String {
    std::env::var("BANK_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// Whether a missing service fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("BANK_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (prints `reason`, returns `None`) or, when services are required, panics.
pub fn skip<T>(reason: &str) -> Option<T> {
    assert!(!services_required(), "BANK_REQUIRE_SERVICES=1 and {reason}");
    eprintln!("skipped: {reason} (set BANK_TEST_DATABASE_URL, or run scripts/services.sh start)");
    None
}

/// A fresh schema of its own in the test database, migrated, with `max_connections` per pool;
/// `None` (after printing why) when PostgreSQL is absent and services are not required.
pub async fn test_db_with(max_connections: u32) -> Option<PgDb> {
    test_db_at(&test_database_url(), max_connections).await
}

/// [`test_db_with`] in the database at `url` (e.g. the primary of a replicated pair).
pub async fn test_db_at(url: &str, max_connections: u32) -> Option<PgDb> {
    let url = url.to_owned();
    if let Err(err) = ensure_database(&url).await {
        return skip(&format!("PostgreSQL is not reachable at {}: {err}", redact(&url)));
    }
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut conn = match PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(err) => return skip(&format!("PostgreSQL is not reachable at {}: {err}", redact(&url))),
    };
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create the test schema");
    drop(conn);
    // Its connections carry the schema's name, so a test can find (and terminate) exactly them.
    let config =
        PgConfig { max_connections, application_name: schema.clone(), schema: Some(schema), ..PgConfig::new(url) };
    let db = PgDb::connect(&config).await.expect("connect to the test schema");
    db.migrate().await.expect("migrate the test schema");
    Some(db)
}

/// A fresh migrated schema of its own, as a URL a server can be given (`BANK_DATABASE_URL`): the
/// test database's URL with `options=-c search_path=<schema>` and `application_name`, so a test
/// can find (and terminate) exactly its server's connections. `None` as [`test_db`].
pub async fn test_server_url(application_name: &str) -> Option<String> {
    test_server_url_at(&test_database_url(), application_name).await
}

/// [`test_server_url`] in the database at `url`.
pub async fn test_server_url_at(url: &str, application_name: &str) -> Option<String> {
    let db = test_db_at(url, 1).await?;
    let schema: String =
        sqlx::query_scalar("SELECT current_schema()::text").fetch_one(db.writer()).await.expect("schema");
    db.close().await;
    Some(with_schema(url, &schema, application_name))
}

/// `url` working in `schema`, its connections named `application_name`.
pub fn with_schema(url: &str, schema: &str, application_name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}&application_name={application_name}")
}

/// The replicated pair `scripts/services.sh` starts (`BANK_TEST_PRIMARY_URL`,
/// `BANK_TEST_STANDBY_URL`); `None` (skip, or panic when services are required) without it.
pub fn test_pair() -> Option<(String, String)> {
    match (std::env::var("BANK_TEST_PRIMARY_URL"), std::env::var("BANK_TEST_STANDBY_URL")) {
        (Ok(primary), Ok(standby)) if !primary.is_empty() && !standby.is_empty() => Some((primary, standby)),
        _ => skip("no replicated PostgreSQL pair (BANK_TEST_PRIMARY_URL, BANK_TEST_STANDBY_URL are unset)"),
    }
}

/// [`test_db_with`] 8 connections per pool.
pub async fn test_db() -> Option<PgDb> {
    test_db_with(8).await
}

/// Creates the URL's database when it does not exist (connecting to `postgres` on the same server).
async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    if PgConnection::connect_with(&options).await.is_ok() {
        return Ok(());
    }
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        // Another test may create it at the same moment: a duplicate is fine.
        let created =
            sqlx::query(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))).execute(&mut admin).await;
        if let Err(err) = created
            && !matches!(&err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P04" | "23505")))
        {
            return Err(err);
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((credentials, rest)) if credentials.contains(':') && credentials.matches(':').count() > 1 => {
            let user = credentials.rsplit_once(':').map_or(credentials, |(user, _)| user);
            format!("{user}:***@{rest}")
        }
        _ => url.to_owned(),
    }
}

/// A TCP proxy on loopback in front of a database, for failure tests: it forwards to a target
/// that can be switched (a failover: the writer's address now reaches the promoted standby, as
/// Aurora's cluster endpoint does) and can be cut (every open connection closed, new ones closed
/// at once: the database is gone) and restored.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    address: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Debug)]
struct ProxyState {
    target: parking_lot::Mutex<std::net::SocketAddr>,
    /// Bumped by every cut or switch: connections of an older generation end.
    generation: tokio::sync::watch::Sender<u64>,
    cut: std::sync::atomic::AtomicBool,
}

impl TcpProxy {
    /// Starts a proxy to `target` on a free loopback port.
    pub async fn start(target: std::net::SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = std::sync::Arc::new(ProxyState {
            target: parking_lot::Mutex::new(target),
            generation: tokio::sync::watch::channel(0).0,
            cut: std::sync::atomic::AtomicBool::new(false),
        });
        let accepting = std::sync::Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accepting.cut.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = *accepting.target.lock();
                let mut ended = accepting.generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        Ok(TcpProxy { address, state })
    }

    /// A proxy to the server of `url`, and `url` pointed at the proxy.
    pub async fn in_front_of(url: &str) -> std::io::Result<(TcpProxy, String)> {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let end = host_and_path.find(['/', '?']).unwrap_or(host_and_path.len());
        let host = &host_and_path[..end];
        let host = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
        let target = tokio::net::lookup_host(&host)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} resolves to nothing")))?;
        let proxy = TcpProxy::start(target).await?;
        let proxied = proxy.url_for(url);
        Ok((proxy, proxied))
    }

    /// Where it forwards to now.
    pub fn target(&self) -> std::net::SocketAddr {
        *self.state.target.lock()
    }

    /// Where clients connect.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let (credentials, host_and_path) = match rest.rsplit_once('@') {
            Some((credentials, host)) => (format!("{credentials}@"), host),
            None => (String::new(), rest),
        };
        let path = host_and_path.find('/').map_or("", |i| &host_and_path[i..]);
        format!("{scheme}://{credentials}{}{path}", self.address)
    }

    /// Closes every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.state.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every open connection and sends new ones to `target`.
    pub fn switch(&self, target: std::net::SocketAddr) {
        *self.state.target.lock() = target;
        self.state.generation.send_modify(|g| *g += 1);
    }
}
