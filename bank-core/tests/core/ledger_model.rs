//! The ledger's state-machine model check (`bank_core::testkit::ledger_model`) against
//! [`MemoryLedger`](bank_core::memory::MemoryLedger), and the minimal cases of the bugs it found.
//!
//! 256 cases by default (`PROPTEST_CASES` overrides), so the coverage check runs too.

use bank_core::testkit::ledger::MemoryHarness;
use bank_core::testkit::ledger_model::run_ledger_model;

/// Cases per run: a memory case takes milliseconds, and from 256 the run also checks that the
/// generator reaches every interesting outcome.
const CASES: u32 = 256;

#[test]
fn ledger_behaves_like_the_model() {
    run_ledger_model(&MemoryHarness, CASES);
}

bank_core::ledger_model_regression_tests!(MemoryHarness);
