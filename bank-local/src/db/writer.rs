//! [`WriterHandle`]: the way to the one thread that writes the database, and that thread's batch
//! loop (group commit).
//!
//! SQLite has a single writer, so this crate has a single writing thread per [`LocalDb`]. Every
//! store that writes sends its work there as a **job**, so nothing contends for the write lock
//! and every write joins the same group commit. The thread takes every job waiting (up to
//! [`BATCH_JOBS_MAX`]), runs them in one `BEGIN IMMEDIATE` transaction — each in its own
//! `SAVEPOINT`, so a job's `Err` rolls back exactly what it wrote and nothing else of the batch
//! (a job that panics fails alone the same way) —, commits **once**, and only then answers them
//! all. If the COMMIT fails, every job of the batch gets a retryable [`Error::Storage`] and
//! nothing any of them wrote is kept. Under load one fsync thus serves hundreds of writes.
//!
//! - [`WriterHandle::run`]: a closure given the writer's connection (most stores);
//! - [`WriterHandle::run_with`]: the same, plus a [`WriterState`] the store keeps inside the
//!   thread across jobs (the ledger's cache of account states, so planning a posting reads no
//!   row). The thread tells each state when a job failed and when a batch ended, so a state that
//!   mirrors the database can stay equal to it.
//!
//! A job reads and writes in one step with no other writer in between, so a read-decide-write
//! job is atomic (e.g. exactly one of many concurrent idempotency `begin`s starts). Rules for
//! jobs: do not end or open transactions (`COMMIT`, `ROLLBACK`, `BEGIN`), do not write another
//! store's tables behind its state's back (the ledger's tables belong to the ledger's jobs), and
//! keep them short: every other writer waits.
//!
//! [`WriterHandle::for_db`] starts the thread on first use and hands out the running one after
//! that, so every store of one database shares it. The thread stops once every handle (and every
//! store holding one) is dropped and it has answered what was queued.
//!
//! The thread runs SQLite synchronously (prepared statements, no hand-off per statement); async
//! callers wait on a oneshot answer, so no Tokio worker ever blocks on a write or an fsync.
//! Answers are sent from a thread of their own (see `Answers`).

use std::any::{Any, TypeId};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bank_core::clock::Clock;
use bank_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::LocalDb;
use super::checkpoint::Checkpointer;
use super::rows::db_err;

/// Jobs that may wait for the writer before senders wait for room (back-pressure).
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Most jobs one transaction commits together.
pub const BATCH_JOBS_MAX: usize = 256;

/// What the writer has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions (batches) run.
    pub batches: u64,
    /// Jobs run (a ledger `post_batch` counts once).
    pub commands: u64,
}

/// Counters of the writer's work (for tests, metrics and the group-commit figure).
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    commands: AtomicU64,
}

/// State a store keeps inside the writer thread, beside the connection, across jobs.
///
/// Built in the thread by the first job that asks for it ([`WriterHandle::run_with`]); told when
/// a job fails and when a batch ends, so a state that mirrors rows (the ledger's account cache)
/// can forget what a rollback undid.
pub(crate) trait WriterState: Send + 'static {
    /// The state of a writer over `db`, reading time from `clock`.
    fn start(db: &LocalDb, clock: Arc<dyn Clock>) -> Self
    where
        Self: Sized;

    /// A job is about to run.
    fn job_started(&mut self) {}

    /// The job that just ran failed and was rolled back to its savepoint.
    fn job_failed(&mut self) {}

    /// The batch committed (`true`) or was rolled back whole (`false`). Runs before any job of
    /// the batch is answered, so what the state publishes here is seen by every answered caller.
    fn batch_ended(&mut self, _committed: bool) {}
}

/// A [`WriterState`] as the thread keeps it: behind its type id.
trait AnyState: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn job_started(&mut self);
    fn job_failed(&mut self);
    fn batch_ended(&mut self, committed: bool);
}

impl<S: WriterState> AnyState for S {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
    fn job_started(&mut self) {
        WriterState::job_started(self);
    }
    fn job_failed(&mut self) {
        WriterState::job_failed(self);
    }
    fn batch_ended(&mut self, committed: bool) {
        WriterState::batch_ended(self, committed);
    }
}

/// What a job sees: the writer's connection (inside the job's savepoint) and the stores' states.
pub(crate) struct JobContext<'a> {
    conn: &'a Connection,
    states: &'a mut Vec<(TypeId, Box<dyn AnyState>)>,
    db: &'a LocalDb,
    clock: &'a Arc<dyn Clock>,
}

