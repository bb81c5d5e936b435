//! The open-loop engine. Each route has its own schedule at a constant arrival rate: request `i`
//! is *intended* at `start + i / rate`, sent then (or at once when the generator is late), and
//! its latency is measured from that intended time — a slow server makes the following requests
//! late, and their latency says so (no coordinated omission). A request waits for nothing but a
//! free connection: at most [`Plan::connections`] are on the wire at once (as behind a load
//! balancer's pool), the wait counted in the latency. A cap on requests in flight (waiting or on
//! the wire) protects the generator's memory, and a request it could not start under the cap
//! counts as a `saturated` error.
//!
//! Accepted transfers are followed until they are final (`GET /v1/transfers/{id}`, polled with a
//! short backoff), which measures accept → settled. Up to [`FOLLOWED_PER_SECOND`] a second are
//! followed as they are accepted (every one at the seed's peak; one in ten at ten times it): the
//! polls are the harness's own reads, several per transfer, and following all of them at a high
//! rate would add more read load than the run asks for. Every other accepted transfer is checked
//! final after the schedules end, so none goes unchecked. The transfers' journal (key, request,
//! answer) lets a caller re-send every unanswered request under its key after a crash.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank_api::{IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, Page, TransferRequest, TransferStatus, paths};
use futures::StreamExt;
use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use rand::Rng;
use rust_decimal::Decimal;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::setup::Fixture;
use crate::stats::{Recorder, Route, RouteSummary};
use crate::watch::ProcessSample;
use crate::wire::{Bearer, Wire, WireError};

/// Page size of the history reads.
pub const HISTORY_PAGE: u32 = 20;

/// Most accepted transfers a second whose accept → settled time is measured as they go (see the
/// module's documentation); the others are checked final after the run.
pub const FOLLOWED_PER_SECOND: u32 = 100;

/// Most transfers checked at once after the run.
const CHECKS_IN_FLIGHT: usize = 64;

/// What to send, how fast and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Account views per second.
    pub account_rate: u32,
    /// History pages per second.
    pub history_rate: u32,
    /// Transfers per second.
    pub transfer_rate: u32,
    /// How long the schedules run (settlement is followed beyond it, up to `settle_timeout`).
    pub duration: Duration,
    /// Amount of each transfer.
    pub amount: Decimal,
    /// Follow accepted transfers until they are final.
    pub follow_settlement: bool,
    /// How long an accepted transfer may take to become final.
    pub settle_timeout: Duration,
    /// Most requests in flight at once (requests past it are not sent and count as `saturated`).
    pub in_flight_max: usize,
    /// Most scheduled requests on the wire at once, so at most this many connections to the
    /// server: a request due while all are busy waits in the generator for one (its latency,
    /// measured from its intended time, includes the wait), as behind a load balancer's pool of
    /// keep-alive connections. Without it a stall of a few milliseconds turned every waiting
    /// request into a new TCP connection, thousands at once, and the server's accept queue
    /// overflowed (dropped SYNs retried after a second: `connect` errors and seconds of latency).
    pub connections: usize,
    /// Print a progress line on standard error each second.
    pub progress: bool,
    /// Keep the journal of transfers.
    pub journal: bool,
    /// Length of the periods a soak is cut into (each with its own latencies and a sample of the
    /// watched process); the last one may be shorter.
    pub period: Duration,
    /// The server process to sample at the end of each period (resident memory, open files).
    pub watch_pid: Option<u32>,
}

/// One period of a run: its latencies, and the watched process at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Seconds from the start of the run to the end of the period.
    pub end_s: u64,
    pub routes: Vec<RouteSummary>,
    /// The watched server process at the period's end (`None`: none watched, or not readable).
    pub server: Option<ProcessSample>,
}

/// What a transfer request got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub enum TransferAnswer {
    /// 202 (or the replay of one): the transfer's id.
    Accepted { id: Uuid, replayed: bool },
    /// An error status: the request was answered but not accepted.
    Refused { status: u16 },
    /// No answer (connection refused or reset, timeout): the server may or may not have it.
    NoAnswer { reason: String },
}

