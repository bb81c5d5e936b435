//! bank-aws's PostgreSQL tests, one binary: every store against its conformance suite, the ledger
//! model, the database's own money rules, migrations and refusals. Each case works in a fresh
//! schema of the test database (`bank_aws::postgres::testing`); without PostgreSQL each case prints
//! why and skips, and fails when `BANK_REQUIRE_SERVICES=1`.

mod approvals;
mod audit;
mod harness;
mod ledger;
mod ledger_database;
mod ledger_model;
mod notifications;
mod raw;
mod reader;
mod schema;
mod simulation;
mod transfers;
mod users;
