//! In-memory implementations of the ports: fast, correct under concurrency, and lost on exit.
//!
//! They back unit tests, simulations and benchmarks, and are the reference every other adapter's
//! conformance run is compared against.

mod ledger;

pub use ledger::MemoryLedger;
