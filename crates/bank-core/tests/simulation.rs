//! Deterministic fault simulation of the transfers pipeline over in-memory ports.
//!
//! `SIM_SEEDS=n` runs seeds 0..n (default 2,000); `SIM_SEED=k` replays one seed.

use bank_core::testkit::simulation::{DEFAULT_SEEDS, MemorySimHarness, run_seeds};

#[tokio::test]
async fn pipeline_invariants_hold_under_random_faults() {
    run_seeds(&MemorySimHarness, DEFAULT_SEEDS).await;
}
