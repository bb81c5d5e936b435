//! What callers send the writer thread, and how each gets its answer after the batch commits.

use std::any::Any;
use std::fmt;
use std::sync::atomic::AtomicU64;

use bank_core::account::{Account, AccountStatus, NewAccount};
use bank_core::ids::{AccountId, HoldId};
use bank_core::ledger::{Hold, NewEntry, NewHold, PostHold, PostedEntry, Reversal};
use bank_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// What a [`Job`] returns: any value, typed again by [`crate::writer::WriterHandle::run`].
pub(crate) type JobOutput = Box<dyn Any + Send>;

type JobFn = Box<dyn FnOnce(&Connection) -> Result<JobOutput> + Send>;

/// Work of another store, run by the writer on its connection inside the command's savepoint.
pub(crate) struct Job(JobFn);

impl Job {
    pub(crate) fn new(job: impl FnOnce(&Connection) -> Result<JobOutput> + Send + 'static) -> Self {
        Job(Box::new(job))
    }

    pub(super) fn run(self, conn: &Connection) -> Result<JobOutput> {
        (self.0)(conn)
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Job")
    }
}

/// A change to the database, with where to send its result.
#[derive(Debug)]
pub(crate) enum Command {
    Open(NewAccount, Reply<Account>),
    SetStatus(AccountId, AccountStatus, Reply<Account>),
    Post(Vec<NewEntry>, oneshot::Sender<Vec<Result<PostedEntry>>>),
    Reverse(Reversal, Reply<PostedEntry>),
    Hold(NewHold, Reply<Hold>),
    PostHold(PostHold, Reply<PostedEntry>),
    VoidHold(HoldId, Reply<Hold>),
    ExpireHolds(Reply<u64>),
    /// Another store's work (see [`crate::writer`]).
    Job(Job, Reply<JobOutput>),
}

/// A command's result, held until its batch has committed.
pub(super) enum Pending {
    Account(Reply<Account>, Result<Account>),
    Entry(Reply<PostedEntry>, Result<PostedEntry>),
    Entries(oneshot::Sender<Vec<Result<PostedEntry>>>, Vec<Result<PostedEntry>>),
    Hold(Reply<Hold>, Result<Hold>),
    Count(Reply<u64>, Result<u64>),
    Job(Reply<JobOutput>, Result<JobOutput>),
}

pub(super) fn batch_failed(message: &str) -> Error {
    Error::Storage { message: format!("the ledger batch was not committed: {message}"), retryable: true }
}

fn outcome<T>(result: Result<T>, failure: Option<&str>) -> Result<T> {
    match failure {
        Some(message) => Err(batch_failed(message)),
        None => result,
    }
}

impl Pending {
    /// Sends the result, or (when the batch did not commit) a retryable failure. A caller that
    /// stopped waiting is not an error: its effect, if committed, is found again by its key.
    pub(super) fn answer(self, failure: Option<&str>) {
        match self {
            Pending::Account(tx, r) => drop(tx.send(outcome(r, failure))),
            Pending::Entry(tx, r) => drop(tx.send(outcome(r, failure))),
            Pending::Hold(tx, r) => drop(tx.send(outcome(r, failure))),
            Pending::Count(tx, r) => drop(tx.send(outcome(r, failure))),
            Pending::Job(tx, r) => drop(tx.send(outcome(r, failure))),
            Pending::Entries(tx, rs) => drop(tx.send(rs.into_iter().map(|r| outcome(r, failure)).collect())),
        }
    }
}

impl Command {
    /// Answers a command that never ran (its batch could not start or was abandoned).
    pub(super) fn fail(self, message: &str) {
        fn failed<T>(message: &str) -> Result<T> {
            Err(batch_failed(message))
        }
        match self {
            Command::Open(_, tx) | Command::SetStatus(_, _, tx) => drop(tx.send(failed(message))),
            Command::Post(entries, tx) => drop(tx.send(entries.iter().map(|_| failed(message)).collect())),
            Command::Reverse(_, tx) | Command::PostHold(_, tx) => drop(tx.send(failed(message))),
            Command::Hold(_, tx) | Command::VoidHold(_, tx) => drop(tx.send(failed(message))),
            Command::ExpireHolds(tx) => drop(tx.send(failed(message))),
            Command::Job(_, tx) => drop(tx.send(failed(message))),
        }
    }
}

/// Counters of the writer's work (for tests, metrics and the group-commit figure).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) commands: AtomicU64,
}
