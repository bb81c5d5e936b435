//! [`PaymentsWorker`]: processes queued transfers; per account group, the batch one receive hands
//! over (up to `GROUP_RECEIVE_MAX`, oldest first) and nothing else of the group meanwhile.
//!
//! Each delivery runs the same idempotent steps whatever happened before:
//! 1. read the transfer; a final one is just acknowledged (duplicate delivery);
//! 2. mark it `processing` (compare-and-swap: two workers never both call the rail; an internal
//!    transfer's mark is written together with its outcome instead);
//! 3. internal: post the hold to the destination (keyed by the transfer, so a replay moves
//!    nothing); external: before anything was sent, fail it if its hold lapsed or its source
//!    account was frozen or closed meanwhile; ask the circuit breaker, then the rail — with the
//!    transfer id as the rail's idempotency key, first asking the rail's status when an earlier
//!    call timed out —, then post the hold to the rail's settlement account;
//! 4. record the outcome with its event in one write; 5. acknowledge (in the same write where
//!    the transfer store keeps the queue: [`crate::ports::TransferStore::update_acking`]).
//!
//! A crash anywhere leaves the message unacknowledged: it is delivered again and the steps above
//! find what was already done.
//!
//! **A payment of unknown outcome is never failed.** The external mark sets `outcome_unknown`
//! before the rail can be called, and only the rail's definite answer (accepted or rejected)
//! clears it. While it is set, the transfer ends `failed` only on the rail's rejection — not on
//! the retry budget, a lapsed hold or a timer: it stays `pending` (listed by
//! [`crate::ports::TransferStore::unresolved`], the server's `transfers_outcome_unknown` alert
//! gauge) until the rail answers. A status query's "not found" is not such an answer (a request
//! can still arrive late); it only makes a re-submission under the same idempotency key safe.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use tracing::instrument;

use super::facts::AccountFacts;
use super::{PaymentsConfig, PaymentsPorts, SystemAccounts};
use crate::account::AccountStatus;
use crate::audit::{AuditLog, AuditOutcome, NewAuditRecord};
use crate::error::{Error, Result};
use crate::events::{AuditMessage, Event, OutboxMessage};
use crate::faults::FaultPoint;
use crate::ids::{AccountId, CustomerId, HoldId};
use crate::ledger::{HoldStatus, NewEntry, PostHold, PostedEntry};
use crate::ports::PaymentRail;
use crate::queue::{Delivery, Receipt};
use crate::rail::breaker::CircuitBreaker;
use crate::rail::{RailError, RailPayment, RailStatus};
use crate::transfer::{Destination, FailureCode, Transfer, TransferStatus};

/// How soon a message whose processing failed transiently (a storage call answered retryable) is
/// delivered again the first time; each further delivery that fails so waits twice as long, up to
/// the message's visibility ([`transient_retry_delay`]).
pub const TRANSIENT_RETRY_DELAY: TimeDelta = TimeDelta::seconds(1);

/// The wait before delivery `receive_count + 1` of a message whose delivery `receive_count` failed
/// transiently: [`TRANSIENT_RETRY_DELAY`], doubled for each earlier delivery, at most `visibility`.
///
/// The queue dead-letters a message after its `max_receives`-th delivery (ten by default), counting
/// every delivery alike. With a fixed one-second wait, an outage of the database of some ten
/// seconds (a failover, connections cut again and again) would send every transfer it touched to
/// the dead-letter queue, to be picked up only by the scheduler's stuck sweep minutes later; with
/// the doubling, ten deliveries span minutes of outage (1 + 2 + 4 + … s).
pub fn transient_retry_delay(receive_count: u32, visibility: TimeDelta) -> TimeDelta {
    let doublings = receive_count.saturating_sub(1).min(20);
    (TRANSIENT_RETRY_DELAY * (1 << doublings)).min(visibility).max(TimeDelta::zero())
}

/// What one `run_once` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Deliveries received.
    pub received: usize,
    /// Transfers that reached `settled` in this run.
    pub settled: usize,
    /// Transfers that reached `failed`.
    pub failed: usize,
    /// Transfers left `pending` for a later retry.
    pub pending: usize,
    /// Deliveries left unacknowledged because processing stopped (redelivered later).
    pub interrupted: usize,
}

