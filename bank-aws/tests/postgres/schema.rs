//! Migrations and the refusal of a database that is not this bank's or is newer than the binary.

use bank_aws::postgres::testing::test_db;
use bank_aws::postgres::{PgError, latest_version};

#[tokio::test]
async fn a_fresh_schema_migrates_once_and_then_checks_clean() {
    let Some(db) = test_db().await else { return };
    db.check_schema().await.expect("migrated by the harness");
    let again = db.migrate().await.expect("migrate again");
    assert_eq!((again.from, again.to), (latest_version(), latest_version()), "a second migrate does nothing");
}

#[tokio::test]
async fn a_database_holding_other_tables_is_refused_by_name() {
    let Some(db) = test_db().await else { return };
    // A schema of someone else's: tables, no migration history of ours.
    sqlx::query("DROP TABLE _sqlx_migrations").execute(db.writer()).await.expect("drop history");
    let err = db.migrate().await.expect_err("not this bank's");
    assert!(matches!(err, PgError::NotThisBank { .. }), "{err}");
    assert!(err.to_string().contains(db.name()), "names the database: {err}");
    let err = db.check_schema().await.expect_err("not this bank's");
    assert!(matches!(err, PgError::NotThisBank { .. }), "{err}");
}

#[tokio::test]
async fn a_schema_migrated_by_a_newer_binary_is_refused() {
    let Some(db) = test_db().await else { return };
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, 'from the future', true, '\\x00', 0)",
    )
    .bind(latest_version() + 1)
    .execute(db.writer())
    .await
    .expect("record a newer migration");
    for err in
        [db.migrate().await.expect_err("newer"), db.check_schema().await.map(|()| unreachable!()).expect_err("newer")]
    {
        assert!(matches!(err, PgError::Newer { .. }), "{err}");
    }
}

#[tokio::test]
async fn a_schema_behind_the_binary_asks_for_migrate() {
    let Some(db) = test_db().await else { return };
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest_version())
        .execute(db.writer())
        .await
        .expect("forget the last migration");
    if latest_version() == 1 {
        // Only the marker exists: forgetting it leaves a foreign-looking schema, covered above.
        return;
    }
    let err = db.check_schema().await.expect_err("behind");
    assert!(matches!(err, PgError::NotMigrated { .. }) && err.to_string().contains("bank-server migrate"), "{err}");
}

/// A statement's plan is kept for the connection's life, planned with the sizes the tables had
/// then: a lookup by key planned on a new, empty table must still go through the index (on a
/// large table a scan of the whole table is what the bank can never afford).
#[tokio::test]
async fn a_lookup_planned_on_an_empty_table_reads_through_its_index() {
    let Some(db) = test_db().await else { return };
    let ids: Vec<uuid::Uuid> = (0..10).map(|_| uuid::Uuid::now_v7()).collect();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT * FROM holds WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(db.writer())
        .await
        .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("holds_pkey") && !plan.contains("Seq Scan"), "{plan}");
}
