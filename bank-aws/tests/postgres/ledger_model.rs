//! The ledger's state-machine model check (`bank_core::testkit::ledger_model`) against
//! [`PgLedger`](bank_aws::postgres::ledger::PgLedger), one fresh schema per case, and the minimal
//! cases of the bugs it found.
//!
//! [`CASES`] by default (`PROPTEST_CASES` overrides; `PROPTEST_CASES=1024` searches further).

use bank_core::testkit::ledger_model::run_ledger_model;

use crate::harness::Harness;

/// Cases per run: half the SQLite ledger's 128. Each case creates and migrates a schema (~0.1 s),
/// commits each of its writes (dozens, one WAL flush each) and reads every balance back after
/// every step (~30 queries a step, each a round trip): measured in debug on a 2-core machine
/// shared with other builds, ~0.55 s a case, so 64 cases take ~35 s and 128 over a minute.
/// The check that every rare outcome occurred needs 256 cases, so it runs only with
/// `PROPTEST_CASES` of 256 or more (done before each change to the ledger's batch logic).
const CASES: u32 = 64;

#[test]
fn pg_ledger_behaves_like_the_model() {
    // Each case runs its store on a runtime of its own; this one only decides whether to skip.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Some(harness) = runtime.block_on(Harness::start()) else { return };
    runtime.block_on(harness.discard_first());
    drop(runtime);
    run_ledger_model(&harness, CASES);
}

bank_core::ledger_model_regression_tests!(match Harness::start().await {
    Some(harness) => harness,
    None => return,
});