/// Outcome of one processing attempt.
enum Outcome {
    Settled,
    Failed(FailureCode, String),
    Pending { retry_at: DateTime<Utc>, outcome_unknown: bool },
}

/// Posting the whole of the transfer's hold to `credit`, under the transfer's settle key.
fn settle_hold(transfer: &Transfer, credit: AccountId) -> PostHold {
    PostHold {
        hold_id: HoldId::from(transfer.id),
        key: transfer.settle_key(),
        amount: None,
        credit_account: credit,
        reference: transfer.reference.clone(),
    }
}

fn lapsed() -> Outcome {
    Outcome::Failed(FailureCode::HoldExpired, "the reservation lapsed before the transfer ran".into())
}

fn source_unavailable() -> Outcome {
    Outcome::Failed(FailureCode::SourceUnavailable, "the source account is no longer open".into())
}

/// Whether a transfer whose rail just answered `Unavailable` may be failed: only once its retry
/// budget is spent **and** no earlier submission's outcome is unknown. "Unavailable" proves that
/// this call never reached the rail, nothing about an earlier call that timed out or whose
/// worker died: failing then would release the hold of a payment the rail may have made.
pub(crate) fn may_fail_on_budget(earlier_outcome_unknown: bool, attempts: u32, max_attempts: u32) -> bool {
    !earlier_outcome_unknown && attempts >= max_attempts
}

/// Processes transfers from the queue.
#[derive(Debug, Clone)]
pub struct PaymentsWorker {
    ports: PaymentsPorts,
    config: PaymentsConfig,
    system: SystemAccounts,
    rail: Arc<dyn PaymentRail>,
    breaker: Arc<CircuitBreaker>,
    audit: Option<Arc<dyn AuditLog>>,
    /// Owners of destination accounts met (never change: no read for them twice).
    facts: AccountFacts,
}

/// The audit subject of the worker's records.
pub const WORKER_AUDIT_SUBJECT: &str = "worker";

impl PaymentsWorker {
    /// A worker booking external transfers through `rail`, guarded by `breaker`.
    pub fn new(
        ports: PaymentsPorts,
        config: PaymentsConfig,
        system: SystemAccounts,
        rail: Arc<dyn PaymentRail>,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        PaymentsWorker { ports, config, system, rail, breaker, audit: None, facts: AccountFacts::default() }
    }