impl TransferAnswer {
    /// Whether the request must be sent again, under its key, to know its fate: no answer, or
    /// an answer that says "retry" (5xx, 408, 429, 409 in flight).
    pub fn is_unresolved(&self) -> bool {
        match self {
            Self::Accepted { .. } => false,
            Self::Refused { status } => matches!(status, 408 | 409 | 429 | 500..=599),
            Self::NoAnswer { .. } => true,
        }
    }
}

/// One transfer request of the run.
#[derive(Debug, Clone, Serialize)]
pub struct TransferRecord {
    pub key: String,
    /// Index of the sending user in the fixture.
    pub user: usize,
    pub request: TransferRequest,
    pub answer: TransferAnswer,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Time the schedules ran.
    pub elapsed_ms: u64,
    /// Per route, over the schedules' time (settle over the same span).
    pub routes: Vec<RouteSummary>,
    /// Accepted transfers not final within the settle timeout (or when interrupted).
    pub unsettled: u64,
    /// Accepted transfers that ended failed.
    pub failed_transfers: u64,
    /// `GET /v1/transfers/{id}` polls sent to follow settlement (extra read load, not measured).
    pub settle_polls: u64,
    /// Accepted transfers whose accept → settled time was measured (the others were checked
    /// final after the run).
    pub followed: u64,
    /// Accepted transfers checked final after the run.
    pub checked_after: u64,
    /// The run was stopped early (Ctrl-C).
    pub interrupted: bool,
    /// The run cut into [`Plan::period`]s.
    pub periods: Vec<Period>,
    #[serde(skip)]
    pub journal: Vec<TransferRecord>,
}

impl Outcome {
    /// The summary of `route`.
    pub fn route(&self, route: Route) -> Option<&RouteSummary> {
        self.routes.iter().find(|r| r.route == route)
    }

    /// Errors over every route, settlement included.
    pub fn errors(&self) -> u64 {
        self.routes.iter().map(|r| r.errors).sum()
    }
}

#[derive(Debug, Default)]
struct Shared {
    journal: Mutex<Vec<TransferRecord>>,
    unsettled: AtomicU64,
    failed: AtomicU64,
    polls: AtomicU64,
    followed: AtomicU64,
    /// Accepted transfers not followed, checked after the run: whose, which, when accepted.
    unfollowed: Mutex<Vec<(usize, Uuid, Instant)>>,
}

