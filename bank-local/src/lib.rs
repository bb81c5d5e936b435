//! # bank-local
//!
//! The embedded default backend: every `bank-core` port implemented durably in one process,
//! with one data directory (`BANK_DATA_DIR`, default `./data`) and no cloud account.
//!
//! - [`backend`]: [`backend::LocalBackend`], every store opened on one data directory.
//! - [`db`]: opening the SQLite database (WAL), refusing a corrupt or foreign file, migrations.
//! - [`ledger`]: [`ledger::SqliteLedger`], the `LedgerStore` with group commit.
//! - [`blob`]: [`blob::FileBlobStore`], write-once files with retention and signed URLs.
//! - [`writer`]: [`writer::WriterHandle`], the database's one writer thread (group commit), shared
//!   by every store that writes.
//! - [`idempotency`]: [`idempotency::SqliteIdempotencyStore`], durable idempotency keys.
//! - [`transfers`]: [`transfers::SqliteTransferStore`], durable transfers and their outbox.
//! - [`queue`]: [`queue::SqliteQueue`], the durable transfer queue (SQS FIFO semantics).
//! - [`events`]: [`events::SqliteEventBus`], the durable event bus (named cursors that survive a
//!   restart);
//! - [`notification_log`]: [`notification_log::SqliteNotificationLog`], the durable notification
//!   log (at most one message per event, channel and recipient).
//! - [`space`]: [`space::DiskSpace`], the data directory's free space and the floor under which
//!   new writes are refused.
//! - [`users`]: [`users::SqliteUserStore`], users and refresh-token families.

pub mod approvals;
pub mod audit;
pub mod backend;
pub mod blob;
pub mod db;
pub mod events;
pub mod idempotency;
pub mod ledger;
pub mod notification_log;
pub mod queue;
pub mod space;
pub mod transfers;
pub mod users;
