//! Conformance kit: generic suites every port implementation runs from its own tests.

pub mod ledger;
