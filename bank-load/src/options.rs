//! Parsing and checking of the harness's options: durations such as `60s`, and the rules that
//! refuse a run which cannot measure anything (all rates zero, under a second).

use std::time::Duration;

/// Shortest run (and `--max` step) the harness accepts.
pub const DURATION_MIN: Duration = Duration::from_secs(1);

/// A refused option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

/// `500ms`, `60s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, OptionError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || OptionError(format!("`{text}` is not a duration (e.g. 500ms, 60s, 2m, 1h)"));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let per_unit = match unit {
        "ms" => Duration::from_millis(1),
        "" | "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    per_unit.checked_mul(u32::try_from(n).map_err(|_| bad())?).ok_or_else(bad)
}

/// `value` if it is at least [`DURATION_MIN`].
pub fn at_least_a_second(name: &str, value: Duration) -> Result<Duration, OptionError> {
    if value < DURATION_MIN {
        return Err(OptionError(format!("{name} must be at least 1s (got {} ms)", value.as_millis())));
    }
    Ok(value)
}

/// Reads and writes per second: at least one of them must be above zero.
pub fn check_rates(reads: u32, writes: u32) -> Result<(), OptionError> {
    if reads == 0 && writes == 0 {
        return Err(OptionError("--reads and --writes are both 0: nothing to send".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "1.5s", "-1s", "10 parsecs", "99999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn under_a_second_and_zero_rates_are_refused() {
        assert!(at_least_a_second("--duration", Duration::from_millis(999)).is_err());
        assert!(at_least_a_second("--duration", Duration::from_secs(1)).is_ok());
        assert!(check_rates(0, 0).is_err());
        assert!(check_rates(0, 1).is_ok());
        assert!(check_rates(1, 0).is_ok());
    }
}
