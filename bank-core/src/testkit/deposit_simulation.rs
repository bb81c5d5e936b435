//! Deterministic fault simulation of operators' deposits and their four-eyes approvals
//! ([`DepositsService`]).
//!
//! One seed drives three operators (one of whom also owns a customer account) depositing into
//! customer accounts below and above the approval threshold, under fresh idempotency keys and
//! reused ones (the same request again, or another request — also at the same instant), several
//! identical calls at once; and approvals of requests — answered as pending, or read from the
//! pending list — by any operator (the requester and the account's owner too, several at once,
//! unknown ids). While the chaos lasts, calls to the
//! ledger, to the deposit requests and to the audit log fail as over a dropped connection
//! ([`super::lossy`]), before or after the store acted, or — a write — late, landing after up to
//! 400 further calls (what is still on its way when the chaos ends lands then). A caller that gets a retryable error
//! retries the same call later, as the API asks of its clients — except one in five, who never do
//! (an interrupted approval may also be taken up by another operator who may approve it) — and
//! the scheduler's sweep ([`DepositsSweep`]) runs now and then under the
//! same faults. Once the chaos is over every outstanding call is retried until it gets a
//! definitive answer and the sweep runs once more. Then:
//!
//! - the ledger sums to zero per currency, and each deposits account paid out exactly the
//!   deposits posted from it;
//! - every deposit is posted at most once (one entry under its id), to the account and for the
//!   amount its stored request names; one answered as posted is posted;
//! - a deposit at or below the threshold is stored approved by its own operator and posted; one
//!   above it is posted exactly when its request is approved, by an operator who neither
//!   requested it nor owns the account;
//! - the audit log holds exactly one record of each deposit posted (`deposit.posted`, or
//!   `deposit.approved` by the approver that counted) and of each request stored, pending or
//!   approved (`deposit.requested`: the final sweep writes those of pending requests whose calls
//!   died before them and were abandoned), none of anything that did not happen, and a record of
//!   every refusal answered;
//! - replays answered what the first answer said.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use rust_decimal::Decimal;

use super::lossy::{Cut, Cutter, LateQueue, LateWrite, Lossy};
use super::simulation::{Rng, rng_index};
use crate::account::{Account, NewAccount};
use crate::approvals::{DepositPolicy, DepositRequestStatus, DepositRequestStore, PENDING_PAGE_MAX};
use crate::audit::{Actor, AuditLog, AuditOutcome};
use crate::clock::{Clock, ManualClock};
use crate::deposits::{
    DEPOSIT_LEG, DepositOutcome, DepositsService, DepositsSweep, PENDING_RECORD_GRACE_SECONDS, deposit_id,
};
use crate::error::{Error, ErrorAction};
use crate::ids::{AccountId, CustomerId, TransferId};
use crate::ledger::{EntryKey, Side};
use crate::memory::MemoryLedger;
use crate::memory::approvals::MemoryDepositRequests;
use crate::memory::audit::MemoryAuditLog;
use crate::money::{Currency, Money};
use crate::payments::SystemAccounts;
use crate::ports::LedgerStore;

/// Number of seeds the default test runs (`SIM_SEEDS` overrides).
pub const DEFAULT_DEPOSIT_SEEDS: u64 = 2_000;

/// What one seed (or several, summed) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepositSimReport {
    /// Deposits posted (below the threshold, or approved).
    pub posted: usize,
    /// Requests still waiting for a second operator at the end.
    pub pending: usize,
    /// Requests approved.
    pub approved: usize,
    /// Calls refused (separation of duties, key reused, unknown request).
    pub refused: usize,
    /// Calls that failed retryably and were retried.
    pub retried: usize,
    /// Store calls cut.
    pub cuts: usize,
    /// Of the cut calls, writes cut late (to land after other calls).
    pub late: usize,
    /// Interrupted calls nobody retried.
    pub abandoned: usize,
    /// Deposits the final sweep posted (calls interrupted after their request was stored approved).
    pub swept: usize,
}

/// Percentage of interrupted calls nobody retries.
const ABANDON_PERCENT: u64 = 20;

/// Cuts store calls while the chaos lasts.
#[derive(Debug)]
struct SimCutter {
    state: Mutex<CutState>,
}

#[derive(Debug)]
struct CutState {
    rng: Rng,
    enabled: bool,
    percent: u64,
    cuts: usize,
    /// Writes cut late, waiting to land.
    late: LateQueue,
}

