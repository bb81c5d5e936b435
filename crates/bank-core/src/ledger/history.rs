//! Per-account history: entries newest first, paginated by an opaque cursor.
//!
//! The cursor encodes the sequence number to continue below; sequences are gap-free per account,
//! so a page is a simple range and pages never skip or repeat an entry, even while new entries
//! arrive (they get higher sequence numbers, ahead of the first page).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::entry::{EntryKey, Side};
use crate::error::{Error, Result};
use crate::ids::EntryId;
use crate::money::Money;

/// Largest page a history query may ask for.
pub const PAGE_LIMIT_MAX: u32 = 100;
/// Page size when the caller does not say.
pub const PAGE_LIMIT_DEFAULT: u32 = 20;

/// An opaque position in an account's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Continue with entries whose sequence is below this one.
    pub before_sequence: u64,
}

const CURSOR_PREFIX: &str = "h1.";

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = format!("{CURSOR_PREFIX}{}", self.before_sequence);
        f.write_str(&URL_SAFE_NO_PAD.encode(raw))
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::invalid("invalid cursor");
        if text.len() > 64 {
            return Err(bad());
        }
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let raw = std::str::from_utf8(&raw).map_err(|_| bad())?;
        let digits = raw.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let before_sequence = digits.parse().map_err(|_| bad())?;
        Ok(Cursor { before_sequence })
    }
}

/// A history request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    limit: u32,
    cursor: Option<Cursor>,
}

impl HistoryQuery {
    /// The first `limit` entries (1..=[`PAGE_LIMIT_MAX`]), newest first, from `cursor` on.
    pub fn new(limit: u32, cursor: Option<Cursor>) -> Result<Self> {
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(Error::invalid(format!("limit must be 1 to {PAGE_LIMIT_MAX}")));
        }
        Ok(HistoryQuery { limit, cursor })
    }

    /// The first page with the default size.
    pub fn first_page() -> Self {
        HistoryQuery { limit: PAGE_LIMIT_DEFAULT, cursor: None }
    }

    /// Page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Sequence numbers to return are `< before` (`u64::MAX` on the first page).
    pub fn before_sequence(&self) -> u64 {
        self.cursor.map_or(u64::MAX, |c| c.before_sequence)
    }

    /// Given the sequence of the last item of a full page, the cursor of the next page.
    pub fn next_cursor(&self, items: usize, last_sequence: u64) -> Option<Cursor> {
        (items == self.limit as usize && last_sequence > 1).then_some(Cursor { before_sequence: last_sequence })
    }
}

/// One entry as seen from one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// The entry.
    pub entry_id: EntryId,
    /// Its key (the transfer and leg).
    pub key: EntryKey,
    /// The account's sequence number for it.
    pub sequence: u64,
    /// Debit or credit, from this account's point of view.
    pub direction: Side,
    /// How much.
    pub money: Money,
    /// The account's posted balance after it.
    #[serde(with = "crate::money::decimal_string")]
    pub balance_after: Decimal,
    /// The entry's reference.
    pub reference: String,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor { before_sequence: 42 };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in ["", "42", "aDEuLTE", "!!!", &"a".repeat(100), &URL_SAFE_NO_PAD.encode("h1.")] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert!(HistoryQuery::new(0, None).is_err());
        assert!(HistoryQuery::new(PAGE_LIMIT_MAX + 1, None).is_err());
        assert!(HistoryQuery::new(PAGE_LIMIT_MAX, None).is_ok());
    }
}
