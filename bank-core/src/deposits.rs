//! [`DepositsService`]: operators crediting customer accounts from the bank's deposits account,
//! with every rule of it in one place — which id a deposit is booked under, replay versus key
//! reuse, separation of duties, four eyes above a threshold, and the audit record of every
//! operator action, done or refused.
//!
//! - **Exactly once.** A deposit is keyed by an id derived from (operator, idempotency key)
//!   ([`deposit_id`]): the same request again answers the first result and moves no money; another
//!   request under the key is [`Error::KeyReused`]. Every deposit is first stored as a
//!   [`DepositRequest`] under that id — the store's atomic create is the key's claim, for any
//!   amount — then posted under the same id as a ledger entry.
//! - **Who pays.** The bank's deposits account of the account's currency
//!   ([`SystemAccounts::deposits`]).
//! - **Separation of duties.** An operator may not credit an account it owns, nor approve a
//!   deposit it requested ([`Error::SeparationOfDuties`]).
//! - **Four eyes.** Above [`DepositPolicy::approval_above`] nothing is posted: the request is
//!   stored pending, and a second operator's approval posts it — once, however many approvals
//!   come. At or below it the request is stored approved by its own operator (the policy needs
//!   no second one) and posted at once.
//! - **Nothing half done.** A call interrupted after its request was stored approved — a crash, a
//!   lost connection — and never retried is finished by the [`DepositsSweep`] (the deposit
//!   posted, its record written), which the server's scheduler runs every minute.
//! - **Audit.** Every action is appended to the [`AuditLog`] before the answer; if that append
//!   fails the caller gets the error (an action that cannot be audited is not answered as done).
//!   A deposit posted, a request stored and an approval that counted each have exactly one record,
//!   however their calls are retried: each is written after its effect with a key of its own
//!   (`deposit.posted:<id>`, …), and every call that finds the effect done — a retry after a
//!   crash, a replay, another operator's approval, the sweep — writes it if it is missing (an
//!   approval's record names its approver). A *pending* request whose call died between storing
//!   it and recording it, and was never retried, gets its `deposit.requested` record from the
//!   sweep once it is [`PENDING_RECORD_GRACE_SECONDS`] old (the sweep looks at the
//!   [`PENDING_PAGE_MAX`] oldest pending requests; the approval writes the record too).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::instrument;

use crate::account::{Account, AccountStatus};
use crate::approvals::{
    self, DepositPolicy, DepositRequest, DepositRequestStatus, DepositRequestStore, PENDING_PAGE_MAX,
};
use crate::audit::{AuditLog, AuditOutcome, NewAuditRecord};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::ledger::{EntryKey, NewEntry, PostedEntry};
use crate::money::Money;
use crate::payments::SystemAccounts;
use crate::ports::LedgerStore;

/// Ledger leg of a deposit entry.
pub const DEPOSIT_LEG: u16 = 0;
/// How often the server's scheduler runs the [`DepositsSweep`].
pub const COMPLETE_APPROVED_PERIOD_SECONDS: u64 = 60;
/// How far back a [`DepositsSweep`]'s first run looks (and any run, at most): a day.
pub const COMPLETE_APPROVED_WINDOW_SECONDS: i64 = 24 * 3600;
/// How far a [`DepositsSweep`]'s later runs look back past the start of the previous successful
/// one: an approval is stamped with its caller's clock before it is stored, so one stored late
/// (a slow call, another process's clock) still falls in a run.
pub const COMPLETE_APPROVED_OVERLAP_SECONDS: i64 = 600;
/// Age from which the [`DepositsSweep`] writes a pending request's missing `deposit.requested`
/// record: its own call has had this long to write it (with its request id and client address,
/// which the sweep's record lacks).
pub const PENDING_RECORD_GRACE_SECONDS: i64 = 60;

/// The transfer id a deposit is booked under: a UUID v8 from SHA-256 over the operator and the
/// idempotency key, so a retry names the same ledger entry.
pub fn deposit_id(operator: CustomerId, key: &str) -> TransferId {
    let operator = operator.to_string();
    let name = [b"bank:deposit\x1f".as_slice(), operator.as_bytes(), b"\x1f", key.as_bytes()].concat();
    TransferId::derived(&name)
}

