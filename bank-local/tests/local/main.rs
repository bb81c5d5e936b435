//! bank-local's integration tests, one binary: every store against its conformance suite, the
//! ledger model, the SQLite fault simulation, start-up refusals, the WAL's restart and the kill -9 test.

mod audit;
mod blob;
mod crash;
mod events;
mod fresh;
mod idempotency;
mod ledger;
mod ledger_model;
mod operations;
mod queue;
mod simulation;
mod startup;
mod statements;
mod transfers;
mod users;
mod wal;
