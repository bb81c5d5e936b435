//! [`PaymentsService`]: accepting transfers.
//!
//! Accepting checks ownership, status, currency and funds, places a hold for the amount (so an
//! accepted transfer can never overdraw), and stores the transfer together with its queue message
//! and `TransferAccepted` event (and, when the caller gives one, its audit record) in one outbox
//! write. The idempotency key is claimed first and completed last; a request that dies in between
//! leaves a lease that runs out, and whoever comes next with the same key (the client's retry or
//! [`PaymentsService::recover_abandoned`]) finishes or undoes the same transfer id.

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::facts::AccountFacts;
use super::{PaymentsConfig, PaymentsPorts};
use crate::accounts::{AccountsService, Viewer};
use crate::audit::NewAuditRecord;
use crate::error::{Error, ErrorAction, Result};
use crate::events::{AuditMessage, Event, OutboxMessage};
use crate::faults::FaultPoint;
use crate::idempotency::{Begin, IdempotencyKey, IdempotencyScope, LeaseToken};
use crate::ids::{AccountId, CustomerId, HoldId, TransferId};
use crate::ledger::{HoldStatus, NewHold};
use crate::page::{Page, PageQuery};
use crate::ports::{Inserted, KeyAnswer};
use crate::queue::QueueMessage;
use crate::transfer::{Destination, Transfer, TransferRequest};

/// The transfer a started key names: its id, when the key was first seen, whether it may
/// already be stored (a takeover, or a client-chosen id), whether an earlier attempt under the
/// key may have placed its hold (a takeover), and when this attempt's lease on the key ends.
struct Attempt {
    id: TransferId,
    first_seen_at: DateTime<Utc>,
    may_exist: bool,
    takeover: bool,
    lease_ends: DateTime<Utc>,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The customer.
    pub customer: CustomerId,
}

impl Caller {
    fn scope(&self, key: IdempotencyKey) -> IdempotencyScope {
        IdempotencyScope { caller: self.customer.to_string(), key }
    }
}

/// The result of accepting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The transfer as first accepted (on a replay: the stored first response).
    pub transfer: Transfer,
    /// Whether this is a replay of an earlier request with the same key.
    pub replayed: bool,
}

/// Marks [`PaymentsService::void_orphan_holds`] reads per page.
const MARKS_PAGE: usize = 256;

/// Accepts transfers and answers questions about them.
#[derive(Debug, Clone)]
pub struct PaymentsService {
    ports: PaymentsPorts,
    config: PaymentsConfig,
    /// Owners and currencies of accounts met (never change: no read for them twice).
    facts: AccountFacts,
}

impl PaymentsService {
    /// A service over `ports`.
    pub fn new(ports: PaymentsPorts, config: PaymentsConfig) -> Self {
        PaymentsService { ports, config, facts: AccountFacts::default() }
    }

    /// Accepts a transfer under an idempotency key.
    ///
    /// Refusals (unknown or foreign source account — reported as not found —, closed or frozen
    /// account, currency mismatch, insufficient funds, bad destination) store nothing, hold
    /// nothing and free the key for a corrected retry.
    ///
    /// Once the transfer is stored it is accepted: if recording the answer under the key then
    /// fails, that is logged and the transfer is still answered (the key stays in flight until
    /// its lease runs out; a retry then finds the same transfer and answers it again).
    pub async fn accept(&self, caller: &Caller, key: IdempotencyKey, request: TransferRequest) -> Result<Accepted> {
        let (accepted, _) =
            self.accept_inner(caller, key, request, None::<fn(TransferId, bool) -> NewAuditRecord>).await?;
        Ok(accepted)
    }

