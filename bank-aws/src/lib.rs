//! `bank-aws`: the production adapters of `bank-core`'s ports.
//!
//! - [`postgres`]: the ledger, transfers with their outbox, users and refresh tokens on PostgreSQL
//!   15 (what Aurora PostgreSQL speaks), through sqlx: a writer pool, a reader pool that may lag,
//!   embedded migrations, group commit.
//! - [`s3`]: the blob store (statements, sealed audit segments) on an S3 bucket with Object Lock
//!   in COMPLIANCE mode, through the AWS SDK; [`aws`]: the SDK configuration every AWS adapter
//!   shares (region, endpoint, credentials, HTTPS on rustls + ring).
//! - [`dynamodb`]: idempotency records on a DynamoDB table (conditional writes, leases and
//!   takeovers, a sparse index of requests in flight, TTL as the backstop of purging).
//! - [`redis`]: the shared account-view cache and the rate limits every API process shares, on
//!   Redis (ElastiCache), failing over to the database and failing open when Redis is down.

pub mod aws;
pub mod dynamodb;
pub mod postgres;
pub mod redis;
pub mod s3;