impl Cutter for SimCutter {
    fn cut(&self) -> Cut {
        let mut s = self.state.lock();
        if !s.enabled {
            return Cut::No;
        }
        let percent = s.percent;
        let cut = s.rng.cut(percent);
        if cut != Cut::No {
            s.cuts += 1;
        }
        cut
    }

    fn defer(&self, write: LateWrite) {
        let mut s = self.state.lock();
        let calls = s.rng.late_calls();
        s.late.push(calls, write);
    }

    fn landing(&self) -> Vec<LateWrite> {
        self.state.lock().late.due()
    }
}

/// One call a caller makes, and makes again while it fails retryably.
#[derive(Debug, Clone)]
enum Call {
    Deposit { operator: usize, key: String, account: AccountId, money: Money, reference: String },
    Approve { operator: usize, id: TransferId },
}

/// What the callers were told, per deposit id.
#[derive(Debug, Default)]
struct Told {
    /// Answered as posted: (account, money).
    posted: BTreeMap<TransferId, Vec<(AccountId, Money)>>,
    /// Answered as pending (stored): (account, money, requester).
    pending: BTreeMap<TransferId, Vec<(AccountId, Money, CustomerId)>>,
    /// First answers of deposits, to compare replays with: (posted?, account, money).
    first: BTreeMap<TransferId, (bool, AccountId, Money)>,
    /// Approvals answered: the id and the approver that counted.
    approved: BTreeMap<TransferId, BTreeSet<CustomerId>>,
    /// Refusals answered with separation of duties.
    separation_refusals: usize,
}

/// Runs the seeds [`super::simulation::seeds_from_env`] names, panicking with the first failing seed.
pub async fn run_deposit_seeds(default_count: u64) {
    super::simulation::run_seed_range("deposit simulation", default_count, run_deposit_seed).await;
}

impl std::ops::AddAssign for DepositSimReport {
    fn add_assign(&mut self, r: DepositSimReport) {
        self.posted += r.posted;
        self.pending += r.pending;
        self.approved += r.approved;
        self.refused += r.refused;
        self.retried += r.retried;
        self.cuts += r.cuts;
        self.late += r.late;
        self.abandoned += r.abandoned;
        self.swept += r.swept;
    }
}

