//! The fault simulation of the transfers pipeline (`bank_core::testkit::simulation`) with the
//! ledger and the transfers (with their outbox and its claims) on PostgreSQL, as the server
//! assembles them with `BANK_DATABASE_URL`: every store write goes through the group-commit
//! batchers, every relay run through the claim statement. The idempotency keys and the queue are
//! the in-memory ones (in production they are DynamoDB and SQS, whose adapters have their own
//! tests; the SQLite run covers durable ones).
//!
//! Each seed works in a fresh schema (the previous seed's is dropped). While the seed's chaos
//! lasts, a task terminates the schema's connections (`pg_terminate_backend`, found by their
//! `application_name`) every few milliseconds: batches fail mid-statement or mid-commit (a commit
//! whose answer is lost may have landed), pools reconnect, and every caller of a failed batch sees
//! a retryable error. The stores' batcher tasks and the terminations run beside the simulation,
//! so a seed's interleaving is not replayed exactly as the in-memory run's is; what it checks is
//! the same list of invariants, on the real statements.
//!
//! `SIM_SEEDS=n` runs n seeds (default [`DEFAULT_SEEDS`]) from `SIM_FROM`; `SIM_SEED=k` runs one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bank_aws::postgres::PgDb;
use bank_aws::postgres::ledger::PgLedger;
use bank_aws::postgres::testing::test_database_url;
use bank_aws::postgres::transfers::PgTransferStore;
use bank_core::clock::Clock;
use bank_core::memory::idempotency::MemoryIdempotencyStore;
use bank_core::memory::queue::MemoryQueue;
use bank_core::queue::QueueConfig;
use bank_core::testkit::simulation::{SimHarness, SimStores, run_seeds};
use parking_lot::Mutex;
use sqlx::{Connection, PgPool};
use tokio::task::JoinHandle;

use crate::harness::{Harness, schema_of};

/// Seeds the default run covers (each migrates a schema of its own).
const DEFAULT_SEEDS: u64 = 40;

/// Milliseconds between two terminations: at most this, at least a fifth of it.
const KILL_GAP_MS_MAX: u64 = 100;

struct PgSim {
    harness: Harness,
    /// The current seed's database (its schema) and the schema's name.
    db: Mutex<Option<(PgDb, String)>>,
    /// The terminating task while the chaos lasts, and its stop flag.
    killer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    /// Connections terminated over the run.
    terminated: Arc<AtomicU64>,
}

impl PgSim {
    /// Stops the terminating task and waits for it: no termination is sent after this returns
    /// (one in flight is answered before the task looks at the flag again).
    async fn stop_killing(&self) {
        let killer = self.killer.lock().take();
        if let Some((stop, task)) = killer {
            stop.store(true, Ordering::Relaxed);
            task.await.expect("the killer task");
        }
    }
}

#[async_trait]
impl SimHarness for PgSim {
    async fn stores(&self, clock: Arc<dyn Clock>, queue_config: QueueConfig) -> SimStores {
        // A seed that failed during its chaos left the task running.
        self.stop_killing().await;
        let db = self.harness.db().await;
        *self.db.lock() = Some((db.clone(), schema_of(&db).await));
        SimStores {
            ledger: Arc::new(PgLedger::new(&db, clock.clone())),
            transfers: Arc::new(PgTransferStore::new(&db, clock.clone())),
            idempotency: Arc::new(MemoryIdempotencyStore::new(clock.clone())),
            queue: Arc::new(MemoryQueue::new(clock, queue_config)),
        }
    }

    async fn chaos(&self, on: bool) {
        self.stop_killing().await;
        let Some((db, schema)) = self.db.lock().clone() else { return };
        if !on {
            drop_dead_connections(db.writer()).await;
            return;
        }
        let terminated = Arc::clone(&self.terminated);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&test_database_url()).await.expect("connect the killer");
            // The gaps vary with the schema's name (a fresh v7 uuid): any spread will do.
            let mut gap = schema.bytes().fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            loop {
                gap = gap.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let ms = KILL_GAP_MS_MAX / 5 + (gap >> 33) % (KILL_GAP_MS_MAX - KILL_GAP_MS_MAX / 5 + 1);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let killed: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                )
                .bind(&schema)
                .fetch_all(&mut conn)
                .await
                .expect("terminate the stores' connections");
                terminated.fetch_add(killed.iter().filter(|k| **k).count() as u64, Ordering::Relaxed);
            }
        });
        *self.killer.lock() = Some((stop, task));
    }
}

/// Closes the pool's idle connections the chaos terminated. The stores never ping a connection
/// before using it (a dead one fails its batch retryably, and the caller's retry gets a fresh
/// one); the quiescence phase is fault-free, so the leftovers go first. Nothing else runs now:
/// the idle connections are all the pool has.
async fn drop_dead_connections(pool: &PgPool) {
    let mut idle = Vec::new();
    for _ in 0..pool.num_idle() {
        idle.push(pool.acquire().await.expect("a connection"));
    }
    for mut conn in idle {
        if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
            conn.close().await.ok();
        }
    }
}

#[tokio::test]
async fn pipeline_invariants_hold_under_random_faults_on_postgres() {
    let Some(harness) = Harness::start().await else { return };
    let sim =
        PgSim { harness, db: Mutex::new(None), killer: Mutex::new(None), terminated: Arc::new(AtomicU64::new(0)) };
    run_seeds(&sim, DEFAULT_SEEDS).await;
    sim.stop_killing().await;
    println!("simulation: {} connections terminated", sim.terminated.load(Ordering::Relaxed));
}