pub use crate::audit::Actor;

/// What a deposit request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositOutcome {
    /// Posted (or, `replayed`, posted by an earlier identical request).
    Posted {
        /// The entry.
        entry: PostedEntry,
        /// The account credited.
        account: AccountId,
        /// What was credited.
        money: Money,
        /// An earlier identical request posted it.
        replayed: bool,
    },
    /// Above the threshold: waiting for a second operator (or, `replayed`, already waiting).
    Pending {
        /// The stored request.
        request: DepositRequest,
        /// An earlier identical request stored it.
        replayed: bool,
    },
}

/// An approval's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The posted entry.
    pub entry: PostedEntry,
    /// The request, approved.
    pub request: DepositRequest,
    /// Whether this call was the approval that counted (later ones are replays).
    pub first: bool,
}

/// Operators' deposits.
#[derive(Debug, Clone)]
pub struct DepositsService {
    ledger: Arc<dyn LedgerStore>,
    requests: Arc<dyn DepositRequestStore>,
    audit: Arc<dyn AuditLog>,
    system: SystemAccounts,
    policy: DepositPolicy,
    clock: Arc<dyn Clock>,
}

impl DepositsService {
    /// A service over these stores.
    pub fn new(
        ledger: Arc<dyn LedgerStore>,
        requests: Arc<dyn DepositRequestStore>,
        audit: Arc<dyn AuditLog>,
        system: SystemAccounts,
        policy: DepositPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        DepositsService { ledger, requests, audit, system, policy, clock }
    }

    /// The policy in force.
    pub fn policy(&self) -> DepositPolicy {
        self.policy
    }

    /// Credits `account` with `money` (already checked against the account's currency) under
    /// the operator's idempotency `key`. See the module docs for the rules.
    #[instrument(skip_all, fields(operator = %by.user, account_id = %account.id))]
    pub async fn deposit(
        &self,
        by: &Actor,
        key: &str,
        account: &Account,
        money: Money,
        reference: String,
    ) -> Result<DepositOutcome> {
        if account.owner == by.user {
            let target = format!("account:{}", account.id);
            self.record(by, "deposit.refused.own_account", target, AuditOutcome::Refused).await?;
            tracing::warn!("operator tried to credit its own account");
            return Err(Error::SeparationOfDuties("an operator may not credit an account it owns".into()));
        }
        let id = deposit_id(by.user, key);
        if self.policy.needs_approval(money) {
            let stored = self.requests.get(id).await?;
            return self.request_approval(by, id, account.id, money, reference, stored).await;
        }
        // Stored first, approved by the policy: the key is claimed atomically (another request
        // under it is refused by the store), and what to post is durable before it is posted, so
        // a call that dies before posting or recording is finished by the sweep.
        let now = self.clock.now();
        let wanted = DepositRequest {
            id,
            account_id: account.id,
            money,
            reference,
            requested_by: by.user,
            requested_at: now,
            status: DepositRequestStatus::Approved { by: by.user, at: now },
        };
        let request = self.requests.create(wanted).await?;
        if request.status == DepositRequestStatus::Pending {
            // Stored pending under a stricter policy: it still waits for a second operator.
            return Ok(DepositOutcome::Pending { request, replayed: true });
        }
        let (posted, replayed) = self.finish(&request, Some(by)).await?;
        tracing::info!(transfer_id = %id, replayed, "deposit posted");
        Ok(DepositOutcome::Posted { entry: posted, account: account.id, money, replayed })
    }

