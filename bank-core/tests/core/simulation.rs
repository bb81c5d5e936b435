//! Deterministic fault simulation of the transfers pipeline over in-memory ports.
//!
//! `SIM_SEEDS=n` runs n seeds (default 2,000) from `SIM_FROM` (default 0); `SIM_SEED=k` replays one
//! seed exactly. `scripts/test.sh` runs 100,000 fixed seeds and 100,000 more from a seed derived
//! from the commit, in release.

use bank_core::testkit::deposit_simulation::{DEFAULT_DEPOSIT_SEEDS, run_deposit_seeds};
use bank_core::testkit::simulation::{DEFAULT_SEEDS, MemorySimHarness, run_seed, run_seeds};

#[tokio::test]
async fn pipeline_invariants_hold_under_random_faults() {
    run_seeds(&MemorySimHarness, DEFAULT_SEEDS).await;
}

/// A seed is a replay: the same seed gives the same run (same ids, same rail answers, same
/// faults), so a failure found in CI reproduces with `SIM_SEED`.
#[tokio::test]
async fn a_seed_replays_exactly() {
    for seed in [3, 90, 3112] {
        let first = run_seed(&MemorySimHarness, seed).await.expect("seed passes");
        let again = run_seed(&MemorySimHarness, seed).await.expect("seed passes");
        assert_eq!(first, again, "seed {seed}");
    }
}

/// Operators' deposits and approvals under dropped connections (`SIM_SEEDS`, `SIM_FROM` and
/// `SIM_SEED` as above; default 2,000 seeds).
#[tokio::test]
async fn deposit_invariants_hold_under_random_faults() {
    run_deposit_seeds(DEFAULT_DEPOSIT_SEEDS).await;
}
