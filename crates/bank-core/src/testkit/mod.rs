//! Conformance kit: generic suites every port implementation runs from its own tests.
//!
//! An adapter crate implements a small harness trait (how to build a fresh instance of its port)
//! and invokes the suite's macro, which expands to one `#[tokio::test]` per case, so a failure
//! names the rule that broke. The in-memory adapters run the same suites in `bank-core`'s tests.

pub mod idempotency;
pub mod ledger;
pub mod notifications;
pub mod outbox;
pub mod queue;
pub mod simulation;

/// Shorthand for building test values: panics on bad input, which in a test is a bug in the test.
pub mod fixtures {
    use crate::money::Money;

    /// `Money` in USD from a literal such as `"12.34"`.
    pub fn usd(amount: &str) -> Money {
        Money::parse(amount, "USD").expect("test amounts are valid")
    }

    /// `Money` in EUR.
    pub fn eur(amount: &str) -> Money {
        Money::parse(amount, "EUR").expect("test amounts are valid")
    }
}
