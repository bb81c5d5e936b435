//! LedgerStore conformance suite.
