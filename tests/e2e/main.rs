//! The cross-crate tests: the real server (`bank_server::app::App`) on a random loopback port,
//! driven through `bank-client` and raw HTTP — one binary, one module per suite.

mod aws;
mod common;
mod flow;
mod operators;
mod postgres;
mod wire_rules;