/// Runs one seed; `Err` names the broken invariant.
pub async fn run_deposit_seed(seed: u64) -> std::result::Result<DepositSimReport, String> {
    let _ids = crate::ids::seeded::seed_ids(seed);
    let mut rng = Rng(seed);
    let clock = ManualClock::at_epoch();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let cutter = Arc::new(SimCutter {
        state: Mutex::new(CutState {
            rng: Rng(seed ^ 0xDE90),
            enabled: false,
            percent: 1 + rng.below(10),
            cuts: 0,
            late: LateQueue::default(),
        }),
    });
    let ledger_inner = Arc::new(MemoryLedger::new(dyn_clock.clone()));
    let requests_inner = Arc::new(MemoryDepositRequests::new());
    let audit_inner = Arc::new(MemoryAuditLog::new());
    let ledger: Arc<dyn LedgerStore> =
        Arc::new(Lossy::new(ledger_inner.clone() as Arc<dyn LedgerStore>, cutter.clone()));
    let requests: Arc<dyn DepositRequestStore> =
        Arc::new(Lossy::new(requests_inner.clone() as Arc<dyn DepositRequestStore>, cutter.clone()));
    let audit: Arc<dyn AuditLog> = Arc::new(Lossy::new(audit_inner.clone() as Arc<dyn AuditLog>, cutter.clone()));
    let currencies = [Currency::Usd, Currency::Eur];
    let system =
        SystemAccounts::ensure(ledger_inner.as_ref(), &currencies).await.map_err(|e| format!("system: {e}"))?;
    let threshold = Decimal::from(50 + rng.below(100));
    let policy = DepositPolicy { approval_above: threshold };
    let service = DepositsService::new(ledger, requests, audit, system.clone(), policy, dyn_clock.clone());
    let sweep = DepositsSweep::new(service.clone());

    let operators: Vec<CustomerId> = (0..3).map(|_| CustomerId::new()).collect();
    let mut accounts: Vec<Account> = Vec::new();
    for (i, currency) in [Currency::Usd, Currency::Usd, Currency::Eur, Currency::Usd].into_iter().enumerate() {
        // The last account is the first operator's own.
        let owner = if i == 3 { operators[0] } else { CustomerId::new() };
        let account = ledger_inner
            .open_account(NewAccount::customer(owner, format!("a{i}"), currency))
            .await
            .map_err(|e| format!("open: {e}"))?;
        accounts.push(account);
    }
    let owner_of: BTreeMap<AccountId, CustomerId> = accounts.iter().map(|a| (a.id, a.owner)).collect();

    let mut report = DepositSimReport::default();
    let mut told = Told::default();
    // Every (operator, key) used, with the first request made under it.
    let mut keys: Vec<Call> = Vec::new();
    // Deposit ids with a request someone was told is pending (what approvers pick from).
    let mut requested: Vec<TransferId> = Vec::new();
    let mut outstanding: Vec<Call> = Vec::new();
    let mut request_seq = 0u64;

    cutter.state.lock().enabled = true;
    let steps = 30 + rng.below(50);
    for _ in 0..steps {
        let calls: Vec<Call> = match rng.below(100) {
            0..=49 => {
                let call = if !keys.is_empty() && rng.chance(30) {
                    let mut call = rng.pick(&keys).clone();
                    if rng.chance(30)
                        && let Call::Deposit { money, .. } = &mut call
                    {
                        // Another request under the key.
                        *money = amount(&mut rng, threshold, money.currency)?;
                    }
                    call
                } else {
                    let account = rng.pick(&accounts).clone();
                    let call = Call::Deposit {
                        operator: rng_index(&mut rng, operators.len()),
                        key: format!("k{}", rng.below(1_000_000)),
                        account: account.id,
                        money: amount(&mut rng, threshold, account.currency)?,
                        reference: format!("deposit {}", rng.below(1000)),
                    };
                    keys.push(call.clone());
                    call
                };
                let burst = if rng.chance(15) { 2 + rng.below(2) } else { 1 };
                let mut calls: Vec<Call> = (0..burst).map(|_| call.clone()).collect();
                if burst > 1
                    && rng.chance(30)
                    && let Some(Call::Deposit { money, .. }) = calls.last_mut()
                {
                    // Another request under the same key at the same instant.
                    *money = amount(&mut rng, threshold, money.currency)?;
                }
                calls
            }
            50..=84 => {
                // From the answers seen, or from the pending list operators work from (which also
                // holds requests whose calls died before answering).
                let queue: Vec<TransferId> = if rng.chance(50) {
                    requests_inner
                        .pending(PENDING_PAGE_MAX)
                        .await
                        .map_err(|e| e.to_string())?
                        .iter()
                        .map(|r| r.id)
                        .collect()
                } else {
                    requested.clone()
                };
                let id = if queue.is_empty() || rng.chance(5) { TransferId::new() } else { *rng.pick(&queue) };
                let burst = if rng.chance(20) { 2 + rng.below(2) } else { 1 };
                (0..burst).map(|_| Call::Approve { operator: rng_index(&mut rng, operators.len()), id }).collect()
            }
            85..=87 => {
                // The scheduler's sweep, under the same faults.
                let _ = sweep.run_once().await;
                Vec::new()
            }
            88..=94 if !outstanding.is_empty() => {
                let index = rng_index(&mut rng, outstanding.len());
                report.retried += 1;
                vec![outstanding.swap_remove(index)]
            }
            _ => {
                clock.advance(chrono::TimeDelta::seconds(i64::try_from(rng.below(120)).unwrap_or(0)));
                Vec::new()
            }
        };
        let answers = futures::future::join_all(calls.iter().map(|call| {
            request_seq += 1;
            run_call(&service, &operators, &accounts, call, request_seq)
        }))
        .await;
        for (call, answer) in calls.into_iter().zip(answers) {
            if let Some(retry) = judge(call, answer, threshold, &mut told, &mut requested, &mut report)? {
                if rng.chance(ABANDON_PERCENT) {
                    // Nobody retries it: the sweep must complete what it left.
                    report.abandoned += 1;
                    continue;
                }
                // An interrupted approval may be taken up by another operator who may approve it.
                let retry = match retry {
                    Call::Approve { id, operator } if rng.chance(30) => {
                        let request = requests_inner.get(id).await.map_err(|e| e.to_string())?;
                        let may = |o: &usize| {
                            request.as_ref().is_none_or(|r| {
                                r.requested_by != operators[*o] && owner_of.get(&r.account_id) != Some(&operators[*o])
                            })
                        };
                        let others: Vec<usize> = (0..operators.len()).filter(|o| *o != operator && may(o)).collect();
                        let operator = if others.is_empty() { operator } else { *rng.pick(&others) };
                        Call::Approve { operator, id }
                    }
                    other => other,
                };
                outstanding.push(retry);
            }
        }
    }
    cutter.state.lock().enabled = false;
    // What is still on its way lands now.
    let late = cutter.state.lock().late.take_all();
    for write in late {
        write.land().await;
    }
    // Every caller retries until it gets a definitive answer (no faults now: one round each).
    for _ in 0..3 {
        let calls = std::mem::take(&mut outstanding);
        for call in calls {
            request_seq += 1;
            let answer = run_call(&service, &operators, &accounts, &call, request_seq).await;
            report.retried += 1;
            if let Some(retry) = judge(call, answer, threshold, &mut told, &mut requested, &mut report)? {
                outstanding.push(retry);
            }
        }
    }
    if !outstanding.is_empty() {
        return Err(format!("calls still failing without faults: {outstanding:?}"));
    }
    // Late enough for the sweep to write pending requests' missing records.
    clock.advance(chrono::TimeDelta::seconds(PENDING_RECORD_GRACE_SECONDS));
    report.swept = sweep.run_once().await.map_err(|e| format!("sweep: {e}"))?;
    (report.cuts, report.late) = {
        let s = cutter.state.lock();
        (s.cuts, s.late.pushed())
    };

    check(
        &ledger_inner,
        &requests_inner,
        &audit_inner,
        &system,
        &currencies,
        &owner_of,
        &keys,
        &operators,
        threshold,
        &told,
        &mut report,
    )
    .await?;
    Ok(report)
}

