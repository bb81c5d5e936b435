//! Prometheus metrics of one server: request durations and errors, recorded by the request-context
//! middleware, and pipeline gauges (queue, outbox, transfers by status, circuit breakers) refreshed
//! when `/metrics` is scraped. One registry per [`super::AppState`], so tests never share one.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bank_core::transfer::TransferStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

/// Content type of the text exposition format served.
pub(crate) const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: String,
    status: u16,
    problem_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    name: String,
}

/// Most unresolved transfers one scrape reads (the gauge saturates there; the alert fires long
/// before).
const UNRESOLVED_COUNTED_MAX: usize = 1_000;

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The metrics of one server.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    queue_visible: Gauge,
    queue_in_flight: Gauge,
    queue_dead_letters: Gauge,
    queue_oldest_age: FloatGauge,
    outbox_unrelayed: Gauge,
    outbox_oldest_age: FloatGauge,
    transfers: Family<StatusLabels, Gauge>,
    unresolved: Gauge,
    unresolved_oldest_age: FloatGauge,
    breakers: Family<BreakerLabels, Gauge>,
    replica_lag: FloatGauge,
    data_dir_free: Gauge,
    data_dir_low: Gauge,
    limiter_failures: Counter,
    /// Serializes the catch-up of `limiter_failures` (two scrapes at once must not add twice).
    limiter_failures_sync: parking_lot::Mutex<()>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request duration by method, route template and status",
            prometheus_client::registry::Unit::Seconds,
            requests.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("http_errors", "Error responses by route, status and problem type", errors.clone());
        let queue_visible = Gauge::default();
        registry.register("transfer_queue_visible", "Transfer messages waiting", queue_visible.clone());
        let queue_in_flight = Gauge::default();
        registry.register("transfer_queue_in_flight", "Transfer messages being processed", queue_in_flight.clone());
        let queue_dead_letters = Gauge::default();
        registry.register("transfer_queue_dead_letters", "Dead-lettered transfer messages", queue_dead_letters.clone());
        let queue_oldest_age = FloatGauge::default();
        registry.register_with_unit(
            "transfer_queue_oldest_message_age",
            "Age of the oldest waiting transfer message",
            prometheus_client::registry::Unit::Seconds,
            queue_oldest_age.clone(),
        );
        let outbox_unrelayed = Gauge::default();
        registry.register("outbox_unrelayed", "Outbox records not yet relayed", outbox_unrelayed.clone());
        let outbox_oldest_age = FloatGauge::default();
        registry.register_with_unit(
            "outbox_lag",
            "Age of the oldest unrelayed outbox record",
            prometheus_client::registry::Unit::Seconds,
            outbox_oldest_age.clone(),
        );
        let transfers = Family::<StatusLabels, Gauge>::default();
        registry.register("transfers", "Transfers by status", transfers.clone());
        let unresolved = Gauge::default();
        registry.register(
            "transfers_outcome_unknown",
            "Pending transfers whose payment the rail has not confirmed either way (alert when above 0 for long)",
            unresolved.clone(),
        );
        let unresolved_oldest_age = FloatGauge::default();
        registry.register_with_unit(
            "transfers_outcome_unknown_oldest_age",
            "Age of the oldest pending transfer whose rail outcome is unknown",
            prometheus_client::registry::Unit::Seconds,
            unresolved_oldest_age.clone(),
        );
        let breakers = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            breakers.clone(),
        );
        let replica_lag = FloatGauge::default();
        registry.register_with_unit(
            "database_replica_lag",
            "How far the PostgreSQL reader is behind the writer (0: caught up, or no separate reader)",
            prometheus_client::registry::Unit::Seconds,
            replica_lag.clone(),
        );
        let data_dir_free = Gauge::default();
        registry.register_with_unit(
            "data_dir_free",
            "Free space on the embedded backend's data directory disk",
            prometheus_client::registry::Unit::Bytes,
            data_dir_free.clone(),
        );
        let data_dir_low = Gauge::default();
        registry.register(
            "data_dir_low",
            "1 while the data directory's free space is under BANK_DATA_DIR_MIN_FREE_MB (new writes refused)",
            data_dir_low.clone(),
        );
        let limiter_failures = Counter::default();
        registry.register(
            "rate_limiter_failures",
            "Rate-limit checks let through because the limiter failed (a shared store unreachable)",
            limiter_failures.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            queue_visible,
            queue_in_flight,
            queue_dead_letters,
            queue_oldest_age,
            outbox_unrelayed,
            outbox_oldest_age,
            transfers,
            unresolved,
            unresolved_oldest_age,
            breakers,
            replica_lag,
            data_dir_free,
            data_dir_low,
            limiter_failures,
            limiter_failures_sync: parking_lot::Mutex::new(()),
        }
    }

    /// Records one answered request; `problem_type` is set for error answers.
    pub(crate) fn observe(
        &self,
        method: &str,
        route: &str,
        status: u16,
        elapsed: Duration,
        problem_type: Option<&str>,
    ) {
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.requests.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if let Some(problem_type) = problem_type {
            let short = problem_type.rsplit('/').next().unwrap_or(problem_type);
            let labels = ErrorLabels { route: route.to_owned(), status, problem_type: short.to_owned() };
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// Refreshes the gauges from the backend and renders the text exposition. A gauge whose
    /// source fails keeps its last value (the failure is logged).
    pub(crate) async fn render(&self, state: &AppState) -> String {
        let payments = &state.backend().payments;
        match payments.queue.stats().await {
            Ok(stats) => {
                self.queue_visible.set(to_i64(stats.visible));
                self.queue_in_flight.set(to_i64(stats.in_flight));
                self.queue_dead_letters.set(to_i64(stats.dead_letters));
                self.queue_oldest_age.set(ms_to_secs(stats.oldest_age_ms));
            }
            Err(error) => tracing::warn!(%error, "metrics: queue stats unavailable"),
        }
        match payments.transfers.outbox_lag().await {
            Ok((unrelayed, oldest_ms)) => {
                self.outbox_unrelayed.set(to_i64(unrelayed));
                self.outbox_oldest_age.set(ms_to_secs(oldest_ms));
            }
            Err(error) => tracing::warn!(%error, "metrics: outbox lag unavailable"),
        }
        match payments.transfers.count_by_status().await {
            Ok(counts) => {
                for status in TransferStatus::ALL {
                    let count = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
                    self.transfers
                        .get_or_create(&StatusLabels { status: status.as_str().to_owned() })
                        .set(to_i64(count));
                }
            }
            Err(error) => tracing::warn!(%error, "metrics: transfer counts unavailable"),
        }
        match payments.transfers.unresolved(UNRESOLVED_COUNTED_MAX).await {
            Ok(unresolved) => {
                self.unresolved.set(to_i64(unresolved.len() as u64));
                let now = payments.clock.now();
                let oldest = unresolved.iter().map(|t| t.created_at).min();
                let age_ms = oldest.map(|at| u64::try_from((now - at).num_milliseconds()).unwrap_or(0));
                self.unresolved_oldest_age.set(ms_to_secs(age_ms));
            }
            Err(error) => tracing::warn!(%error, "metrics: unresolved transfers unavailable"),
        }
        if let Some(lag) = state.backend().ready.replica_lag().await {
            self.replica_lag.set(lag.as_secs_f64());
        }
        if let Some(reading) = state.backend().data_disk.as_ref().and_then(|disk| disk.read()) {
            self.data_dir_free.set(to_i64(reading.free));
            self.data_dir_low.set(i64::from(reading.low));
        }
        for breaker in state.inner.breakers.read().iter() {
            let labels = BreakerLabels { name: breaker.name().to_owned() };
            self.breakers.get_or_create(&labels).set(i64::from(breaker.state_code()));
        }
        {
            let _one_at_a_time = self.limiter_failures_sync.lock();
            let (total, shown) = (state.limits().failures(), self.limiter_failures.get());
            if total > shown {
                self.limiter_failures.inc_by(total - shown);
            }
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "metrics: cannot encode");
        }
        text
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ms_to_secs(ms: Option<u64>) -> f64 {
    Duration::from_millis(ms.unwrap_or(0)).as_secs_f64()
}
