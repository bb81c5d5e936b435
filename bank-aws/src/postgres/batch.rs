//! [`Batcher`]: group commit on PostgreSQL. Callers queue an operation and wait; a few committer
//! tasks each take what is waiting (up to a maximum), run it all in one transaction and commit
//! once, then answer every caller. One commit (one WAL flush) carries many operations, which is
//! what lifts a store past the ~4–5K commits/s a disk allows; nothing waits on purpose: a batch is
//! whatever queued while the previous commit was in flight.
//!
//! The same batcher groups *reads* (a job with [`BatchJob::TRANSACTION`] false): concurrent point
//! reads (an account, a transfer) become one `WHERE id = ANY($1)` query on a pooled connection
//! instead of one round trip each. Each batch starts after its callers queued, so it sees every
//! write that answered before the call.
//!
//! A batch that fails as a whole (the transaction errs: a lost connection, a constraint the job
//! did not foresee) is rolled back. After a retryable failure every caller gets it (each operation
//! is keyed, so the caller's retry is a replay if the commit did land); after any other failure
//! the operations are run again one per transaction, so one bad operation fails alone.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::db_err;

/// Operations waiting per batcher before callers wait to queue.
const QUEUE_CAPACITY: usize = 16_384;

/// Committer tasks of a read batcher: batches in flight at once (a batch is one indexed query;
/// two keep a read from waiting behind a slow one).
pub(crate) const READ_COMMITTERS: usize = 2;
/// Most ids one read batch asks for.
pub(crate) const READ_BATCH_MAX: usize = 512;

/// What a batcher runs.
#[async_trait]
pub(crate) trait BatchJob: Send + Sync + 'static {
    /// One caller's operation.
    type Op: Send + Sync + 'static;
    /// Its answer.
    type Out: Send + 'static;

    /// Whether a batch runs in a transaction (writes) or on a plain pooled connection (reads).
    const TRANSACTION: bool = true;

    /// Runs `ops` in order inside the open transaction `conn`, answering each. `Err` aborts the
    /// whole batch (it is rolled back).
    async fn run(&self, conn: &mut PgConnection, ops: &[Self::Op]) -> bank_core::Result<Vec<Self::Out>>;

    /// The answer of an operation whose batch failed with `error`.
    fn failed(&self, error: &bank_core::Error) -> Self::Out;
}

type Waiting<J> = (<J as BatchJob>::Op, oneshot::Sender<<J as BatchJob>::Out>);

/// Queues operations for group commit (see the module doc). Cheap to clone; the committer tasks
/// stop once every clone is dropped.
pub(crate) struct Batcher<J: BatchJob> {
    tx: mpsc::Sender<Waiting<J>>,
    job: Arc<J>,
}

impl<J: BatchJob> Clone for Batcher<J> {
    fn clone(&self) -> Self {
        Batcher { tx: self.tx.clone(), job: Arc::clone(&self.job) }
    }
}

impl<J: BatchJob> std::fmt::Debug for Batcher<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("waiting", &(QUEUE_CAPACITY - self.tx.capacity())).finish()
    }
}

impl<J: BatchJob> Batcher<J> {
    /// Starts `committers` tasks (on the current tokio runtime) committing batches of at most
    /// `max_batch` operations on `pool`.
    pub(crate) fn start(pool: PgPool, job: J, committers: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Waiting<J>>(QUEUE_CAPACITY);
        let rx = Arc::new(Mutex::new(rx));
        let job = Arc::new(job);
        for _ in 0..committers.max(1) {
            tokio::spawn(committer(pool.clone(), Arc::clone(&job), Arc::clone(&rx), max_batch.max(1)));
        }
        Batcher { tx, job }
    }

    /// Runs one operation in the next batch and answers it.
    pub(crate) async fn call(&self, op: J::Op) -> J::Out {
        let (answer, rx) = oneshot::channel();
        if self.tx.send((op, answer)).await.is_err() {
            return self.job.failed(&stopped());
        }
        rx.await.unwrap_or_else(|_| self.job.failed(&stopped()))
    }
}

fn stopped() -> bank_core::Error {
    bank_core::Error::storage("postgresql: the batch committer stopped", true)
}

async fn committer<J: BatchJob>(pool: PgPool, job: Arc<J>, rx: Arc<Mutex<mpsc::Receiver<Waiting<J>>>>, max: usize) {
    let mut waiting: Vec<Waiting<J>> = Vec::with_capacity(max);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut waiting, max).await == 0 {
                return;
            }
        }
        let (ops, answers): (Vec<J::Op>, Vec<oneshot::Sender<J::Out>>) = waiting.drain(..).unzip();
        let outs = match commit(&pool, job.as_ref(), &ops).await {
            Ok(outs) => outs,
            Err(error) if error.is_retryable() || ops.len() == 1 => ops.iter().map(|_| job.failed(&error)).collect(),
            Err(_) => {
                // One operation the job could not foresee failed the batch: the others must not
                // fail with it.
                let mut outs = Vec::with_capacity(ops.len());
                for op in ops.chunks(1) {
                    outs.push(match commit(&pool, job.as_ref(), op).await {
                        Ok(mut out) => out.pop().unwrap_or_else(|| job.failed(&stopped())),
                        Err(error) => job.failed(&error),
                    });
                }
                outs
            }
        };
        for (answer, out) in answers.into_iter().zip(outs) {
            // A caller that gave up waiting is not an error.
            let _ = answer.send(out);
        }
    }
}

/// One transaction: begin, run, commit (or, for a read job, one run on a pooled connection).
async fn commit<J: BatchJob>(pool: &PgPool, job: &J, ops: &[J::Op]) -> bank_core::Result<Vec<J::Out>> {
    if !J::TRANSACTION {
        let mut conn = pool.acquire().await.map_err(db_err)?;
        return job.run(&mut conn, ops).await;
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    let outs = job.run(&mut tx, ops).await?;
    debug_assert_eq!(outs.len(), ops.len(), "a batch job answers every operation");
    tx.commit().await.map_err(db_err)?;
    Ok(outs)
}