/// An amount around the threshold: about half need a second operator.
fn amount(rng: &mut Rng, threshold: Decimal, currency: Currency) -> std::result::Result<Money, String> {
    let cents = 1 + rng.below(u64::try_from(threshold.trunc().mantissa()).unwrap_or(100) * 200);
    Money::new(Decimal::new(i64::try_from(cents).unwrap_or(1), 2), currency).map_err(|e| e.to_string())
}

/// The answer to one call.
enum Answer {
    Deposit(crate::error::Result<DepositOutcome>),
    Approve(crate::error::Result<crate::deposits::Approved>),
}

async fn run_call(
    service: &DepositsService,
    operators: &[CustomerId],
    accounts: &[Account],
    call: &Call,
    request_seq: u64,
) -> Answer {
    match call {
        Call::Deposit { operator, key, account, money, reference } => {
            let actor = actor(operators[*operator], request_seq);
            let account = accounts.iter().find(|a| a.id == *account).expect("a simulated account");
            Answer::Deposit(service.deposit(&actor, key, account, *money, reference.clone()).await)
        }
        Call::Approve { operator, id } => {
            let actor = actor(operators[*operator], request_seq);
            Answer::Approve(service.approve(&actor, *id).await)
        }
    }
}

/// Adds `item` to `items` unless it is there.
fn add<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

fn actor(user: CustomerId, request_seq: u64) -> Actor {
    Actor { user, request_id: Some(format!("req-{request_seq}")), client_ip: Some("192.0.2.1".into()) }
}