impl JobContext<'_> {
    /// The connection and the state `S` (started on first use).
    fn parts<S: WriterState>(&mut self) -> Result<(&Connection, &mut S)> {
        let id = TypeId::of::<S>();
        let index = match self.states.iter().position(|(t, _)| *t == id) {
            Some(index) => index,
            None => {
                self.states.push((id, Box::new(S::start(self.db, Arc::clone(self.clock)))));
                self.states.len() - 1
            }
        };
        let state = self.states[index].1.as_any().downcast_mut::<S>().ok_or_else(|| Error::Storage {
            message: "a writer state is stored under another type".into(),
            retryable: false,
        })?;
        Ok((self.conn, state))
    }
}

/// What a job returns: any value, typed again by [`WriterHandle::run_with`].
type JobOutput = Box<dyn Any + Send>;
type JobFn = Box<dyn FnOnce(&mut JobContext<'_>) -> Result<JobOutput> + Send>;
type Reply = oneshot::Sender<Result<JobOutput>>;

/// A job waiting for the writer, with where its answer goes.
struct Queued {
    job: JobFn,
    reply: Reply,
}

/// The running writer of one [`LocalDb`], as [`LocalDb`] remembers it without keeping it alive.
#[derive(Debug, Default)]
pub(crate) struct WriterSlot {
    running: Option<Running>,
}

/// A started writer: a weak sender (so the slot does not keep the thread alive), its clock and
/// counters.
#[derive(Debug)]
struct Running {
    jobs: mpsc::WeakSender<Queued>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// A handle to the database's single writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    jobs: mpsc::Sender<Queued>,
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
            && let Some(jobs) = running.jobs.upgrade()
        {
            if !Arc::ptr_eq(&running.clock, &clock) {
                tracing::warn!("a second clock for one database is ignored: the running writer keeps its own");
            }
            return WriterHandle { jobs, clock: Arc::clone(&running.clock), counters: Arc::clone(&running.counters) };
        }
        let (jobs, receiver) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            db: db.clone(),
            clock: Arc::clone(&clock),
            counters: Arc::clone(&counters),
            states: Vec::new(),
            answers: Answers::start(),
        };
        let spawned = std::thread::Builder::new().name("bank-local-writer".into()).spawn(move || writer.run(receiver));
        if let Err(e) = spawned {
            // The receiver went with the closure: every call answers "writer gone".
            tracing::error!(error = %e, "cannot start the database writer thread");
        }
        slot.running =
            Some(Running { jobs: jobs.downgrade(), clock: Arc::clone(&clock), counters: Arc::clone(&counters) });
        WriterHandle { jobs, clock, counters }
    }

    /// The clock the writer reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Batches and jobs the writer has run.
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
    /// use bank_local::db::writer::WriterHandle;
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
        self.submit(Box::new(move |ctx: &mut JobContext<'_>| job(ctx.conn).map(|value| Box::new(value) as JobOutput)))
            .await
    }

    /// Runs `job` like [`WriterHandle::run`], giving it the state `S` this database's writer
    /// keeps for the calling store (started on first use).
    pub(crate) async fn run_with<S, T, F>(&self, job: F) -> Result<T>
    where
        S: WriterState,
        T: Send + 'static,
        F: FnOnce(&Connection, &mut S) -> Result<T> + Send + 'static,
    {
        self.submit(Box::new(move |ctx: &mut JobContext<'_>| {
            let (conn, state) = ctx.parts::<S>()?;
            job(conn, state).map(|value| Box::new(value) as JobOutput)
        }))
        .await
    }

    async fn submit<T: 'static>(&self, job: JobFn) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Queued { job, reply }).await.map_err(|_| writer_gone())?;
        let output = answer.await.map_err(|_| writer_gone())??;
        output.downcast::<T>().map(|value| *value).map_err(|_| Error::Storage {
            message: "a writer job answered with the wrong type".into(),
            retryable: false,
        })
    }
}

/// The writer thread is gone (it could not start or open the database, or it panicked).
pub(crate) fn writer_gone() -> Error {
    Error::Storage { message: "the database writer thread has stopped".into(), retryable: false }
}

fn batch_failed(message: &str) -> Error {
    Error::Storage { message: format!("the write batch was not committed: {message}"), retryable: true }
}

fn job_panicked() -> Error {
    Error::Storage { message: "a writer job panicked; its writes were rolled back".into(), retryable: false }
}

/// Runs a statement on `conn` (prepared once, cached) and returns the rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql).and_then(|mut statement| statement.execute(params)).map_err(db_err)
}

/// The writer thread's state.
struct Writer {
    db: LocalDb,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    /// The stores' states, by type (one or two: a linear search beats hashing).
    states: Vec<(TypeId, Box<dyn AnyState>)>,
    answers: Answers,
}