/// Runs `plan` against the fixture's users until done or `cancel` is triggered.
pub async fn run(fixture: &Fixture, plan: &Plan, cancel: &CancellationToken) -> Outcome {
    let recorder = Arc::new(Recorder::new());
    let shared = Arc::new(Shared::default());
    let tracker = TaskTracker::new();
    let fixture = Arc::new(fixture.clone());
    let start = Instant::now() + Duration::from_millis(20);
    let progress = plan.progress.then(|| tokio::spawn(progress_lines(Arc::clone(&recorder), tracker.clone())));
    let periods = Arc::new(Mutex::new(Vec::new()));
    let period_task = tokio::spawn(cut_periods(Arc::clone(&recorder), Arc::clone(&periods), start, plan.clone()));

    let wire = Arc::clone(&fixture.wire);
    let paths: Arc<Vec<UserPaths>> = Arc::new(fixture.users.iter().map(|user| UserPaths::of(user.account)).collect());
    let refresh = tokio::spawn({
        let fixture = Arc::clone(&fixture);
        async move {
            let mut ticker = tokio::time::interval_at(Instant::now() + TOKEN_LOOK, TOKEN_LOOK);
            loop {
                ticker.tick().await;
                fixture.refresh().await;
            }
        }
    });
    let reads: Maker = {
        let (fixture, recorder, wire, paths) =
            (Arc::clone(&fixture), Arc::clone(&recorder), Arc::clone(&wire), Arc::clone(&paths));
        Box::new(move |i, intended| {
            let u = index(i, fixture.users.len());
            let (bearer, account) = (Arc::clone(&fixture.users[u].bearer), fixture.users[u].account);
            let (recorder, wire, paths) = (Arc::clone(&recorder), Arc::clone(&wire), Arc::clone(&paths));
            Box::pin(async move {
                let viewed = wire.get(&paths[u].account, &bearer).await.and_then(|answer| {
                    let named: Named = answer.json()?;
                    if named.id == account {
                        Ok(())
                    } else {
                        Err(WireError::Decode(format!("account {} for {account}", named.id)))
                    }
                });
                measure(&recorder, Route::Account, intended, viewed);
            })
        })
    };
    let history: Maker = {
        let (fixture, recorder, wire, paths) =
            (Arc::clone(&fixture), Arc::clone(&recorder), Arc::clone(&wire), Arc::clone(&paths));
        Box::new(move |i, intended| {
            let u = index(i, fixture.users.len());
            let bearer = Arc::clone(&fixture.users[u].bearer);
            let (recorder, wire, paths) = (Arc::clone(&recorder), Arc::clone(&wire), Arc::clone(&paths));
            Box::pin(async move {
                let page = wire
                    .get(&paths[u].history, &bearer)
                    .await
                    .and_then(|answer| answer.json::<Page<IgnoredAny>>().map(drop));
                measure(&recorder, Route::History, intended, page);
            })
        })
    };
    let transfers: Maker = {
        let (fixture, recorder, tracker) = (Arc::clone(&fixture), Arc::clone(&recorder), tracker.clone());
        let (plan, shared, wire) = (plan.clone(), Arc::clone(&shared), Arc::clone(&wire));
        let cancel = cancel.clone();
        Box::new(move |i, intended| {
            let n = fixture.users.len();
            let from = index(i, n);
            let to = if n < 2 { from } else { (from + 1 + rand::thread_rng().gen_range(0..n - 1)) % n };
            let request = TransferRequest::internal(
                fixture.users[from].account,
                fixture.users[to].account,
                plan.amount,
                fixture.currency.clone(),
                "bank-load",
            );
            let key = Uuid::now_v7().to_string();
            let bearer = Arc::clone(&fixture.users[from].bearer);
            let (recorder, shared, tracker, cancel, plan, wire) = (
                Arc::clone(&recorder),
                Arc::clone(&shared),
                tracker.clone(),
                cancel.clone(),
                plan.clone(),
                Arc::clone(&wire),
            );
            Box::pin(async move {
                let answer = match submit(&wire, &bearer, &key, &request).await {
                    Ok((id, replayed)) => {
                        recorder.ok(Route::Transfer, intended.elapsed());
                        TransferAnswer::Accepted { id, replayed }
                    }
                    Err(error) => {
                        recorder.error(Route::Transfer, &error.label());
                        match error {
                            WireError::Status(status) => TransferAnswer::Refused { status },
                            other => TransferAnswer::NoAnswer { reason: other.to_string() },
                        }
                    }
                };
                if let (TransferAnswer::Accepted { id, .. }, true) = (&answer, plan.follow_settlement) {
                    let (id, accepted) = (*id, Instant::now());
                    if i % follow_every(plan.transfer_rate) == 0 {
                        shared.followed.fetch_add(1, Ordering::Relaxed);
                        let (recorder, shared) = (Arc::clone(&recorder), Arc::clone(&shared));
                        tracker.spawn(async move {
                            let timeout = plan.settle_timeout;
                            let look = || transfer_status(&wire, &bearer, id);
                            follow(look, accepted, timeout, &recorder, true, &shared, &cancel).await;
                        });
                    } else {
                        shared.unfollowed.lock().push((from, id, accepted));
                    }
                }
                if plan.journal {
                    shared.journal.lock().push(TransferRecord { key, user: from, request, answer });
                }
            })
        })
    };
    let routes = vec![
        (Route::Account, plan.account_rate, reads),
        (Route::History, plan.history_rate, history),
        (Route::Transfer, plan.transfer_rate, transfers),
    ];
    schedule(routes, start, plan, cancel, &tracker, &recorder).await;
    let elapsed = Instant::now().saturating_duration_since(start);
    tracker.close();
    tracker.wait().await;
    let unfollowed = std::mem::take(&mut *shared.unfollowed.lock());
    let checked_after = u64::try_from(unfollowed.len()).unwrap_or(u64::MAX);
    futures::stream::iter(unfollowed)
        .for_each_concurrent(CHECKS_IN_FLIGHT, |(user, id, accepted)| {
            let (wire, bearer) = (&fixture.wire, &fixture.users[user].bearer);
            let look = move || transfer_status(wire, bearer, id);
            follow(look, accepted, plan.settle_timeout, &recorder, false, &shared, cancel)
        })
        .await;
    if let Some(progress) = progress {
        progress.abort();
    }
    period_task.abort();
    refresh.abort();
    let mut periods = std::mem::take(&mut *periods.lock());
    let last_end = periods.last().map_or(Duration::ZERO, |p: &Period| Duration::from_secs(p.end_s));
    let since_start = Instant::now().saturating_duration_since(start);
    if since_start > last_end + Duration::from_millis(500) || periods.is_empty() {
        periods.push(period_ending(&recorder, since_start, since_start.saturating_sub(last_end), plan.watch_pid));
    }
    let journal = std::mem::take(&mut *shared.journal.lock());
    Outcome {
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        routes: recorder.summary(elapsed),
        unsettled: shared.unsettled.load(Ordering::Relaxed),
        failed_transfers: shared.failed.load(Ordering::Relaxed),
        settle_polls: shared.polls.load(Ordering::Relaxed),
        followed: shared.followed.load(Ordering::Relaxed),
        checked_after,
        interrupted: cancel.is_cancelled(),
        periods,
        journal,
    }
}

