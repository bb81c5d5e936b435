//! The in-memory adapters run the same conformance suites as every other adapter.

use bank_core::testkit::ledger::MemoryHarness;

bank_core::ledger_conformance_tests!(MemoryHarness);
