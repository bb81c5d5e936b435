//! [`WriterHandle`]: the way to the one thread that writes the database.
//!
//! SQLite has a single writer, so this crate has a single writing thread per [`LocalDb`] (the
//! ledger's group-commit writer, see [`crate::ledger`]). Every store that writes sends its work
//! there, so nothing contends for the write lock and every write joins the same group commit:
//!
//! - the ledger sends its own commands (it keeps an account cache inside the thread);
//! - every other store sends a **job** with [`WriterHandle::run`]: a closure given the writer's
//!   connection. The thread runs it inside the open `BEGIN IMMEDIATE` transaction, in its
//!   own `SAVEPOINT` (an `Err` rolls back exactly what the job wrote, and nothing else of the
//!   batch), and answers only after the batch's COMMIT. If the COMMIT fails, the job's caller gets
//!   a retryable [`Error::Storage`] and nothing it wrote is kept.
//!
//! A job reads and writes in one step with no other writer in between, so a read-decide-write
//! job is atomic (e.g. exactly one of many concurrent idempotency `begin`s starts). Rules for
//! jobs: do not end or open transactions (`COMMIT`, `ROLLBACK`, `BEGIN`), do not write the
//! ledger's tables (the ledger's cache would no longer match them), and keep them short: every
//! other writer waits.
//!
//! [`WriterHandle::for_db`] starts the thread on first use and hands out the running one after
//! that, so the ledger and the other stores of one database share it. The thread stops once every
//! handle (and every store holding one) is dropped and it has answered what was queued.
//!
//! The thread runs SQLite synchronously (prepared statements, no hand-off per statement); async
//! callers wait on a oneshot answer, so no Tokio worker ever blocks on a write or an fsync.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bank_core::clock::Clock;
use bank_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::db::LocalDb;
use crate::ledger::command::{Command, Counters, Job, JobOutput};
use crate::ledger::writer::Writer;

/// Commands that may wait for the writer before senders wait for room (back-pressure).
pub const WRITE_QUEUE_CAPACITY: usize = 4096;

/// What the writer has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions (batches) run.
    pub batches: u64,
    /// Commands run (a `post_batch` or a job counts once).
    pub commands: u64,
}

/// The running writer of one [`LocalDb`], as [`LocalDb`] remembers it without keeping it alive.
#[derive(Debug, Default)]
pub(crate) struct WriterSlot {
    running: Option<Running>,
}

/// A started writer: a weak sender (so the slot does not keep the task alive), its clock and
/// counters.
#[derive(Debug)]
struct Running {
    commands: mpsc::WeakSender<Command>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

/// A handle to the database's single writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    commands: mpsc::Sender<Command>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

impl WriterHandle {
    /// The writer of `db`: the running one if any handle to it is alive, else a new thread reading
    /// time from `clock`. One database has one clock: a running writer keeps the clock it was
    /// started with (a different `clock` is ignored, with a warning).
    pub fn for_db(db: &LocalDb, clock: Arc<dyn Clock>) -> WriterHandle {
        let mut slot = db.writer_slot().lock();
        if let Some(running) = &slot.running
            && let Some(commands) = running.commands.upgrade()
        {
            if !Arc::ptr_eq(&running.clock, &clock) {
                tracing::warn!("a second clock for one database is ignored: the running writer keeps its own");
            }
            return WriterHandle {
                commands,
                clock: Arc::clone(&running.clock),
                counters: Arc::clone(&running.counters),
            };
        }
        let (commands, receiver) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(db.clone(), Arc::clone(&clock), Arc::clone(&counters));
        let spawned = std::thread::Builder::new().name("bank-local-writer".into()).spawn(move || writer.run(receiver));
        if let Err(e) = spawned {
            // The receiver went with the closure: every call answers "writer gone".
            tracing::error!(error = %e, "cannot start the database writer thread");
        }
        slot.running = Some(Running {
            commands: commands.downgrade(),
            clock: Arc::clone(&clock),
            counters: Arc::clone(&counters),
        });
        WriterHandle { commands, clock, counters }
    }

    /// The clock the writer reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Batches and commands the writer has run.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            commands: self.counters.commands.load(Ordering::Relaxed),
        }
    }

    /// Runs `job` in the writer, in its own savepoint of the current batch, and returns its
    /// result once the batch has committed (see the module docs). An `Err` from the job rolls
    /// back what it wrote and is returned as is.
    ///
    /// ```no_run
    /// # async fn example(db: &bank_local::db::LocalDb, clock: std::sync::Arc<dyn bank_core::clock::Clock>)
    /// # -> bank_core::Result<()> {
    /// use bank_local::writer::WriterHandle;
    ///
    /// let writer = WriterHandle::for_db(db, clock);
    /// let deleted: usize = writer
    ///     .run(|conn| {
    ///         conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= 0", [])
    ///             .map_err(|e| bank_core::Error::storage(e, true))
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let job = Job::new(move |conn| job(conn).map(|value| Box::new(value) as JobOutput));
        let output = self.call(|tx| Command::Job(job, tx)).await??;
        output.downcast::<T>().map(|value| *value).map_err(|_| Error::Storage {
            message: "a writer job answered with the wrong type".into(),
            retryable: false,
        })
    }

    /// Sends a command to the writer and waits for its answer.
    pub(crate) async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(command(tx)).await.map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())
    }
}

/// The writer thread is gone (it could not start or open the database, or it panicked).
pub(crate) fn writer_gone() -> Error {
    Error::Storage { message: "the database writer thread has stopped".into(), retryable: false }
}
