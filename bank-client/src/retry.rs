//! When and how long to wait before sending a request again.
//!
//! This module owns the retry policy (attempt count, exponential backoff with jitter, the
//! `Retry-After` header) and which requests may be retried at all. It never decides that a
//! request without an idempotency key is safe to repeat unless its method is.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::ClientError;

/// Bounds of the automatic retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total sends of one call, the first included (1 = never retry).
    pub attempts_max: u32,
    /// Backoff before the second attempt; doubled after each further one.
    pub backoff_initial: Duration,
    /// Ceiling of the exponential backoff.
    pub backoff_max: Duration,
    /// Longest `Retry-After` the client waits out; a longer one ends the call with the error.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 4,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            retry_after_max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No automatic retry.
    pub fn none() -> Self {
        Self { attempts_max: 1, ..Self::default() }
    }

    /// How long to wait after the failed attempt number `attempt` (1-based), or `None` to give up
    /// because the server asked for a longer wait than `retry_after_max`.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if let Some(wait) = retry_after {
            return (wait <= self.retry_after_max).then_some(wait);
        }
        let doubling = attempt.saturating_sub(1).min(16);
        let ceiling = self.backoff_initial.saturating_mul(1 << doubling).min(self.backoff_max);
        // Equal jitter: half the ceiling for sure, the other half at random, so clients that failed
        // together do not come back together.
        let half = ceiling / 2;
        let half_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter_ns = random_u64() % half_ns.saturating_add(1);
        Some(half + Duration::from_nanos(jitter_ns))
    }
}

/// Random bits from the UUID v4 generator (no extra RNG dependency); the low word of a v4 is random
/// apart from its two variant bits, which the mask drops.
fn random_u64() -> u64 {
    let (_, low) = uuid::Uuid::new_v4().as_u64_pair();
    low & ((1 << 62) - 1)
}

/// Which failures of a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryClass {
    /// A non-idempotent request without a key: a retry could do the effect twice.
    Never,
    /// A safe method (GET): transport errors, 408, 429 and 5xx.
    Safe,
    /// A POST with an `Idempotency-Key`: as `Safe`, plus 409 "in flight"; the key stops doubles.
    Keyed,
}

impl RetryClass {
    pub(crate) fn allows(self, error: &ClientError) -> bool {
        match self {
            Self::Never => false,
            Self::Safe => error.is_retryable() && error.status() != Some(409),
            Self::Keyed => error.is_retryable(),
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - crate::time::now_utc();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let delay = policy.delay(attempt, None).expect("delay");
            let ceiling = (Duration::from_millis(100) * (1 << (attempt - 1))).min(Duration::from_secs(2));
            assert!(delay >= ceiling / 2 && delay <= ceiling, "attempt {attempt}: {delay:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_maximum() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3))), Some(Duration::from_secs(3)));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(31))), None);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