    async fn request_approval(
        &self,
        by: &Actor,
        id: TransferId,
        account_id: AccountId,
        money: Money,
        reference: String,
        stored: Option<DepositRequest>,
    ) -> Result<DepositOutcome> {
        let wanted = DepositRequest {
            id,
            account_id,
            money,
            reference,
            requested_by: by.user,
            requested_at: self.clock.now(),
            status: DepositRequestStatus::Pending,
        };
        let replayed = match &stored {
            Some(stored) if stored.is_same_request(&wanted) => true,
            Some(_) => return Err(Error::KeyReused(format!("deposit request {id}"))),
            None => match self.ledger.entry(EntryKey::new(id, DEPOSIT_LEG)).await {
                // The key already posted a deposit below the threshold before such deposits
                // were stored as requests too.
                Ok(_) => return Err(Error::KeyReused(format!("deposit {id}"))),
                Err(Error::EntryNotFound(_)) => false,
                Err(other) => return Err(other),
            },
        };
        let request = match stored {
            Some(stored) if replayed => stored,
            _ => self.requests.create(wanted).await?,
        };
        // Recorded once stored (a request that was never stored has no record), and on a replay
        // too: the call that stored it may have died before its record.
        let record =
            by.record(request.requested_at, "deposit.requested", format!("deposit-request:{id}"), AuditOutcome::Done);
        self.record_once(id, record).await?;
        tracing::info!(transfer_id = %id, replayed, "deposit waits for a second operator");
        Ok(DepositOutcome::Pending { request, replayed })
    }

    /// A second operator approves deposit request `id`, which is then posted under its id:
    /// exactly once, however many times it is approved. Refused to the requester and to an
    /// operator who owns the account, and while the account is closed (the request stays
    /// pending); an unknown request is `TransferNotFound`.
    #[instrument(skip_all, fields(operator = %by.user, transfer_id = %id))]
    pub async fn approve(&self, by: &Actor, id: TransferId) -> Result<Approved> {
        let target = format!("deposit-request:{id}");
        let request = self.requests.get(id).await?.ok_or(Error::TransferNotFound(id))?;
        if approvals::check_approver(&request, by.user).is_err() {
            self.record(by, "deposit.approve.refused.own_request", target, AuditOutcome::Refused).await?;
            return Err(Error::SeparationOfDuties("the operator who requested a deposit may not approve it".into()));
        }
        let account = self.ledger.account(request.account_id).await?;
        if account.owner == by.user {
            self.record(by, "deposit.approve.refused.own_account", target, AuditOutcome::Refused).await?;
            return Err(Error::SeparationOfDuties("an operator may not credit an account it owns".into()));
        }
        if account.status == AccountStatus::Closed {
            // Refused before it is marked approved: it stays pending rather than approved and
            // never posted.
            return Err(Error::AccountNotOpen { account: account.id, status: account.status });
        }
        let now = self.clock.now();
        let approved = self.requests.approve(id, by.user, now).await?;
        // Whether this call is the approval that counts is the store's answer (the first
        // approver stays), so of concurrent approvals exactly one is first.
        let first = approved.status == DepositRequestStatus::Approved { by: by.user, at: now };
        let (posted, _) = self.finish(&approved, Some(by)).await?;
        tracing::info!(first, "deposit approved");
        Ok(Approved { entry: posted, request: approved, first })
    }

    /// Completes deposits interrupted between their steps and never retried (a crash after the
    /// request was stored approved — by a second operator, or by the policy for a deposit at or
    /// below the threshold — before its deposit was posted or recorded): every request approved
    /// at or after `since`, but those in `done` (finished by an earlier run), gets its deposit
    /// posted if it is not, and its record (`deposit.approved` naming its approver, or
    /// `deposit.posted`) if it is missing; those it finishes are added to `done` with their
    /// approval's time. Answers how many deposits it posted. [`DepositsSweep`] runs it over what
    /// is new since its last run; the server's scheduler runs that every
    /// [`COMPLETE_APPROVED_PERIOD_SECONDS`]. A request that can no longer be posted (its account
    /// closed since the approval, say) is logged and skipped; a retryable failure ends the run
    /// (the next one tries again).
    async fn complete_approved(
        &self,
        since: DateTime<Utc>,
        done: &mut BTreeMap<TransferId, DateTime<Utc>>,
    ) -> Result<usize> {
        let mut since = since;
        let mut posted = 0;
        loop {
            let page = self.requests.approved_since(since, PENDING_PAGE_MAX).await?;
            for request in &page {
                if done.contains_key(&request.id) {
                    continue;
                }
                match self.finish(request, None).await {
                    Ok((_, replayed)) => {
                        posted += usize::from(!replayed);
                        if let DepositRequestStatus::Approved { at, .. } = request.status {
                            done.insert(request.id, at);
                        }
                    }
                    Err(err) if err.is_retryable() => return Err(err),
                    Err(err) => {
                        tracing::warn!(transfer_id = %request.id, error = %err, "an approved deposit cannot be posted");
                    }
                }
            }
            let last = match page.last().map(|r| r.status) {
                Some(DepositRequestStatus::Approved { at, .. }) if page.len() == PENDING_PAGE_MAX => at,
                _ => break,
            };
            if last <= since {
                break;
            }
            // The page's last instant is read again: its ties are not skipped, and finishing twice
            // is harmless.
            since = last;
        }
        if posted > 0 {
            tracing::warn!(posted, "approved deposits posted by the sweep (their approvals were interrupted)");
        }
        Ok(posted)
    }