impl Writer {
    /// Serves jobs until every sender is gone. Runs on its own thread.
    fn run(mut self, mut rx: mpsc::Receiver<Queued>) {
        let conn = match self.db.connect() {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!(error = %e, path = %self.db.path().display(), "the writer cannot open the database");
                let message = format!("the writer cannot open the database: {e}");
                while let Some(queued) = rx.blocking_recv() {
                    drop(queued.reply.send(Err(batch_failed(&message))));
                }
                return;
            }
        };
        let checkpoints = Checkpointer::start(&self.db, &conn);
        let mut batch = Vec::with_capacity(BATCH_JOBS_MAX);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < BATCH_JOBS_MAX {
                match rx.try_recv() {
                    Ok(queued) => batch.push(queued),
                    Err(_) => break,
                }
            }
            self.run_batch(&conn, &mut batch);
            if let Some(checkpoints) = &checkpoints {
                checkpoints.restart_log(&conn);
            }
        }
        drop(checkpoints);
    }

    /// Runs `batch` in one `BEGIN IMMEDIATE` transaction, commits once, then answers everyone.
    fn run_batch(&mut self, conn: &Connection, batch: &mut Vec<Queued>) {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.commands.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE", []) {
            let message = e.to_string();
            return batch.drain(..).for_each(|q| drop(q.reply.send(Err(batch_failed(&message)))));
        }
        let mut done = Vec::with_capacity(batch.len());
        let mut broken: Option<String> = None;
        let mut jobs = batch.drain(..);
        for queued in jobs.by_ref() {
            let result = self.step(conn, queued.job, &mut broken);
            done.push((queued.reply, result));
            if broken.is_some() {
                break;
            }
        }
        let failure = match broken {
            Some(message) => Some(message),
            None => exec(conn, "COMMIT", []).err().map(|e| e.to_string()),
        };
        if let Some(message) = &failure {
            tracing::error!(error = %message, "write batch failed; rolled back");
            // The transaction may already be gone (a failed COMMIT can end it); either way
            // nothing of the batch is committed.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            jobs.for_each(|q| drop(q.reply.send(Err(batch_failed(message)))));
        }
        // States before answers: a caller that reads after its answer sees its own write.
        for (_, state) in &mut self.states {
            state.batch_ended(failure.is_none());
        }
        self.answers.send(done, failure);
    }

    /// Runs one job inside its own savepoint; on failure rolls back to it and tells the states.
    /// A failure to roll back breaks the whole batch (`broken`).
    fn step(&mut self, conn: &Connection, job: JobFn, broken: &mut Option<String>) -> Result<JobOutput> {
        for (_, state) in &mut self.states {
            state.job_started();
        }
        if let Err(e) = exec(conn, "SAVEPOINT job", []) {
            *broken = Some(e.to_string());
            return Err(e);
        }
        let mut ctx = JobContext { conn, states: &mut self.states, db: &self.db, clock: &self.clock };
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut ctx)));
        let result = run.unwrap_or_else(|_| Err(job_panicked()));
        let mut end = Ok(0);
        if result.is_err() {
            for (_, state) in &mut self.states {
                state.job_failed();
            }
            end = exec(conn, "ROLLBACK TO job", []);
        }
        match end.and_then(|_| exec(conn, "RELEASE job", [])) {
            Ok(_) => result,
            Err(e) => {
                *broken = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Answers finished batches from a thread of its own: waking hundreds of waiting tasks per batch
/// (a futex call each when their runtime threads sleep) would otherwise cost the writer, the one
/// thread every write waits for, about a tenth of its time. Falls back to answering in place if
/// that thread cannot start.
struct Answers {
    to_thread: Option<std::sync::mpsc::Sender<Finished>>,
}

/// A finished batch: each job's reply and result, and the batch's failure if it did not commit.
type Finished = (Vec<(Reply, Result<JobOutput>)>, Option<String>);

impl Answers {
    fn start() -> Answers {
        let (tx, rx) = std::sync::mpsc::channel::<Finished>();
        let spawned = std::thread::Builder::new().name("bank-local-answers".into()).spawn(move || {
            for (done, failure) in rx {
                answer(done, failure.as_deref());
            }
        });
        match spawned {
            Ok(_) => Answers { to_thread: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "no answer thread; the writer answers in place");
                Answers { to_thread: None }
            }
        }
    }

    fn send(&self, done: Vec<(Reply, Result<JobOutput>)>, failure: Option<String>) {
        let unsent = match &self.to_thread {
            Some(tx) => match tx.send((done, failure)) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(back)) => back,
            },
            None => (done, failure),
        };
        answer(unsent.0, unsent.1.as_deref());
    }
}

/// Sends each job its result, or (when the batch did not commit) a retryable failure. A caller
/// that stopped waiting is not an error: its effect, if committed, is found again by its key.
fn answer(done: Vec<(Reply, Result<JobOutput>)>, failure: Option<&str>) {
    for (reply, result) in done {
        let result = match failure {
            Some(message) => Err(batch_failed(message)),
            None => result,
        };
        drop(reply.send(result));
    }
}