    /// The same worker recording each transfer's outcome (`transfer.settled`, `transfer.failed`,
    /// subject [`WORKER_AUDIT_SUBJECT`]): the record is written with the outcome, in the same
    /// store update, as an [`OutboxMessage::Audit`] keyed by the transfer, and the relay (which
    /// must have the same log: [`super::OutboxRelay::with_audit`]) appends it to `audit` once. A
    /// final transfer met again (a redelivery, or one made final before records rode the
    /// outbox) gets its record appended directly, under the same key: exactly once either way.
    pub fn with_audit(mut self, audit: Arc<dyn AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The audit record of a final transfer's outcome, with its once key; `None` when not
    /// auditing or not final.
    fn outcome_record(&self, transfer: &Transfer) -> Option<AuditMessage> {
        self.audit.as_ref()?;
        let action = match transfer.status {
            TransferStatus::Settled => "transfer.settled",
            TransferStatus::Failed => "transfer.failed",
            _ => return None,
        };
        let record = NewAuditRecord::new(
            self.ports.clock.now(),
            WORKER_AUDIT_SUBJECT,
            action,
            format!("transfer:{}", transfer.id),
            AuditOutcome::Done,
        );
        Some(AuditMessage { group: transfer.from_account_id, key: format!("{action}:{}", transfer.id), record })
    }

    /// Appends the audit record of a transfer found final directly (once per transfer; see
    /// [`Self::with_audit`]).
    async fn audit_outcome(&self, transfer: &Transfer) -> Result<()> {
        match (&self.audit, self.outcome_record(transfer)) {
            (Some(audit), Some(message)) => audit.append_once(&message.key, message.record).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Receives one batch and processes all of it at once. The messages of one group (up to
    /// `GROUP_RECEIVE_MAX`) are started in queue order, so their ledger and rail calls are made in
    /// that order and a store that groups concurrent writes (PostgreSQL's group commit) settles a
    /// busy account's transfers together instead of one round of writes each. One that stops (a
    /// crash, a transient error) comes back later on its own: it does not hold back the others.
    pub async fn run_once(&self) -> Result<WorkerReport> {
        let deliveries = self.ports.queue.receive(self.config.worker_batch, self.config.visibility).await?;
        let mut report = WorkerReport { received: deliveries.len(), ..WorkerReport::default() };
        let receipts: Vec<(Receipt, u32)> = deliveries.iter().map(|d| (d.receipt.clone(), d.receive_count)).collect();
        for (result, (receipt, receive_count)) in
            join_all(deliveries.into_iter().map(|d| self.process(d))).await.into_iter().zip(receipts)
        {
            match result {
                Ok(Some(TransferStatus::Settled)) => report.settled += 1,
                Ok(Some(TransferStatus::Failed)) => report.failed += 1,
                Ok(Some(TransferStatus::Pending)) => report.pending += 1,
                Ok(_) => {}
                Err(err) => {
                    if !matches!(err, Error::Interrupted(_)) {
                        tracing::warn!(error = %err, "transfer processing stopped; the message will be redelivered");
                    }
                    // A transient failure (a lost database connection): redeliver soon, not
                    // only when the visibility runs out, and later each time it fails again.
                    // Every step is keyed, so the next delivery resumes where this one stopped.
                    let delay = transient_retry_delay(receive_count, self.config.visibility);
                    if err.is_retryable()
                        && let Err(again) = self.ports.queue.retry_later(&receipt, delay).await
                    {
                        tracing::warn!(error = %again, "cannot reschedule the message; it returns after its visibility");
                    }
                    report.interrupted += 1;
                }
            }
        }
        Ok(report)
    }

    /// Processes one delivery; returns the status it left the transfer in (None if the
    /// delivery was a duplicate of finished work).
    #[instrument(skip_all, fields(transfer_id = %delivery.message.transfer_id))]
    pub async fn process(&self, delivery: Delivery) -> Result<Option<TransferStatus>> {
        let id = delivery.message.transfer_id;
        self.ports.faults.check(FaultPoint::WorkerStart, Some(id))?;
        let transfer = match self.ports.transfers.get(id).await {
            Ok(t) => t,
            Err(Error::TransferNotFound(_)) => {
                tracing::warn!("message for an unknown transfer; dropping it");
                self.ack(&delivery).await?;
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        if transfer.status.is_final() {
            self.audit_outcome(&transfer).await?;
            self.ack(&delivery).await?;
            return Ok(None);
        }
        let now = self.ports.clock.now();
        // Whether an earlier rail submission may have landed without a definite answer (a
        // timeout, or a crash or takeover after the mark below): decides whether the rail is
        // asked first, and forbids failing the transfer without the rail's word.
        let earlier_unknown = transfer.outcome_unknown;
        let mut marked = transfer;
        marked.enter(TransferStatus::Processing, now);
        marked.attempts = marked.attempts.saturating_add(1);
        marked.next_attempt_at = Some(now + self.config.stuck_after);
        // An external transfer is marked before the rail is called: the mark fences the call
        // (attempts, deadline) for any other delivery. An internal one settles in one ledger
        // step keyed by the transfer, so its mark is written with the outcome (same history,
        // one write less); a concurrent delivery loses the final compare-and-swap and finds the
        // transfer final when it comes back.
        //
        // The external mark also records `outcome_unknown` *before* the rail can be called: if
        // this delivery dies after the call (or another delivery takes over while it is still
        // waiting for the rail), whoever comes next knows a payment may be out there.
        let transfer = match marked.destination {
            Destination::External { .. } => {
                marked.outcome_unknown = true;
                self.ports.transfers.update(marked, Vec::new()).await?
            }
            Destination::Internal { .. } => marked,
        };
        self.ports.faults.check(FaultPoint::WorkerAfterMark, Some(id))?;

        let outcome = match &transfer.destination {
            Destination::Internal { account_id } => self.post(&transfer, *account_id).await?,
            Destination::External { .. } => self.settle_external(&transfer, earlier_unknown).await?,
        };
        let (recorded, acked) = self.record(transfer, outcome, &delivery.receipt).await?;
        match acked {
            // Acknowledged in the outcome's own write (redelivered meanwhile: the other delivery
            // finds the transfer final).
            Some(Ok(()) | Err(Error::StaleReceipt)) => {}
            Some(Err(other)) => return Err(other),
            None => {
                self.ports.faults.check(FaultPoint::WorkerBeforeAck, Some(id))?;
                self.ack(&delivery).await?;
            }
        }
        Ok(Some(recorded.status))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        match self.ports.queue.ack(&delivery.receipt).await {
            // Redelivered meanwhile: the other delivery finds the work done.
            Ok(()) | Err(Error::StaleReceipt) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Posts the transfer's hold to `credit`; maps a refusal to a visible failure.
    async fn post(&self, transfer: &Transfer, credit: AccountId) -> Result<Outcome> {
        let result: Result<PostedEntry> = self.ports.ledger.post_hold(settle_hold(transfer, credit)).await;
        match result {
            Ok(_) => {
                self.ports.faults.check(FaultPoint::WorkerAfterLedger, Some(transfer.id))?;
                Ok(Outcome::Settled)
            }
            Err(Error::HoldNotActive { status: HoldStatus::Expired | HoldStatus::Voided, .. }) => Ok(lapsed()),
            Err(Error::AccountNotOpen { account, .. } | Error::AccountNotFound(account)) => {
                self.void(transfer).await?;
                if account == transfer.from_account_id {
                    return Ok(source_unavailable());
                }
                Ok(Outcome::Failed(FailureCode::DestinationUnavailable, "the destination account is closed".into()))
            }
            Err(other) => Err(other),
        }
    }

    /// Books a payment the rail has accepted: the money has left, so the ledger must show it
    /// whatever happened to the hold meanwhile. Normally the hold is posted; if it lapsed or the
    /// source account was frozen or closed, the source is debited directly; if even that is
    /// refused, the payout is booked against the suspense account for an operator to resolve.
    async fn book_payout(&self, transfer: &Transfer, rail_account: AccountId) -> Result<Outcome> {
        if self.ports.ledger.entry(transfer.settle_key()).await.is_ok() {
            // Booked by an earlier attempt, one way or another. A direct or suspense booking
            // voids the hold after it: that attempt may have stopped in between. (A posted hold,
            // the usual booking, refuses the void.)
            return match self.void(transfer).await {
                Ok(()) | Err(Error::HoldNotActive { status: HoldStatus::Posted, .. }) => Ok(Outcome::Settled),
                Err(other) => Err(other),
            };
        }
        match self.ports.ledger.post_hold(settle_hold(transfer, rail_account)).await {
            Ok(_) => {
                self.ports.faults.check(FaultPoint::WorkerAfterLedger, Some(transfer.id))?;
                return Ok(Outcome::Settled);
            }
            Err(Error::HoldNotActive { .. } | Error::HoldNotFound(_) | Error::AccountNotOpen { .. }) => {}
            Err(other) => return Err(other),
        }
        let (from, reference) = (transfer.from_account_id, transfer.reference.clone());
        let direct = NewEntry::transfer(transfer.settle_key(), from, rail_account, transfer.money, reference.clone())?;
        if let Err(refused) = self.ports.ledger.post(direct).await {
            if refused.is_retryable() {
                return Err(refused);
            }
            let suspense = self.system.suspense(transfer.money.currency)?;
            tracing::warn!(
                transfer_id = %transfer.id,
                reason = refused.code(),
                error = %refused,
                "rail paid but the source could not be debited; booked to suspense"
            );
            let booked = NewEntry::transfer(transfer.settle_key(), suspense, rail_account, transfer.money, reference)?;
            self.ports.ledger.post(booked).await?;
        }
        self.ports.faults.check(FaultPoint::WorkerAfterLedger, Some(transfer.id))?;
        self.void(transfer).await?;
        Ok(Outcome::Settled)
    }

    async fn void(&self, transfer: &Transfer) -> Result<()> {
        match self.ports.ledger.void_hold(HoldId::from(transfer.id)).await {
            Ok(_) | Err(Error::HoldNotFound(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Pays an external transfer through the rail, exactly once.
    ///
    /// `earlier_unknown`: an earlier submission may have reached the rail without a definite
    /// answer. The rail is then asked first, and the transfer can end `failed` only on the rail's
    /// definite rejection — never on the retry budget, a timer or a lapsed hold alone: it stays
    /// `pending` with `outcome_unknown` (counted by [`crate::ports::TransferStore::unresolved`]
    /// for an operator's alert) until the rail answers.
    async fn settle_external(&self, transfer: &Transfer, earlier_unknown: bool) -> Result<Outcome> {
        let Destination::External { beneficiary } = &transfer.destination else {
            return Err(Error::invalid("not an external transfer"));
        };
        let now = self.ports.clock.now();
        if !earlier_unknown {
            if let Some(lapsed) = self.lapsed_hold(transfer, now).await? {
                // Nothing was ever sent and the reservation is gone: paying now would spend
                // money the customer may no longer have.
                return Ok(lapsed);
            }
            if let Some(stopped) = self.stopped_source(transfer).await? {
                return Ok(stopped);
            }
        }
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(open) => {
                return Ok(Outcome::Pending { retry_at: open.retry_at, outcome_unknown: earlier_unknown });
            }
        };
        let rail_account = self.system.rail(transfer.money.currency)?;
        if earlier_unknown {
            // An earlier call may have reached the rail: ask before paying again.
            match self.rail.status(transfer.id).await {
                Ok(RailStatus::Accepted(_)) => {
                    self.breaker.record_success(permit);
                    self.ports.faults.check(FaultPoint::WorkerAfterRail, Some(transfer.id))?;
                    return self.book_payout(transfer, rail_account).await;
                }
                Ok(RailStatus::Rejected { code, message }) => {
                    self.breaker.record_success(permit);
                    self.void(transfer).await?;
                    return Ok(Outcome::Failed(FailureCode::RailRejected, format!("{code}: {message}")));
                }
                Ok(RailStatus::NotFound) => {
                    // Not received *yet*: an earlier request may still arrive late. Submitting
                    // again under the same idempotency key is safe (the rail pays once); failing
                    // is not, so the submit below keeps `earlier_unknown`.
                }
                Err(_) => {
                    self.breaker.record_failure(permit);
                    return Ok(self.retry_later(transfer, now, true));
                }
            }
        }
        self.submit(transfer, beneficiary, rail_account, permit, earlier_unknown).await
    }

    /// `Failed(HoldExpired)` when the transfer's hold is no longer active.
    async fn lapsed_hold(&self, transfer: &Transfer, now: DateTime<Utc>) -> Result<Option<Outcome>> {
        let hold = match self.ports.ledger.get_hold(HoldId::from(transfer.id)).await {
            Ok(hold) => hold,
            Err(Error::HoldNotFound(_)) => return Ok(Some(lapsed())),
            Err(other) => return Err(other),
        };
        let active = hold.status == HoldStatus::Active && hold.expires_at > now;
        if active {
            return Ok(None);
        }
        self.void(transfer).await?;
        Ok(Some(lapsed()))
    }

    /// `Failed(SourceUnavailable)` when the source account no longer takes debits (frozen or
    /// closed since the transfer was accepted), its hold voided. Asked only before a first
    /// submission: nothing has been sent, and sending now would pay out of an account whose
    /// debits are stopped (the ledger would refuse the debit, leaving the payout on suspense).
    /// Once a submission may have reached the rail the payment is committed to and is booked
    /// whatever the account's status ([`Self::book_payout`]). A freeze between this check and
    /// the rail call still lands there: an operator's suspense item, never lost money.
    async fn stopped_source(&self, transfer: &Transfer) -> Result<Option<Outcome>> {
        match self.ports.ledger.account(transfer.from_account_id).await {
            Ok(account) if account.status == AccountStatus::Open => return Ok(None),
            Ok(_) | Err(Error::AccountNotFound(_)) => {}
            Err(other) => return Err(other),
        }
        self.void(transfer).await?;
        Ok(Some(source_unavailable()))
    }

    async fn submit(
        &self,
        transfer: &Transfer,
        beneficiary: &crate::transfer::Beneficiary,
        rail_account: AccountId,
        permit: crate::rail::breaker::Permit,
        earlier_unknown: bool,
    ) -> Result<Outcome> {
        let payment = RailPayment {
            transfer_id: transfer.id,
            money: transfer.money,
            beneficiary: beneficiary.clone(),
            reference: transfer.reference.clone(),
        };
        self.ports.faults.check(FaultPoint::WorkerBeforeRail, Some(transfer.id))?;
        let answer = self.rail.submit(&payment).await;
        self.ports.faults.check(FaultPoint::WorkerAfterRail, Some(transfer.id))?;
        let now = self.ports.clock.now();
        match answer {
            Ok(_) => {
                self.breaker.record_success(permit);
                self.book_payout(transfer, rail_account).await
            }
            Err(RailError::Rejected { code, message }) => {
                self.breaker.record_success(permit);
                self.void(transfer).await?;
                Ok(Outcome::Failed(FailureCode::RailRejected, format!("{code}: {message}")))
            }
            Err(RailError::Unavailable(_)) => {
                self.breaker.record_failure(permit);
                // This call certainly did not reach the rail; an earlier one may have.
                if may_fail_on_budget(earlier_unknown, transfer.attempts, self.config.max_attempts) {
                    self.void(transfer).await?;
                    return Ok(Outcome::Failed(
                        FailureCode::RailUnavailable,
                        format!("the payment rail stayed unavailable for {} attempts", transfer.attempts),
                    ));
                }
                Ok(self.retry_later(transfer, now, earlier_unknown))
            }
            Err(RailError::Timeout) => {
                self.breaker.record_failure(permit);
                Ok(self.retry_later(transfer, now, true))
            }
        }
    }

    fn retry_later(&self, transfer: &Transfer, now: DateTime<Utc>, outcome_unknown: bool) -> Outcome {
        let salt = transfer.id.as_uuid().as_u64_pair().1;
        Outcome::Pending { retry_at: now + self.config.backoff(transfer.attempts, salt), outcome_unknown }
    }

    /// Writes the outcome with its event (and audit record) in one store update, acknowledging
    /// the delivery under `receipt` in the same write where the store can
    /// ([`crate::ports::TransferStore::update_acking`]); answers the transfer as stored and
    /// whether the delivery was acknowledged.
    async fn record(
        &self,
        mut transfer: Transfer,
        outcome: Outcome,
        receipt: &Receipt,
    ) -> Result<(Transfer, Option<Result<()>>)> {
        let now = self.ports.clock.now();
        let was_pending_before = transfer.history.iter().any(|h| h.status == TransferStatus::Pending);
        match outcome {
            Outcome::Settled => {
                transfer.outcome_unknown = false;
                transfer.enter(TransferStatus::Settled, now);
            }
            Outcome::Failed(code, detail) => transfer.fail(code, detail, now),
            Outcome::Pending { retry_at, outcome_unknown } => {
                transfer.outcome_unknown = outcome_unknown;
                transfer.enter(TransferStatus::Pending, now);
                transfer.next_attempt_at = Some(retry_at);
            }
        }
        let emit = transfer.status != TransferStatus::Pending || !was_pending_before;
        let to_owner = self.to_owner(&transfer).await;
        let mut outbox: Vec<OutboxMessage> = if emit {
            Event::of(&transfer, to_owner, now).map(OutboxMessage::Publish).into_iter().collect()
        } else {
            Vec::new()
        };
        outbox.extend(self.outcome_record(&transfer).map(OutboxMessage::Audit));
        self.ports.transfers.update_acking(transfer, outbox, receipt).await
    }

    async fn to_owner(&self, transfer: &Transfer) -> Option<CustomerId> {
        let to = transfer.to_account_id()?;
        self.facts.of(self.ports.ledger.as_ref(), to).await.ok().map(|f| f.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::may_fail_on_budget;

    #[test]
    fn only_a_spent_budget_with_no_unknown_submission_may_fail() {
        assert!(may_fail_on_budget(false, 6, 6));
        assert!(may_fail_on_budget(false, 7, 6));
        assert!(!may_fail_on_budget(false, 5, 6), "budget left");
        // The decision at fault in issue 11: an earlier submission of unknown outcome (a timeout,
        // or a worker that died after the mark) must never be failed by the budget.
        assert!(!may_fail_on_budget(true, 6, 6));
        assert!(!may_fail_on_budget(true, u32::MAX, 6));
    }
}