    /// Writes the `deposit.requested` record, if it is missing, of each of the
    /// [`PENDING_PAGE_MAX`] oldest pending requests at least [`PENDING_RECORD_GRACE_SECONDS`] old
    /// that `checked` does not hold (checked by an earlier run), and adds it there; `checked`
    /// keeps only requests still among them. A retryable failure ends the run (the next one
    /// tries again).
    async fn record_pending(&self, checked: &mut BTreeSet<TransferId>) -> Result<()> {
        let cutoff = self.clock.now() - TimeDelta::seconds(PENDING_RECORD_GRACE_SECONDS);
        let pending = self.requests.pending(PENDING_PAGE_MAX).await?;
        checked.retain(|id| pending.iter().any(|request| request.id == *id));
        for request in &pending {
            if request.requested_at <= cutoff && !checked.contains(&request.id) {
                self.record_once(request.id, requested_record(request)).await?;
                checked.insert(request.id);
            }
        }
        Ok(())
    }

    /// Posts approved request `request`'s deposit (once; a replay if it is posted) and records
    /// it (once) for its approver — `deposit.posted` when that is its own operator (at or below
    /// the threshold), else `deposit.approved` — with `by`'s request context when `by` is the
    /// approver. Whoever gets here first writes the record: the approver's own call may have
    /// died after approving, and a retry, another operator's call or the sweep writes it.
    async fn finish(&self, request: &DepositRequest, by: Option<&Actor>) -> Result<(PostedEntry, bool)> {
        let DepositRequestStatus::Approved { by: approver, at } = request.status else {
            return Err(Error::storage(format!("deposit request {} is not approved", request.id), false));
        };
        let entry = self.entry(
            EntryKey::new(request.id, DEPOSIT_LEG),
            request.account_id,
            request.money,
            request.reference.clone(),
        )?;
        let posted = self.post_once(entry).await?;
        let actor = match by {
            Some(by) if by.user == approver => by.clone(),
            _ => Actor { user: approver, request_id: None, client_ip: None },
        };
        if approver == request.requested_by {
            // Approved by its own operator: a deposit at or below the threshold.
            let target = format!("account:{}", request.account_id);
            self.record_once(request.id, actor.record(at, "deposit.posted", target, AuditOutcome::Done)).await?;
        } else {
            // The request's own record first, should the call that stored it have died before it.
            self.record_once(request.id, requested_record(request)).await?;
            let target = format!("deposit-request:{}", request.id);
            self.record_once(request.id, actor.record(at, "deposit.approved", target, AuditOutcome::Done)).await?;
        }
        Ok(posted)
    }

    fn entry(&self, key: EntryKey, account: AccountId, money: Money, reference: String) -> Result<NewEntry> {
        NewEntry::transfer(key, self.system.deposits(money.currency)?, account, money, reference)
    }

