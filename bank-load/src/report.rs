//! The final table (and its JSON twin) of a run or of a `--max` search.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::Outcome;
use crate::stats::Route;

/// `us` microseconds as milliseconds with three decimals (`1.234`), without floating point.
pub fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// The table of a run.
pub fn table(outcome: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "route", "requests", "ok/s", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for r in outcome.routes.iter().filter(|r| r.requests > 0) {
        let _ = writeln!(
            out,
            "{:<9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.route.name(),
            r.requests,
            r.ok_per_sec,
            r.errors,
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us),
            ms(r.p999_us),
            ms(r.max_us),
        );
    }
    let errors: Vec<String> = outcome
        .routes
        .iter()
        .flat_map(|r| r.errors_by_status.iter().map(move |(label, n)| format!("{} {label}: {n}", r.route.name())))
        .collect();
    let _ =
        writeln!(out, "errors by status: {}", if errors.is_empty() { "none".to_owned() } else { errors.join(", ") });
    let _ = writeln!(
        out,
        "elapsed {} s; transfers unsettled {}, failed {}; settle timed for {}, {} checked after the run; \
         settlement polls {}{}",
        ms(outcome.elapsed_ms),
        outcome.unsettled,
        outcome.failed_transfers,
        outcome.followed,
        outcome.checked_after,
        outcome.settle_polls,
        if outcome.interrupted { "; INTERRUPTED" } else { "" }
    );
    if outcome.periods.len() > 1 {
        out.push_str(&periods_table(outcome));
    }
    out
}

/// Per period: p99 of each route that ran, and the watched server's resident memory and open
/// files at the period's end (the soak's curves).
pub fn periods_table(outcome: &Outcome) -> String {
    let routes: Vec<Route> = outcome.routes.iter().filter(|r| r.requests > 0).map(|r| r.route).collect();
    let mut out = format!("{:>7}", "end s");
    for route in &routes {
        let _ = write!(out, " {:>12}", format!("{} p99", route.name()));
    }
    let _ = writeln!(out, " {:>8} {:>9} {:>6}", "errors", "rss MiB", "files");
    for period in &outcome.periods {
        let _ = write!(out, "{:>7}", period.end_s);
        for route in &routes {
            let p99 = period.routes.iter().find(|r| r.route == *route).map_or(0, |r| r.p99_us);
            let _ = write!(out, " {:>12}", ms(p99));
        }
        let errors: u64 = period.routes.iter().map(|r| r.errors).sum();
        let (rss, files) = match period.server {
            Some(s) => ((s.rss_bytes >> 20).to_string(), s.open_files.to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(out, " {errors:>8} {rss:>9} {files:>6}");
    }
    out
}

/// The highest rate a route sustained in a `--max` search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaxResult {
    pub route: Route,
    /// Highest rate (requests/s) whose step passed; 0 when even the first failed.
    pub max_rate: u32,
    /// The p99 bound, µs.
    pub p99_bound_us: u64,
    /// Every step: rate, achieved ok/s, p99 µs, errors, passed.
    pub steps: Vec<MaxStep>,
}

/// One step of a `--max` search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaxStep {
    pub rate: u32,
    pub ok_per_sec: u64,
    pub p99_us: u64,
    pub errors: u64,
    pub passed: bool,
}

/// The table of a `--max` search.
pub fn max_table(results: &[MaxResult]) -> String {
    let mut out = format!("{:<9} {:>12} {:>14}\n", "route", "max rate/s", "p99 bound ms");
    for r in results {
        let _ = writeln!(out, "{:<9} {:>12} {:>14}", r.route.name(), r.max_rate, ms(r.p99_bound_us));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_have_three_decimals() {
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(1), "0.001");
        assert_eq!(ms(12_345), "12.345");
    }
}
