//! Conformance kit: generic suites every port implementation runs from its own tests.
//!
//! An adapter crate implements a small harness trait (how to build a fresh instance of its port)
//! and invokes the suite's macro, which expands to one `#[tokio::test]` per case, so a failure
//! names the rule that broke. The in-memory adapters run the same suites in `bank-core`'s tests.

/// Expands to one multi-threaded `#[tokio::test]` per case of suite `$module`, each calling
/// `$crate::testkit::$module::$case(&$harness)`. The suites' own macros
/// (`ledger_conformance_tests!`, …) list their cases through it.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_cases {
    ($module:ident, $harness:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::testkit::$module::$case(&$harness).await;
            }
        )+
    };
}

pub mod approvals;
pub mod audit;
pub mod blob;
pub mod deposit_simulation;
pub mod errors;
pub mod idempotency;
pub mod ledger;
pub mod ledger_model;
pub mod lossy;
pub mod notifications;
pub mod outbox;
pub mod queue;
pub mod rate_limit;
pub mod simulation;
pub mod statements;
pub mod users;
pub mod view_cache;

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
