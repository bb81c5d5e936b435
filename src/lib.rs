//! Umbrella package: re-exports `bank-core`; it exists to hold the top-level examples, tests and benches.
pub use bank_core::*;
