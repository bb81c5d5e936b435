//! What a run measured: one HDR histogram of latencies per route (the whole run, the current
//! one-second window and the current period of a soak), successes, and errors counted by status.
//! Latencies are recorded in microseconds from each request's *intended* send time, so a server
//! that stalls the generator cannot hide its queueing (no coordinated omission).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// Largest latency a histogram holds (longer ones are clamped to it): two minutes.
pub const LATENCY_MAX_US: u64 = 120_000_000;

/// A kind of request the generator measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `GET /v1/accounts/{id}`.
    Account,
    /// `GET /v1/accounts/{id}/transactions` (first page).
    History,
    /// `POST /v1/transfers` until its 202.
    Transfer,
    /// A transfer from its 202 until `GET /v1/transfers/{id}` first shows it settled.
    Settle,
}

impl Route {
    /// Every route, in report order.
    pub const ALL: [Route; 4] = [Route::Account, Route::History, Route::Transfer, Route::Settle];

    /// The route's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Route::Account => "account",
            Route::History => "history",
            Route::Transfer => "transfer",
            Route::Settle => "settle",
        }
    }

    fn index(self) -> usize {
        match self {
            Route::Account => 0,
            Route::History => 1,
            Route::Transfer => 2,
            Route::Settle => 3,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 3 significant digits from 1 µs to two minutes: a few hundred KiB per histogram.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).unwrap_or_else(|_| unreachable!("valid constant bounds"))
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_MAX_US)
}

#[derive(Debug)]
struct Counts {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Counts {
    fn new() -> Self {
        Self { latency: histogram(), ok: 0, errors: BTreeMap::new() }
    }

    fn summary(&self, route: Route, elapsed: Duration) -> RouteSummary {
        let errors: u64 = self.errors.values().sum();
        let q = |quantile| if self.ok == 0 { 0 } else { self.latency.value_at_quantile(quantile) };
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX).max(1);
        RouteSummary {
            route,
            requests: self.ok + errors,
            ok: self.ok,
            errors,
            ok_per_sec: self.ok.saturating_mul(1000) / elapsed_ms,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if self.ok == 0 { 0 } else { self.latency.max() },
            errors_by_status: self.errors.clone(),
        }
    }
}

/// One route's figures over a span of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSummary {
    pub route: Route,
    /// Requests that ended (answered or failed).
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Successful requests per second over the span.
    pub ok_per_sec: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Errors by label: the HTTP status (`"503"`), or `timeout`, `connect`, `transport`, `decode`,
    /// `saturated` (the generator had too many requests in flight and did not send), `failed` and
    /// `unsettled` (settle route: the transfer failed, or was not final in time).
    pub errors_by_status: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct RouteCounts {
    total: Counts,
    window: Counts,
    period: Counts,
}

/// The shared recorder of a run: every request task records into it.
#[derive(Debug)]
pub struct Recorder {
    routes: Mutex<Vec<RouteCounts>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let routes = Route::ALL
            .iter()
            .map(|_| RouteCounts { total: Counts::new(), window: Counts::new(), period: Counts::new() })
            .collect();
        Self { routes: Mutex::new(routes) }
    }

    /// A success of `route` that took `latency` from its intended start.
    pub fn ok(&self, route: Route, latency: Duration) {
        let us = micros(latency);
        let mut routes = self.routes.lock();
        let counts = &mut routes[route.index()];
        for c in [&mut counts.total, &mut counts.window, &mut counts.period] {
            c.ok += 1;
            // `us` is clamped into the histogram's bounds, so recording cannot fail.
            let _ = c.latency.record(us);
        }
    }

    /// A failure of `route`, labelled `label` (see [`RouteSummary::errors_by_status`]).
    pub fn error(&self, route: Route, label: &str) {
        let mut routes = self.routes.lock();
        let counts = &mut routes[route.index()];
        for c in [&mut counts.total, &mut counts.window, &mut counts.period] {
            *c.errors.entry(label.to_owned()).or_default() += 1;
        }
    }

    /// The figures of the one-second window since the last call (spanning `elapsed`), and a new
    /// window.
    pub fn take_window(&self, elapsed: Duration) -> Vec<RouteSummary> {
        self.take(elapsed, |counts| &mut counts.window)
    }

    /// The figures of the period since the last call (spanning `elapsed`), and a new period.
    pub fn take_period(&self, elapsed: Duration) -> Vec<RouteSummary> {
        self.take(elapsed, |counts| &mut counts.period)
    }

    fn take(&self, elapsed: Duration, which: impl Fn(&mut RouteCounts) -> &mut Counts) -> Vec<RouteSummary> {
        let mut routes = self.routes.lock();
        Route::ALL
            .iter()
            .map(|&route| {
                let counts = which(&mut routes[route.index()]);
                let summary = counts.summary(route, elapsed);
                *counts = Counts::new();
                summary
            })
            .collect()
    }

    /// The figures of the whole run so far, over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Vec<RouteSummary> {
        let routes = self.routes.lock();
        Route::ALL.iter().map(|&route| routes[route.index()].total.summary(route, elapsed)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_errors_are_per_route() {
        let recorder = Recorder::new();
        for ms in 1..=100 {
            recorder.ok(Route::Account, Duration::from_millis(ms));
        }
        recorder.error(Route::Transfer, "503");
        recorder.error(Route::Transfer, "503");
        recorder.error(Route::Transfer, "timeout");
        let summary = recorder.summary(Duration::from_secs(2));
        let account = &summary[0];
        assert_eq!((account.ok, account.errors, account.ok_per_sec), (100, 0, 50));
        assert!((49_900..=50_100).contains(&account.p50_us), "{account:?}");
        assert!((98_900..=99_100).contains(&account.p99_us), "{account:?}");
        assert!((99_900..=100_100).contains(&account.max_us), "{account:?}");
        let transfer = &summary[2];
        assert_eq!((transfer.ok, transfer.errors, transfer.p99_us), (0, 3, 0));
        assert_eq!(transfer.errors_by_status.get("503"), Some(&2));
        assert_eq!(transfer.errors_by_status.get("timeout"), Some(&1));
    }

    #[test]
    fn a_window_starts_empty_after_it_is_taken() {
        let recorder = Recorder::new();
        recorder.ok(Route::History, Duration::from_micros(300));
        assert_eq!(recorder.take_window(Duration::from_secs(1))[1].ok, 1);
        assert_eq!(recorder.take_window(Duration::from_secs(1))[1].ok, 0);
        assert_eq!(recorder.summary(Duration::from_secs(1))[1].ok, 1);
        assert_eq!(recorder.take_period(Duration::from_secs(1))[1].ok, 1, "a period is apart from the window");
        assert_eq!(recorder.take_period(Duration::from_secs(1))[1].ok, 0);
    }

    #[test]
    fn latencies_beyond_the_bounds_are_clamped() {
        let recorder = Recorder::new();
        recorder.ok(Route::Settle, Duration::from_secs(3_600));
        recorder.ok(Route::Settle, Duration::ZERO);
        let settle = &recorder.summary(Duration::from_secs(1))[3];
        assert_eq!(settle.ok, 2);
        assert!(settle.max_us >= LATENCY_MAX_US - LATENCY_MAX_US / 1000);
    }
}