/// `error` and its sources, `: `-separated (reqwest's own message hides the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn index(i: u64, n: usize) -> usize {
    usize::try_from(i % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
}

fn measure(recorder: &Recorder, route: Route, intended: Instant, result: Result<(), WireError>) {
    match result {
        Ok(()) => recorder.ok(route, intended.elapsed()),
        Err(error) => recorder.error(route, &error.label()),
    }
}

/// How often the users' access tokens are looked at (each is refreshed when it expires within
/// [`bank_client::REFRESH_MARGIN`], 30 s).
const TOKEN_LOOK: Duration = Duration::from_secs(10);

/// The paths of a user's reads, made once.
#[derive(Debug)]
struct UserPaths {
    account: Uri,
    history: Uri,
}

impl UserPaths {
    fn of(account: Uuid) -> Self {
        let path = |p: String| Uri::try_from(p).unwrap_or_else(|_| unreachable!("a UUID makes a valid path"));
        Self {
            account: path(paths::account(account)),
            history: path(format!("{}?limit={HISTORY_PAGE}", paths::account_transactions(account))),
        }
    }
}

/// What a read checks of an account: that it is the one asked for.
#[derive(Deserialize)]
struct Named {
    id: Uuid,
}

/// What the run reads of a transfer.
#[derive(Deserialize)]
struct TransferShape {
    id: Uuid,
    status: TransferStatus,
}

