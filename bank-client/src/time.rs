//! The client's clocks and its one timer: the only module that knows which target it runs on.
//!
//! Natively they are tokio's ([`tokio::time::Instant`] and [`tokio::time::sleep`], so a paused
//! tokio test clock applies to token expiry and backoff) and chrono's wall clock. On `wasm32`
//! (a browser or Node, through `bank-wasm`) there is no tokio timer: the monotonic clock is
//! `performance.now()` (`web-time`), the wall clock `Date.now()`, and a sleep is a promise resolved
//! by the global `setTimeout`, which browsers and Node both have. Nothing else in the crate may
//! use `tokio::time`, `std::time::Instant` or `chrono::Utc::now` directly.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use tokio::time::Instant;
#[cfg(target_arch = "wasm32")]
pub(crate) use web_time::Instant;

/// Waits for `duration` without blocking the thread (or the JS event loop).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Waits for `duration` without blocking the JS event loop: `await new Promise(r => setTimeout(r, ms))`.
/// Durations past `i32::MAX` ms (24 days) wait `i32::MAX` ms, the most `setTimeout` takes.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn sleep(duration: Duration) {
    use wasm_bindgen::{JsCast, JsValue};

    let delay_ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let mut started = true;
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        started = match set_timeout {
            Some(set_timeout) => set_timeout.call2(&global, &resolve, &JsValue::from(delay_ms)).is_ok(),
            None => false,
        };
        if !started {
            // No timer in this JS environment: resolve at once rather than hang the call forever;
            // the retry still happens, only without its backoff.
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    if !started {
        tracing::warn!("no setTimeout in this JS environment; retrying without backoff");
    }
    // The promise cannot reject: its executor never calls `reject`.
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The wall-clock time now (for `Retry-After` dates).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now_utc() -> DateTime<Utc> {
    Utc::now()
}

/// The wall-clock time now (for `Retry-After` dates), from `Date.now()`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn now_utc() -> DateTime<Utc> {
    let since_epoch = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    DateTime::from_timestamp(seconds, since_epoch.subsec_nanos()).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleep_follows_the_tokio_clock() {
        let started = Instant::now();
        sleep(Duration::from_secs(3_600)).await;
        assert!(started.elapsed() >= Duration::from_secs(3_600));
    }

    #[test]
    fn wall_clock_is_after_2025() {
        assert!(now_utc().timestamp() > 1_735_689_600);
    }
}
