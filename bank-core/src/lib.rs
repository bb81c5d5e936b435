//! # bank-core
//!
//! Every rule of the bank, with no storage, web framework or cloud SDK in sight.
//!
//! - [`money`]: currencies, amounts and checked arithmetic (never `f64`).
//! - [`ids`]: typed identifiers.
//! - [`account`]: accounts, their status, overdraft limits and balances.
//! - [`ledger`]: double-entry journal entries, holds, history and the posting rules.
//! - [`audit`]: the append-only audit log of operator actions and its port.
//! - [`statements`]: monthly statements (reconciled, deterministic PDFs, write-once storage).
//! - [`approvals`]: four eyes on large operator deposits (pending requests and their port).
//! - [`cache`]: the account-view cache port and [`cache::CachedLedger`], the ledger read through it.
//! - [`ratelimit`]: the rate-limit port (GCRA), in memory, and failing open.
//! - [`ports`]: the traits adapters implement ([`ports::LedgerStore`], [`ports::Clock`]).
//! - [`memory`]: in-memory adapters.
//! - `testkit` (feature `testkit`): conformance suites every adapter runs.
//!
//! Money rules are pure functions in [`ledger::rules`]; a storage adapter supplies only atomicity.

pub mod account;
pub mod accounts;
pub mod approvals;
pub mod audit;
pub mod blob;
pub mod cache;
pub mod clock;
pub mod deposits;
mod error;
pub mod events;
pub mod faults;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod memory;
pub mod money;
pub mod notifications;
pub mod page;
pub mod payments;
pub mod ports;
pub mod queue;
pub mod rail;
pub mod ratelimit;
pub mod statements;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transfer;
pub mod users;

pub use error::{Error, ErrorAction, Result};
