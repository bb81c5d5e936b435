//! The background loops ([`Loops`]): worker, relay, scheduler (with the deposits sweep),
//! notifications, refresh-token purge, audit checkpoints and sealing, and the monthly statements (checked every [`STATEMENTS_PERIOD`]
//! against the backend's clock).
//!
//! Every loop runs one step at a time (`run_once` of a `bank-core` service), sleeps a little when
//! the step found nothing to do, and on an error logs it (a `bank_core::Error` never carries a
//! token or a password) and backs off before the next step. Shutdown is cooperative: the
//! [`CancellationToken`] is checked between steps, so a step in progress finishes (its effects
//! are idempotent anyway) and [`Loops::shutdown`] waits for every loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bank_core::approvals::DepositPolicy;
use bank_core::deposits::{COMPLETE_APPROVED_PERIOD_SECONDS, DepositsService, DepositsSweep};
use bank_core::notifications::{Channel, EventSubscription, LogNotifier, NotificationsService, Notifier};
use bank_core::payments::{OutboxRelay, PaymentsConfig, PaymentsScheduler, PaymentsWorker, RELAY_BATCH_MAX};
use bank_core::statements::{StatementScheduler, StatementsConfig};

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::statement_job;
use crate::state::Backend;

use super::Rail;

/// Pause of the worker and relay loops after a step that found nothing.
pub const IDLE_POLL: Duration = Duration::from_millis(10);
/// Period of the scheduler (re-enqueue stuck transfers, expire holds, purge keys).
pub const SCHEDULER_PERIOD: Duration = Duration::from_secs(1);
/// Period of the refresh-token purge.
pub const PURGE_PERIOD: Duration = Duration::from_secs(3600);
/// Pause after a failed step before the next one.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(500);
/// How often the audit sealer looks whether a checkpoint is due (it takes one when N records or
/// T seconds have passed: `BANK_AUDIT_CHECKPOINT_RECORDS`, `BANK_AUDIT_CHECKPOINT_SECONDS`).
pub const AUDIT_SEAL_POLL: Duration = Duration::from_secs(1);
/// Pause of the notifications loop after a step that did not fill a batch: a notification goes
/// out up to this much later, and the events of that time share one claim and one mark commit.
pub const NOTIFICATIONS_POLL: Duration = Duration::from_millis(50);
/// Events one notifications step handles at most.
pub const NOTIFICATIONS_BATCH_MAX: usize = 256;
/// The event subscription notifications read.
pub const NOTIFICATIONS_SUBSCRIPTION: &str = "notifications";
/// How often the statements loop asks its scheduler whether the previous month is due (it runs
/// each month once, [`bank_core::statements::STATEMENT_SETTLE_SECONDS`] after the month ends).
pub const STATEMENTS_PERIOD: Duration = Duration::from_secs(60);
/// Notifications the log notifier keeps in memory (it is a demo channel; this bounds it).
pub const LOG_NOTIFIER_KEPT_MAX: usize = 1024;

/// Which background loops to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopSet {
    /// Process queued transfers.
    pub worker: bool,
    /// Publish outbox rows as events.
    pub relay: bool,
    /// Re-enqueue stuck transfers, expire holds, purge idempotency keys; and (every minute)
    /// complete deposit approvals interrupted between their steps.
    pub scheduler: bool,
    /// Send notifications of transfer events.
    pub notifications: bool,
    /// Delete expired refresh tokens.
    pub refresh_purge: bool,
    /// Make the previous month's statements once it has ended.
    pub statements: bool,
    /// Sign audit checkpoints and seal their segments to the blob store.
    pub audit_seal: bool,
}