/// Records what `call` was told; answers the call again if it must be retried.
fn judge(
    call: Call,
    answer: Answer,
    threshold: Decimal,
    told: &mut Told,
    requested: &mut Vec<TransferId>,
    report: &mut DepositSimReport,
) -> std::result::Result<Option<Call>, String> {
    let error = match answer {
        Answer::Deposit(Ok(outcome)) => {
            let (id, answer) = match outcome {
                DepositOutcome::Posted { entry, account, money, .. } => {
                    if money.value() > threshold {
                        return Err(format!("a deposit of {money} above the threshold posted at once"));
                    }
                    add(told.posted.entry(entry.key.transfer_id).or_default(), (account, money));
                    (entry.key.transfer_id, (true, account, money))
                }
                DepositOutcome::Pending { request, .. } => {
                    if request.money.value() <= threshold {
                        return Err(format!("a deposit of {} at or below the threshold is pending", request.money));
                    }
                    let answer = (request.account_id, request.money, request.requested_by);
                    add(told.pending.entry(request.id).or_default(), answer);
                    if !requested.contains(&request.id) {
                        requested.push(request.id);
                    }
                    (request.id, (false, request.account_id, request.money))
                }
            };
            // The first answer told (an earlier call's may have been lost): every later one equals it.
            let first = *told.first.entry(id).or_insert(answer);
            if first != answer {
                return Err(format!("{call:?} answered {answer:?}, an earlier call under its key {first:?}"));
            }
            return Ok(None);
        }
        Answer::Approve(Ok(approved)) => {
            let by = match approved.request.status {
                DepositRequestStatus::Approved { by, .. } => by,
                DepositRequestStatus::Pending => return Err("an approval answered a pending request".into()),
            };
            if approved.entry.key.transfer_id != approved.request.id {
                return Err("an approval answered another deposit's entry".into());
            }
            told.approved.entry(approved.request.id).or_default().insert(by);
            return Ok(None);
        }
        Answer::Deposit(Err(error)) | Answer::Approve(Err(error)) => error,
    };
    match error.action() {
        ErrorAction::Retry => Ok(Some(call)),
        ErrorAction::GiveUp => Err(format!("{call:?} gave up: {error}")),
        _ => {
            report.refused += 1;
            match (&call, &error) {
                (_, Error::SeparationOfDuties(_)) => told.separation_refusals += 1,
                (_, Error::KeyReused(_)) | (Call::Approve { .. }, Error::TransferNotFound(_)) => {}
                _ => return Err(format!("{call:?} refused unexpectedly: {error}")),
            }
            Ok(None)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn check(
    ledger: &MemoryLedger,
    requests: &MemoryDepositRequests,
    audit: &MemoryAuditLog,
    system: &SystemAccounts,
    currencies: &[Currency],
    owner_of: &BTreeMap<AccountId, CustomerId>,
    keys: &[Call],
    operators: &[CustomerId],
    threshold: Decimal,
    told: &Told,
    report: &mut DepositSimReport,
) -> std::result::Result<(), String> {
    // Every deposit id that any key could have made.
    let ids: BTreeSet<TransferId> = keys
        .iter()
        .filter_map(|call| match call {
            Call::Deposit { operator, key, .. } => Some(deposit_id(operators[*operator], key)),
            Call::Approve { .. } => None,
        })
        .collect();
    let mut paid: BTreeMap<Currency, Decimal> = BTreeMap::new();
    let mut posted_records: BTreeMap<String, usize> = BTreeMap::new();
    // Every stored request, pending or approved: one record each.
    let mut expected_requested: BTreeSet<String> = BTreeSet::new();
    let mut expected_approved: BTreeMap<String, CustomerId> = BTreeMap::new();
    for &id in &ids {
        let entry = match ledger.entry(EntryKey::new(id, DEPOSIT_LEG)).await {
            Ok(entry) => Some(entry),
            Err(Error::EntryNotFound(_)) => None,
            Err(e) => return Err(format!("entry {id}: {e}")),
        };
        let request = requests.get(id).await.map_err(|e| e.to_string())?;
        // (account, money) the entry credits.
        let credited = match &entry {
            Some(entry) => {
                let credit = entry
                    .lines
                    .iter()
                    .find(|l| l.side == Side::Credit)
                    .ok_or_else(|| format!("deposit {id} credits nobody"))?;
                let debit = entry
                    .lines
                    .iter()
                    .find(|l| l.side == Side::Debit)
                    .ok_or_else(|| format!("deposit {id} debits nobody"))?;
                let deposits = system.deposits(credit.money.currency).map_err(|e| e.to_string())?;
                if entry.lines.len() != 2 || debit.account_id != deposits || debit.money != credit.money {
                    return Err(format!("deposit {id} is not one deposits-account debit and one credit"));
                }
                *paid.entry(credit.money.currency).or_default() += credit.money.value();
                report.posted += 1;
                Some((credit.account_id, credit.money))
            }
            None => None,
        };
        if let Some(posted) = told.posted.get(&id)
            && (posted.len() != 1 || credited.is_none_or(|c| !posted.contains(&c)))
        {
            return Err(format!("deposit {id} answered as posted {posted:?}, the ledger has {credited:?}"));
        }
        let Some(request) = request else {
            if credited.is_some() {
                return Err(format!("deposit {id} posted without a request"));
            }
            if told.pending.contains_key(&id) || told.posted.contains_key(&id) {
                return Err(format!("deposit {id} answered as pending or posted has no request"));
            }
            continue;
        };
        if request.money.value() <= threshold {
            // Stored approved by its own operator, and posted (by its call, a retry or the sweep).
            if request.status != (DepositRequestStatus::Approved { by: request.requested_by, at: request.requested_at })
            {
                return Err(format!("deposit {id} at or below the threshold stored as {request:?}"));
            }
            if credited != Some((request.account_id, request.money)) {
                return Err(format!("deposit {id} posted as {credited:?}: {request:?}"));
            }
            *posted_records.entry(format!("account:{}", request.account_id)).or_default() += 1;
            continue;
        }
        let told_pending = told.pending.get(&id).cloned().unwrap_or_default();
        if told_pending.len() > 1
            || told_pending.iter().any(|t| *t != (request.account_id, request.money, request.requested_by))
        {
            return Err(format!("request {id} answered as {told_pending:?}, stored as {request:?}"));
        }
        let target = format!("deposit-request:{id}");
        match (request.status, credited) {
            (DepositRequestStatus::Pending, None) => {
                // Recorded by its call, its retry or (that call abandoned) the final sweep.
                report.pending += 1;
                expected_requested.insert(target);
            }
            (DepositRequestStatus::Approved { by, .. }, Some(credited)) => {
                report.approved += 1;
                expected_requested.insert(target.clone());
                if credited != (request.account_id, request.money) {
                    return Err(format!("request {id} posted as {credited:?}: {request:?}"));
                }
                if by == request.requested_by || owner_of.get(&request.account_id) == Some(&by) {
                    return Err(format!("request {id} approved by its requester or the account's owner"));
                }
                if told.approved.get(&id).is_some_and(|approvers| approvers.iter().any(|a| *a != by)) {
                    return Err(format!("request {id} answered as approved by another operator than {by}"));
                }
                expected_approved.insert(target, by);
            }
            (status, credited) => {
                return Err(format!("request {id} is {status:?} and its deposit posted: {credited:?}"));
            }
        }
    }
    // The ledger: zero per currency, the deposits accounts paid exactly the deposits.
    for &currency in currencies {
        let deposits = system.deposits(currency).map_err(|e| e.to_string())?;
        let balance = ledger.balance(deposits).await.map_err(|e| e.to_string())?;
        let expected = paid.get(&currency).copied().unwrap_or_default();
        if balance.posted != -expected {
            return Err(format!("{currency} deposits account at {}, deposits posted {expected}", balance.posted));
        }
    }
    for (currency, total) in ledger.trial_balance().await.map_err(|e| e.to_string())? {
        if !total.is_zero() {
            return Err(format!("{currency} balances sum to {total}"));
        }
    }
    // The audit log: one record of each thing that happened, none of what did not.
    let mut records = Vec::new();
    loop {
        let page = audit.list(records.len() as u64 + 1, 1000).await.map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        records.extend(page);
    }
    let mut found_posted: BTreeMap<String, usize> = BTreeMap::new();
    let mut found_requested: BTreeMap<String, usize> = BTreeMap::new();
    let mut found_approved: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refusals = 0;
    for record in records.iter().map(|r| &r.record) {
        match record.action.as_str() {
            "deposit.posted" => *found_posted.entry(record.target.clone()).or_default() += 1,
            "deposit.requested" => *found_requested.entry(record.target.clone()).or_default() += 1,
            "deposit.approved" => found_approved.entry(record.target.clone()).or_default().push(record.subject.clone()),
            action if action.contains(".refused.") => {
                if record.outcome != AuditOutcome::Refused {
                    return Err(format!("refusal {action} recorded as {:?}", record.outcome));
                }
                refusals += 1;
            }
            other => return Err(format!("unexpected audit action {other}")),
        }
    }
    if found_posted != posted_records {
        return Err(format!("deposit.posted records {found_posted:?}, deposits posted per account {posted_records:?}"));
    }
    if found_requested.keys().ne(expected_requested.iter()) || found_requested.values().any(|n| *n != 1) {
        return Err(format!("deposit.requested records {found_requested:?}, requests stored {expected_requested:?}"));
    }
    let approved_by: BTreeMap<String, String> =
        expected_approved.iter().map(|(target, by)| (target.clone(), by.to_string())).collect();
    if found_approved.len() != approved_by.len()
        || found_approved
            .iter()
            .any(|(target, subjects)| subjects.len() != 1 || approved_by.get(target) != Some(&subjects[0]))
    {
        return Err(format!("deposit.approved records {found_approved:?}, approvals {approved_by:?}"));
    }
    if refusals < told.separation_refusals {
        return Err(format!("{} refusals answered, {refusals} recorded", told.separation_refusals));
    }
    Ok(())
}