    /// [`accept`](Self::accept) with the audit record `record(id, replayed)` of the acceptance
    /// (or of its replay). The record of a transfer this call creates is written **with the
    /// transfer**, in the same store write, as an [`OutboxMessage::Audit`] keyed
    /// `<action>:<id>` (the relay appends it to the audit log once; see
    /// [`super::OutboxRelay::with_audit`]): an accepted transfer always has exactly one record,
    /// and no commit of its own waits on the way to the answer. A replay's record comes back
    /// for the caller to append; a takeover that finds the transfer stored builds none (the
    /// transfer's was written with it). `record` is not called on a refusal.
    #[instrument(skip_all, fields(customer = %caller.customer, from = %request.from_account_id))]
    pub async fn accept_audited<F>(
        &self,
        caller: &Caller,
        key: IdempotencyKey,
        request: TransferRequest,
        record: F,
    ) -> Result<(Accepted, Option<NewAuditRecord>)>
    where
        F: FnOnce(TransferId, bool) -> NewAuditRecord,
    {
        self.accept_inner(caller, key, request, Some(record)).await
    }

    async fn accept_inner<F>(
        &self,
        caller: &Caller,
        key: IdempotencyKey,
        request: TransferRequest,
        record: Option<F>,
    ) -> Result<(Accepted, Option<NewAuditRecord>)>
    where
        F: FnOnce(TransferId, bool) -> NewAuditRecord,
    {
        request.validate()?;
        let scope = caller.scope(key);
        let proposed = request.id.unwrap_or_default();
        // Read before the key is taken: the lease the store grants ends no earlier.
        let lease_ends = self.ports.clock.now() + self.config.idempotency_lease;
        let begin = self
            .ports
            .idempotency
            .begin(&scope, request.fingerprint(), &proposed.to_string(), self.config.idempotency_lease)
            .await?;
        let (resource, token, first_seen_at, takeover) = match begin {
            Begin::Replay { response, .. } => {
                let first = AcceptedResponse::decode(&response)?;
                let record = record.map(|record| record(first.id, true));
                let accepted = Accepted { transfer: self.rebuild(first, caller, &request), replayed: true };
                return Ok((accepted, record));
            }
            Begin::Started { resource, token, first_seen_at, takeover } => (resource, token, first_seen_at, takeover),
        };
        let id: TransferId = resource.parse()?;
        // Only a takeover or a client-chosen id can name a transfer that already exists; a
        // first attempt under an id made just now skips the read.
        let may_exist = takeover || request.id.is_some();
        let key = KeyAnswer { scope: scope.clone(), token, answer: encode_accepted };
        let attempt = Attempt { id, first_seen_at, may_exist, takeover, lease_ends };
        match self.accept_started(caller, attempt, &request, &key, record).await {
            Ok((transfer, completed, unwritten)) => {
                // The response is the transfer as accepted, also when a takeover finds it further
                // along: the first answer and every replay are then the same.
                let first = AcceptedResponse::of(&transfer);
                let accepted = Accepted { transfer: self.rebuild(first, caller, &request), replayed: false };
                let completed = match completed {
                    // Recorded with the insert.
                    Some(completed) => completed,
                    None => self.ports.idempotency.complete(&scope, token, first.encode()).await,
                };
                if let Err(err) = completed {
                    tracing::warn!(transfer_id = %id, error = %err, "could not record the answer under the idempotency key; it resolves when its lease runs out");
                }
                Ok((accepted, unwritten))
            }
            Err(err) => {
                self.give_up_key(&scope, token, &err).await;
                Err(err)
            }
        }
    }

    fn rebuild(&self, first: AcceptedResponse, caller: &Caller, request: &TransferRequest) -> Transfer {
        let mut transfer = Transfer::accepted(
            first.id,
            caller.customer,
            request,
            first.created_at,
            first.created_at + self.config.stuck_after,
        );
        transfer.seq = first.seq;
        transfer
    }