    /// Posts `entry` unless its key already posted the same entry (a replay, which moves no
    /// money); another entry under the key is `KeyReused`.
    async fn post_once(&self, entry: NewEntry) -> Result<(PostedEntry, bool)> {
        match self.ledger.entry(entry.key()).await {
            Ok(posted) if entry.is_same_as(&posted) => Ok((posted, true)),
            Ok(_) => Err(Error::KeyReused(format!("entry key {}", entry.key()))),
            Err(Error::EntryNotFound(_)) => Ok((self.ledger.post(entry).await?, false)),
            Err(other) => Err(other),
        }
    }

    /// Appends `record` of deposit `id` unless a record of its action on `id` is there already
    /// (a retry after a crash, or a call beside the one that acted).
    async fn record_once(&self, id: TransferId, record: NewAuditRecord) -> Result<()> {
        let key = format!("{}:{id}", record.action);
        let action = record.action.clone();
        self.audit.append_once(&key, record).await.map(|_| ()).inspect_err(|error| {
            tracing::error!(%error, action, "audit append failed");
        })
    }

    async fn record(&self, by: &Actor, action: &str, target: String, outcome: AuditOutcome) -> Result<()> {
        self.audit.append(by.record(self.clock.now(), action, target, outcome)).await.map(|_| ()).inspect_err(|error| {
            tracing::error!(%error, action, "audit append failed");
        })
    }
}

/// `request`'s `deposit.requested` record as written by a call other than the one that stored
/// it (no request context).
fn requested_record(request: &DepositRequest) -> NewAuditRecord {
    let requester = Actor { user: request.requested_by, request_id: None, client_ip: None };
    let target = format!("deposit-request:{}", request.id);
    requester.record(request.requested_at, "deposit.requested", target, AuditOutcome::Done)
}

/// The sweep that finishes interrupted deposits (`DepositsService::complete_approved`), run
/// again and again: each run looks at the approvals since the previous successful run began
/// (less [`COMPLETE_APPROVED_OVERLAP_SECONDS`]), the first — and any after a day of failures —
/// at the last [`COMPLETE_APPROVED_WINDOW_SECONDS`]; a request it finished once is skipped after
/// (the overlap would otherwise check each about eleven times). Each run then writes the missing
/// `deposit.requested` records of pending requests (`DepositsService::record_pending`), each
/// request checked once.
#[derive(Debug)]
pub struct DepositsSweep {
    service: DepositsService,
    /// When the last successful run began.
    last_ok: parking_lot::Mutex<Option<DateTime<Utc>>>,
    /// Requests finished by earlier runs, with their approval's time (those before the current
    /// run's start are dropped).
    finished: parking_lot::Mutex<BTreeMap<TransferId, DateTime<Utc>>>,
    /// Pending requests whose record earlier runs checked (only those still pending are kept).
    recorded: parking_lot::Mutex<BTreeSet<TransferId>>,
}

impl DepositsSweep {
    /// A sweep through `service`, not yet run.
    pub fn new(service: DepositsService) -> Self {
        DepositsSweep {
            service,
            last_ok: parking_lot::Mutex::new(None),
            finished: parking_lot::Mutex::default(),
            recorded: parking_lot::Mutex::default(),
        }
    }

