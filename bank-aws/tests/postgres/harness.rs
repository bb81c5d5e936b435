//! The ledger suites' harness: a fresh schema per store, or a skip when PostgreSQL is absent.

use std::sync::Arc;

use async_trait::async_trait;
use bank_aws::postgres::ledger::{LedgerConfig, PgLedger};
use bank_aws::postgres::testing::{test_database_url, test_db};
use bank_aws::postgres::{PgConfig, PgDb};
use bank_core::clock::Clock;
use bank_core::ports::LedgerStore;
use bank_core::testkit::ledger::LedgerHarness;
use parking_lot::Mutex;
use sqlx::Connection;

/// Builds each store on a schema of its own. The first uses the schema made when deciding
/// whether PostgreSQL is there ([`Harness::start`]); each later one drops its predecessor's schema
/// (the ledger model runs over a hundred stores one after another).
pub(crate) struct Harness {
    first: Mutex<Option<PgDb>>,
    previous: Mutex<Option<String>>,
    config: LedgerConfig,
}

impl Harness {
    /// `None` (after saying why) when PostgreSQL is absent and not required.
    pub(crate) async fn start() -> Option<Harness> {
        Harness::with_config(LedgerConfig::default()).await
    }

    /// [`Harness::start`], the stores batching as `config` says.
    pub(crate) async fn with_config(config: LedgerConfig) -> Option<Harness> {
        let db = test_db().await?;
        Some(Harness { first: Mutex::new(Some(db)), previous: Mutex::new(None), config })
    }

    /// Forgets the schema made by [`Harness::start`] (dropped with the next store's), for callers
    /// that build each store on a runtime of its own: its pool belongs to the starting runtime.
    pub(crate) async fn discard_first(&self) {
        let first = self.first.lock().take();
        if let Some(db) = first {
            *self.previous.lock() = Some(schema_of(&db).await);
        }
    }

    /// A fresh, migrated schema: the first one's, else a new one.
    pub(crate) async fn db(&self) -> PgDb {
        let first = self.first.lock().take();
        let db = match first {
            Some(db) => db,
            None => test_db().await.expect("PostgreSQL answered when the harness started"),
        };
        let schema = schema_of(&db).await;
        let previous = self.previous.lock().replace(schema);
        if let Some(previous) = previous {
            drop_schema(&previous).await;
        }
        db
    }
}

#[async_trait]
impl LedgerHarness for Harness {
    async fn ledger(&self, clock: Arc<dyn Clock>) -> Arc<dyn LedgerStore> {
        Arc::new(PgLedger::with_config(&self.db().await, clock, self.config))
    }
}

/// The schema a test database works in.
pub(crate) async fn schema_of(db: &PgDb) -> String {
    sqlx::query_scalar("SELECT current_schema()::text").fetch_one(db.writer()).await.expect("current schema")
}

/// Another connection to the same schema (a second server process, or the same one restarted).
pub(crate) async fn reconnect(db: &PgDb) -> PgDb {
    let config = PgConfig { schema: Some(schema_of(db).await), ..PgConfig::new(test_database_url()) };
    let again = PgDb::connect(&config).await.expect("reconnect");
    again.check_schema().await.expect("migrated");
    again
}

/// Drops a schema a finished store used (its pool belonged to a runtime that is gone).
async fn drop_schema(schema: &str) {
    let mut conn = sqlx::PgConnection::connect(&test_database_url()).await.expect("connect");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await.expect("drop schema");
}
