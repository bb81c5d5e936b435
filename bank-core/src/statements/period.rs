//! [`Period`]: one calendar month in UTC, written `YYYY-MM`, parsed strictly at the edge.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The earliest year a period may name (nothing in this bank is older than the Unix epoch).
pub const PERIOD_YEAR_MIN: i32 = 1970;
/// The latest year a period may name (four digits).
pub const PERIOD_YEAR_MAX: i32 = 9998;

/// A calendar month in UTC: from the first instant of its first day (inclusive) to the first
/// instant of the next month (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// The month `month` (1 to 12) of `year` ([`PERIOD_YEAR_MIN`] to [`PERIOD_YEAR_MAX`]).
    pub fn new(year: i32, month: u32) -> Result<Self> {
        if !(PERIOD_YEAR_MIN..=PERIOD_YEAR_MAX).contains(&year) || !(1..=12).contains(&month) {
            return Err(Error::InvalidInput(format!(
                "a period is a month YYYY-MM from {PERIOD_YEAR_MIN}-01 to {PERIOD_YEAR_MAX}-12"
            )));
        }
        Ok(Period { year, month })
    }

    /// The month containing `at`.
    pub fn containing(at: DateTime<Utc>) -> Result<Self> {
        Period::new(at.year(), at.month())
    }

    /// The month before the one containing `at`: the period a monthly job closes at `at`.
    pub fn previous(at: DateTime<Utc>) -> Result<Self> {
        Period::containing(at)?.before()
    }

    /// The month before this one.
    pub fn before(self) -> Result<Self> {
        if self.month == 1 { Period::new(self.year - 1, 12) } else { Period::new(self.year, self.month - 1) }
    }

    /// The year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// The month, 1 to 12.
    pub const fn month(self) -> u32 {
        self.month
    }

    /// The first instant of the month.
    pub fn start(self) -> DateTime<Utc> {
        first_instant(self.year, self.month)
    }

    /// The first instant of the next month: the end, exclusive.
    pub fn end(self) -> DateTime<Utc> {
        if self.month == 12 { first_instant(self.year + 1, 1) } else { first_instant(self.year, self.month + 1) }
    }
}

fn first_instant(year: i32, month: u32) -> DateTime<Utc> {
    // Years and months are range-checked by `Period::new`, so the date always exists.
    let date = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = Error;

    /// Exactly `YYYY-MM`: four digits, a hyphen, two digits; no sign, space or other form.
    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::InvalidInput("a period is written YYYY-MM (for example 2026-01)".into());
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 7
            && bytes[4] == b'-'
            && bytes[..4].iter().all(u8::is_ascii_digit)
            && bytes[5..].iter().all(u8::is_ascii_digit);
        if !shape_ok {
            return Err(bad());
        }
        let year: i32 = text[..4].parse().map_err(|_| bad())?;
        let month: u32 = text[5..].parse().map_err(|_| bad())?;
        Period::new(year, month)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_strictly_and_bound_a_month() {
        let january: Period = "2026-01".parse().expect("valid");
        assert_eq!(january.to_string(), "2026-01");
        assert_eq!(january.start().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(january.end().to_rfc3339(), "2026-02-01T00:00:00+00:00");
        let december: Period = "2025-12".parse().expect("valid");
        assert_eq!(december.end(), january.start());
        assert_eq!(january.before().expect("before"), december);
        let leap: Period = "2028-02".parse().expect("valid");
        assert_eq!(leap.end().to_rfc3339(), "2028-03-01T00:00:00+00:00");
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-01",
            "2026/01",
            " 2026-01",
            "2026-01 ",
            "+026-01",
            "1969-12",
            "9999-12",
            "２０２６-01",
            "",
        ] {
            assert!(matches!(bad.parse::<Period>(), Err(Error::InvalidInput(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_previous_period_is_the_month_before_now() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").expect("time").with_timezone(&Utc);
        assert_eq!(Period::previous(at).expect("previous").to_string(), "2026-02");
        let at = DateTime::parse_from_rfc3339("2026-01-31T23:59:59Z").expect("time").with_timezone(&Utc);
        assert_eq!(Period::previous(at).expect("previous").to_string(), "2025-12");
    }
}
