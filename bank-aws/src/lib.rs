//! `bank-aws`: the production adapters of `bank-core`'s ports.
//!
//! - [`postgres`]: the ledger, transfers with their outbox, users and refresh tokens on PostgreSQL
//!   15 (what Aurora PostgreSQL speaks), through sqlx: a writer pool, a reader pool that may lag,
//!   embedded migrations, group commit.

pub mod postgres;
