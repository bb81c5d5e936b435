//! The reader pool on a real streaming replica (`scripts/services.sh` starts the pair): a view
//! that may lag reads the replica once it has replayed the writer's position, and the writer when
//! the replica is behind past the bound; the replica's lag is measured.

use std::time::{Duration, Instant};

use bank_aws::postgres::testing::{test_db_at, test_pair};
use bank_aws::postgres::{PgConfig, PgDb, READER_WAIT};

/// The pair's primary as writer and its standby as reader, both in a fresh schema.
async fn replicated() -> Option<(PgDb, PgDb)> {
    let (primary, standby) = test_pair()?;
    let writer_only = test_db_at(&primary, 2).await?;
    let schema: String =
        sqlx::query_scalar("SELECT current_schema()::text").fetch_one(writer_only.writer()).await.expect("schema");
    let config = PgConfig {
        reader_url: Some(standby.clone()),
        schema: Some(schema.clone()),
        max_connections: 2,
        ..PgConfig::new(primary)
    };
    let db = PgDb::connect(&config).await.expect("connect writer and reader");
    // A session on the standby alone, to pause and resume its replay.
    let standby_only = PgDb::connect(&PgConfig { schema: Some(schema), max_connections: 1, ..PgConfig::new(standby) })
        .await
        .expect("connect the standby");
    Some((db, standby_only))
}

async fn write(db: &PgDb, value: &str) {
    sqlx::query("INSERT INTO bank_meta (key, value) VALUES ($1, $1)")
        .bind(value)
        .execute(db.writer())
        .await
        .expect("write");
}

async fn read(pool: &sqlx::PgPool, value: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM bank_meta WHERE key = $1)")
        .bind(value)
        .fetch_one(pool)
        .await
        .expect("read")
}

/// One test, in order: pausing the standby's replay would disturb any other test using it.
#[tokio::test(flavor = "multi_thread")]
async fn views_read_the_replica_only_when_it_has_the_callers_writes_and_its_lag_is_measured() {
    let Some((db, standby)) = replicated().await else { return };
    let reader = db.reader().clone();

    // Caught up: the fresh read goes to the replica, and sees the write made just before.
    write(&db, "first").await;
    let pool = db.fresh_reader().await.expect("fresh reader");
    assert!(read(pool, "first").await, "a fresh read missed a write that returned before it");
    assert_eq!(db.fresh_reads().0, 1, "caught up: the reader answered");
    assert_eq!(pool.connect_options().get_port(), reader.connect_options().get_port(), "the reader's pool");

    // Replay paused: the replica cannot have the next write; the fresh read waits at most
    // READER_WAIT, then reads the writer, and still sees it.
    sqlx::query("SELECT pg_wal_replay_pause()").execute(standby.writer()).await.expect("pause replay");
    write(&db, "second").await;
    let started = Instant::now();
    let pool = db.fresh_reader().await.expect("fresh reader");
    assert!(started.elapsed() >= READER_WAIT, "gave up before the bound");
    assert!(read(pool, "second").await, "a fresh read missed a write that returned before it");
    assert_eq!(db.fresh_reads().1, 1, "behind: the writer answered");
    assert!(!read(&reader, "second").await, "the paused replica has it already?");
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&db, "third").await;
    let lag = db.replica_lag().await.expect("lag measured");
    assert!(lag > Duration::ZERO, "a paused replica reports no lag");

    // Replay resumed: the lag goes back to zero and reads return to the replica.
    sqlx::query("SELECT pg_wal_replay_resume()").execute(standby.writer()).await.expect("resume replay");
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.replica_lag().await != Some(Duration::ZERO) {
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pool = db.fresh_reader().await.expect("fresh reader");
    assert!(read(pool, "third").await);
    assert_eq!(db.fresh_reads(), (2, 1));
}