    /// One run; answers how many deposits it posted.
    pub async fn run_once(&self) -> Result<usize> {
        let started = self.service.clock.now();
        let floor = started - TimeDelta::seconds(COMPLETE_APPROVED_WINDOW_SECONDS);
        let since = match *self.last_ok.lock() {
            Some(last) => (last - TimeDelta::seconds(COMPLETE_APPROVED_OVERLAP_SECONDS)).max(floor),
            None => floor,
        };
        let mut done = std::mem::take(&mut *self.finished.lock());
        done.retain(|_, at| *at >= since);
        let result = self.service.complete_approved(since, &mut done).await;
        // Kept after a failure too: what was finished stays finished.
        *self.finished.lock() = done;
        let posted = result?;
        let mut recorded = std::mem::take(&mut *self.recorded.lock());
        let result = self.service.record_pending(&mut recorded).await;
        *self.recorded.lock() = recorded;
        result?;
        *self.last_ok.lock() = Some(started);
        Ok(posted)
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::account::NewAccount;
    use crate::clock::ManualClock;
    use crate::memory::MemoryLedger;
    use crate::memory::approvals::MemoryDepositRequests;
    use crate::memory::audit::MemoryAuditLog;
    use crate::money::Currency;

    #[test]
    fn deposit_ids_are_stable_per_operator_and_key_and_keep_their_bytes() {
        let op = CustomerId::new();
        let a = deposit_id(op, "k");
        assert_eq!(a, deposit_id(op, "k"));
        assert_ne!(a, deposit_id(CustomerId::new(), "k"));
        assert_ne!(a, deposit_id(op, "k2"));
        // The derivation the server used before it moved here: ids of earlier deposits stay.
        let mut hasher = Sha256::new();
        hasher.update(b"bank:deposit\x1f");
        hasher.update(op.to_string().as_bytes());
        hasher.update([0x1f]);
        hasher.update(b"k");
        let digest = hasher.finalize();
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        assert_eq!(*a.as_uuid(), uuid::Uuid::new_v8(bytes));
    }

    #[tokio::test]
    async fn deposits_post_once_wait_for_a_second_operator_and_refuse_self_dealing() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
        let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(clock.clone()));
        let system = SystemAccounts::ensure(ledger.as_ref(), &[Currency::Usd]).await.expect("system");
        let audit = Arc::new(MemoryAuditLog::default());
        let service = DepositsService::new(
            ledger.clone(),
            Arc::new(MemoryDepositRequests::default()),
            audit.clone(),
            system,
            DepositPolicy { approval_above: rust_decimal::Decimal::from(100) },
            clock,
        );
        let (ann, bea) = (CustomerId::new(), CustomerId::new());
        let actor = |user| Actor { user, request_id: None, client_ip: None };
        let customer =
            ledger.open_account(NewAccount::customer(CustomerId::new(), "c", Currency::Usd)).await.expect("o");
        let own = ledger.open_account(NewAccount::customer(ann, "ann's", Currency::Usd)).await.expect("open");
        let usd = |s: &str| Money::parse(s, "USD").expect("money");

        let first = service.deposit(&actor(ann), "k1", &customer, usd("10.00"), "r".into()).await.expect("deposit");
        assert!(matches!(first, DepositOutcome::Posted { replayed: false, .. }));
        let again = service.deposit(&actor(ann), "k1", &customer, usd("10.00"), "r".into()).await.expect("replay");
        assert!(matches!(again, DepositOutcome::Posted { replayed: true, .. }));
        assert!(matches!(
            service.deposit(&actor(ann), "k1", &customer, usd("11.00"), "r".into()).await,
            Err(Error::KeyReused(_))
        ));
        assert_eq!(ledger.balance(customer.id).await.expect("balance").posted, usd("10.00").value());
        assert!(matches!(
            service.deposit(&actor(ann), "k2", &own, usd("1.00"), "r".into()).await,
            Err(Error::SeparationOfDuties(_))
        ));

        let DepositOutcome::Pending { request, .. } =
            service.deposit(&actor(ann), "big", &customer, usd("500.00"), "r".into()).await.expect("pending")
        else {
            panic!("a deposit above the threshold waits for a second operator");
        };
        assert_eq!(ledger.balance(customer.id).await.expect("balance").posted, usd("10.00").value());
        assert!(matches!(service.approve(&actor(ann), request.id).await, Err(Error::SeparationOfDuties(_))));
        let approved = service.approve(&actor(bea), request.id).await.expect("approve");
        assert!(approved.first);
        let late = service.approve(&actor(CustomerId::new()), request.id).await.expect("a later approval");
        assert!(!late.first, "approving twice posts once");
        assert_eq!(ledger.balance(customer.id).await.expect("balance").posted, usd("510.00").value());
        let actions: Vec<String> =
            audit.list(1, 100).await.expect("audit").into_iter().map(|r| r.record.action).collect();
        assert_eq!(
            actions,
            [
                "deposit.posted",
                "deposit.refused.own_account",
                "deposit.requested",
                "deposit.approve.refused.own_request",
                "deposit.approved"
            ]
        );
    }
}
