//! `--max`: for each route alone, runs steps of rising rate (×1.5 each) until a step fails — its
//! p99 passes the bound, a request fails, or the achieved throughput falls under 95 % of the rate —
//! then halves the gap between the highest rate that passed (0 if none) and the lowest that failed,
//! up to [`REFINE_STEPS`] times or until the two are within 5 %; the route's maximum is the highest
//! rate that passed. (×1.5 alone left the answer up to a third under the truth: account views
//! passed 22,780/s and failed 34,170/s.)

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

/// Most steps spent narrowing the gap between a passing and a failing rate.
pub const REFINE_STEPS: u32 = 4;

/// The rate halfway between `passed` (a rate that passed, 0 for none) and `failed`, unless they
/// are already within 5 % (or 1) of each other.
pub fn between(passed: u32, failed: u32) -> Option<u32> {
    let gap = failed.checked_sub(passed)?;
    (gap > (passed / 20).max(1)).then(|| passed + gap / 2)
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
        // The lowest rate that failed, and the refining steps taken since.
        let (mut failed, mut refined) = (None::<u32>, 0);
        while rate <= search.limit_rate && !cancel.is_cancelled() {
            let plan = Plan {
                account_rate: if route == Route::Account { rate } else { 0 },
                history_rate: if route == Route::History { rate } else { 0 },
                transfer_rate: if route == Route::Transfer { rate } else { 0 },
                duration: search.step,
                // A transfer step ends once its transfers are final (each checked after the
                // step, a hundred a second followed as they go), so the next step does not pay
                // for its backlog of settlements: a failed step of 4,000/s left ~20 s of them,
                // and the step of 1,000/s after it failed on that (p99 53 ms; 500/s then passed
                // at 8 ms).
                follow_settlement: route == Route::Transfer && base.follow_settlement,
                journal: false,
                ..base.clone()
            };
            let outcome = run(fixture, &plan, cancel).await;
            let Some(summary) = outcome.route(route) else { break };
            // Accepted transfers that did not end settled fail the step too.
            let unsettled = outcome.unsettled + outcome.failed_transfers;
            let ok = unsettled == 0
                && passed(rate, search.step, summary.ok, summary.errors, summary.p99_us, search.p99_bound);
            eprintln!(
                "--max {}: {rate}/s → {} ok/s, p99 {} ms, {} errors{}: {}",
                route.name(),
                summary.ok_per_sec,
                crate::report::ms(summary.p99_us),
                summary.errors,
                if plan.follow_settlement { format!(", {unsettled} not settled") } else { String::new() },
                if ok { "pass" } else { "fail" }
            );
            result.steps.push(MaxStep {
                rate,
                ok_per_sec: summary.ok_per_sec,
                p99_us: summary.p99_us,
                errors: summary.errors,
                passed: ok,
            });
            if ok {
                result.max_rate = result.max_rate.max(rate);
            } else {
                failed = Some(failed.map_or(rate, |f| f.min(rate)));
            }
            let Some(lowest_failed) = failed else {
                rate = next_rate(rate);
                continue;
            };
            match between(result.max_rate, lowest_failed) {
                Some(mid) if refined < REFINE_STEPS => {
                    refined += 1;
                    rate = mid;
                }
                _ => break,
            }
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
    fn the_gap_between_a_pass_and_a_fail_is_halved_down_to_five_percent() {
        assert_eq!(between(22_780, 34_170), Some(28_475));
        assert_eq!(between(0, 2_000), Some(1_000), "nothing passed: below the first step");
        assert_eq!(between(1_000, 1_050), None, "within 5 %");
        assert_eq!(between(1, 2), None, "within 1");
        assert_eq!(between(100, 50), None, "a fail under the pass: nothing to narrow");
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
