//! The deterministic fault simulation of the transfers pipeline (`bank_core::testkit::simulation`)
//! over the durable SQLite stores: ledger, transfers, idempotency keys and queue all on one fresh
//! `LocalDb` per seed, in a temporary directory.
//!
//! `SIM_SEEDS=n` runs n seeds (default [`DEFAULT_SEEDS`]) from `SIM_FROM`; `SIM_SEED=k` replays one
//! seed. `scripts/test.sh` runs 2,000 seeds in release.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::queue::QueueConfig;
use bank_core::testkit::simulation::{SimHarness, SimStores, run_seeds};
use bank_local::idempotency::SqliteIdempotencyStore;
use bank_local::ledger::SqliteLedger;
use bank_local::queue::SqliteQueue;
use bank_local::transfers::SqliteTransferStore;

use crate::fresh::FreshDb;

/// Seeds the default run covers: every seed opens (and migrates) a fresh database and commits
/// each write with an fsync, so this is far fewer than the in-memory run's.
const DEFAULT_SEEDS: u64 = 100;

/// Builds each seed's stores on one fresh database; the previous seed's database is closed and
/// its directory removed when the next seed starts (the last one when the harness is dropped).
#[derive(Default)]
struct Harness {
    databases: FreshDb,
}

#[async_trait]
impl SimHarness for Harness {
    async fn stores(&self, clock: Arc<dyn Clock>, queue_config: QueueConfig) -> SimStores {
        let db = self.databases.next().await;
        // As the backend assembles them: an accepted transfer's key completed in its insert, a
        // settled transfer's delivery acknowledged in its outcome's write (the outbox is relayed,
        // not delivered directly, so the relay is tested too).
        let keys = Arc::new(SqliteIdempotencyStore::new(&db, clock.clone()));
        let queue = Arc::new(SqliteQueue::new(&db, clock.clone(), queue_config));
        let transfers = SqliteTransferStore::new(&db, clock.clone())
            .completing_keys_of(&keys)
            .and_then(|store| store.acking_deliveries_of(&queue))
            .expect("one database");
        SimStores {
            ledger: Arc::new(SqliteLedger::new(&db, clock)),
            transfers: Arc::new(transfers),
            idempotency: keys,
            queue,
        }
    }
}

#[tokio::test]
async fn pipeline_invariants_hold_under_random_faults_on_sqlite() {
    run_seeds(&Harness::default(), DEFAULT_SEEDS).await;
}
