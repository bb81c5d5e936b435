//! Tunables of the pipeline, with production defaults.

use chrono::TimeDelta;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// How long an accepted transfer's hold lasts (a transfer still running then fails visibly
    /// with `hold_expired` instead of moving money it no longer reserves).
    pub hold_duration: TimeDelta,
    /// Lease on an idempotency key while its request runs.
    pub idempotency_lease: TimeDelta,
    /// A transfer not finished this long after it was last touched is re-enqueued by the
    /// scheduler (recovers messages lost to crashes or the dead-letter queue).
    pub stuck_after: TimeDelta,
    /// Queue visibility timeout for a delivery being processed.
    pub visibility: TimeDelta,
    /// First retry delay after a rail failure; doubles per attempt.
    pub retry_base: TimeDelta,
    /// Longest retry delay.
    pub retry_max: TimeDelta,
    /// Processing attempts before a transfer the rail certainly never received is failed.
    pub max_attempts: u32,
    /// Messages a worker takes per receive (distinct groups, processed concurrently).
    pub worker_batch: usize,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            hold_duration: TimeDelta::days(7),
            idempotency_lease: TimeDelta::seconds(30),
            stuck_after: TimeDelta::minutes(5),
            visibility: TimeDelta::seconds(60),
            retry_base: TimeDelta::seconds(1),
            retry_max: TimeDelta::minutes(5),
            max_attempts: 20,
            worker_batch: 64,
        }
    }
}

impl PaymentsConfig {
    /// Exponential backoff with jitter for attempt `attempt` (1-based). The jitter is derived from
    /// `salt` (the transfer id) so it spreads retries without needing a random source, and a
    /// replayed simulation sees the same delays.
    pub fn backoff(&self, attempt: u32, salt: u64) -> TimeDelta {
        let base_ms = self.retry_base.num_milliseconds().max(1);
        let max_ms = self.retry_max.num_milliseconds().max(base_ms);
        let exp = base_ms.saturating_mul(1_i64 << attempt.saturating_sub(1).min(30)).min(max_ms);
        // "Equal jitter": half fixed, half spread.
        let half = exp / 2;
        let spread = i64::try_from(salt % u64::try_from(half.max(1)).unwrap_or(1)).unwrap_or(0);
        TimeDelta::milliseconds(half + spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = PaymentsConfig::default();
        let d1 = c.backoff(1, 7);
        let d5 = c.backoff(5, 7);
        assert!(d1 >= TimeDelta::milliseconds(500) && d1 < TimeDelta::seconds(1));
        assert!(d5 >= TimeDelta::seconds(8) && d5 < TimeDelta::seconds(16));
        assert!(c.backoff(40, u64::MAX) <= c.retry_max);
        assert!(c.backoff(40, 0) >= c.retry_max / 2);
    }
}
