//! `--max`: for each route alone, runs steps of rising rate (×1.5 each) until a step's p99 passes
//! the bound, any request fails, or the achieved throughput falls under 95 % of the rate; the
//! route's maximum is the last step that passed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::report::{MaxResult, MaxStep};
use crate::run::{Plan, run};
use crate::setup::Fixture;
use crate::stats::Route;

/// How the search runs.
#[derive(Debug, Clone)]
pub struct MaxSearch {
    /// First rate tried.
    pub start_rate: u32,
    /// Highest rate tried.
    pub limit_rate: u32,
    /// Length of each step.
    pub step: Duration,
    /// p99 bound.
    pub p99_bound: Duration,
}

/// The next rate after `rate`: half as much again, at least one more.
pub fn next_rate(rate: u32) -> u32 {
    rate.saturating_add((rate / 2).max(1))
}

/// Whether a step at `rate` passed.
pub fn passed(rate: u32, step: Duration, ok: u64, errors: u64, p99_us: u64, bound: Duration) -> bool {
    let expected = u128::from(rate) * step.as_millis() / 1000;
    errors == 0 && u128::from(p99_us) <= bound.as_micros() && u128::from(ok) * 100 >= expected * 95
}

/// Searches each of the account, history and transfer routes in turn.
pub async fn search(fixture: &Fixture, base: &Plan, search: &MaxSearch, cancel: &CancellationToken) -> Vec<MaxResult> {
    let mut results = Vec::new();
    for route in [Route::Account, Route::History, Route::Transfer] {
        let mut result = MaxResult {
            route,
            max_rate: 0,
            p99_bound_us: u64::try_from(search.p99_bound.as_micros()).unwrap_or(u64::MAX),
            steps: Vec::new(),
        };
        let mut rate = search.start_rate.max(1);
        while rate <= search.limit_rate && !cancel.is_cancelled() {
            let plan = Plan {
                account_rate: if route == Route::Account { rate } else { 0 },
                history_rate: if route == Route::History { rate } else { 0 },
                transfer_rate: if route == Route::Transfer { rate } else { 0 },
                duration: search.step,
                follow_settlement: false,
                journal: false,
                ..base.clone()
            };
            let outcome = run(fixture, &plan, cancel).await;
            let Some(summary) = outcome.route(route) else { break };
            let ok = passed(rate, search.step, summary.ok, summary.errors, summary.p99_us, search.p99_bound);
            eprintln!(
                "--max {}: {rate}/s → {} ok/s, p99 {} ms, {} errors: {}",
                route.name(),
                summary.ok_per_sec,
                crate::report::ms(summary.p99_us),
                summary.errors,
                if ok { "pass" } else { "fail" }
            );
            result.steps.push(MaxStep {
                rate,
                ok_per_sec: summary.ok_per_sec,
                p99_us: summary.p99_us,
                errors: summary.errors,
                passed: ok,
            });
            if !ok {
                break;
            }
            result.max_rate = rate;
            rate = next_rate(rate);
        }
        results.push(result);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_rise_by_half() {
        assert_eq!(next_rate(1), 2);
        assert_eq!(next_rate(100), 150);
        assert_eq!(next_rate(u32::MAX), u32::MAX);
    }

    #[test]
    fn a_step_passes_only_under_the_bound_without_errors_at_the_rate() {
        let step = Duration::from_secs(5);
        let bound = Duration::from_millis(5);
        assert!(passed(100, step, 500, 0, 4_000, bound));
        assert!(!passed(100, step, 500, 0, 5_001, bound), "p99 over the bound");
        assert!(!passed(100, step, 499, 1, 1_000, bound), "an error");
        assert!(!passed(100, step, 400, 0, 1_000, bound), "the generator or server fell behind");
    }
}