/// `POST /v1/transfers` under `key`: the transfer's id and whether the answer was a replay.
async fn submit(wire: &Wire, bearer: &Bearer, key: &str, request: &TransferRequest) -> Result<(Uuid, bool), WireError> {
    let body = serde_json::to_vec(request).map_err(|e| WireError::Decode(e.to_string()))?;
    let key = HeaderValue::try_from(key).map_err(|e| WireError::Decode(e.to_string()))?;
    let name =
        HeaderName::from_bytes(IDEMPOTENCY_KEY_HEADER.as_bytes()).map_err(|e| WireError::Decode(e.to_string()))?;
    let headers = [(name, key)];
    let answer = wire.post(&Uri::from_static(paths::TRANSFERS), bearer, &headers, body.into()).await?;
    let transfer: TransferShape = answer.json()?;
    let replayed = answer
        .headers
        .get(IDEMPOTENT_REPLAYED_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Ok((transfer.id, replayed))
}

/// `GET /v1/transfers/{id}`: its status.
async fn transfer_status(wire: &Wire, bearer: &Bearer, id: Uuid) -> Result<TransferStatus, WireError> {
    let path = Uri::try_from(paths::transfer(id)).map_err(|e| WireError::Decode(e.to_string()))?;
    let transfer: TransferShape = wire.get(&path, bearer).await?.json()?;
    Ok(transfer.status)
}

/// Makes the request of one route whose index and intended send time it is given, as a task.
type Maker = Box<dyn FnMut(u64, Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Shortest time between two wakes of the ticker: requests of every route falling due within it
/// are sent together, so past ~5,000 requests a second the generator wakes per batch rather than
/// per request (each wake is a thread switch and a wake of the runtime, which cost the generator
/// more CPU than building and sending a request). A request is never sent before its intended
/// time, and is at most this late on its account (its latency, measured from the intended time,
/// includes it).
pub const WAKE_GAP_MIN: Duration = Duration::from_micros(200);

/// One request falling due: its route (an index into the routes), its index within the route's
/// schedule and its intended send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    route: usize,
    i: u64,
    intended: std::time::Instant,
}

/// Sends request `i` of each route at `start + i / rate` for `plan.duration`, each as its own task.
///
/// The times come from a thread of its own ([`tick`]), not from Tokio's timer: Tokio's timer
/// wheel fires at whole milliseconds, so a request due at 3.2 ms would leave at 4 ms and its
/// latency, measured from 3.2 ms, would carry up to a millisecond of the generator's own lateness
/// (measured: ~0.5 ms on every route's p50). A sleeping thread wakes within tens of microseconds
/// of its time; it serves every route, at most one wake per [`WAKE_GAP_MIN`].
async fn schedule(
    routes: Vec<(Route, u32, Maker)>,
    start: Instant,
    plan: &Plan,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
    recorder: &Recorder,
) {
    let rates: Vec<u32> = routes.iter().map(|(_, rate, _)| *rate).collect();
    let mut makers: Vec<(Route, Maker)> = routes.into_iter().map(|(route, _, make)| (route, make)).collect();
    if rates.iter().all(|rate| *rate == 0) {
        return;
    }
    let (due, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
    let (duration, cancel_ticks) = (plan.duration, cancel.clone());
    let ticker = std::thread::Builder::new()
        .name("bank-load-ticker".to_owned())
        .spawn(move || tick(&rates, start.into_std(), duration, WAKE_GAP_MIN, &cancel_ticks, &due));
    if let Err(error) = ticker {
        for (route, _) in &makers {
            recorder.error(*route, &format!("no ticker thread: {error}"));
        }
        return;
    }
    let wire = Arc::new(tokio::sync::Semaphore::new(plan.connections.max(1)));
    while let Some(batch) = due_rx.recv().await {
        for Due { route, i, intended } in batch {
            let (route, make) = &mut makers[route];
            if tracker.len() >= plan.in_flight_max {
                recorder.error(*route, "saturated");
                continue;
            }
            let (request, wire) = (make(i, Instant::from_std(intended)), Arc::clone(&wire));
            tracker.spawn(async move {
                // First come, first served (the semaphore is fair); never closed.
                let _on_the_wire = wire.acquire_owned().await;
                request.await;
            });
        }
    }
}

/// Sends on `due`, for `duration` or until `cancel`, request `i` of route `r` (intended at
/// `start + i / rates[r]`) once that time has come: every request due at a wake in one batch,
/// wakes at least `gap` apart.
fn tick(
    rates: &[u32],
    start: std::time::Instant,
    duration: Duration,
    gap: Duration,
    cancel: &CancellationToken,
    due: &tokio::sync::mpsc::UnboundedSender<Vec<Due>>,
) {
    /// Longest sleep between two looks at `cancel`.
    const CANCEL_CHECK: Duration = Duration::from_millis(20);
    let duration_ns = duration.as_nanos();
    let intended = |route: usize, i: u64| {
        let offset_ns = u128::from(i) * 1_000_000_000 / u128::from(rates[route]);
        (offset_ns < duration_ns).then(|| start + Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX)))
    };
    // Per route, the next request and its time (None: the route is done, or has no rate).
    let mut next: Vec<Option<(u64, std::time::Instant)>> = (0..rates.len())
        .map(|route| if rates[route] == 0 { None } else { intended(route, 0).map(|at| (0, at)) })
        .collect();
    let mut last_wake: Option<std::time::Instant> = None;
    while let Some(earliest) = next.iter().flatten().map(|(_, at)| *at).min() {
        let wake_at = last_wake.map_or(earliest, |last| earliest.max(last + gap));
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let left = wake_at.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(CANCEL_CHECK));
        }
        let now = std::time::Instant::now();
        last_wake = Some(now);
        let mut batch = Vec::new();
        for (route, slot) in next.iter_mut().enumerate() {
            while let Some((i, at)) = *slot {
                if at > now {
                    break;
                }
                batch.push(Due { route, i, intended: at });
                *slot = intended(route, i + 1).map(|at| (i + 1, at));
            }
        }
        if due.send(batch).is_err() {
            return;
        }
    }
}

