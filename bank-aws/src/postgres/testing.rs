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
    let url = test_database_url();
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
    let config = PgConfig { max_connections, schema: Some(schema), ..PgConfig::new(url) };
    let db = PgDb::connect(&config).await.expect("connect to the test schema");
    db.migrate().await.expect("migrate the test schema");
    Some(db)
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
