//! `bank-aws`: the production adapters of `bank-core`'s ports.
//!
//! - [`postgres`]: the ledger, transfers with their outbox, users and refresh tokens on PostgreSQL
//!   15 (what Aurora PostgreSQL speaks), through sqlx: a writer pool, a reader pool that may lag,
//!   embedded migrations, group commit.
//! - [`s3`]: the blob store (statements, sealed audit segments) on an S3 bucket with Object Lock
//!   in COMPLIANCE mode, through the AWS SDK; [`aws`]: the SDK configuration every AWS adapter
//!   shares (region, endpoint, credentials, HTTPS on rustls + ring).
//! - [`backend`]: all of them opened together as one bank's storage ([`backend::AwsBackend`]),
//!   with the resources' names, their creation and their start-up checks.
//! - [`dynamodb`]: idempotency records on a DynamoDB table (conditional writes, leases and
//!   takeovers, a sparse index of requests in flight, TTL as the backstop of purging).
//! - [`sqs`]: the transfer queue on an SQS FIFO queue grouped by source account, with a FIFO
//!   dead-letter queue behind a redrive policy.
//! - [`sns`]: the event bus: events published to an SNS FIFO topic, read back through SQS FIFO
//!   queues subscribed to it with raw message delivery, one per subscription name.
//! - [`redis`]: the shared account-view cache and the rate limits every API process shares, on
//!   Redis (ElastiCache), failing over to the database and failing open when Redis is down.

pub mod aws;
pub mod backend;
pub mod dynamodb;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod sns;
pub mod sqs;