impl LoopSet {
    /// Every loop (`serve`).
    pub const ALL: LoopSet = LoopSet {
        worker: true,
        relay: true,
        scheduler: true,
        notifications: true,
        refresh_purge: true,
        statements: true,
        audit_seal: true,
    };
    /// The transfers pipeline (`worker`); every process seals the audit records it wrote.
    pub const PIPELINE: LoopSet =
        LoopSet { notifications: false, refresh_purge: false, statements: false, ..LoopSet::ALL };
    /// Notifications only (`notifications`).
    pub const NOTIFICATIONS: LoopSet = LoopSet { notifications: true, ..LoopSet::NONE };
    /// The refresh-token purge and audit sealing (`api`: the process that owns the users).
    pub const API: LoopSet = LoopSet { refresh_purge: true, audit_seal: true, ..LoopSet::NONE };
    /// The monthly statements only (for a process of its own, and tests).
    pub const STATEMENTS: LoopSet = LoopSet { statements: true, ..LoopSet::NONE };
    /// No loop.
    pub const NONE: LoopSet = LoopSet {
        worker: false,
        relay: false,
        scheduler: false,
        notifications: false,
        refresh_purge: false,
        statements: false,
        audit_seal: false,
    };
}

/// The running background loops.
#[derive(Debug)]
pub struct Loops {
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Loops {
    /// Spawns the loops of `set` on the current tokio runtime, with `notifiers` beside the log
    /// notifier of e-mails (e.g. the webhook notifier of [`crate::notify::configured`]).
    /// [`crate::app::App::start_loops`] starts them as the configuration says.
    pub fn start(
        backend: &Backend,
        payments: &PaymentsConfig,
        statements: &StatementsConfig,
        rail: &Rail,
        set: LoopSet,
        notifiers: Vec<Arc<dyn Notifier>>,
    ) -> Loops {
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        if set.worker {
            let worker = PaymentsWorker::new(
                backend.payments.clone(),
                payments.clone(),
                backend.system.clone(),
                rail.rail.clone(),
                Arc::clone(&rail.breaker),
            )
            .with_audit(backend.audit.clone());
            let step = move || {
                let worker = worker.clone();
                async move { worker.run_once().await.map(|report| report.received > 0) }
            };
            tasks.push(("worker", tokio::spawn(run_loop("worker", cancel.clone(), IDLE_POLL, step))));
        }
        if set.relay {
            let relay = Arc::new(
                OutboxRelay::new(backend.payments.clone(), Arc::clone(&backend.publisher))
                    .with_audit(backend.audit.clone()),
            );
            let step = move || {
                let relay = Arc::clone(&relay);
                // Again at once only after a full batch: a backlog drains at full speed, and
                // otherwise the records of IDLE_POLL share one claim and one `done` commit
                // (back to back, a run per few records doubled the writes of the outbox's store).
                async move { relay.run_once(RELAY_BATCH_MAX).await.map(|published| published >= RELAY_BATCH_MAX) }
            };
            tasks.push(("relay", tokio::spawn(run_loop("relay", cancel.clone(), IDLE_POLL, step))));
        }
        if set.scheduler {
            let scheduler = Arc::new(PaymentsScheduler::new(backend.payments.clone(), payments.clone()));
            let step = move || {
                let scheduler = Arc::clone(&scheduler);
                async move {
                    let report = scheduler.run_once().await?;
                    if report.requeued > 0
                        || report.recovered_keys > 0
                        || report.orphan_holds > 0
                        || report.expired_holds > 0
                    {
                        tracing::info!(?report, "scheduler re-drove work");
                    }
                    // Periodic whatever it found: it sweeps, it does not drain.
                    Ok(false)
                }
            };
            tasks.push(("scheduler", tokio::spawn(run_loop("scheduler", cancel.clone(), SCHEDULER_PERIOD, step))));
            // Approvals interrupted between their steps: posted and recorded (the policy does
            // not matter to the sweep).
            let sweep = Arc::new(DepositsSweep::new(DepositsService::new(
                backend.ledger.clone(),
                backend.deposit_requests.clone(),
                backend.audit.clone(),
                backend.system.clone(),
                DepositPolicy::default(),
                backend.payments.clock.clone(),
            )));
            let step = move || {
                let sweep = Arc::clone(&sweep);
                async move {
                    sweep.run_once().await?;
                    Ok(false)
                }
            };
            let period = Duration::from_secs(COMPLETE_APPROVED_PERIOD_SECONDS);
            tasks.push(("deposits_sweep", tokio::spawn(run_loop("deposits_sweep", cancel.clone(), period, step))));
        }
        if set.notifications {
            let mut all: Vec<Arc<dyn Notifier>> =
                vec![Arc::new(LogNotifier::with_kept_max(Channel::Email, LOG_NOTIFIER_KEPT_MAX))];
            all.extend(notifiers);
            let service = Arc::new(NotificationsService::new(all, Arc::clone(&backend.notification_log)));
            let subscriber = Arc::clone(&backend.subscriber);
            // Subscribed on the first step (and again only after a failed attempt), not per step:
            // creating the cursor may write.
            let subscription = Arc::new(OnceCell::<Arc<dyn EventSubscription>>::new());
            let step = move || {
                let (service, subscriber, subscription) =
                    (Arc::clone(&service), Arc::clone(&subscriber), Arc::clone(&subscription));
                async move {
                    let subscription =
                        subscription.get_or_try_init(|| subscriber.subscribe(NOTIFICATIONS_SUBSCRIPTION)).await?;
                    // Again at once only after a full batch: a backlog drains at full speed, and
                    // otherwise the events of NOTIFICATIONS_POLL share their claims' commits.
                    let handled = service.run_once(subscription.as_ref(), NOTIFICATIONS_BATCH_MAX).await?;
                    Ok(handled >= NOTIFICATIONS_BATCH_MAX)
                }
            };
            tasks.push((
                "notifications",
                tokio::spawn(run_loop("notifications", cancel.clone(), NOTIFICATIONS_POLL, step)),
            ));
        }
        if set.refresh_purge
            && let Some(users) = backend.users.clone()
        {
            let step = move || {
                let users = Arc::clone(&users);
                async move {
                    let purged = users.purge_expired_refresh().await?;
                    if purged > 0 {
                        tracing::info!(purged, "expired refresh tokens deleted");
                    }
                    Ok(false)
                }
            };
            tasks.push(("refresh_purge", tokio::spawn(run_loop("refresh_purge", cancel.clone(), PURGE_PERIOD, step))));
        }
        if set.statements {
            let scheduler = Arc::new(StatementScheduler::new(statement_job(backend, statements.clone())));
            let step = move || {
                let scheduler = Arc::clone(&scheduler);
                async move {
                    if let Some(report) = scheduler.run_once().await? {
                        tracing::info!(period = %report.period, created = report.created, existing = report.existing,
                            failed = report.failed_count, "monthly statements run");
                    }
                    Ok(false)
                }
            };
            tasks.push(("statements", tokio::spawn(run_loop("statements", cancel.clone(), STATEMENTS_PERIOD, step))));
        }
        if set.audit_seal {
            let sealer = Arc::new(backend.audit_sealer());
            let step = move || {
                let sealer = Arc::clone(&sealer);
                async move { sealer.run_once().await.map(|report| report.checkpoint.is_some()) }
            };
            tasks.push(("audit_seal", tokio::spawn(run_loop("audit_seal", cancel.clone(), AUDIT_SEAL_POLL, step))));
        }
        tracing::info!(loops = ?tasks.iter().map(|(name, _)| *name).collect::<Vec<_>>(), "background loops started");
        Loops { cancel, tasks }
    }

    /// The token that stops the loops (cancel it to stop them without waiting).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Names of the running loops.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Stops every loop after its current step and waits for them all.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for (name, task) in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(loop_name = name, error = %err, "background loop panicked");
            }
        }
        tracing::info!("background loops stopped");
    }
}

/// Runs `step` until `cancel`: again at once after a step that did work, after `idle` when it
/// found nothing, after [`ERROR_BACKOFF`] when it failed.
async fn run_loop<F, Fut>(name: &'static str, cancel: CancellationToken, idle: Duration, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bank_core::Result<bool>>,
{
    while !cancel.is_cancelled() {
        let pause = match step().await {
            Ok(true) => {
                tokio::task::yield_now().await;
                continue;
            }
            Ok(false) => idle,
            Err(err) => {
                tracing::warn!(loop_name = name, error = %err, "background step failed; retrying after a pause");
                ERROR_BACKOFF
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