    /// Frees the key after a refusal that changed nothing. After a crash or a transient failure
    /// the key stays in flight: its lease runs out and a retry (or the recovery sweep) resumes.
    async fn give_up_key(&self, scope: &IdempotencyScope, token: LeaseToken, err: &Error) {
        if !is_refusal(err) {
            return;
        }
        if let Err(release_err) = self.ports.idempotency.release(scope, token).await {
            tracing::warn!(error = %release_err, "could not release idempotency key; it will expire");
        }
    }

    async fn accept_started<F>(
        &self,
        caller: &Caller,
        attempt: Attempt,
        request: &TransferRequest,
        key: &KeyAnswer,
        record: Option<F>,
    ) -> Result<(Transfer, Option<Result<()>>, Option<NewAuditRecord>)>
    where
        F: FnOnce(TransferId, bool) -> NewAuditRecord,
    {
        let Attempt { id, first_seen_at, may_exist, takeover, lease_ends } = attempt;
        // A takeover, or a client reusing its own transfer id: the transfer may already exist.
        if may_exist {
            match self.ports.transfers.get(id).await {
                // Its record was written with it.
                Ok(existing) => return Ok((same_request(existing, caller, request)?, None, None)),
                Err(Error::TransferNotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let hold = NewHold {
            id: HoldId::from(id),
            account_id: request.from_account_id,
            money: request.money,
            // Derived from the key's first use, so a takeover places the identical hold (a replay).
            expires_at: first_seen_at + self.config.hold_duration,
            reference: request.reference.clone(),
        };
        let held = async {
            self.check_accounts(caller, request).await?;
            self.within_lease(lease_ends)?;
            self.ports.ledger.hold(hold).await
        };
        if let Err(err) = held.await {
            // A hold of this id that differs (`KeyReused`) is another request's: a client reusing
            // its own transfer id under another key. That one is left alone.
            if takeover && is_refusal(&err) && !matches!(err, Error::KeyReused(_)) {
                // The earlier attempt may have placed its hold before it died, and the refusal
                // frees the key (a destination closed meanwhile, say): the hold goes first, or
                // nothing would be left to release it until it expires. A void that fails keeps
                // the key (its error is retryable), so the recovery sweep tries again.
                self.void_hold(id).await?;
            }
            return Err(err);
        }
        self.ports.faults.check(FaultPoint::AcceptAfterHold, Some(id))?;

        let now = self.ports.clock.now();
        let transfer = Transfer::accepted(id, caller.customer, request, now, now + self.config.stuck_after);
        let mut outbox = vec![OutboxMessage::Enqueue(QueueMessage::first(id, request.from_account_id))];
        outbox.extend(Event::of(&transfer, None, now).map(OutboxMessage::Publish));
        if let Some(record) = record.map(|record| record(id, false)) {
            let key = format!("{}:{id}", record.action);
            outbox.push(OutboxMessage::Audit(AuditMessage { group: request.from_account_id, key, record }));
        }
        self.within_lease(lease_ends)?;
        let (inserted, completed) = match self.ports.transfers.insert_completing(transfer, outbox, key).await {
            Ok((Inserted::Created(t), completed)) => (t, completed),
            Ok((Inserted::Existing(t), _)) => return Ok((same_request(t, caller, request)?, None, None)),
            Err(err) => {
                if !err.is_retryable() {
                    self.release_hold(id).await;
                }
                return Err(err);
            }
        };
        self.ports.faults.check(FaultPoint::AcceptAfterInsert, Some(id))?;
        Ok((inserted, completed, None))
    }

    /// The checks that need the ledger: a foreign account is reported exactly like a missing one.
    /// The source's owner and currency may be remembered (they never change); its status is the
    /// hold's to check, atomically. An internal destination is read for its status every time.
    async fn check_accounts(&self, caller: &Caller, request: &TransferRequest) -> Result<()> {
        let from = request.from_account_id;
        let source = match self.facts.of(self.ports.ledger.as_ref(), from).await {
            Ok(facts) if facts.owner == caller.customer => facts,
            Ok(_) | Err(Error::AccountNotFound(_)) => return Err(Error::AccountNotFound(from)),
            Err(other) => return Err(other),
        };
        if source.currency != request.money.currency {
            return Err(Error::CurrencyMismatch {
                account: from,
                expected: source.currency,
                found: request.money.currency,
            });
        }
        if let Destination::Internal { account_id } = request.destination {
            let destination = self.ports.ledger.account(account_id).await?;
            self.facts.remember(&destination);
            if destination.currency != request.money.currency {
                return Err(Error::CurrencyMismatch {
                    account: account_id,
                    expected: destination.currency,
                    found: request.money.currency,
                });
            }
            if destination.status == crate::account::AccountStatus::Closed {
                return Err(Error::AccountNotOpen { account: account_id, status: destination.status });
            }
        }
        // Status and funds are checked atomically by the hold itself.
        Ok(())
    }

    /// `LeaseLost` once this attempt's lease on its key has run out. An attempt that stalled
    /// that long (a pause, a database failover) may have been taken over: a retry under the key
    /// may already have been refused and freed it, and a write now — a hold, a transfer — would
    /// be a second transfer beside the one a later retry makes. It stops before each write
    /// instead; the key stays in flight for the retry (its hold, if placed, is the retry's to
    /// reuse, or the recovery's to release). A stall inside one store call is not caught here:
    /// a hold that lands after its request was given up is voided by
    /// [`PaymentsService::void_orphan_holds`].
    fn within_lease(&self, lease_ends: DateTime<Utc>) -> Result<()> {
        if self.ports.clock.now() < lease_ends { Ok(()) } else { Err(Error::LeaseLost) }
    }

    async fn release_hold(&self, id: TransferId) {
        if let Err(err) = self.void_hold(id).await {
            tracing::warn!(transfer_id = %id, error = %err, "could not release hold; it will expire");
        }
    }

    /// Voids the hold of transfer `id`, if there is one. If none can be seen, the id is marked
    /// ([`crate::ports::LedgerStore::mark_hold`]) before the caller forgets it: a hold still on
    /// its way lands unseen by anyone, and [`PaymentsService::void_orphan_holds`] finds it.
    async fn void_hold(&self, id: TransferId) -> Result<()> {
        match self.ports.ledger.void_hold(HoldId::from(id)).await {
            Ok(_) => Ok(()),
            Err(Error::HoldNotFound(hold)) => self.ports.ledger.mark_hold(hold).await,
            Err(err) => Err(err),
        }
    }

    /// Voids the holds that landed after their request was given up: a request's hold call
    /// still on its way (a commit the database finished after its client stopped waiting) when
    /// the recovery sweep or a refused retry voided its hold — finding none — and freed the key.
    /// Such a hold belongs to no transfer, and nothing else would release it before it expires
    /// (days). Reads the marks [`PaymentsService::void_hold`] left, and for each:
    /// - a hold that ended, or that a transfer owns (a retry reusing the transfer id), leaves the
    ///   marks: the transfer ends it;
    /// - an active hold without a transfer, placed at least one idempotency lease ago (a live
    ///   request stores its transfer within its lease), is voided;
    /// - no hold yet: the mark stays until no hold can land any more — a hold's expiry is at most
    ///   `hold_duration` after its request first came, and an expired hold is refused.
    ///
    /// Returns how many holds it voided.
    pub async fn void_orphan_holds(&self) -> Result<usize> {
        let now = self.ports.clock.now();
        let mut voided = 0;
        let mut after = None;
        loop {
            let marks = self.ports.ledger.marked_holds(after, MARKS_PAGE).await?;
            let Some(last) = marks.last() else { break };
            after = Some(last.id);
            let mut done = Vec::new();
            for mark in &marks {
                let Some(hold) = &mark.hold else {
                    if mark.marked_at + self.config.hold_duration + self.config.idempotency_lease <= now {
                        done.push(mark.id);
                    }
                    continue;
                };
                if hold.status != HoldStatus::Active {
                    done.push(mark.id);
                    continue;
                }
                match self.ports.transfers.get(TransferId::from(mark.id)).await {
                    Ok(_) => done.push(mark.id),
                    Err(Error::TransferNotFound(_)) if hold.created_at + self.config.idempotency_lease <= now => {
                        self.ports.ledger.void_hold(mark.id).await?;
                        tracing::warn!(hold_id = %mark.id, account_id = %hold.account_id, "voided a hold that landed after its request was given up");
                        voided += 1;
                        done.push(mark.id);
                    }
                    Err(Error::TransferNotFound(_)) => {}
                    Err(other) => return Err(other),
                }
            }
            if !done.is_empty() {
                self.ports.ledger.unmark_holds(&done).await?;
            }
            if marks.len() < MARKS_PAGE {
                break;
            }
        }
        Ok(voided)
    }

    /// A transfer, if `caller` may see it (one they sent, or one into an account they own);
    /// anything else reads as not found.
    pub async fn get(&self, caller: &Caller, id: TransferId) -> Result<Transfer> {
        let transfer = self.ports.transfers.get(id).await?;
        if transfer.owner == caller.customer {
            return Ok(transfer);
        }
        if let Some(to) = transfer.to_account_id()
            && self.facts.of(self.ports.ledger.as_ref(), to).await.is_ok_and(|f| f.owner == caller.customer)
        {
            return Ok(transfer);
        }
        Err(Error::TransferNotFound(id))
    }

    /// A transfer as `viewer` may see it: operators see every transfer, a customer what
    /// [`PaymentsService::get`] allows; anything else reads as not found.
    pub async fn view(&self, viewer: &Viewer, id: TransferId) -> Result<Transfer> {
        if viewer.operator {
            return self.ports.transfers.get(id).await;
        }
        self.get(&Caller { customer: viewer.user }, id).await
    }

    /// One page of the transfers from or into `account`, newest first (by acceptance order), if
    /// `viewer` may read the account (else `AccountNotFound`, as if it did not exist).
    pub async fn list(&self, viewer: &Viewer, account: AccountId, query: PageQuery) -> Result<Page<Transfer>> {
        let account = AccountsService::new(self.ports.ledger.clone()).readable(viewer, account).await?;
        let limit = query.limit() as usize;
        let before = Some(query.before()).filter(|b| *b != u64::MAX);
        let items = self.ports.transfers.list_for_account(account.id, limit, before).await?;
        let next_cursor = items.last().and_then(|last| query.next_cursor(items.len(), last.seq));
        Ok(Page { items, next_cursor })
    }

    /// Finishes or undoes requests that died holding their key (lease expired): if the transfer
    /// was stored, the key is completed with it; if not, the hold is released, then the key freed
    /// (a key whose hold cannot be released now stays taken until this run's lease runs out, and
    /// a later run retries it). Returns how many keys it resolved.
    pub async fn recover_abandoned(&self, limit: usize) -> Result<usize> {
        let mut resolved = 0;
        for record in self.ports.idempotency.abandoned(limit).await? {
            let begin = self
                .ports
                .idempotency
                .begin(&record.scope, record.fingerprint, &record.resource, self.config.idempotency_lease)
                .await;
            let Ok(Begin::Started { resource, token, .. }) = begin else { continue };
            let id: TransferId = resource.parse()?;
            match self.ports.transfers.get(id).await {
                Ok(transfer) => {
                    let response = AcceptedResponse::of(&transfer).encode();
                    self.ports.idempotency.complete(&record.scope, token, response).await?;
                }
                Err(Error::TransferNotFound(_)) => {
                    // The request died between its hold and its transfer: the hold goes first,
                    // then the key. Should the hold stay (a lost connection), so does the key,
                    // under this run's lease: once that runs out the key is abandoned again and
                    // a later run retries. Releasing the key anyway would leave the customer's
                    // money held until the hold expires (days), with nothing left to free it.
                    self.void_hold(id).await?;
                    self.ports.idempotency.release(&record.scope, token).await?;
                }
                Err(other) => return Err(other),
            }
            resolved += 1;
        }
        Ok(resolved)
    }
}

/// What an idempotent replay needs to give back the first response: the transfer as accepted is
/// fully determined by the request (identical on a replay: same fingerprint), the caller, the
/// configuration and these three values. Storing them instead of the whole transfer keeps the
/// record to 37 bytes and the accept path free of serialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AcceptedResponse {
    id: TransferId,
    created_at: DateTime<Utc>,
    seq: u64,
}

const ACCEPTED_RESPONSE_V1: u8 = 1;
const ACCEPTED_RESPONSE_LEN: usize = 1 + 16 + 12 + 8;

/// The idempotent answer of a transfer as accepted ([`KeyAnswer::answer`]).
fn encode_accepted(transfer: &Transfer) -> Vec<u8> {
    AcceptedResponse::of(transfer).encode()
}

impl AcceptedResponse {
    fn of(transfer: &Transfer) -> Self {
        AcceptedResponse { id: transfer.id, created_at: transfer.created_at, seq: transfer.seq }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ACCEPTED_RESPONSE_LEN);
        out.push(ACCEPTED_RESPONSE_V1);
        out.extend_from_slice(self.id.as_uuid().as_bytes());
        out.extend_from_slice(&self.created_at.timestamp().to_be_bytes());
        out.extend_from_slice(&self.created_at.timestamp_subsec_nanos().to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || Error::storage("stored idempotent response is unreadable", false);
        if bytes.len() != ACCEPTED_RESPONSE_LEN || bytes[0] != ACCEPTED_RESPONSE_V1 {
            return Err(bad());
        }
        let id = TransferId::from_uuid(uuid::Uuid::from_slice(&bytes[1..17]).map_err(|_| bad())?)?;
        let secs = i64::from_be_bytes(bytes[17..25].try_into().map_err(|_| bad())?);
        let nanos = u32::from_be_bytes(bytes[25..29].try_into().map_err(|_| bad())?);
        let created_at = DateTime::from_timestamp(secs, nanos).ok_or_else(bad)?;
        let seq = u64::from_be_bytes(bytes[29..37].try_into().map_err(|_| bad())?);
        Ok(AcceptedResponse { id, created_at, seq })
    }
}

/// Whether `err` refuses the request having changed nothing (its key is freed), rather than
/// interrupting it (the key stays in flight for the retry or the recovery sweep).
fn is_refusal(err: &Error) -> bool {
    !matches!(err.action(), ErrorAction::Retry | ErrorAction::GiveUp)
}

/// An existing transfer under the same id must be the same request by the same caller.
fn same_request(existing: Transfer, caller: &Caller, request: &TransferRequest) -> Result<Transfer> {
    let same = existing.owner == caller.customer
        && existing.from_account_id == request.from_account_id
        && existing.destination == request.destination
        && existing.money == request.money
        && existing.reference == request.reference;
    if same { Ok(existing) } else { Err(Error::KeyReused(format!("transfer id {}", existing.id))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_response_round_trips_and_refuses_garbage() {
        let at = DateTime::from_timestamp(1_767_225_600, 123_456_789).expect("time");
        let first = AcceptedResponse { id: TransferId::new(), created_at: at, seq: 42 };
        let bytes = first.encode();
        assert_eq!(bytes.len(), ACCEPTED_RESPONSE_LEN);
        assert_eq!(AcceptedResponse::decode(&bytes).expect("decode"), first);
        assert!(AcceptedResponse::decode(&bytes[..36]).is_err());
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert!(AcceptedResponse::decode(&other_version).is_err());
        let mut nil = bytes;
        nil[1..17].fill(0);
        assert!(AcceptedResponse::decode(&nil).is_err());
    }
}
