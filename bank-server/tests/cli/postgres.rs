//! The binary with `BANK_DATABASE_URL`: `migrate` brings a fresh schema to this binary's version
//! (twice is fine), `serve` refuses an unmigrated schema naming the command, and a database that
//! cannot be reached or refuses the login is a clean start-up error naming the variable (exit 1,
//! no panic), with no password in the message.

use std::process::Output;

use bank_aws::postgres::testing::{skip, test_database_url, test_server_url};

use crate::binary::{bank_server, text};

fn assert_clean_failure(output: &Output, variable: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a clean failure, not a panic (101): {stderr}");
    assert!(stderr.contains(variable), "names {variable}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// PostgreSQL answers on the test URL (else the test skips, or fails when services are required).
async fn postgres_here() -> bool {
    match sqlx::PgPool::connect(&test_database_url()).await {
        Ok(pool) => {
            pool.close().await;
            true
        }
        Err(err) => skip::<()>(&format!("PostgreSQL is not reachable: {err}")).is_some(),
    }
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_schema_and_migrate_brings_it_to_this_version() {
    // A schema that exists but is empty: what a new database looks like.
    let Some(url) = test_server_url("cli-migrate").await else { return };
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&pool).await.expect("schema");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&pool).await.expect("drop");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.expect("create");
    pool.close().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let serve_first = bank_server(dir.path()).env("BANK_DATABASE_URL", &url).arg("worker").output().expect("run");
    let stderr = assert_clean_failure(&serve_first, "BANK_DATABASE_URL");
    assert!(stderr.contains("bank-server migrate"), "tells what to run: {stderr}");
    for _ in 0..2 {
        let output = bank_server(dir.path()).env("BANK_DATABASE_URL", &url).arg("migrate").output().expect("run");
        assert!(output.status.success(), "stderr: {}", text(&output.stderr));
        assert!(text(&output.stdout).contains("schema version"), "{}", text(&output.stdout));
    }
}

#[tokio::test]
async fn an_unreachable_database_or_a_refused_login_names_the_variable() {
    if !postgres_here().await {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 1; a role that does not exist; a database that does not exist.
    let cases = [
        ("BANK_DATABASE_URL", "postgres://bank:s3cret-pw@127.0.0.1:1/bank".to_owned()),
        ("BANK_DATABASE_URL", "postgres://no_such_role:s3cret-pw@127.0.0.1:5432/postgres".to_owned()),
        ("BANK_DATABASE_URL", format!("{}_no_such_database", test_database_url())),
    ];
    for (variable, url) in cases {
        let output = bank_server(dir.path()).env(variable, &url).arg("migrate").output().expect("run");
        let stderr = assert_clean_failure(&output, variable);
        assert!(!stderr.contains("s3cret-pw"), "the password leaked: {stderr}");
    }
    // A good writer with a bad reader names the reader's variable.
    let output = bank_server(dir.path())
        .env("BANK_DATABASE_URL", test_database_url())
        .env("BANK_DATABASE_READER_URL", "postgres://bank:s3cret-pw@127.0.0.1:1/bank")
        .arg("migrate")
        .output()
        .expect("run");
    let stderr = assert_clean_failure(&output, "BANK_DATABASE_READER_URL");
    assert!(!stderr.contains("s3cret-pw"), "the password leaked: {stderr}");
}

#[test]
fn a_malformed_database_url_is_refused_with_exit_code_2_and_no_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bank_server(dir.path())
        .env("BANK_DATABASE_URL", "mysql://root:s3cret-pw@db/bank")
        .arg("migrate")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("BANK_DATABASE_URL") && !stderr.contains("s3cret-pw"), "{stderr}");
}
