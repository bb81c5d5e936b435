//! In-memory implementations of the ports: fast, correct under concurrency, and lost on exit.
//!
//! They back unit tests, simulations and benchmarks, and are the reference every other adapter's
//! conformance run is compared against.

pub mod approvals;
pub mod audit;
pub mod blob;
pub mod bus;
pub mod idempotency;
mod ledger;
pub mod queue;
pub mod transfers;
pub mod users;
pub mod view_cache;

pub use ledger::MemoryLedger;