/// Follow one accepted transfer in how many (1: every one), for at most
/// [`FOLLOWED_PER_SECOND`] a second.
fn follow_every(transfer_rate: u32) -> u64 {
    u64::from(transfer_rate.div_ceil(FOLLOWED_PER_SECOND).max(1))
}

/// Looks at a transfer's status with `look` (`GET /v1/transfers/{id}`) until it is final. Settled is
/// recorded with its accept → settled time when `timed` (a transfer checked after the run has no
/// time to tell); failed, or not final in time, is an error of the settle route either way.
#[allow(clippy::too_many_arguments)]
async fn follow<F, Fut>(
    mut look: F,
    accepted: Instant,
    timeout: Duration,
    recorder: &Recorder,
    timed: bool,
    shared: &Shared,
    cancel: &CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<TransferStatus, WireError>>,
{
    // A transfer followed as it goes is first looked at after 2 ms; one checked after the run at
    // once. Every transfer is looked at at least once before the timeout can count it unsettled:
    // one checked after a run longer than the timeout was accepted more than the timeout ago.
    let mut delay = if timed { Duration::from_millis(2) } else { Duration::ZERO };
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => {}
        }
        delay = (delay * 2).clamp(Duration::from_millis(2), Duration::from_millis(50));
        let looked = if cancel.is_cancelled() {
            None
        } else {
            shared.polls.fetch_add(1, Ordering::Relaxed);
            look().await.ok()
        };
        match looked {
            Some(TransferStatus::Settled) => {
                if timed {
                    recorder.ok(Route::Settle, accepted.elapsed());
                }
                return;
            }
            Some(TransferStatus::Failed) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                recorder.error(Route::Settle, "failed");
                return;
            }
            // Not final yet, the poll failed, or the run was stopped: again until the timeout.
            _ => {}
        }
        if accepted.elapsed() >= timeout || cancel.is_cancelled() {
            shared.unsettled.fetch_add(1, Ordering::Relaxed);
            recorder.error(Route::Settle, "unsettled");
            return;
        }
    }
}

/// Cuts the run into `plan.period`s: each period's latencies and the watched process at its end.
async fn cut_periods(recorder: Arc<Recorder>, periods: Arc<Mutex<Vec<Period>>>, start: Instant, plan: Plan) {
    let mut ticker = tokio::time::interval_at(start + plan.period, plan.period);
    loop {
        ticker.tick().await;
        let since_start = Instant::now().saturating_duration_since(start);
        let period = period_ending(&recorder, since_start, plan.period, plan.watch_pid);
        periods.lock().push(period);
    }
}

