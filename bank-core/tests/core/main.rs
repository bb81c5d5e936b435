//! bank-core's integration tests, one binary (one link on 2 cores): conformance suites of the
//! in-memory adapters, the ledger model, the pipeline scenarios, deposits under failing calls and
//! the fault simulations.

mod cached_ledger;
mod deposits;
mod ledger_model;
mod memory_blob;
mod memory_conformance;
mod memory_idempotency;
mod memory_operations;
mod memory_queue;
mod memory_transfers;
mod memory_users;
mod notifications;
mod rail;
mod rate_limit;
mod simulation;
mod statements;
mod transfers;