fn period_ending(recorder: &Recorder, since_start: Duration, length: Duration, watch_pid: Option<u32>) -> Period {
    Period {
        end_s: u64::try_from((since_start.as_millis() + 500) / 1000).unwrap_or(u64::MAX),
        routes: recorder.take_period(length),
        server: watch_pid.and_then(crate::watch::sample),
    }
}

/// One line per second on standard error: per route the rate and p99 of the last second.
async fn progress_lines(recorder: Arc<Recorder>, tracker: TaskTracker) {
    let started = Instant::now();
    let mut ticker = tokio::time::interval_at(Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = Instant::now();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let window = recorder.take_window(now.saturating_duration_since(last));
        last = now;
        let mut line = format!("[{:>4}s]", started.elapsed().as_secs());
        for r in window.iter().filter(|r| r.requests > 0) {
            line.push_str(&format!(
                " {} {}/s p99 {} err {} |",
                r.route.name(),
                r.ok_per_sec,
                crate::report::ms(r.p99_us),
                r.errors
            ));
        }
        line.push_str(&format!(" in flight {}", tracker.len()));
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route's requests come once each, in order, at their own rate's times, never before
    /// those times; a route without a rate sends nothing.
    #[test]
    fn the_ticker_sends_every_request_of_every_route_once_and_never_early() {
        let (due, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
        let start = std::time::Instant::now() + Duration::from_millis(5);
        let rates = [6_000, 700, 0, 3];
        let sender = std::thread::spawn(move || {
            tick(&rates, start, Duration::from_millis(300), WAKE_GAP_MIN, &CancellationToken::new(), &due);
        });
        let mut seen: Vec<Vec<u64>> = vec![Vec::new(); rates.len()];
        let mut batches = 0;
        while let Some(batch) = due_rx.blocking_recv() {
            let received = std::time::Instant::now();
            batches += 1;
            for Due { route, i, intended } in batch {
                assert!(intended <= received, "route {route} request {i} sent early");
                let offset = Duration::from_nanos(i * 1_000_000_000 / u64::from(rates[route]));
                assert_eq!(intended, start + offset, "route {route} request {i}");
                seen[route].push(i);
            }
        }
        sender.join().expect("ticker");
        assert_eq!(seen[0], (0..1_800).collect::<Vec<_>>());
        assert_eq!(seen[1], (0..210).collect::<Vec<_>>());
        assert!(seen[2].is_empty());
        assert_eq!(seen[3], [0]);
        // Wakes at least WAKE_GAP_MIN apart: over 300 ms, at most ~1,500 of them for 2,011 requests.
        assert!(batches <= 300_000 / WAKE_GAP_MIN.as_micros() + 2, "{batches} batches");
    }

    /// Looks at a transfer that is settled, counting the looks.
    fn settled(looks: &AtomicU64) -> impl FnMut() -> std::future::Ready<Result<TransferStatus, WireError>> + '_ {
        move || {
            looks.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(TransferStatus::Settled))
        }
    }

    #[tokio::test]
    async fn a_transfer_checked_after_a_run_longer_than_the_timeout_is_looked_at_before_it_counts() {
        // Accepted 45 s ago, checked now (after a 60 s run) with a 30 s timeout: settled.
        let (recorder, shared, looks) = (Recorder::new(), Shared::default(), AtomicU64::new(0));
        let accepted = Instant::now() - Duration::from_secs(45);
        let cancel = CancellationToken::new();
        follow(settled(&looks), accepted, Duration::from_secs(30), &recorder, false, &shared, &cancel).await;
        assert_eq!(looks.load(Ordering::Relaxed), 1);
        assert_eq!(shared.unsettled.load(Ordering::Relaxed), 0, "a settled transfer is not unsettled");

        // One that is not final by then is.
        let pending = || std::future::ready(Ok(TransferStatus::Pending));
        follow(pending, accepted, Duration::from_secs(30), &recorder, false, &shared, &cancel).await;
        assert_eq!(shared.unsettled.load(Ordering::Relaxed), 1);
    }

    /// Serves every request on loopback after holding it `hold` (answering 503: what the
    /// harness makes of the answer does not matter here); answers the most connections it ever
    /// had open at once.
    async fn slow_server(hold: Duration) -> (std::net::SocketAddr, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (open, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let most_seen = Arc::clone(&most);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now_open, Ordering::SeqCst);
                let open = Arc::clone(&open);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        request.extend_from_slice(&buf[..n]);
                        // Bodiless GETs: a request ends with its blank line.
                        while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                            request.drain(..end + 4);
                            tokio::time::sleep(hold).await;
                            let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                            if socket.write_all(answer).await.is_err() {
                                break;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, most_seen)
    }

    /// The most connections a run of 1,000 account views in a second against a server holding
    /// each for 20 ms kept open at once, with at most `connections` on the wire.
    async fn most_connections(connections: usize) -> u64 {
        let (addr, most) = slow_server(Duration::from_millis(20)).await;
        let client = bank_client::BankClient::builder(format!("http://{addr}"))
            .retry_policy(bank_client::RetryPolicy::none())
            .build()
            .expect("client");
        // Signed in (the server never checks): a client without a session sends nothing.
        let signed_in = client.with_access_token("token");
        let user =
            crate::setup::LoadUser::new("load@example.com".into(), signed_in, Uuid::now_v7()).await.expect("user");
        let wire = Arc::new(Wire::new(&format!("http://{addr}"), Duration::from_secs(5)).expect("wire"));
        let fixture = Fixture { users: vec![user], currency: "USD".into(), operator: client, wire };
        let plan = Plan {
            account_rate: 1_000,
            history_rate: 0,
            transfer_rate: 0,
            duration: Duration::from_secs(1),
            amount: Decimal::new(1, 2),
            follow_settlement: false,
            settle_timeout: Duration::from_secs(30),
            in_flight_max: 10_000,
            connections,
            progress: false,
            journal: false,
            period: Duration::from_secs(60),
            watch_pid: None,
        };
        let outcome = run(&fixture, &plan, &CancellationToken::new()).await;
        assert_eq!(outcome.route(Route::Account).map(|r| r.ok + r.errors), Some(1_000), "every request was sent");
        most.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_on_the_wire_and_so_connections_stay_under_the_cap() {
        // Uncapped, ~20 requests are on the wire at any moment (1,000/s held 20 ms each).
        let uncapped = most_connections(10_000).await;
        assert!(uncapped >= 12, "the load needs more connections than the cap: {uncapped}");
        // Capped at 8: at most 8 on the wire, and a connection back in the client's pool is reused
        // (a few more may open while one is on its way back).
        let capped = most_connections(8).await;
        assert!(capped <= 10, "{capped} connections open at once under a cap of 8");
    }

    #[test]
    fn a_cancelled_ticker_stops() {
        let (due, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        cancel.cancel();
        tick(&[1_000], std::time::Instant::now(), Duration::from_secs(3_600), WAKE_GAP_MIN, &cancel, &due);
        drop(due);
        assert!(due_rx.blocking_recv().is_none());
    }

    #[test]
    fn every_transfer_is_followed_up_to_the_cap_and_a_share_of_them_past_it() {
        assert_eq!(follow_every(1), 1);
        assert_eq!(follow_every(FOLLOWED_PER_SECOND), 1);
        assert_eq!(follow_every(FOLLOWED_PER_SECOND + 1), 2);
        assert_eq!(follow_every(10 * FOLLOWED_PER_SECOND), 10);
        // Never more than the cap a second.
        for rate in [1, 99, 100, 101, 250, 999, 1_000, 4_000, 100_000] {
            assert!(u64::from(rate).div_ceil(follow_every(rate)) <= u64::from(FOLLOWED_PER_SECOND), "{rate}");
        }
    }
}
